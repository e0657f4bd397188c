"""``--batchSystem slurm`` against the real local Slurm cluster (``../shared/slurm``).

Exit codes and Slurm's own reasons in words, time limits, sbatch refusals, cancellation, a
200-job fan-out with a bounded number of ``squeue``/``scontrol`` calls, a Python, a CWL and a
WDL workflow end to end, and restart after kill -9 of the leader. Every test skips, saying why,
where no Slurm cluster answers (see ``tests.contract.test_batchsystem.slurm_unavailable``).

The cluster is shared (by other tests and other users): every test cancels the jobs it tagged,
passed or failed (:func:`_cancel_tagged_jobs`), and waits for conditions with generous deadlines
rather than for fixed times, so that a slow test leaves nothing queued to starve the next one.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from flow.batchsystems import (
    BatchConfig,
    BatchJob,
    ExitReason,
    JobExit,
    SubmissionError,
    WorkerCall,
    hpc,
    make_batch_system,
)
from flow.batchsystems.slurm import SlurmBatchSystem
from flow.core import records
from flow.core.exceptions import FailedJobsException
from flow.core.job import Job
from flow.jobstores.registry import open_job_store
from tests.contract import payloads
from tests.contract.test_batchsystem import REPO_ROOT, require_slurm
from tests.integration.test_cwl import WC_TOOL

MiB = 1024**2
GiB = 1024**3
#: Above the ini's 300 s: a test may wait START_WAIT for a CPU and then for its workflow.
pytestmark = pytest.mark.timeout(900)
#: Seconds to wait for a job to start: generous, as other tests and users share the 2 CPUs.
START_WAIT = 240


@pytest.fixture(autouse=True)
def _slurm() -> None:
    require_slurm()


@pytest.fixture(scope="module", autouse=True)
def _sigterm_runs_the_clean_up() -> Iterator[None]:
    """A ``timeout`` around pytest ends it with SIGTERM, which would skip every teardown and
    leave the running test's jobs queued: make it a KeyboardInterrupt, after which pytest still
    tears the fixtures down (and :func:`_cancel_tagged_jobs` cancels)."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    yield
    signal.signal(signal.SIGTERM, previous)


@pytest.fixture
def run_tags() -> list[str]:
    """Tags ("flow:<id>") of batch systems a test made; their jobs are cancelled after it."""
    return []


@pytest.fixture(autouse=True)
def _cancel_tagged_jobs(tmp_path: Path, run_tags: list[str]) -> Iterator[None]:
    """After each test, passed or failed, cancel (and wait out) every job still queued or
    running that carries the tag of a run of the test: those of the job stores it made under
    ``tmp_path`` and of the batch systems it listed in ``run_tags``. Jobs of other tests and
    users are left alone."""
    yield
    tags = set(run_tags)
    for store in tmp_path.glob("**/js*"):
        try:
            tags.add(run_tag(store))
        except Exception:  # noqa: BLE001 - not a job store, or one with no run in it yet
            continue
    config = BatchConfig(max_cores=1, max_memory=GiB, max_disk=GiB)
    left = {tag: SlurmBatchSystem.cancel_run(tag.removeprefix("flow:"), config) for tag in sorted(tags)}
    assert not any(left.values()), f"the test left Slurm jobs behind (cancelled now): {left}"


@pytest.fixture
def slurm(tmp_path: Path, run_tags: list[str]) -> Iterator[SlurmBatchSystem]:
    """A Slurm batch system whose per-job limits are left to Slurm (as with no --maxCores)."""
    system = make_batch_system("slurm", slurm_config(tmp_path))
    assert isinstance(system, SlurmBatchSystem)
    run_tags.append(system.tag)
    yield system
    system.shutdown()


def slurm_config(tmp_path: Path) -> BatchConfig:
    return BatchConfig(
        max_cores=2, max_memory=8 * GiB, max_disk=8 * GiB, work_dir=str(tmp_path / "work"),
        environment={"PYTHONPATH": str(REPO_ROOT)},
        extra={"maxCores": None, "maxMemory": None, "maxDisk": None},
    )


