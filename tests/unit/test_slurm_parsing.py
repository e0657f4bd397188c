"""Parsing of Slurm's command output, on output recorded from the real cluster.

The files in ``tests/unit/data/slurm`` were written by ``record.sh`` there (Slurm 22.05, the local
one-node cluster): NAME.out, NAME.err and NAME.rc are one command's stdout, stderr and exit status.
Job ids in them: 24 ran into its one-minute Slurm time limit, 25 exited 3, 26 killed itself with
signal 9, 27 was cancelled while running, 28 was pending (and then cancelled), 670 went over its
``--mem`` on a cluster that enforces it (``*_oom``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from flow.batchsystems.abstract import BatchJob, ExitReason, SubmissionError, WorkerCall
from flow.batchsystems.hpc import CommandError, CompletedCommand, Phase
from flow.batchsystems.slurm import (
    accounting_disabled,
    job_name,
    job_status,
    minutes_for,
    parse_duration,
    parse_sacct,
    parse_sbatch,
    parse_scontrol,
    parse_squeue,
    parse_tagged,
    sbatch_command,
    sbatch_error,
    user_arguments,
)

DATA = Path(__file__).parent / "data" / "slurm"
TAG = "flow:recorded0000"


def recorded(name: str) -> CompletedCommand:
    def text(suffix: str) -> str:
        path = DATA / f"{name}.{suffix}"
        return path.read_text() if path.exists() else ""

    return CompletedCommand((name.split("_")[0],), int(text("rc") or 0), text("out"), text("err"), 0.1)


# ---- sbatch --------------------------------------------------------------------------------


def test_sbatch_job_id() -> None:
    assert parse_sbatch(recorded("sbatch_ok"), "job") == "22"
    federated = CompletedCommand(("sbatch",), 0, "1234;cluster\n", "", 0.1)
    assert parse_sbatch(federated, "job") == "1234"


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("sbatch_too_many_cpus", "Batch job submission failed: More processors requested than permitted"),
        ("sbatch_too_much_memory", "Memory specification can not be satisfied; Batch job submission"
         " failed: Requested node configuration is not available"),
        ("sbatch_bad_partition", "invalid partition specified: no-such-partition; Batch job"
         " submission failed: Invalid partition name specified"),
    ],
)
def test_sbatch_refusal_in_words(name: str, words: str) -> None:
    done = recorded(name)
    assert sbatch_error(done) == words
    with pytest.raises(SubmissionError) as info:
        parse_sbatch(done, "greedy")
    assert info.value.job_name == "greedy" and info.value.detail == words
    assert "sbatch: error" not in str(info.value)


def test_sbatch_without_a_job_id_is_an_error() -> None:
    with pytest.raises(SubmissionError, match="no job id"):
        parse_sbatch(CompletedCommand(("sbatch",), 0, "", "", 0.1), "job")


def test_sbatch_command_line(monkeypatch: pytest.MonkeyPatch) -> None:
    job = BatchJob("id", "step 3: align reads", WorkerCall("m:f"), cores=1.5, memory=100 * 1024**2 + 1,
                   time_limit=61, accelerators=1)
    argv = sbatch_command(job, "/w/job-1.out", TAG, "short", ["--account=lab"])
    assert argv == [
        "sbatch", "--parsable", "--job-name=step_3_align_reads", f"--comment={TAG}",
        "--output=/w/job-1.out", "--no-requeue", "--nodes=1", "--ntasks=1", "--cpus-per-task=2",
        "--mem=101M", "--time=3", "--gres=gpu:1", "--partition=short", "--account=lab",
    ]
    small = BatchJob("id", "x", WorkerCall("m:f"), cores=0.1, memory=0)
    argv = sbatch_command(small, "o", TAG, None, [])
    assert "--cpus-per-task=1" in argv and "--mem=1M" in argv
    assert not any(a.startswith(("--time", "--partition", "--gres")) for a in argv)
    monkeypatch.setenv("FLOW_SLURM_ARGS", "--qos=long --constraint='a b'")
    assert user_arguments("--account=lab") == ["--qos=long", "--constraint=a b", "--account=lab"]
    assert user_arguments(None) == ["--qos=long", "--constraint=a b"]


def test_job_names_and_minutes() -> None:
    assert job_name("a/b c") == "a_b_c" and job_name("***") == "flow-job"
    assert len(job_name("x" * 500)) == 64
    assert [minutes_for(s) for s in (1, 60, 61, 3600)] == [2, 2, 3, 61]


# ---- squeue --------------------------------------------------------------------------------


def test_squeue_states() -> None:
    statuses = parse_squeue(recorded("squeue_mixed"))
    assert set(statuses) == {"24", "25", "26", "27", "28"}
    running, failed, pending, cancelled = (statuses[i] for i in ("24", "25", "28", "27"))
    assert (running.phase, running.elapsed) == (Phase.RUNNING, 7.0)
    assert pending.phase is Phase.QUEUED and pending.note == "Resources"
    assert failed.phase is Phase.ENDED and failed.reason is None and failed.exit_code is None
    assert failed.note == "NonZeroExitCode"  # the exit code itself comes from scontrol
    assert (cancelled.phase, cancelled.reason) == (Phase.ENDED, ExitReason.CANCELLED)
    timeout = parse_squeue(recorded("squeue_timeout"))["24"]
    assert (timeout.reason, timeout.elapsed, timeout.note) == (ExitReason.TIMEOUT, 77.0, "TimeLimit")


def test_squeue_names_the_node_of_a_running_job() -> None:
    statuses = parse_squeue(recorded("squeue_nodes"))  # --format=%i|%T|%M|%r|%N
    running, later = statuses["5700"], statuses["5701"]
    assert (running.phase, running.node, running.elapsed) == (Phase.RUNNING, "vm", 4.0)
    assert (later.phase, later.node, later.note) == (Phase.QUEUED, "", "BeginTime")
    assert parse_squeue(recorded("squeue_mixed"))["24"].node == ""  # four fields: no node


def test_squeue_of_only_unknown_jobs_is_empty() -> None:
    done = recorded("squeue_unknown")
    assert done.returncode == 1
    assert parse_squeue(done) == {}


def test_squeue_failure_is_a_command_error() -> None:
    down = CompletedCommand(("squeue",), 1, "", "squeue: error: Unable to contact slurm controller"
                            " (connect failure)\n", 0.1)
    with pytest.raises(CommandError, match="Unable to contact slurm controller"):
        parse_squeue(down)


def test_tagged_jobs() -> None:
    assert parse_tagged(recorded("squeue_leftovers"), TAG) == ["28", "24", "27"]
    assert parse_tagged(recorded("squeue_leftovers"), "flow:other") == []


# ---- scontrol and sacct --------------------------------------------------------------------


def test_scontrol_exit_codes_and_reasons() -> None:
    exit3 = parse_scontrol(recorded("scontrol_exit3"), "25")
    assert exit3 is not None
    assert (exit3.phase, exit3.state, exit3.reason, exit3.exit_code, exit3.signal) == (
        Phase.ENDED, "FAILED", None, 3, 0)
    killed = parse_scontrol(recorded("scontrol_signal"), "26")
    assert killed is not None and (killed.exit_code, killed.signal) == (0, 9)
    assert killed.reason is None  # judged by its signal: FAILED, exit code -9
    cancelled = parse_scontrol(recorded("scontrol_cancelled"), "27")
    assert cancelled is not None
    assert (cancelled.reason, cancelled.signal, cancelled.elapsed) == (ExitReason.CANCELLED, 15, 4.0)
    timeout = parse_scontrol(recorded("scontrol_timeout"), "24")
    assert timeout is not None and timeout.reason is ExitReason.TIMEOUT
    assert timeout.elapsed == 77.0 and timeout.note == "TimeLimit"
    running = parse_scontrol(recorded("scontrol_running"), "24")
    assert running is not None and running.phase is Phase.RUNNING
    assert parse_scontrol(recorded("scontrol_unknown"), "999999") is None
    assert parse_scontrol(recorded("scontrol_exit3"), "26") is None  # another job's line


def test_out_of_memory_everywhere() -> None:
    squeued = parse_squeue(recorded("squeue_oom"))["670"]
    shown = parse_scontrol(recorded("scontrol_oom"), "670")
    logged = parse_sacct(recorded("sacct_oom"))["670"]
    assert shown is not None
    for status in (squeued, shown, logged):
        assert (status.phase, status.state, status.reason) == (
            Phase.ENDED, "OUT_OF_MEMORY", ExitReason.OUT_OF_MEMORY)
    assert squeued.note == shown.note == "OutOfMemory"


def test_sacct_without_accounting_storage() -> None:
    done = recorded("sacct_disabled")
    assert accounting_disabled(done)
    with pytest.raises(CommandError, match="accounting storage is disabled"):
        parse_sacct(done)


def test_sacct_completion_log() -> None:
    statuses = parse_sacct(recorded("sacct_completion_log"))
    assert {i: (s.state, s.reason, s.exit_code, s.signal) for i, s in statuses.items()} == {
        "24": ("TIMEOUT", ExitReason.TIMEOUT, 0, 0),
        "25": ("FAILED", None, 3, 0),
        "26": ("FAILED", None, 0, 9),
        "27": ("CANCELLED", ExitReason.CANCELLED, 0, 0),
        "28": ("CANCELLED", ExitReason.CANCELLED, 0, 0),
    }
    assert statuses["24"].elapsed == 77.0


def test_sacct_with_accounting_skips_steps() -> None:
    text = "31|COMPLETED|0:0|12\n31.batch|COMPLETED|0:0|12\n32|CANCELLED by 0|0:15|3\n"
    statuses = parse_sacct(CompletedCommand(("sacct",), 0, text, "", 0.1))
    assert set(statuses) == {"31", "32"}
    assert statuses["31"].reason is None and statuses["31"].exit_code == 0
    assert statuses["32"].state == "CANCELLED" and statuses["32"].reason is ExitReason.CANCELLED


# ---- states and durations ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "exit_status", "phase", "reason"),
    [
        ("PENDING", None, Phase.QUEUED, None),
        ("REQUEUE_HOLD", None, Phase.QUEUED, None),
        ("RUNNING", None, Phase.RUNNING, None),
        ("COMPLETING", None, Phase.RUNNING, None),
        ("SUSPENDED", None, Phase.RUNNING, None),
        ("COMPLETED", None, Phase.ENDED, None),
        ("FAILED", "3:0", Phase.ENDED, None),
        ("FAILED", "0:0", Phase.ENDED, ExitReason.FAILED),  # failed, and no code says why
        ("OUT_OF_MEMORY", "0:125", Phase.ENDED, ExitReason.OUT_OF_MEMORY),
        ("NODE_FAIL", "0:0", Phase.ENDED, ExitReason.NODE_FAIL),
        ("BOOT_FAIL", "0:0", Phase.ENDED, ExitReason.NODE_FAIL),
        ("PREEMPTED", "0:15", Phase.ENDED, ExitReason.PREEMPTED),
        ("DEADLINE", "0:0", Phase.ENDED, ExitReason.TIMEOUT),
        ("SOMETHING_NEW", "0:0", Phase.ENDED, ExitReason.FAILED),
    ],
)
def test_state_words(state: str, exit_status: str | None, phase: Phase, reason: ExitReason | None) -> None:
    status = job_status("1", state, exit_status)
    assert (status.phase, status.reason) == (phase, reason)
    if state == "COMPLETED":
        assert (status.exit_code, status.signal) == (0, 0)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("0:07", 7.0), ("1:17", 77.0), ("00:01:16", 76.0), ("2-03:04:05", 183845.0), ("77", 77.0),
     ("INVALID", None), ("", None), ("N/A", None)],
)
def test_durations(text: str, seconds: float | None) -> None:
    assert parse_duration(text) == seconds
