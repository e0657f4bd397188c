"""Failures end to end: what stops, what goes on, retries, checkpoints, impossible requests,
and bad job stores."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import pytest

from flow.core.common import Flow
from flow.core.exceptions import FailedJobsException, FlowError
from flow.core.job import Job
from flow.jobstores.abstract import CorruptJobStoreError, NoSuchJobStoreError
from tests.integration._util import append_line, count_lines, touch

SMALL = {"cores": 0.1, "memory": "50M"}


# ---- jobs ------------------------------------------------------------------------------------
def write_marker(path):
    touch(path, "ran")


class BoomError(Exception):
    pass


def failing(job, markers):
    # successors added before failing: they must never run
    job.addChildFn(write_marker, os.path.join(markers, "failing.child"), **SMALL)
    job.addFollowOnFn(write_marker, os.path.join(markers, "failing.followon"), **SMALL)
    print("about to fail: stdout of the failing job")
    raise BoomError("boom-7f3a: the failing job's own message")


def sibling(job, markers):
    job.addChildFn(write_marker, os.path.join(markers, "sibling.child"), **SMALL)
    touch(os.path.join(markers, "sibling"))


def failure_root(job, markers):
    job.addChildJobFn(failing, markers, **SMALL)
    job.addChildJobFn(sibling, markers, **SMALL)
    job.addFollowOnFn(write_marker, os.path.join(markers, "root.followon"), **SMALL)


def static_failing(markers):
    raise BoomError("boom-static")


def fail_first_time(job, marker, attempts_log):
    append_line(attempts_log, f"attempt {os.getpid()}")
    if not os.path.exists(marker):
        touch(marker)
        raise BoomError("first attempt fails")
    return "succeeded on a later attempt"


def retry_root(job, marker, attempts_log):
    return job.addChildJobFn(fail_first_time, marker, attempts_log, **SMALL).rv()


def fails_during_first_checkpoint_run(job, checkpoint_run, attempts_log):
    append_line(attempts_log, f"child attempt in checkpoint run {checkpoint_run}")
    if checkpoint_run == 1:
        raise BoomError("the checkpoint's first subtree fails")
    return f"child ok in checkpoint run {checkpoint_run}"


def checkpoint_body(job, runs_log, attempts_log):
    append_line(runs_log, "checkpoint body ran")
    run = count_lines(runs_log)
    child = job.addChildJobFn(fails_during_first_checkpoint_run, run, attempts_log, **SMALL)
    return {"run": run, "child": child.rv()}


def checkpoint_root(job, runs_log, attempts_log, sibling_log):
    job.addChildFn(append_line, sibling_log, "sibling ran", **SMALL)
    cp = job.addChildJobFn(checkpoint_body, runs_log, attempts_log, checkpoint=True, **SMALL)
    return cp.rv()


def impossible_parent(job, markers, request):
    job.addChildFn(write_marker, os.path.join(markers, "impossible"), **request)
    job.addChildFn(write_marker, os.path.join(markers, "possible"), **SMALL)


def constant(value):
    return value


# ---- tests -----------------------------------------------------------------------------------
def test_failure_stops_successors_not_siblings(options: argparse.Namespace, tmp_path: Path) -> None:
    markers = tmp_path / "markers"
    markers.mkdir()
    options.retryCount = 0
    with pytest.raises(FailedJobsException) as info:
        with Flow(options) as flow:
            flow.start(Job.wrapJobFn(failure_root, str(markers), **SMALL))
    exc = info.value
    assert [f.name for f in exc.failed] == ["failing"], exc.failed
    assert exc.numberOfFailedJobs == 1
    failed = exc.failed[0]
    # the failing job's own traceback and output, in the failure and in the message
    assert "BoomError: boom-7f3a" in failed.log_tail
    assert "Traceback (most recent call last)" in failed.log_tail
    assert "about to fail: stdout of the failing job" in failed.log_tail
    message = str(exc)
    assert "failing" in message and "boom-7f3a" in message
    assert "Traceback (most recent call last)" in message
    assert "raise BoomError" in message
    assert "--restart" in message
    # the sibling branch finished; the failing job's successors and the root's follow-on did not run
    assert sorted(p.name for p in markers.iterdir()) == ["sibling", "sibling.child"]


def test_failure_of_statically_added_job(options: argparse.Namespace, tmp_path: Path) -> None:
    """A job added before start() fails the same way (and its follow-on never runs)."""
    options.retryCount = 0
    root = Job.wrapFn(constant, 1, **SMALL)
    bad = root.addChildFn(static_failing, str(tmp_path), **SMALL)
    bad.addFollowOnFn(write_marker, str(tmp_path / "after-bad"), **SMALL)
    root.addChildFn(write_marker, str(tmp_path / "good"), **SMALL)
    with pytest.raises(FailedJobsException) as info:
        Job.Runner.startFlow(root, options)
    assert [f.name for f in info.value.failed] == ["static_failing"]
    assert "boom-static" in str(info.value)
    assert (tmp_path / "good").exists()
    assert not (tmp_path / "after-bad").exists()


def test_retry_then_success(options: argparse.Namespace, tmp_path: Path) -> None:
    options.retryCount = 1
    attempts = tmp_path / "attempts.log"
    with Flow(options) as flow:
        result = flow.start(Job.wrapJobFn(retry_root, str(tmp_path / "failed-once"), str(attempts), **SMALL))
    assert result == "succeeded on a later attempt"
    assert count_lines(attempts) == 2


def test_no_retry_fails(options: argparse.Namespace, tmp_path: Path) -> None:
    options.retryCount = 0
    attempts = tmp_path / "attempts.log"
    with pytest.raises(FailedJobsException) as info:
        with Flow(options) as flow:
            flow.start(Job.wrapJobFn(retry_root, str(tmp_path / "failed-once"), str(attempts), **SMALL))
    assert [f.name for f in info.value.failed] == ["fail_first_time"]
    assert "first attempt fails" in str(info.value)
    # The job's own error, not followed by the worker's exit status (which says nothing more)
    assert info.value.failed[0].reason.endswith("BoomError: first attempt fails")
    assert count_lines(attempts) == 1


def test_checkpoint_reruns_its_subtree(options: argparse.Namespace, tmp_path: Path) -> None:
    options.retryCount = 1
    runs, attempts, sibling_log = tmp_path / "runs.log", tmp_path / "attempts.log", tmp_path / "sibling.log"
    with Flow(options) as flow:
        result = flow.start(
            Job.wrapJobFn(checkpoint_root, str(runs), str(attempts), str(sibling_log), **SMALL)
        )
    assert result == {"run": 2, "child": "child ok in checkpoint run 2"}
    assert count_lines(runs) == 2  # the checkpoint job's body ran twice
    # first checkpoint run: the child's attempt and its one retry fail; second run: it succeeds
    assert open(attempts).read().splitlines() == [
        "child attempt in checkpoint run 1",
        "child attempt in checkpoint run 1",
        "child attempt in checkpoint run 2",
    ]
    assert count_lines(sibling_log) == 1  # outside the checkpoint's subtree: not re-run


def test_checkpoint_without_retries_fails(options: argparse.Namespace, tmp_path: Path) -> None:
    options.retryCount = 0
    runs, attempts, sibling_log = tmp_path / "runs.log", tmp_path / "attempts.log", tmp_path / "sibling.log"
    with pytest.raises(FailedJobsException) as info:
        with Flow(options) as flow:
            flow.start(Job.wrapJobFn(checkpoint_root, str(runs), str(attempts), str(sibling_log), **SMALL))
    assert [f.name for f in info.value.failed] == ["fails_during_first_checkpoint_run"]
    assert count_lines(runs) == 1


@pytest.mark.parametrize(
    ("request_", "expected", "resource"),
    [({"cores": 64, "memory": "50M"}, "64", "cores"), ({"cores": 0.1, "memory": "1000T"}, "1000", "memory")],
    ids=["cores", "memory"],
)
def test_impossible_request_fails_without_retry(
    options: argparse.Namespace, tmp_path: Path, request_: dict, expected: str, resource: str
) -> None:
    options.retryCount = 3
    options.logFile = str(tmp_path / "leader.log")
    markers = tmp_path / "markers"
    markers.mkdir()
    with pytest.raises(FailedJobsException) as info:
        with Flow(options) as flow:
            flow.start(Job.wrapJobFn(impossible_parent, str(markers), request_, **SMALL))
    exc = info.value
    assert [f.name for f in exc.failed] == ["write_marker"]
    assert expected in exc.failed[0].reason
    assert resource in exc.failed[0].reason
    assert expected in str(exc)
    # it never ran, and was not retried; its sibling ran
    assert sorted(p.name for p in markers.iterdir()) == ["possible"]
    log = Path(options.logFile).read_text()
    assert "write_marker" in log and expected in log  # the leader logged the failure
    assert "retr" not in log.lower(), log


def test_new_workflow_in_existing_store(options: argparse.Namespace) -> None:
    options.clean = "never"
    with Flow(options) as flow:
        assert flow.start(Job.wrapFn(constant, "first", **SMALL)) == "first"
    with pytest.raises(FlowError, match="--restart"):
        with Flow(options) as flow:
            flow.start(Job.wrapFn(constant, "second", **SMALL))
    # the existing store still works: the restart returns the finished workflow's value
    options.restart = True
    with Flow(options) as flow:
        assert flow.restart() == "first"


def test_restart_of_missing_store(options: argparse.Namespace) -> None:
    options.restart = True
    with pytest.raises(NoSuchJobStoreError):
        with Flow(options) as flow:
            flow.restart()
    assert not os.path.exists(options.jobStore)


@pytest.mark.parametrize("restart", [True, False], ids=["restart", "new"])
def test_foreign_directory_is_corrupt(options: argparse.Namespace, restart: bool) -> None:
    os.makedirs(options.jobStore)
    Path(options.jobStore, "notes.txt").write_text("not a job store")
    options.restart = restart
    with pytest.raises(CorruptJobStoreError):
        with Flow(options) as flow:
            flow.restart() if restart else flow.start(Job.wrapFn(constant, 1, **SMALL))
    # nothing of it was touched
    assert os.listdir(options.jobStore) == ["notes.txt"]
    assert Path(options.jobStore, "notes.txt").read_text() == "not a job store"


def fail_unless_fixed(job, fixed_marker, attempts_log):
    append_line(attempts_log, "attempt")
    if not os.path.exists(fixed_marker):
        raise BoomError("not fixed yet")
    return "fixed"


def restartable_root(job, fixed_marker, attempts_log, sibling_log):
    job.addChildFn(append_line, sibling_log, "sibling ran", **SMALL)
    bad = job.addChildJobFn(fail_unless_fixed, fixed_marker, attempts_log, **SMALL)
    return bad.addFollowOnFn(constant, bad.rv(), **SMALL).rv()


def die_hard_first_time(marker):
    """Kill this job's own worker process the first time (no exception, no commit)."""
    if not os.path.exists(marker):
        touch(marker)
        os.kill(os.getpid(), 9)
    return "survived"


