"""Promises, encapsulation and graph checks, end to end through real worker processes."""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import pytest

from flow.core.common import Flow
from flow.core.exceptions import JobGraphDeadlockException
from flow.core.job import Job
from tests.integration._util import append_line, read_lines


# ---- jobs ------------------------------------------------------------------------------------
def constant(value):
    return value


def add(a, b):
    return a + b


def structure():
    return {"key": [10, 20, {"deep": "value"}], "other": ("x", "y")}


def big_value():
    return "z" * 100_000  # larger than the inline limit: stored as a separate result record


def describe(values, mapping, pair, deep, big):
    return {"values": values, "mapping": mapping, "pair": pair, "deep": deep, "big": big}


def child_to_follow_on(job):
    """A child's rv() passed to a follow-on; the root returns the follow-on's rv()."""
    child = job.addChildFn(constant, 21, cores=0.1, memory="50M")
    return job.addFollowOnFn(add, child.rv(), child.rv(), cores=0.1, memory="50M").rv()


def paths_into_values(job):
    s = job.addChildFn(structure, cores=0.1, memory="50M")
    return job.addFollowOnFn(
        constant, [s.rv("key", 0), s.rv("key", 1), s.rv("key", 2, "deep"), s.rv("other", 1)],
        cores=0.1, memory="50M",
    ).rv()


def nested_promises(job):
    a = job.addChildFn(constant, 1, cores=0.1, memory="50M")
    b = job.addChildFn(constant, "two", cores=0.1, memory="50M")
    c = job.addChildFn(constant, [3, 3], cores=0.1, memory="50M")
    big = job.addChildFn(big_value, cores=0.1, memory="50M")
    return job.addFollowOnFn(
        describe,
        [a.rv(), b.rv(), [c.rv(), c.rv(0)]],
        {"a": a.rv(), "nested": {"b": b.rv()}},
        (a.rv(), (b.rv(), c.rv(1))),
        deep={"list": [{"tuple": (c.rv(),)}]},
        big=big.rv(),
        cores=0.1, memory="50M",
    ).rv()


def return_childs_rv(job, depth):
    """Promise of a promise: each level returns its child's rv(); the last returns a value."""
    if depth == 0:
        return f"bottom reached by pid {os.getpid()}"
    return job.addChildJobFn(return_childs_rv, depth - 1, cores=0.1, memory="50M").rv()


def return_dict_of_promises(job):
    a = job.addChildFn(constant, "A", cores=0.1, memory="50M")
    b = job.addChildFn(structure, cores=0.1, memory="50M")
    return {"a": a.rv(), "b0": b.rv("key", 0), "list": [a.rv(), b.rv("other")]}


class Doubler(Job):
    """A Job subclass holding a promise as an attribute."""

    def __init__(self, value):
        super().__init__(cores=0.1, memory="50M")
        self.value = value

    def run(self, fileStore):
        return self.value * 2


def subclass_with_promise(job):
    child = job.addChildFn(constant, 8, cores=0.1, memory="50M")
    return job.addFollowOn(Doubler(child.rv())).rv()


# encapsulation
def recorded(log, name, seconds):
    append_line(log, f"start {name} {time.time()!r}")
    time.sleep(seconds)
    append_line(log, f"end {name} {time.time()!r}")
    return name


def subtree_root(job, log):
    append_line(log, f"start A {time.time()!r}")
    for i in range(2):
        child = job.addChildFn(recorded, log, f"A.child{i}", 0.3, cores=0.1, memory="50M")
        child.addFollowOnFn(recorded, log, f"A.child{i}.followon", 0.1, cores=0.1, memory="50M")
    job.addFollowOnFn(recorded, log, "A.followon", 0.1, cores=0.1, memory="50M")
    append_line(log, f"end A {time.time()!r}")
    return "A's value"


def after(log, name, value):
    append_line(log, f"start {name} {time.time()!r}")
    append_line(log, f"end {name} {time.time()!r}")
    return (name, value)


def encapsulating_root(job, log):
    a = Job.wrapJobFn(subtree_root, log, cores=0.1, memory="50M")
    enc = job.addChild(a.encapsulate())
    follow = enc.addFollowOnFn(after, log, "B.followon", enc.rv(), cores=0.1, memory="50M")
    child = enc.addChildFn(after, log, "B.child", enc.rv(), cores=0.1, memory="50M")
    return [follow.rv(), child.rv()]


def returns_42():
    return 42


# ---- tests -----------------------------------------------------------------------------------
def test_child_rv_to_follow_on(options: argparse.Namespace) -> None:
    with Flow(options) as flow:
        assert flow.start(Job.wrapJobFn(child_to_follow_on, cores=0.1, memory="50M")) == 42


def test_rv_paths_into_dicts_and_lists(options: argparse.Namespace) -> None:
    with Flow(options) as flow:
        result = flow.start(Job.wrapJobFn(paths_into_values, cores=0.1, memory="50M"))
    assert result == [10, 20, "value", "y"]