def payload(function: str, *args: str, **requests: float) -> BatchJob:
    return BatchJob(
        job_id=function, name=function, call=WorkerCall(payloads.ref(function), args),
        memory=100 * MiB, **requests,  # type: ignore[arg-type]
    )


def wait_for(system: SlurmBatchSystem, batch_id: int, timeout: float = START_WAIT) -> JobExit:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for exit_ in system.wait(deadline - time.monotonic()):
            assert exit_.batch_id == batch_id, exit_
            return exit_
    raise AssertionError(f"job {batch_id} not reported within {timeout} s")


def squeue(*args: str) -> list[list[str]]:
    """squeue's lines, split at '|' (for checking, outside the batch system's counted calls)."""
    done = subprocess.run(["squeue", "--noheader", *args], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return [line.split("|") for line in done.stdout.splitlines() if line.strip()]


def active_jobs_tagged(tag: str) -> list[str]:
    """Queued or running jobs whose comment is ``tag``."""
    return [job_id for job_id, comment in squeue("--format=%i|%k") if comment == tag]


def states(job_ids: list[str]) -> dict[str, str]:
    lines = squeue("--states=all", f"--jobs={','.join(job_ids)}", "--format=%i|%T")
    return {job_id: state for job_id, state in lines}


def wait_until(predicate: object, timeout: float, what: str) -> None:
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"{what} within {timeout} s"
        time.sleep(0.2)


# ---- the batch system on its own -----------------------------------------------------------


def test_exit_code_and_signal_in_words(slurm: SlurmBatchSystem) -> None:
    exit_ = wait_for(slurm, slurm.issue(payload("exit_with", "3")))
    assert (exit_.reason, exit_.exit_code) == (ExitReason.FINISHED, 3)
    assert exit_.message.startswith("exit code 3 (Slurm job ")
    exit_ = wait_for(slurm, slurm.issue(payload("kill_self", str(int(signal.SIGKILL)))))
    assert (exit_.reason, exit_.exit_code) == (ExitReason.FAILED, -9)
    assert "killed by signal 9 (SIGKILL)" in exit_.message


def test_cancelled_by_someone_else_is_cancelled(slurm: SlurmBatchSystem) -> None:
    batch_id = slurm.issue(payload("sleep", "60"))
    wait_until(lambda: active_jobs_tagged(slurm.tag), 30, "the job was not queued")
    (scheduler_id,) = active_jobs_tagged(slurm.tag)
    subprocess.run(["scancel", scheduler_id], check=True, timeout=60)
    exit_ = wait_for(slurm, batch_id)
    assert exit_.reason is ExitReason.CANCELLED and not exit_.succeeded
    assert f"Slurm job {scheduler_id} ended CANCELLED" in exit_.message


def test_time_limit_is_timeout_and_submitted_in_minutes(slurm: SlurmBatchSystem) -> None:
    batch_id = slurm.issue(payload("spawn_sleepers", str(Path(slurm.config.work_dir or "") / "p"),
                                   "1", "600", time_limit=2))
    (scheduler_id,) = active_jobs_tagged(slurm.tag)
    shown = subprocess.run(["scontrol", "show", "job", "-o", scheduler_id], capture_output=True,
                           text=True, check=True, timeout=60).stdout
    assert "TimeLimit=00:02:00" in shown  # ceil(2 s) in minutes, plus a minute of margin
    exit_ = wait_for(slurm, batch_id)
    assert exit_.reason is ExitReason.TIMEOUT and not exit_.succeeded
    # The wrapper's precise limit ended it (its marker file says so), not Slurm's 2 minutes.
    assert exit_.message.startswith("killed after its time limit of 2 s"), exit_.message
    pids = [int(p) for p in (Path(slurm.config.work_dir or "") / "p").read_text().split()]
    assert not [pid for pid in pids if _alive(pid)], "the timed-out job's children survived"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/status")
    return status.exists() and "zombie" not in status.read_text()


@pytest.mark.parametrize(
    ("requests", "extra", "words"),
    [
        ({"cores": 64}, [], "More processors requested than permitted"),
        ({"memory": 100_000 * GiB}, [], "Requested node configuration is not available"),
        ({}, ["--partition=no-such-partition"], "Invalid partition name specified"),
    ],
    ids=["cores", "memory", "partition"],
)
def test_sbatch_refusal_is_a_submission_error(
    slurm: SlurmBatchSystem, requests: dict[str, float], extra: list[str], words: str
) -> None:
    slurm.user_args = extra
    hpc.reset_command_calls()
    with pytest.raises(SubmissionError, match=words) as info:
        slurm.issue(BatchJob("greedy", "greedy", WorkerCall(payloads.ref("succeed")), **requests))  # type: ignore[arg-type]
    assert info.value.job_name == "greedy"
    assert hpc.command_calls() == {"sbatch": 1}  # refused for good: not retried
    slurm.user_args = []
    assert wait_for(slurm, slurm.issue(payload("succeed"))).succeeded  # and it carries on


def test_kill_and_shutdown_leave_nothing_in_squeue(slurm: SlurmBatchSystem) -> None:
    ids = [slurm.issue(payload("sleep", "300")) for _ in range(5)]  # 2 run, 3 queue
    wait_until(lambda: slurm.wait(0.2) == [] and len(slurm.running()) == 2, START_WAIT,
               "two jobs did not start")
    assert len(active_jobs_tagged(slurm.tag)) == 5
    hpc.reset_command_calls()
    slurm.kill(ids[:1] + ids[-1:])  # one running, one queued
    assert hpc.command_calls()["scancel"] == 1
    assert len(active_jobs_tagged(slurm.tag)) == 3
    hpc.reset_command_calls()
    slurm.shutdown()
    assert hpc.command_calls()["scancel"] == 1  # everything in one call
    assert active_jobs_tagged(slurm.tag) == []


def test_a_job_that_cannot_start_is_reported_once(slurm: SlurmBatchSystem, run_tags: list[str],
                                                  caplog: pytest.LogCaptureFixture) -> None:
    """A held job (sbatch --hold, from --slurmArgs) waits with reason JobHeldUser: the user is
    told once, in Slurm's words, however many polls see it."""
    held = SlurmBatchSystem(replace(slurm.config, extra={**slurm.config.extra, "slurmArgs": "--hold"}))
    run_tags.append(held.tag)
    try:
        batch_id = held.issue(payload("sleep", "300"))
        hpc.reset_command_calls()
        with caplog.at_level("WARNING", logger="flow"):
            while hpc.poll_rounds() < 3:
                assert held.wait(1.0) == []
        told = [r.getMessage() for r in caplog.records if "may never start" in r.getMessage()]
        assert len(told) == 1, told
        assert "JobHeldUser" in told[0] and "sleep" in told[0]
        held.kill([batch_id])
        assert active_jobs_tagged(held.tag) == []
    finally:
        held.shutdown()


def test_polling_is_chunked_and_backs_off(slurm: SlurmBatchSystem) -> None:
    slurm.chunk_size = 2
    slurm.user_args = ["--hold"]
    for _ in range(5):
        slurm.issue(payload("sleep", "60"))
    # Held jobs (as in the test above) never start: nothing changes while we wait, however
    # busy the cluster is.
    hpc.reset_command_calls()
    assert slurm.wait(6) == []
    rounds = hpc.poll_rounds()
    assert hpc.command_calls()["squeue"] == 3 * rounds  # ids in chunks of 2, 2 and 1
    assert 1 <= rounds <= 5  # 1 s apart at first, then further apart while nothing changes
    assert slurm._interval > slurm.poll_interval[0]  # it backed off


def test_get_nodes_names_the_jobs_running_on_each_node(slurm: SlurmBatchSystem) -> None:
    """The cluster scaler's per-node view: each running job on its node (squeue's %N in the
    status poll the batch system makes anyway), with how long it has run; no command per job."""
    batch_id = slurm.issue(payload("sleep", "300"))
    wait_until(lambda: slurm.wait(0.2) == [] and batch_id in slurm.running(), START_WAIT,
               "the job did not start")
    [[where]] = squeue(f"--jobs={slurm._jobs[batch_id].scheduler_id}", "--format=%N")
    hpc.reset_command_calls()
    nodes = slurm.getNodes()
    assert hpc.command_calls() == {"scontrol": 1}  # the node list; the jobs come from the last poll
    running = {node: info.jobs for node, info in nodes.items() if info.jobs}
    assert list(running) == [where] and [job.name for job in running[where]] == ["sleep"]
    assert 0 <= running[where][0].seconds < START_WAIT + 60 and running[where][0].memory == 100 * MiB
    assert nodes[where].workers >= 1
    slurm.kill([batch_id])
    assert not any(info.jobs for info in slurm.getNodes().values())


# ---- workflows -----------------------------------------------------------------------------


def square(i: int) -> int:
    return i * i


def total(values: list[int]) -> int:
    return sum(values)


def fan_out(job: Job, n: int) -> object:
    values = [job.addChildFn(square, i, cores=1, memory="50M", disk="10M").rv() for i in range(n)]
    return job.addFollowOnFn(total, values, cores=1, memory="50M", disk="10M").rv()


def slurm_options(tmp_path: Path) -> argparse.Namespace:
    options = Job.Runner.getDefaultOptions(str(tmp_path / "js"))
    options.batchSystem = "slurm"
    options.noProgress = True
    options.workDir = str(tmp_path / "work")
    return options


@pytest.mark.slow
def test_python_fan_out_of_200_with_bounded_polling(tmp_path: Path) -> None:
    """A Python workflow end to end; squeue once per poll interval at most, scontrol only for
    failed jobs (none here), sacct never (no job is forgotten)."""
    n = 200
    hpc.reset_command_calls()
    started = time.monotonic()
    root = Job.wrapJobFn(fan_out, n, cores=1, memory="50M", disk="10M")
    assert Job.Runner.startFlow(root, slurm_options(tmp_path)) == sum(i * i for i in range(n))
    elapsed = time.monotonic() - started
    calls = hpc.command_calls()
    print(f"\n{n}-job fan-out on Slurm: {elapsed:.1f} s, commands {calls}")
    assert calls["sbatch"] == n + 2
    polls = hpc.poll_rounds()
    assert calls["squeue"] == polls  # one squeue per poll round for all the jobs in flight
    assert polls <= elapsed / SlurmBatchSystem.poll_interval[0] + 2
    assert calls.get("scontrol", 0) == 0 and calls.get("sacct", 0) == 0
    assert calls.get("scancel", 0) == 0  # nothing left to cancel at the end


def test_failed_job_is_reported_in_words(tmp_path: Path) -> None:
    options = slurm_options(tmp_path)
    options.retryCount = 0
    root = Job.wrapFn(payloads.exit_with, "5", cores=64, memory="50M")
    with pytest.raises(FailedJobsException, match="More processors requested than permitted"):
        Job.Runner.startFlow(root, options)


def test_a_job_that_raises_is_reported_by_its_error_alone(tmp_path: Path) -> None:
    """The job's own error, not followed by the worker's exit status (JOB_FAILED_EXIT)."""
    options = slurm_options(tmp_path)
    options.retryCount = 0
    with pytest.raises(FailedJobsException) as info:
        Job.Runner.startFlow(Job.wrapFn(payloads.raise_error, memory="50M"), options)
    assert info.value.failed[0].reason.endswith("RuntimeError: this payload fails on purpose"), info.value.failed[0].reason


CWL_WORKFLOW = """
cwlVersion: v1.2
class: Workflow
requirements: {ScatterFeatureRequirement: {}}
inputs:
  files: File[]
outputs:
  counts: {type: "int[]", outputSource: count/lines}
steps:
  count:
    run: wc.cwl
    scatter: file
    in: {file: files}
    out: [lines]
"""


@pytest.mark.slow
def write_cwl_workflow(tmp_path: Path) -> None:
    """wf.cwl (wc -l scattered over three files of 1, 2 and 3 lines) and its job.json."""
    (tmp_path / "wc.cwl").write_text(textwrap.dedent(WC_TOOL))
    (tmp_path / "wf.cwl").write_text(textwrap.dedent(CWL_WORKFLOW))
    files = []
    for i in range(3):
        (tmp_path / f"in{i}.txt").write_text("line\n" * (i + 1))
        files.append({"class": "File", "location": f"in{i}.txt"})
    (tmp_path / "job.json").write_text(json.dumps({"files": files}))


def test_cwl_workflow(tmp_path: Path) -> None:
    pytest.importorskip("cwltool")
    write_cwl_workflow(tmp_path)
    command = [
        sys.executable, "-m", "flow.cwl.main", "--no-container", "--noProgress",
        "--batchSystem", "slurm", "--jobStore", str(tmp_path / "js"),
        "--workDir", str(tmp_path / "work"), "--provenance", "ro", "wf.cwl", "job.json",
    ]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"counts": [1, 2, 3]}
    # the research object records each step the Slurm jobs ran (flow-cwl --provenance)
    prov = (tmp_path / "ro" / "metadata" / "provenance" / "primary.cwlprov.provn").read_text()
    assert prov.count("prov:type='wfprov:ProcessRun'") == 3, prov