def exit_code_job(code):
    raise SystemExit(code)


def sleepy_first_time(marker, seconds):
    if not os.path.exists(marker):
        touch(marker)
        import time

        time.sleep(seconds)
    return "fast the second time"


def make_cycle(job):
    a = job.addChildFn(constant, "a", **SMALL)
    b = a.addChildFn(constant, "b", **SMALL)
    b.addChild(a)


def test_restart_after_fixing_a_failure(options: argparse.Namespace, tmp_path: Path) -> None:
    options.retryCount = 1
    fixed, attempts, sibling_log = tmp_path / "fixed", tmp_path / "attempts.log", tmp_path / "sibling.log"
    root = Job.wrapJobFn(restartable_root, str(fixed), str(attempts), str(sibling_log), **SMALL)
    with pytest.raises(FailedJobsException) as info:
        with Flow(options) as flow:
            flow.start(root)
    assert "--restart" in str(info.value)
    assert count_lines(attempts) == 2
    touch(fixed)  # the user fixes the cause
    options.restart = True
    with Flow(options) as flow:
        assert flow.restart() == "fixed"
    assert count_lines(attempts) == 3
    assert count_lines(sibling_log) == 1  # finished jobs are not run again
    assert not os.path.exists(options.jobStore)  # clean=onSuccess


