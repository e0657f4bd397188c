"""The Slurm batch system (``--batchSystem slurm``): Slurm's command lines and their output.

Everything else (polling, backoff, chunking, cancelling, reporting) is in
:mod:`flow.batchsystems.hpc`. Each job is submitted with ``sbatch`` as::

    sbatch --parsable --job-name=NAME --comment=flow:RUN_ID --output=WORK_DIR/.../job-N.out
           --no-requeue --nodes=1 --ntasks=1 --cpus-per-task=CORES --mem=MEMORY_MiB
           [--time=MINUTES] [--gres=gpu:N] [--partition=P] $FLOW_SLURM_ARGS --slurmArgs

(later arguments win, so users can override ours). The comment tags the job with the run id, so
that a restarted leader finds what an earlier leader left (one ``squeue``) and cancels it (one
``scancel``). ``--no-requeue``: a failed job is reported and the leader decides about retries.
Job states come from ``squeue --states=all`` (one call per poll for up to 500 jobs), a failed job's
exit code from ``scontrol show job``, and jobs the controller has forgotten (after MinJobAge) from
``sacct``, or ``sacct -c`` (the job-completion log) where accounting storage is disabled.

CORES is rounded up to whole CPUs; disk is not requested (nodes rarely declare TmpDisk). Without
``--maxCores``/``--maxMemory``/``--maxDisk`` Slurm alone judges what fits (sbatch refuses an
impossible request: a SubmissionError with its words); given, they bound each job. The job's
script exports BatchConfig.environment and the job's own environment; everything else comes from
the submitting environment (sbatch's default ``--export=ALL``). The work directory (``--workDir``)
and the job store must be on a file system the nodes share.
"""

from __future__ import annotations

import math
import os
import pwd
import re
import shlex
import shutil
from collections.abc import Sequence
from dataclasses import replace

from flow.batchsystems.abstract import (
    BatchConfig,
    BatchJob,
    BatchSystemError,
    ExitReason,
    SubmissionError,
)
from flow.batchsystems.hpc import (
    CommandError,
    CompletedCommand,
    JobStatus,
    Phase,
)
from flow.batchsystems.slurm_nodes import ScalableSlurm

#: Extra sbatch arguments for every job, as Toil's TOIL_SLURM_ARGS (before --slurmArgs).
ARGS_VARIABLE = "FLOW_SLURM_ARGS"
COMMANDS = ("sbatch", "squeue", "scontrol", "scancel", "sacct")
MiB = 1024**2

#: Slurm job states that have not started running yet.
QUEUED_STATES = frozenset(
    {"PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_FED", "REQUEUE_HOLD", "RESV_DEL_HOLD"}
)
#: Started and not over (a COMPLETING job's processes may still be ending).
RUNNING_STATES = frozenset(
    {"RUNNING", "COMPLETING", "SUSPENDED", "STOPPED", "RESIZING", "SIGNALING", "STAGE_OUT"}
)
#: Ended states that have a reason of their own (COMPLETED and FAILED are judged by exit code).
REASONS = {
    "TIMEOUT": ExitReason.TIMEOUT,
    "DEADLINE": ExitReason.TIMEOUT,
    "OUT_OF_MEMORY": ExitReason.OUT_OF_MEMORY,
    "CANCELLED": ExitReason.CANCELLED,
    "NODE_FAIL": ExitReason.NODE_FAIL,
    "BOOT_FAIL": ExitReason.NODE_FAIL,
    "PREEMPTED": ExitReason.PREEMPTED,
    "REVOKED": ExitReason.FAILED,
    "SPECIAL_EXIT": ExitReason.FAILED,
}
#: squeue's pending reasons (%r) under which a job does not start until someone acts.
STUCK_REASONS = frozenset({
    "JobHeldAdmin", "JobHeldUser", "ReqNodeNotAvail", "NodeDown", "PartitionDown",
    "PartitionInactive", "PartitionNodeLimit", "PartitionTimeLimit", "BadConstraints",
    "InvalidAccount", "InvalidQOS", "AssocMaxJobsLimit", "QOSMaxCpuPerJobLimit",
    "QOSMaxMemoryPerJob", "DependencyNeverSatisfied",
})
#: Words of errors that pass (the controller is busy, restarting or briefly unreachable).
TRANSIENT = (
    "socket timed out",
    "unable to contact slurm controller",
    "temporarily unavailable",
    "zero bytes were transmitted",
    "connection refused",
    "connection timed out",
    "slurm temporarily unable",
    "slurmctld is busy",
)
_UNKNOWN_JOB = "invalid job id specified"
_NO_ACCOUNTING = "accounting storage is disabled"
_FIELD = re.compile(r"(?:^|\s)(JobId|JobState|ExitCode|RunTime|Reason)=(\S*)")
_NAME_CHARS = re.compile(r"[^A-Za-z0-9._+-]+")