CORES_TOOL = """
cwlVersion: v1.2
class: CommandLineTool
requirements:
  ResourceRequirement: {coresMin: $(inputs.cores)}
  InlineJavascriptRequirement: {}
  ShellCommandRequirement: {}
inputs:
  cores: int
outputs:
  given: {type: int, outputBinding: {glob: out.txt, loadContents: true, outputEval: "$(parseInt(self[0].contents))"}}
arguments: [{valueFrom: 'echo $SLURM_CPUS_PER_TASK > out.txt', shellQuote: false}]
"""


def test_cwl_core_requests_go_to_slurm_uncapped(tmp_path: Path) -> None:
    """The leader's machine does not cap what a tool asks of the cluster: 2 cores reach the job
    whatever the leader has; 64 are refused by sbatch in its own words, not quietly scaled down."""
    pytest.importorskip("cwltool")
    (tmp_path / "cores.cwl").write_text(textwrap.dedent(CORES_TOOL))
    def run(cores: int) -> subprocess.CompletedProcess[str]:
        (tmp_path / f"{cores}.json").write_text(json.dumps({"cores": cores}))
        command = [
            sys.executable, "-m", "flow.cwl.main", "--no-container", "--noProgress",
            "--preserve-environment", "SLURM_CPUS_PER_TASK", "--batchSystem", "slurm",
            "--workDir", str(tmp_path / "work"), "--jobStore", str(tmp_path / f"js-{cores}"),
            "cores.cwl", f"{cores}.json",
        ]  # a job store of its own in tmp_path: the clean-up fixture finds its run there
        return subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)

    done = run(2)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"given": 2}
    refused = run(64)
    assert refused.returncode == 1, refused.stderr
    assert "Traceback" not in refused.stderr, refused.stderr
    assert "refused by the batch system: Batch job submission failed" in refused.stderr, refused.stderr


