"""The scheduler state machine, driven by events alone: no processes, no files."""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from flow.core import state as sm
from flow.core.description import JobDescription, JobState


def desc(job_id: str, children: Iterable[str] = (), follow_ons: Iterable[str] = (), **kw: object) -> JobDescription:
    d = JobDescription(job_id=job_id, name=job_id, children=list(children), follow_ons=list(follow_ons))
    for key, value in kw.items():
        setattr(d, key, value)
    return d


def ran(d: JobDescription, children: Iterable[str] = (), follow_ons: Iterable[str] = (), **kw: object) -> JobDescription:
    """``d`` as the worker commits it: RAN, with any new successors appended."""
    out = desc(d.job_id, [*d.children, *children], [*d.follow_ons, *follow_ons], **kw)
    out.state = JobState.RAN
    out.predecessors = d.predecessors
    return out


@pytest.fixture(autouse=True)
def validate_every_step(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every scheduler in these tests checks its invariants after each step."""
    step = sm.Scheduler.step

    def checked(self: sm.Scheduler, event: sm.Event) -> list[sm.Instruction]:
        out = step(self, event)
        self.validate()
        return out

    monkeypatch.setattr(sm.Scheduler, "step", checked)


def issued(instructions: Iterable[sm.Instruction]) -> list[str]:
    return [i.job_id for i in instructions if isinstance(i, sm.Issue)]


class Harness:
    """Feeds events to a scheduler and keeps what it asked for."""

    def __init__(self, *descs: JobDescription, **defaults: object) -> None:
        self.s = sm.Scheduler(sm.Defaults(**defaults))  # type: ignore[arg-type]
        self.out = self.s.step(sm.Started(descs[0].job_id, descs))

    def end(self, job_id: str, *descs: JobDescription, ok: bool = True, **kw: object) -> list[sm.Instruction]:
        self.out = self.s.step(sm.JobEnded(job_id, ok, descriptions=descs, **kw))  # type: ignore[arg-type]
        return self.out

    def succeed(self, d: JobDescription, *new: JobDescription, **kw: object) -> list[sm.Instruction]:
        children = kw.pop("children", ())
        follow_ons = kw.pop("follow_ons", ())
        return self.end(d.job_id, ran(d, children, follow_ons), *new)  # type: ignore[arg-type]


def test_root_is_issued_first_with_default_resources() -> None:
    h = Harness(desc("root"), cores=2.0, memory=100, disk=200)
    assert h.out == [sm.Issue("root", "root", 2.0, 100, 200, 0, False, None, False)]


def test_children_then_follow_on_then_finished() -> None:
    root = desc("root")
    h = Harness(root)
    a, b, f = desc("a"), desc("b"), desc("f")
    out = h.succeed(root, a, b, f, children=["a", "b"], follow_ons=["f"])
    assert sorted(issued(out)) == ["a", "b"]
    assert issued(h.succeed(a)) == []  # f waits for b too
    assert issued(h.succeed(b)) == ["f"]
    out = h.succeed(f)
    assert sm.Finished(True) in out
    assert h.s.finished is True
    assert h.s.visible_done == 4


def test_follow_on_waits_for_grandchildren() -> None:
    root, a, g, f = desc("root", ["a"], ["f"]), desc("a"), desc("g"), desc("f")
    h = Harness(root, a, f)
    assert issued(h.succeed(root)) == ["a"]
    assert issued(h.succeed(a, g, children=["g"])) == ["g"]
    assert issued(h.succeed(g)) == ["f"]


def test_failure_blocks_successors_but_not_siblings_and_names_the_job() -> None:
    root, bad, good, after = desc("root", ["bad", "good"]), desc("bad", ["after"]), desc("good"), desc("after")
    h = Harness(root, bad, good, after, retry_count=0)
    assert sorted(issued(h.succeed(root))) == ["bad", "good"]
    out = h.end("bad", bad, ok=False, reason="exit code 1")
    assert sm.JobFailed("bad", "bad", "exit code 1") in out
    assert issued(out) == []
    assert h.s.finished is None  # the sibling still runs
    out = h.succeed(good)
    assert sm.Finished(False) in out
    assert h.s.record("after").status is sm.Status.BLOCKED
    assert h.s.failed == {"bad": "exit code 1"}


def test_retry_then_success() -> None:
    root = desc("root")
    h = Harness(root, retry_count=2)
    out = h.end("root", root, ok=False, reason="exit code 1")
    assert issued(out) == ["root"]
    assert sm.SaveRetries("root", 1) in out
    out = h.end("root", root, ok=False, reason="exit code 1")
    assert issued(out) == ["root"]
    assert h.succeed(root)[-1] == sm.Finished(True)


def test_retries_exhausted_fails() -> None:
    root = desc("root")
    h = Harness(root, retry_count=1)
    h.end("root", root, ok=False)
    out = h.end("root", root, ok=False, reason="exit code 2")
    assert sm.Finished(False) in out
    assert h.s.failed == {"root": "exit code 2"}


def test_impossible_request_fails_without_retry() -> None:
    root = desc("root")
    h = Harness(root, retry_count=5)
    out = h.end("root", ok=False, reason="asks for 64 cores", permanent=True)
    assert sm.JobFailed("root", "root", "asks for 64 cores") in out
    assert issued(out) == []


def test_lost_job_is_reissued_without_spending_a_retry() -> None:
    root = desc("root")
    h = Harness(root, retry_count=0)
    out = h.end("root", root, ok=False, reason="lost", lost=True)
    assert issued(out) == ["root"]
    assert h.s.record("root").retries_left == 0


def test_job_with_two_predecessors_runs_once_after_both() -> None:
    root = desc("root", ["a", "b"])
    a, b = desc("a", ["x"]), desc("b", ["x"])
    x = desc("x", predecessors=2)
    h = Harness(root, a, b, x)
    h.succeed(root)
    assert issued(h.succeed(a)) == []
    assert issued(h.succeed(b)) == ["x"]
    assert h.succeed(x)[-1] == sm.Finished(True)


def test_shared_successor_of_a_failed_job_settles_the_other_branch() -> None:
    root = desc("root", ["a", "b"])
    a, b = desc("a", ["x"]), desc("b", ["x"])
    x = desc("x", predecessors=2)
    h = Harness(root, a, b, x, retry_count=0)
    h.succeed(root)
    h.succeed(a)  # a reached x; x waits for b
    out = h.end("b", b, ok=False)
    assert sm.Finished(False) in out
    assert h.s.record("x").status is sm.Status.BLOCKED


def test_committed_chain_counts_every_job_once() -> None:
    root = desc("root", follow_ons=["a"])
    a = desc("a", follow_ons=["b"])
    b = desc("b")
    h = Harness(root, a, b)
    out = h.end("root", ran(root, chained_to="a"), ran(a, chained_to="b"), ran(b))
    assert issued(out) == []
    assert h.s.finished is True
    assert h.s.visible_done == 3


def test_failure_inside_a_chain_is_charged_to_the_chained_job() -> None:
    root = desc("root", follow_ons=["a"])
    a = desc("a")
    h = Harness(root, a, retry_count=1)
    out = h.end("root", ran(root, chained_to="a"), a, ok=False, reason="exit code 1")
    assert issued(out) == ["a"]  # root committed; only a re-runs
    assert h.s.record("a").retries_left == 0
    assert h.s.record("root").retries_left == 1


def test_long_chain_replays_without_recursion() -> None:
    n = 5000
    descs = [ran(desc(f"j{i}", follow_ons=[f"j{i + 1}"] if i + 1 < n else [])) for i in range(n)]
    h = Harness(*descs)
    assert h.s.finished is True
    assert h.s.visible_done == n


def test_restart_issues_only_jobs_that_did_not_commit() -> None:
    root = ran(desc("root", ["a", "b", "c"], ["f"]))
    a, b, c, f = ran(desc("a")), desc("b"), ran(desc("c")), desc("f")
    h = Harness(root, a, b, c, f)
    assert issued(h.out) == ["b"]
    assert issued(h.succeed(b)) == ["f"]


def test_checkpoint_reruns_its_subtree_once_then_fails() -> None:
    root = desc("root", checkpoint=True)
    h = Harness(root, retry_count=1)
    h.succeed(root, desc("kid"), children=["kid"])
    out = h.end("kid", ok=False, reason="exit code 1")
    out = h.end("kid", ok=False, reason="exit code 1")  # its own retry
    assert sm.ResetCheckpoint("root", 0) in out
    assert issued(out) == ["root"]
    assert not h.s.knows("kid")
    out = h.succeed(root, desc("kid2"), children=["kid2"])
    assert issued(out) == ["kid2"]
    assert h.succeed(desc("kid2"))[-1] == sm.Finished(True)


def _service_desc(job_id: str) -> JobDescription:
    return desc(job_id, is_service=True)


def test_services_start_before_successors_and_stop_after() -> None:
    root = desc("root")
    h = Harness(root)
    svc, kid = _service_desc("svc"), desc("kid")
    out = h.end("root", ran(root, ["kid"], services=["svc"]), svc, kid)
    assert issued(out) == ["svc"]
    out = h.s.step(sm.ServiceStarted("svc"))
    assert issued(out) == ["kid"]
    out = h.succeed(kid)
    assert out == [sm.StopService("svc")]
    assert h.s.finished is None
    out = h.end("svc", ran(svc))
    assert out[-1] == sm.Finished(True)


def test_service_that_dies_fails_its_job() -> None:
    root = desc("root")
    h = Harness(root)
    svc, kid = _service_desc("svc"), desc("kid")
    h.end("root", ran(root, ["kid"], services=["svc"]), svc, kid)
    h.s.step(sm.ServiceStarted("svc"))
    out = h.end("svc", ok=False, reason="exit code 1")
    assert any(isinstance(i, sm.JobFailed) and i.job_id == "svc" for i in out)
    out = h.succeed(kid)
    assert sm.Finished(False) in out


def test_time_limit_kills_and_retries() -> None:
    root = desc("root")
    h = Harness(root, max_job_duration=10.0, retry_count=1)
    out = h.s.step(sm.Tick(100.0, {"root": 5.0}))
    assert out == []
    out = h.s.step(sm.Tick(200.0, {"root": 11.0}))
    assert isinstance(out[0], sm.Kill)
    assert issued(out) == ["root"]


def test_deadlock_is_reported_after_the_wait() -> None:
    root = desc("root")
    h = Harness(root, deadlock_wait=30.0)
    svc, kid = _service_desc("svc"), desc("kid")
    h.end("root", ran(root, ["kid"], services=["svc"]), svc, kid)
    h.s.step(sm.ServiceStarted("svc"))
    assert h.s.step(sm.Tick(0.0, {"svc": 1.0})) == []
    assert h.s.step(sm.Tick(10.0, {"svc": 11.0})) == []
    out = h.s.step(sm.Tick(31.0, {"svc": 32.0}))
    assert len(out) == 1 and isinstance(out[0], sm.Abort)
    assert "deadlock" in out[0].reason


def test_hidden_jobs_are_not_counted() -> None:
    root = desc("root", hidden=True)
    h = Harness(root)
    kid = desc("kid")
    h.succeed(root, kid, children=["kid"])
    assert (h.s.visible_done, h.s.visible_issued) == (0, 1)
    h.succeed(kid)
    assert h.s.visible_done == 1


@pytest.mark.parametrize("n", [1, 100])
def test_late_report_for_settled_job_is_ignored(n: int) -> None:
    root = desc("root")
    h = Harness(root)
    h.succeed(root)
    for _ in range(n):
        assert h.end("root", ran(root)) == []


def test_child_service_starts_after_its_parent_and_stops_before_it() -> None:
    root = desc("root")
    h = Harness(root)
    parent, child, kid = _service_desc("parent"), _service_desc("child"), desc("kid")
    child.service_parent = "parent"
    out = h.end("root", ran(root, ["kid"], services=["parent", "child"]), parent, child, kid)
    assert issued(out) == ["parent"]
    assert issued(h.s.step(sm.ServiceStarted("parent"))) == ["child"]
    assert issued(h.s.step(sm.ServiceStarted("child"))) == ["kid"]
    assert h.succeed(kid) == [sm.StopService("child")]
    assert h.end("child", ran(child)) == [sm.StopService("parent")]
    assert h.end("parent", ran(parent))[-1] == sm.Finished(True)


def test_restart_gives_unrun_jobs_fresh_retries() -> None:
    root = ran(desc("root", ["a"]))
    a = desc("a", retries_left=0)
    s = sm.Scheduler(sm.Defaults(retry_count=2))
    assert issued(s.step(sm.Started("root", (root, a), fresh_retries=True))) == ["a"]
    assert s.record("a").retries_left == 2


def test_illegal_transition_raises_with_the_jobs_story() -> None:
    root = desc("root")
    h = Harness(root)
    h.succeed(root)
    rec = h.s.record("root")
    with pytest.raises(sm.InvalidTransition) as caught:
        h.s._set_status(rec, sm.Status.ISSUED)  # a settled job never runs again
    err = caught.value
    assert (err.job_id, err.start, err.finish) == ("root", sm.Status.DONE, sm.Status.ISSUED)
    assert any("waiting -> issued" in line for line in err.story)
    assert any("batch job ended, succeeded" in line for line in err.story)
    assert "may not go from done to issued" in str(err)


def test_every_status_has_its_transitions_and_settled_ones_none() -> None:
    assert set(sm.TRANSITIONS) == set(sm.Status)
    for status in sm.SETTLED:
        assert sm.TRANSITIONS[status] == frozenset()


@pytest.mark.parametrize("corrupt, words", [
    (lambda s: setattr(s, "visible_done", s.visible_done + 1), "visible_done"),
    (lambda s: setattr(s.record("a"), "outstanding", 5), "waits for 5"),
    (lambda s: setattr(s.record("kid"), "retries_left", 9), "retries left"),
    (lambda s: s.record("kid").parents.append("a"), "predecessor"),
    (lambda s: setattr(s, "finished", True), "finished is True"),
    (lambda s: setattr(s.record("b"), "status", sm.Status.DONE), "successor"),
])
def test_validate_finds_a_broken_state(corrupt: object, words: str) -> None:
    root, a, b, kid = desc("root", ["a", "b"]), desc("a"), desc("b", ["c"]), desc("kid")
    h = Harness(root, a, b, kid, desc("c"))
    h.succeed(root)
    h.succeed(a, kid, children=["kid"])
    h.s.validate()
    corrupt(h.s)  # type: ignore[operator]
    with pytest.raises(sm.InvariantViolation) as caught:
        h.s.validate()
    assert any(words in p for p in caught.value.problems), caught.value.problems


def test_a_job_that_fails_for_good_carries_its_story() -> None:
    root = desc("root")
    h = Harness(root, retry_count=1)
    h.end("root", root, ok=False, reason="exit code 3")
    out = h.end("root", root, ok=False, reason="exit code 4")
    failed = next(i for i in out if isinstance(i, sm.JobFailed))
    story = "\n".join(failed.story)
    assert "attempt failed: exit code 3" in story and "attempt failed: exit code 4" in story
    assert story.count("waiting -> issued") == 2
    assert h.s.story("root")[-1].endswith("waiting -> failed")


def test_story_is_bounded() -> None:
    root = desc("root")
    h = Harness(root, retry_count=100)
    for i in range(sm.STORY_LENGTH):
        h.end("root", root, ok=False, reason=f"exit code {i}")
    story = h.s.story("root")
    assert len(story) == sm.STORY_LENGTH
    assert story[-2].endswith(f"exit code {sm.STORY_LENGTH - 1}")  # the newest are kept


def test_checkpoint_rerun_forgets_its_subtree_once() -> None:
    """Found by the random-graph test: the follow-ons that a failed checkpoint blocks were
    counted out twice (once forgotten, once blocked), driving visible_waiting negative."""
    root = desc("root", checkpoint=True)
    h = Harness(root, retry_count=1)
    h.succeed(root, desc("kid"), desc("after"), children=["kid"], follow_ons=["after"])
    h.end("kid", ok=False)
    out = h.end("kid", ok=False)
    assert sm.ResetCheckpoint("root", 0) in out
    assert not h.s.knows("after")
    assert (h.s.visible_waiting, h.s.visible_issued) == (0, 1)