def test_promises_nested_in_arguments(options: argparse.Namespace) -> None:
    result = Job.Runner.startFlow(Job.wrapJobFn(nested_promises, cores=0.1, memory="50M"), options)
    assert result == {
        "values": [1, "two", [[3, 3], 3]],
        "mapping": {"a": 1, "nested": {"b": "two"}},
        "pair": (1, ("two", 3)),
        "deep": {"list": [{"tuple": ([3, 3],)}]},
        "big": "z" * 100_000,
    }


def test_promise_of_promise_read_by_caller(options: argparse.Namespace) -> None:
    with Flow(options) as flow:
        result = flow.start(Job.wrapJobFn(return_childs_rv, 5, cores=0.1, memory="50M"))
    assert isinstance(result, str) and result.startswith("bottom reached by pid ")
    assert int(result.rsplit(" ", 1)[1]) != os.getpid()  # computed in a worker process


def test_root_returning_structure_of_promises(options: argparse.Namespace) -> None:
    with Flow(options) as flow:
        result = flow.start(Job.wrapJobFn(return_dict_of_promises, cores=0.1, memory="50M"))
    assert result == {"a": "A", "b0": 10, "list": ["A", ("x", "y")]}


def test_start_returns_root_value(options: argparse.Namespace) -> None:
    with Flow(options) as flow:
        assert flow.start(Job.wrapFn(constant, {"plain": [1, 2, 3]}, cores=0.1, memory="50M")) == {
            "plain": [1, 2, 3]
        }


def test_promise_as_job_subclass_attribute(options: argparse.Namespace) -> None:
    with Flow(options) as flow:
        assert flow.start(Job.wrapJobFn(subclass_with_promise, cores=0.1, memory="50M")) == 16


def _events(log: Path) -> dict[str, float]:
    out = {}
    for line in read_lines(log):
        kind, name, stamp = line.split(" ")
        out[f"{kind} {name}"] = float(stamp)
    return out


def test_encapsulate_successors_wait_for_whole_subtree(
    options: argparse.Namespace, tmp_path: Path
) -> None:
    log = tmp_path / "events.log"
    with Flow(options) as flow:
        result = flow.start(Job.wrapJobFn(encapsulating_root, str(log), cores=0.1, memory="50M"))
    # rv() of the encapsulated job is A's return value
    assert result == [("B.followon", "A's value"), ("B.child", "A's value")]
    events = _events(log)
    subtree = ["A", "A.child0", "A.child1", "A.child0.followon", "A.child1.followon", "A.followon"]
    assert {f"end {n}" for n in subtree} <= set(events), events
    last_subtree_end = max(events[f"end {n}"] for n in subtree)
    for successor in ("B.followon", "B.child"):
        assert events[f"start {successor}"] >= last_subtree_end, (successor, events)


def test_start_of_encapsulated_root_returns_inner_value(options: argparse.Namespace) -> None:
    """As in Toil, rv() of an encapsulated job (and so its value as the root) is the inner job's."""
    with Flow(options) as flow:
        assert flow.start(Job.wrapFn(returns_42, cores=0.1, memory="50M").encapsulate()) == 42


def test_cycle_rejected_before_anything_runs(options: argparse.Namespace, tmp_path: Path) -> None:
    marker = tmp_path / "ran.log"
    root = Job.wrapFn(append_line, str(marker), "root", cores=0.1, memory="50M")
    a = Job.wrapFn(append_line, str(marker), "a", cores=0.1, memory="50M")
    b = Job.wrapFn(append_line, str(marker), "b", cores=0.1, memory="50M")
    root.addChild(a)
    a.addChild(b)
    b.addChild(a)
    with Flow(options) as flow:
        with pytest.raises(JobGraphDeadlockException):
            flow.start(root)
    assert not marker.exists()


def test_follow_on_cycle_rejected(options: argparse.Namespace, tmp_path: Path) -> None:
    """A child of A that is also a follow-on of A's parent waits for itself."""
    marker = tmp_path / "ran.log"
    root = Job.wrapFn(append_line, str(marker), "root", cores=0.1, memory="50M")
    a = Job.wrapFn(append_line, str(marker), "a", cores=0.1, memory="50M")
    b = Job.wrapFn(append_line, str(marker), "b", cores=0.1, memory="50M")
    root.addChild(a)
    root.addFollowOn(b)
    a.addChild(b)
    with Flow(options) as flow:
        with pytest.raises(JobGraphDeadlockException):
            flow.start(root)
    assert not marker.exists()


def test_two_job_cycle_rejected(options: argparse.Namespace, tmp_path: Path) -> None:
    marker = tmp_path / "ran.log"
    a = Job.wrapFn(append_line, str(marker), "a", cores=0.1, memory="50M")
    b = Job.wrapFn(append_line, str(marker), "b", cores=0.1, memory="50M")
    a.addChild(b)
    b.addChild(a)
    with Flow(options) as flow:
        with pytest.raises(JobGraphDeadlockException):
            flow.start(a)
    assert not marker.exists()