WDL_WORKFLOW = """
version 1.1
workflow wf {
  input {
    File greeting
    Array[String] words
  }
  scatter (word in words) {
    call write_one { input: greeting = greeting, word = word }
  }
  call gather { input: parts = write_one.out }
  output {
    File all = gather.all
    Int lines = gather.lines
  }
}
task write_one {
  input {
    File greeting
    String word
  }
  command <<< echo "$(cat ~{greeting}) ~{word} ${SLURM_JOB_ID:-not-in-slurm}" > part.txt >>>
  output { File out = "part.txt" }
}
task gather {
  input { Array[File] parts }
  command <<<
    cat ~{sep(" ", parts)} > all.txt
    echo "bye gather ${SLURM_JOB_ID:-not-in-slurm}" >> all.txt
    wc -l < all.txt
  >>>
  output {
    File all = "all.txt"
    Int lines = read_int(stdout())
  }
}
"""


@pytest.mark.slow
def test_wdl_workflow(tmp_path: Path) -> None:
    """An input File, a scatter of three tasks that each write a File, and a task that cats them:
    every task runs as a Slurm job of this run (it writes its $SLURM_JOB_ID, which only Slurm's
    jobs have) and every File moves between the jobs through the file store."""
    pytest.importorskip("WDL")
    (tmp_path / "wf.wdl").write_text(WDL_WORKFLOW)
    (tmp_path / "greeting.txt").write_text("hello\n")
    inputs = {"wf.greeting": "greeting.txt", "wf.words": ["alpha", "beta", "gamma"]}
    (tmp_path / "inputs.json").write_text(json.dumps(inputs))
    command = [
        sys.executable, "-m", "flow.wdl.main", "--noProgress", "--batchSystem", "slurm",
        "--jobStore", str(tmp_path / "js"), "--workDir", str(tmp_path / "work"),
        "--container", "none", "wf.wdl", "inputs.json", "-o", str(tmp_path / "out"),
    ]
    env = {**os.environ, "FLOW_WDL_CACHE": str(tmp_path / "cache")}
    env.pop("SLURM_JOB_ID", None)  # only Slurm's jobs have one
    started = time.monotonic()
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)
    print(f"\nWDL scatter and gather on Slurm: {time.monotonic() - started:.1f} s")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"wf.all": str(tmp_path / "out" / "all.txt"), "wf.lines": 4}
    lines = [line.split() for line in (tmp_path / "out" / "all.txt").read_text().splitlines()]
    assert [line[:2] for line in lines] == [
        ["hello", "alpha"], ["hello", "beta"], ["hello", "gamma"], ["bye", "gather"]
    ], lines
    job_ids = [line[2] for line in lines]
    assert all(job_id.isdigit() for job_id in job_ids), f"tasks ran outside Slurm: {lines}"
    assert len(set(job_ids)) == 4, f"each task ran in a Slurm job of its own: {lines}"
    tags = set()
    for job_id in job_ids:
        shown = subprocess.run(["scontrol", "show", "job", "-o", job_id], capture_output=True,
                               text=True, check=True, timeout=60).stdout
        assert "JobState=COMPLETED" in shown, shown
        tags |= {f.removeprefix("Comment=") for f in shown.split() if f.startswith("Comment=")}
    (tag,) = tags  # all jobs of this run
    assert tag.startswith("flow:") and active_jobs_tagged(tag) == []