def parse_duration(text: str) -> float | None:
    """Seconds from ``[D-]HH:MM:SS``, ``MM:SS`` or a plain number of seconds; None if unknown."""
    text = text.strip()
    days = 0
    if "-" in text:
        day_text, _, text = text.partition("-")
        if not day_text.isdigit():
            return None
        days = int(day_text)
    parts = text.split(":")
    if not 1 <= len(parts) <= 3 or not all(part.isdigit() for part in parts):
        return None
    seconds = 0
    for part in parts:
        seconds = seconds * 60 + int(part)
    return float(days * 86400 + seconds)


def minutes_for(seconds: float, margin: int = 1) -> int:
    """Whole minutes covering ``seconds`` plus ``margin`` (schedulers' limits are coarse; the
    job wrapper enforces the precise one)."""
    return max(1, math.ceil(seconds / 60)) + margin


def job_status(
    scheduler_id: str,
    state_word: str,
    exit_status: str | None = None,
    elapsed: float | None = None,
    note: str = "",
) -> JobStatus:
    """A :class:`JobStatus` from Slurm's words: ``state_word`` such as "FAILED" or "CANCELLED by
    0", ``exit_status`` such as "3:0" (exit code 3) or "0:9" (signal 9)."""
    state = state_word.split()[0].rstrip("+").upper() if state_word.strip() else "UNKNOWN"
    if state in QUEUED_STATES:
        return JobStatus(scheduler_id, Phase.QUEUED, state, elapsed=elapsed, note=note)
    if state in RUNNING_STATES:
        return JobStatus(scheduler_id, Phase.RUNNING, state, elapsed=elapsed, note=note)
    code, signal = _exit_status(exit_status)
    if state == "COMPLETED" and code is None:
        code, signal = 0, 0  # COMPLETED means exit code 0
    reason = REASONS.get(state)
    if state not in ("COMPLETED", "FAILED") and reason is None:
        reason = ExitReason.FAILED  # an ended state this code does not know
    if state == "FAILED" and code == 0 and not signal:
        reason = ExitReason.FAILED  # failed without an exit code to tell why (e.g. launch)
    return JobStatus(scheduler_id, Phase.ENDED, state, reason, code, signal, elapsed, note)


def _exit_status(text: str | None) -> tuple[int | None, int]:
    if not text:
        return None, 0
    code, _, signal = text.strip().partition(":")
    if not code.isdigit():
        return None, 0
    return int(code), int(signal) if signal.isdigit() else 0


def sbatch_error(done: CompletedCommand) -> str:
    """sbatch's complaint without its ``sbatch: error:`` prefixes."""
    lines = []
    for line in (done.stderr or done.stdout).splitlines():
        line = re.sub(r"^(sbatch: )?(error: )?", "", line.strip())
        if line and line not in lines:
            lines.append(line)
    return "; ".join(lines) or f"sbatch exited with status {done.returncode}"


def job_name(name: str) -> str:
    """A job name squeue shows well: no spaces or shell-hostile characters, at most 64."""
    return _NAME_CHARS.sub("_", name).strip("_")[:64] or "flow-job"


def sbatch_command(
    job: BatchJob, output: str, tag: str, partition: str | None, user_args: Sequence[str],
    preemptible_partition: str | None = None,
) -> list[str]:
    """The sbatch command line for ``job`` (its script comes on stdin)."""
    argv = [
        "sbatch", "--parsable", f"--job-name={job_name(job.name)}", f"--comment={tag}",
        f"--output={output}", "--no-requeue", "--nodes=1", "--ntasks=1",
        f"--cpus-per-task={max(1, math.ceil(job.cores - 1e-9))}",
        f"--mem={max(1, math.ceil(job.memory / MiB))}M",
    ]
    if job.time_limit is not None:
        argv.append(f"--time={minutes_for(job.time_limit)}")
    gres = gres_request(job)
    if gres:
        argv.append(f"--gres={gres}")
    if job.preemptible and preemptible_partition:
        argv.append(f"--partition={preemptible_partition}")
    elif partition:
        argv.append(f"--partition={partition}")
    return argv + list(user_args)