def test_worker_killed_by_signal_is_retried(options: argparse.Namespace, tmp_path: Path) -> None:
    options.retryCount = 1
    with Flow(options) as flow:
        assert flow.start(Job.wrapFn(die_hard_first_time, str(tmp_path / "died"), **SMALL)) == "survived"


def test_worker_killed_by_signal_without_retry(options: argparse.Namespace, tmp_path: Path) -> None:
    options.retryCount = 0
    with pytest.raises(FailedJobsException) as info:
        Job.Runner.startFlow(Job.wrapFn(die_hard_first_time, str(tmp_path / "died"), **SMALL), options)
    assert [f.name for f in info.value.failed] == ["die_hard_first_time"]
    assert "signal 9" in info.value.failed[0].reason or "SIGKILL" in info.value.failed[0].reason


def test_system_exit_in_job_fails_it(options: argparse.Namespace) -> None:
    options.retryCount = 0
    with pytest.raises(FailedJobsException) as info:
        Job.Runner.startFlow(Job.wrapFn(exit_code_job, 3, **SMALL), options)
    assert [f.name for f in info.value.failed] == ["exit_code_job"]


def test_max_job_duration_kills_and_retries(options: argparse.Namespace, tmp_path: Path) -> None:
    options.retryCount = 1
    options.maxJobDuration = 0.5
    options.rescueJobsFrequency = 0.1
    with Flow(options) as flow:
        result = flow.start(Job.wrapFn(sleepy_first_time, str(tmp_path / "slept"), 60, **SMALL))
    assert result == "fast the second time"