# ---- restart after kill -9 of the leader ---------------------------------------------------

RESTART_SCRIPT = textwrap.dedent('''
    """Four leaves that wait for a gate file, then a follow-on that sums their values."""
    import os
    import sys
    import time

    from flow.core.common import Flow
    from flow.core.job import Job


    def leaf(i, gate, log):
        with open(log, "a") as out:
            out.write(f"{i}\\n")
        while not os.path.exists(gate):
            time.sleep(0.1)
        return i * i


    def total(values):
        return sum(values)


    def fan(job, n, gate, log):
        values = [job.addChildFn(leaf, i, gate, log, cores=1, memory="50M").rv() for i in range(n)]
        return job.addFollowOnFn(total, values, cores=1, memory="50M").rv()


    if __name__ == "__main__":
        parser = Job.Runner.getDefaultArgumentParser()
        parser.add_argument("--gate", required=True)
        parser.add_argument("--leafLog", required=True)
        options = parser.parse_args()
        root = Job.wrapJobFn(fan, 4, options.gate, options.leafLog, cores=1, memory="50M")
        with Flow(options) as flow:
            result = flow.restart() if options.restart else flow.start(root)
        print(f"RESULT {result}")
''')


def gated_run(tmp_path: Path) -> tuple[list[str], Path, Path]:
    """(the command running RESTART_SCRIPT on Slurm, its gate file, its leaf log)."""
    script = tmp_path / "gated.py"
    script.write_text(RESTART_SCRIPT)
    gate, log = tmp_path / "gate", tmp_path / "leaves.log"
    command = [
        sys.executable, str(script), str(tmp_path / "js"), "--batchSystem", "slurm",
        "--gate", str(gate), "--leafLog", str(log), "--workDir", str(tmp_path / "work"),
        "--noProgress",
    ]
    return command, gate, log