def gres_request(job: BatchJob) -> str:
    """Slurm's --gres for Toil's accelerator requirements: ``gpu:2``, ``gpu:a100:1``, several
    comma-separated. Slurm names a kind and a model (its GRES type); a brand or API ("cuda")
    alone asks for that many GPUs of any type."""
    if not job.accelerator_specs:
        return f"gpu:{job.accelerators}" if job.accelerators else ""
    counts: dict[tuple[str, str], int] = {}
    for spec in job.accelerator_specs:
        key = (str(spec.get("kind") or "gpu"), str(spec.get("model") or ""))
        counts[key] = counts.get(key, 0) + int(str(spec.get("count", 1)))
    return ",".join(f"{kind}:{model}:{n}" if model else f"{kind}:{n}"
                    for (kind, model), n in counts.items() if n > 0)


def parse_sbatch(done: CompletedCommand, name: str) -> str:
    """The job id ``sbatch --parsable`` printed ("123" or "123;cluster"); SubmissionError with
    sbatch's words when it refused the job."""
    if not done.ok:
        raise SubmissionError(name, sbatch_error(done))
    first = done.stdout.strip().splitlines()[0] if done.stdout.strip() else ""
    scheduler_id = first.split(";")[0].strip()
    if not scheduler_id.isdigit():
        raise SubmissionError(name, f"sbatch gave no job id: {done.words!r}")
    return scheduler_id


def parse_squeue(done: CompletedCommand) -> dict[str, JobStatus]:
    """``squeue --noheader --states=all --jobs=... --format=%i|%T|%M|%r|%N`` by job id (the
    node list, last, is empty while a job waits; flow's jobs ask for one node)."""
    if not done.ok:
        if _UNKNOWN_JOB in done.words.lower():
            return {}  # none of the jobs asked about is known any more
        raise CommandError(done.argv, done.words, done.returncode)
    statuses = {}
    for line in done.stdout.splitlines():
        fields = line.strip().split("|")
        if len(fields) < 4 or not fields[0].isdigit():
            continue
        scheduler_id, state, used, note = fields[:4]
        status = job_status(scheduler_id, state, None, parse_duration(used), note)
        node = fields[4].strip() if len(fields) > 4 else ""
        statuses[scheduler_id] = replace(status, node=node) if node else status
    return statuses


def parse_scontrol(done: CompletedCommand, scheduler_id: str) -> JobStatus | None:
    """``scontrol show job -o ID``: state, exit code, run time; None for an unknown job."""
    if not done.ok:
        if _UNKNOWN_JOB in done.words.lower():
            return None
        raise CommandError(done.argv, done.words, done.returncode)
    for line in done.stdout.splitlines():
        fields = dict(_FIELD.findall(line))
        if fields.get("JobId") == scheduler_id and "JobState" in fields:
            return job_status(
                scheduler_id, fields["JobState"], fields.get("ExitCode"),
                parse_duration(fields.get("RunTime", "")), fields.get("Reason", ""),
            )
    return None


def accounting_disabled(done: CompletedCommand) -> bool:
    """Did sacct say it has no accounting storage (no slurmdbd: use ``sacct -c``)?"""
    return _NO_ACCOUNTING in done.words.lower()


def parse_sacct(done: CompletedCommand) -> dict[str, JobStatus]:
    """``sacct [-c] --noheader --parsable2 --format=JobID,State,ExitCode,ElapsedRaw``."""
    if not done.ok or accounting_disabled(done):
        raise CommandError(done.argv, done.words, done.returncode)
    statuses: dict[str, JobStatus] = {}
    for line in done.stdout.splitlines():
        fields = line.strip().split("|")
        if len(fields) < 4 or not fields[0].isdigit():
            continue  # job steps (123.batch) and blank lines
        scheduler_id, state, exit_status, elapsed = fields[:4]
        seconds = float(elapsed) if elapsed.isdigit() else None
        statuses[scheduler_id] = job_status(scheduler_id, state, exit_status, seconds)
    return statuses  # a job listed twice (requeued) keeps its last line