def test_cycle_made_by_a_running_job_fails_it(options: argparse.Namespace) -> None:
    options.retryCount = 0
    with pytest.raises(FailedJobsException) as info:
        Job.Runner.startFlow(Job.wrapJobFn(make_cycle, **SMALL), options)
    assert [f.name for f in info.value.failed] == ["make_cycle"]
    assert "cycle" in str(info.value)


def chained_b(marker, log):
    append_line(log, f"b {os.getpid()}")
    if not os.path.exists(marker):
        touch(marker)
        raise BoomError("chained job fails once")
    return "b done"


def chained_a(job, marker, log):
    append_line(log, f"a {os.getpid()}")
    # a single successor with the same requests: the worker may run it right after this job
    return job.addChildFn(chained_b, marker, log, **SMALL).rv()


def test_failure_in_a_chained_job_reruns_only_that_job(options: argparse.Namespace, tmp_path: Path) -> None:
    options.retryCount = 1
    log = tmp_path / "runs.log"
    with Flow(options) as flow:
        assert flow.start(Job.wrapJobFn(chained_a, str(tmp_path / "failed"), str(log), **SMALL)) == "b done"
    runs = [line.split()[0] for line in log.read_text().splitlines()]
    assert runs == ["a", "b", "b"]


def test_failure_in_a_chained_job_names_it(options: argparse.Namespace, tmp_path: Path) -> None:
    options.retryCount = 0
    log = tmp_path / "runs.log"
    with pytest.raises(FailedJobsException) as info:
        Job.Runner.startFlow(Job.wrapJobFn(chained_a, str(tmp_path / "failed"), str(log), **SMALL), options)
    assert [f.name for f in info.value.failed] == ["chained_b"]
    assert "chained job fails once" in info.value.failed[0].log_tail
    assert [line.split()[0] for line in log.read_text().splitlines()] == ["a", "b"]
