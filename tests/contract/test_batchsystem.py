"""The contract every batch system must meet (see flow.batchsystems.abstract).

The ``make_batch_system`` fixture is parametrized over batch-system names; a system that needs a
cluster should skip in the fixture when none is reachable. The tests only use the public contract.
Payloads live in :mod:`tests.contract.payloads`; the repository root goes on the workers'
PYTHONPATH through ``BatchConfig.environment``.

``slurm`` runs against the real one-node cluster of ``../shared/slurm`` (started once per session
when running as root; the tests skip, saying why, where no cluster answers). That node has 2 CPUs,
which plays the part of ``max_cores=2`` for the tests that need a job to wait for resources: a
scheduler's per-job limits come from BatchConfig, its capacity from the cluster.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import psutil
import pytest

from flow.batchsystems import (
    BatchConfig,
    BatchJob,
    BatchSystem,
    ExitReason,
    ImpossibleRequestError,
    JobExit,
    WorkerCall,
)
from flow.batchsystems import (
    make_batch_system as build_batch_system,
)
from tests.contract import payloads

#: "name:spawn" is the local pool with FLOW_POOL_START=spawn (fresh interpreters, not forks).
BATCH_SYSTEMS = ["single_machine", "single_machine:spawn", "slurm"]
REPO_ROOT = Path(__file__).resolve().parents[2]
#: start-local-slurm / stop-local-slurm, next to the checkout.
LOCAL_SLURM = REPO_ROOT.parent / "shared" / "slurm"
MiB = 1024**2
GiB = 1024**3
#: Dynamic nodes the local test cluster accepts (tests/integration/test_slurm_elastic.py).
ELASTIC_NODES = "4"

MakeBatchSystem = Callable[..., BatchSystem]


def _pythonpath() -> str:
    existing = os.environ.get("PYTHONPATH")
    return str(REPO_ROOT) if not existing else f"{REPO_ROOT}{os.pathsep}{existing}"


@functools.cache
def slurm_unavailable() -> str | None:
    """Why no Slurm cluster can be used (None: one answers). As root, starts the local test
    cluster first (idempotent, about a second once its packages are installed)."""
    start = LOCAL_SLURM / "start-local-slurm"
    if os.geteuid() == 0 and start.exists():
        try:
            # Elastic mode (a superset of plain mode: partition "local" as before, plus up to
            # ELASTIC_NODES dynamic nodes in "elastic"), so that no test run switches it back.
            env = {**os.environ, "LOCAL_SLURM_ELASTIC": os.environ.get("LOCAL_SLURM_ELASTIC", ELASTIC_NODES)}
            started = subprocess.run([str(start)], capture_output=True, text=True, timeout=900, env=env)
        except subprocess.TimeoutExpired:
            return f"{start} did not finish within 900 s"
        if started.returncode != 0:
            return f"{start} failed: {started.stderr.strip()[-800:]}"
    if shutil.which("sbatch") is None or shutil.which("scontrol") is None:
        return (
            "no Slurm cluster: its commands are not installed, and the local test cluster can"
            f" only be started as root with {start}"
        )
    try:
        ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        return "no Slurm controller answers 'scontrol ping' within 60 s"
    if "UP" not in ping.stdout:
        return f"no Slurm controller answers 'scontrol ping': {(ping.stdout + ping.stderr).strip()}"
    return None


def require_slurm() -> None:
    """Skip the calling test, with the reason, unless a Slurm cluster answers."""
    reason = slurm_unavailable()
    if reason is not None:
        pytest.skip(reason)


@pytest.fixture(params=BATCH_SYSTEMS)
def make_batch_system(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[MakeBatchSystem]:
    """A factory ``make(max_cores=2, max_memory=8 GiB, max_disk=8 GiB)``; all shut down after."""
    name, _, variant = str(request.param).partition(":")
    if name == "slurm":
        require_slurm()
    if variant == "spawn":
        monkeypatch.setenv("FLOW_POOL_START", "spawn")
    created: list[BatchSystem] = []

    def make(
        max_cores: float = 2, max_memory: int = 8 * GiB, max_disk: int = 8 * GiB
    ) -> BatchSystem:
        work_dir = tmp_path / "batch-work"
        work_dir.mkdir(exist_ok=True)
        config = BatchConfig(
            max_cores=max_cores,
            max_memory=max_memory,
            max_disk=max_disk,
            work_dir=str(work_dir),
            environment={"PYTHONPATH": _pythonpath()},
        )
        system = build_batch_system(name, config)
        created.append(system)
        return system

    yield make
    for system in created:
        system.shutdown()


def job(
    function: str,
    *args: str,
    cores: float = 1,
    memory: int = 100 * MiB,
    disk: int = 100 * MiB,
    environment: dict[str, str] | None = None,
    time_limit: float | None = None,
    name: str | None = None,
) -> BatchJob:
    label = name or function
    return BatchJob(
        job_id=label,
        name=label,
        call=WorkerCall(payloads.ref(function), tuple(args)),
        cores=cores,
        memory=memory,
        disk=disk,
        time_limit=time_limit,
        environment=environment or {},
    )


def collect(
    system: BatchSystem, batch_ids: Iterable[int], timeout: float = 60
) -> dict[int, JobExit]:
    """Wait for exactly these jobs; fail on a duplicate or unexpected report."""
    expected = set(batch_ids)
    seen: dict[int, JobExit] = {}
    deadline = time.monotonic() + timeout
    while len(seen) < len(expected):
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"jobs {sorted(expected - set(seen))} not reported in {timeout} s"
        for exit_ in system.wait(remaining):
            assert exit_.batch_id in expected, f"unexpected report {exit_}"
            assert exit_.batch_id not in seen, f"job {exit_.batch_id} reported twice"
            seen[exit_.batch_id] = exit_
    return seen


def run_one(system: BatchSystem, batch_job: BatchJob, timeout: float = 60) -> JobExit:
    batch_id = system.issue(batch_job)
    return collect(system, [batch_id], timeout)[batch_id]


def wait_until_running(system: BatchSystem, batch_id: int, timeout: float = 60) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        elapsed = system.running().get(batch_id)
        if elapsed is not None:
            return elapsed
        assert system.wait(0.05) == [], "a job ended while waiting for another to start"
    raise AssertionError(f"job {batch_id} did not start within {timeout} s")


def wait_for_file(system: BatchSystem, path: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} did not appear within {timeout} s"
        assert system.wait(0.05) == [], "a job ended unexpectedly"


def max_overlap(directory: Path) -> tuple[int, int]:
    """(number of recorded intervals, most of them running at one time)."""
    events: list[tuple[float, int]] = []
    files = sorted(directory.iterdir())
    for path in files:
        start, end = map(float, path.read_text().split())
        assert start <= end
        events += [(start, 1), (end, -1)]
    current = peak = 0
    for _, delta in sorted(events):  # at equal times, ends (-1) sort before starts
        current += delta
        peak = max(peak, current)
    return len(files), peak


def assert_processes_gone(pids: Iterable[int], timeout: float = 10) -> None:
    """Every pid has exited (a zombie counts: it is dead, only waiting for its reaper)."""
    deadline = time.monotonic() + timeout
    alive = list(pids)
    while alive:
        still = []
        for pid in alive:
            try:
                if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                    still.append(pid)
            except psutil.NoSuchProcess:
                pass
        alive = still
        if alive:
            assert time.monotonic() < deadline, f"processes {alive} survived"
            time.sleep(0.05)


def read_pids(path: Path) -> list[int]:
    return [int(word) for word in path.read_text().split()]


# -- exit codes ------------------------------------------------------------------------------


def test_job_succeeds(make_batch_system: MakeBatchSystem) -> None:
    system = make_batch_system()
    exit_ = run_one(system, job("succeed"))
    assert exit_.succeeded
    assert exit_.reason is ExitReason.FINISHED and exit_.exit_code == 0
    assert exit_.wall_time is not None and exit_.wall_time >= 0
    assert system.wait(0.1) == []


@pytest.mark.parametrize(
    ("function", "args", "code"),
    [("exit_with", ("3",), 3), ("raise_system_exit", ("4",), 4), ("raise_error", (), 1)],
)
def test_exit_code_propagates(
    make_batch_system: MakeBatchSystem, function: str, args: tuple[str, ...], code: int
) -> None:
    exit_ = run_one(make_batch_system(), job(function, *args))
    assert not exit_.succeeded
    assert exit_.reason is ExitReason.FINISHED
    assert exit_.exit_code == code


def test_process_exit_is_a_failure(make_batch_system: MakeBatchSystem) -> None:
    system = make_batch_system()
    exit_ = run_one(system, job("hard_exit", "7"))
    assert not exit_.succeeded
    assert exit_.exit_code == 7
    assert exit_.reason in (ExitReason.FAILED, ExitReason.FINISHED)
    if system.name == "single_machine":  # the pool worker died under the job
        assert exit_.reason is ExitReason.FAILED
    assert run_one(system, job("succeed")).succeeded  # and the system carries on


def test_signal_death_is_failed(make_batch_system: MakeBatchSystem) -> None:
    system = make_batch_system()
    exit_ = run_one(system, job("kill_self", str(payloads.SIGKILL)))
    assert not exit_.succeeded
    assert exit_.reason is ExitReason.FAILED
    assert exit_.exit_code != 0
    assert run_one(system, job("succeed")).succeeded


def test_each_job_reported_exactly_once(make_batch_system: MakeBatchSystem) -> None:
    system = make_batch_system()
    ids = [system.issue(job("succeed", cores=0.1, name=f"quick-{i}")) for i in range(50)]
    assert len(set(ids)) == 50
    exits = collect(system, ids)
    assert all(exit_.succeeded for exit_ in exits.values())
    assert system.wait(0.2) == []
    assert system.running() == {}


def test_print_does_not_break_the_protocol(make_batch_system: MakeBatchSystem) -> None:
    system = make_batch_system()
    chatty = system.issue(job("chatty", "marker", cores=0.5))
    quick = [system.issue(job("exit_with", str(i % 4), cores=0.5)) for i in range(20)]
    exits = collect(system, [chatty, *quick])
    assert exits[chatty].succeeded
    assert [exits[batch_id].exit_code for batch_id in quick] == [i % 4 for i in range(20)]
    assert run_one(system, job("chatty", "again")).succeeded


# -- environment -----------------------------------------------------------------------------


def test_job_environment_is_visible(make_batch_system: MakeBatchSystem, tmp_path: Path) -> None:
    system = make_batch_system(max_cores=1)
    seen, later = tmp_path / "seen", tmp_path / "later"
    variable = "FLOW_CONTRACT_TEST_VARIABLE"
    with_env = job("write_environment", variable, str(seen), environment={variable: "a value"})
    assert run_one(system, with_env).succeeded
    assert seen.read_text() == "a value"
    assert run_one(system, job("write_environment", variable, str(later))).succeeded
    assert later.read_text() == "<unset>"  # one job's environment does not leak into the next


# -- resources -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("resources", "words"),
    [
        ({"cores": 64}, "64 cores"),
        ({"memory": 100 * GiB}, "memory"),
        ({"disk": 100 * GiB}, "disk"),
    ],
)
def test_impossible_requests_are_refused(
    make_batch_system: MakeBatchSystem, resources: dict[str, float], words: str
) -> None:
    system = make_batch_system(max_cores=2, max_memory=4 * GiB, max_disk=4 * GiB)
    too_big = job("succeed", name="greedy", **resources)  # type: ignore[arg-type]
    with pytest.raises(ImpossibleRequestError, match=words) as info:
        system.check_fits(too_big)
    assert info.value.job_name == "greedy"
    with pytest.raises(ImpossibleRequestError):
        system.issue(too_big)
    system.check_fits(job("succeed", cores=2, memory=4 * GiB, disk=4 * GiB))  # exactly fits
    assert system.running() == {}


@pytest.mark.parametrize(
    ("limits", "request_", "count"),
    [
        ({"max_cores": 2}, {"cores": 1}, 6),
        ({"max_cores": 1}, {"cores": 0.5}, 6),
        ({"max_cores": 4, "max_memory": 2 * GiB}, {"cores": 0.1, "memory": 1 * GiB}, 6),
    ],
    ids=["cores", "fractional-cores", "memory"],
)
def test_resource_limits_are_respected(
    make_batch_system: MakeBatchSystem,
    tmp_path: Path,
    limits: dict[str, float],
    request_: dict[str, float],
    count: int,
) -> None:
    """At most two jobs run at once; checked from the intervals the jobs record themselves."""
    system = make_batch_system(**limits)
    record = tmp_path / "intervals"
    record.mkdir()
    ids = [
        system.issue(job("record_interval", str(record), f"job{i}", "0.3", **request_))  # type: ignore[arg-type]
        for i in range(count)
    ]
    assert all(exit_.succeeded for exit_ in collect(system, ids).values())
    recorded, peak = max_overlap(record)
    assert recorded == count
    assert 1 <= peak <= 2


# -- running, kill, wait ---------------------------------------------------------------------


def test_running_shows_a_started_job(make_batch_system: MakeBatchSystem) -> None:
    system = make_batch_system()
    batch_id = system.issue(job("sleep", "30"))
    first = wait_until_running(system, batch_id)
    assert first >= 0
    assert system.wait(0.2) == []
    assert system.running()[batch_id] > first
    system.kill([batch_id])


def test_kill_running_job(make_batch_system: MakeBatchSystem, tmp_path: Path) -> None:
    system = make_batch_system()
    pid_file = tmp_path / "pids"
    batch_id = system.issue(job("spawn_sleepers", str(pid_file), "2", "30"))
    wait_for_file(system, pid_file)
    system.kill([batch_id])  # returns once the job is gone:
    assert batch_id not in system.running()
    assert system.wait(0.5) == []
    assert_processes_gone(read_pids(pid_file))  # the job's subprocesses die with it
    system.kill([batch_id, 12345678])  # already gone or unknown: ignored
    assert run_one(system, job("succeed")).succeeded  # its resources are free again


def test_kill_queued_job(make_batch_system: MakeBatchSystem, tmp_path: Path) -> None:
    system = make_batch_system(max_cores=2)
    marker = tmp_path / "queued-job-ran"
    blocker = system.issue(job("sleep", "30", cores=2))  # takes every core there is
    queued = system.issue(job("touch", str(marker)))
    wait_until_running(system, blocker)
    assert queued not in system.running()
    system.kill([queued])
    system.kill([blocker])  # frees the core the queued job was waiting for
    assert system.wait(1.0) == []
    assert not marker.exists()
    assert system.running() == {}
    assert run_one(system, job("succeed")).succeeded


def test_wait_times_out_when_idle(make_batch_system: MakeBatchSystem) -> None:
    system = make_batch_system()
    started = time.monotonic()
    assert system.wait(0.5) == []
    assert time.monotonic() - started >= 0.45  # it waited (a lower bound: no load can break it)
    assert system.wait(0) == []  # and returns at once (else the test's timeout ends it)


def test_wait_returns_when_a_job_ends(make_batch_system: MakeBatchSystem) -> None:
    system = make_batch_system()
    batch_id = system.issue(job("sleep", "0.2"))
    exits: list[JobExit] = []
    while not exits:
        exits = system.wait(3600)  # returns when the job ends: the test's timeout is far shorter
    assert [exit_.batch_id for exit_ in exits] == [batch_id]


@pytest.mark.slow
def test_time_limit(make_batch_system: MakeBatchSystem) -> None:
    system = make_batch_system()
    exit_ = run_one(system, job("sleep", "1000", time_limit=1), timeout=600)
    assert exit_.reason is ExitReason.TIMEOUT
    assert not exit_.succeeded


# -- shutdown --------------------------------------------------------------------------------


def test_shutdown_leaves_no_processes(make_batch_system: MakeBatchSystem, tmp_path: Path) -> None:
    system = make_batch_system()
    finished_pids, running_pids = tmp_path / "finished", tmp_path / "running"
    finished = system.issue(job("spawn_sleepers", str(finished_pids), "2", "0", cores=0.5))
    system.issue(job("spawn_sleepers", str(running_pids), "2", "1000", cores=0.5))
    system.issue(job("sleep", "1000", cores=2))  # still queued at shutdown
    assert collect(system, [finished])[finished].succeeded
    wait_for_file(system, running_pids)
    system.shutdown()
    system.shutdown()  # idempotent
    assert_processes_gone(read_pids(finished_pids) + read_pids(running_pids))


# -- the command line external schedulers run ------------------------------------------------


@pytest.mark.parametrize(
    ("function", "args", "code"),
    [
        ("succeed", (), 0),
        ("exit_with", ("3",), 3),
        ("raise_system_exit", ("4",), 4),
        ("raise_error", (), 1),
    ],
)
def test_worker_call_command_line(function: str, args: tuple[str, ...], code: int) -> None:
    call = WorkerCall(payloads.ref(function), args)
    env = {**os.environ, "PYTHONPATH": _pythonpath()}
    done = subprocess.run(
        call.argv(sys.executable), env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == code, done.stderr
    if function == "raise_error":
        assert "Traceback" in done.stderr and "fails on purpose" in done.stderr