def run_tag(job_store: Path) -> str:
    """The comment Slurm jobs of the run in ``job_store`` carry."""
    config = open_job_store(str(job_store)).read_shared(records.CONFIG)
    assert config is not None
    return f"flow:{pickle.loads(config).workflow_id}"


def two_leaves_started(log: Path) -> None:
    """Two leaves run (the node has 2 CPUs), two wait in the queue."""
    wait_until(lambda: log.exists() and len(log.read_text().split()) >= 2, START_WAIT, "no leaf started")


@pytest.mark.slow
@pytest.mark.parametrize("how", ["flow kill", "Ctrl-C"])
def test_stopping_a_run_cancels_its_jobs(tmp_path: Path, how: str) -> None:
    command, _, log = gated_run(tmp_path)
    leader = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              cwd=tmp_path)
    try:
        two_leaves_started(log)
        tag = run_tag(tmp_path / "js")
        wait_until(lambda: len(active_jobs_tagged(tag)) == 4, 60, "the four leaves were not queued")
        if how == "flow kill":
            subprocess.run([sys.executable, "-m", "flow.core.cli", "kill", str(tmp_path / "js")],
                           check=True, capture_output=True, timeout=60)
        else:
            leader.send_signal(signal.SIGINT)
        _, stderr = leader.communicate(timeout=START_WAIT)
    finally:
        if leader.poll() is None:
            leader.kill()
    assert leader.returncode != 0
    assert active_jobs_tagged(tag) == [], stderr