def parse_tagged(done: CompletedCommand, tag: str) -> list[str]:
    """Job ids from ``squeue --noheader --format=%i|%k`` whose comment is ``tag``."""
    if not done.ok:
        raise CommandError(done.argv, done.words, done.returncode)
    found = []
    for line in done.stdout.splitlines():
        scheduler_id, _, comment = line.strip().partition("|")
        if scheduler_id.isdigit() and comment.strip() == tag:
            found.append(scheduler_id)
    return found


class SlurmBatchSystem(ScalableSlurm):
    """Runs worker calls as Slurm jobs (see the module docstring); its nodes and the autoscaled
    run's constraint: :mod:`flow.batchsystems.slurm_nodes`."""

    name = "slurm"
    scheduler = "Slurm"
    stuck_notes = STUCK_REASONS

    def __init__(self, config: BatchConfig) -> None:
        missing = [command for command in COMMANDS if shutil.which(command) is None]
        if missing:
            raise BatchSystemError(
                f"--batchSystem slurm needs Slurm's commands on PATH; missing: {', '.join(missing)}"
            )
        super().__init__(config)
        partition = config.extra.get("slurmPartition")
        self.partition = str(partition) if partition else None
        self.user_args = user_arguments(config.extra.get("slurmArgs"))
        self.use_completion_log = False  # sacct -c: set once sacct says accounting is off

    def submit_command(self, job: BatchJob, output: str) -> list[str]:
        preemptible = self.config.extra.get("slurmPreemptiblePartition")
        return sbatch_command(job, output, self.tag, self.partition, [*self.elastic_args(), *self.user_args],
                              str(preemptible) if preemptible else None)

    def parse_submit(self, done: CompletedCommand, job: BatchJob) -> str:
        return parse_sbatch(done, job.name)

    def is_transient(self, done: CompletedCommand) -> bool:
        words = done.words.lower()
        return any(pattern in words for pattern in TRANSIENT)

    def status_command(self, scheduler_ids: Sequence[str]) -> list[str]:
        return [
            "squeue", "--noheader", "--states=all", f"--jobs={','.join(scheduler_ids)}",
            "--format=%i|%T|%M|%r|%N",  # %N: where each runs, for the cluster scaler (getNodes)
        ]

    def parse_status(self, done: CompletedCommand) -> dict[str, JobStatus]:
        return parse_squeue(done)

    def detail_command(self, scheduler_id: str) -> list[str]:
        return ["scontrol", "show", "job", "-o", scheduler_id]

    def parse_detail(self, done: CompletedCommand, scheduler_id: str) -> JobStatus | None:
        return parse_scontrol(done, scheduler_id)

    def history_command(self, scheduler_ids: Sequence[str]) -> list[str] | None:
        source = ["-c"] if self.use_completion_log else ["--allocations"]
        return [
            "sacct", *source, "--noheader", "--parsable2", f"--jobs={','.join(scheduler_ids)}",
            "--format=JobID,State,ExitCode,ElapsedRaw",
        ]

    def parse_history(self, done: CompletedCommand) -> dict[str, JobStatus]:
        if accounting_disabled(done) and not self.use_completion_log:
            self.use_completion_log = True  # from now on, read the job-completion log
            return {}  # the jobs are looked up again at the next poll
        return parse_sacct(done)

    def cancel_command(self, scheduler_ids: Sequence[str]) -> list[str]:
        return ["scancel", *scheduler_ids]

    def leftovers_command(self) -> list[str]:
        user = pwd.getpwuid(os.getuid()).pw_name
        return ["squeue", "--noheader", f"--user={user}", "--format=%i|%k"]

    def parse_leftovers(self, done: CompletedCommand, tag: str) -> list[str]:
        return parse_tagged(done, tag)


def user_arguments(option: object) -> list[str]:
    """sbatch arguments from $FLOW_SLURM_ARGS, then from --slurmArgs (later ones win)."""
    return shlex.split(os.environ.get(ARGS_VARIABLE, "")) + shlex.split(str(option or ""))