def run_with_dead_leader(where: Path) -> tuple[str, str]:
    """Start the gated run in ``where``, kill -9 its leader once two leaves run: (job store, tag)
    with the run's four jobs still in squeue."""
    where.mkdir(exist_ok=True)
    command, _, log = gated_run(where)
    leader = subprocess.Popen(command, start_new_session=True, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, cwd=where)
    try:
        two_leaves_started(log)
        tag = run_tag(where / "js")
        wait_until(lambda: len(active_jobs_tagged(tag)) == 4, 60, "the four leaves were not queued")
    finally:
        os.killpg(leader.pid, signal.SIGKILL)
        leader.communicate(timeout=60)
    assert len(active_jobs_tagged(tag)) == 4, "the killed leader's leaves should still be in squeue"
    return str(where / "js"), tag


@pytest.mark.slow
def test_restart_after_kill_9_cancels_the_old_jobs(tmp_path: Path) -> None:
    _, tag = run_with_dead_leader(tmp_path)
    left = active_jobs_tagged(tag)
    command, gate, _ = gated_run(tmp_path)
    second = subprocess.Popen([*command, "--restart"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    try:
        wait_until(lambda: all(s == "CANCELLED" for s in states(left).values()), START_WAIT,
                   "the restarted leader did not cancel the old leader's jobs")
        gate.touch()
        stdout, stderr = second.communicate(timeout=START_WAIT)
    finally:
        if second.poll() is None:
            second.kill()
    assert second.returncode == 0, stderr
    assert "RESULT 14" in stdout.splitlines()  # 0 + 1 + 4 + 9
    assert "cancelling 4 Slurm job(s) left behind by an earlier leader" in stderr
    assert active_jobs_tagged(tag) == []


@pytest.mark.slow
@pytest.mark.parametrize("command", ["kill", "clean"])
def test_flow_kill_or_clean_after_the_leader_died_cancels_its_jobs(tmp_path: Path, command: str) -> None:
    """A leader killed with -9 cannot cancel its jobs: 'flow kill' then does, by the run's tag;
    'flow clean' of such a run does too before it deletes the job store."""
    job_store, tag = run_with_dead_leader(tmp_path)
    done = subprocess.run([sys.executable, "-m", "flow.core.cli", command, job_store],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "Cancelled the 4 job(s) it had left on slurm" in done.stdout, done.stdout
    assert active_jobs_tagged(tag) == []
    assert os.path.exists(job_store) == (command == "kill")
