"""The batch system contract: run worker calls somewhere, report how they ended.

A batch system runs :class:`WorkerCall` s (a Python function ``module:function`` called with string
arguments, returning an exit code) under resource requests, and reports each one's end as a
:class:`JobExit`. It knows nothing of jobs, graphs or job stores. The core's leader drives it from
one long-lived thread (the same thread throughout: local workers are tied to the thread that
started them): ``issue`` / ``kill`` / ``wait`` / ``shutdown`` are never called concurrently.
``wait`` may raise BatchSystemError when the batch system itself is broken.

Every implementation must pass ``tests/contract/test_batchsystem.py``.
"""

from __future__ import annotations

import abc
import enum
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import ClassVar

#: Environment variable: comma-separated "module" or "module:function" that a batch system's
#: workers import (and call) when they start, before their first job, where they can.
WORKER_PRELOAD_VARIABLE = "FLOW_WORKER_PRELOAD"


class BatchSystemError(Exception):
    """Base class of batch-system errors."""


class ImpossibleRequestError(BatchSystemError):
    """A job asks for more than the batch system can ever give it."""

    def __init__(self, job_name: str, message: str) -> None:
        super().__init__(f"job {job_name!r} can never run here: {message}")
        self.job_name = job_name


class SubmissionError(BatchSystemError):
    """The scheduler refused a job (e.g. sbatch rejected it); ``detail`` is its words."""

    def __init__(self, job_name: str, detail: str) -> None:
        super().__init__(f"job {job_name!r} was refused by the batch system: {detail}")
        self.job_name = job_name
        self.detail = detail


@dataclass(frozen=True)
class WorkerCall:
    """A call ``function(*args) -> int`` to make in a worker process.

    ``function`` is "package.module:name". External schedulers run :meth:`argv`, which is
    ``python -m flow.batchsystems.call module:name arg...``; the local batch system calls the
    function in a pre-started worker process instead.
    """

    function: str
    args: tuple[str, ...] = ()

    def argv(self, python: str = sys.executable) -> list[str]:
        return [python, "-m", "flow.batchsystems.call", self.function, *self.args]


@dataclass(frozen=True)
class BatchJob:
    """One unit of work submitted to a batch system, with its resource requests."""

    job_id: str  # the core's id, for names and logs
    name: str  # what users see (squeue name, log lines)
    call: WorkerCall
    cores: float = 1.0
    memory: int = 2 * 1024**3  # bytes
    disk: int = 2 * 1024**3  # bytes
    accelerators: int = 0
    #: Toil's accelerator requirements ({"count", "kind", "model", "brand", "api"}), when known;
    #: ``accelerators`` is their total count.
    accelerator_specs: tuple[Mapping[str, object], ...] = ()
    #: Whether the job may run on preemptible (cheaper, interruptible) capacity; a batch system
    #: uses it where it has a way to say so (Slurm: --slurmPreemptiblePartition).
    preemptible: bool = False
    #: Seconds of wall time; every batch system enforces it (ending the job as TIMEOUT).
    time_limit: float | None = None
    #: Variables set in os.environ for the duration of the call only. Variables that matter at
    #: interpreter start (PYTHONPATH) belong in BatchConfig.environment.
    environment: Mapping[str, str] = field(default_factory=dict)


class ExitReason(enum.Enum):
    """Why a batch job ended, in the scheduler's words where it has them."""

    FINISHED = "finished"  # the process exited; see exit_code (0 = success)
    FAILED = "failed"  # ended abnormally (signal, crash) without a more specific reason
    LOST = "lost"  # the batch system no longer knows the job (the leader reissues it)
    TIMEOUT = "timeout"  # hit its time limit
    OUT_OF_MEMORY = "out_of_memory"
    CANCELLED = "cancelled"  # cancelled by someone else (scancel by the user/admin)
    NODE_FAIL = "node_fail"
    PREEMPTED = "preempted"


class BatchJobExitReason(enum.IntEnum):
    """Toil's int-valued exit reasons (``toil.batchSystems.abstractBatchSystem``), for code that
    compares them; ``JobExit.exitReason`` gives the one of a flow :class:`ExitReason`."""

    FINISHED = 1  # successfully finished
    FAILED = 2  # failed
    LOST = 3  # disappeared from the batch system
    KILLED = 4  # killed before finishing
    ERROR = 5  # internal error
    MEMLIMIT = 6  # exceeded its memory
    MISSING = 7  # never seen again
    MAXJOBDURATION = 8  # ran longer than allowed
    PARTITION = 9  # its partition went away

    @classmethod
    def to_string(cls, value: int) -> str:
        return cls(value).name


#: flow's reason -> Toil's (a finished job with a non-zero exit code is Toil's FAILED).
TOIL_EXIT_REASONS = {
    "finished": BatchJobExitReason.FINISHED, "failed": BatchJobExitReason.FAILED,
    "lost": BatchJobExitReason.LOST, "timeout": BatchJobExitReason.MAXJOBDURATION,
    "out_of_memory": BatchJobExitReason.MEMLIMIT, "cancelled": BatchJobExitReason.KILLED,
    "node_fail": BatchJobExitReason.LOST, "preempted": BatchJobExitReason.KILLED,
}


@dataclass(frozen=True)
class JobExit:
    """How one issued batch job ended.

    ``exit_code`` is a process exit status (0-255, the call's return value & 0xFF), or minus the
    signal number when the process was killed by a signal. ``wall_time`` counts from when the job
    started running, not from ``issue``. A process that exits by itself (even through
    ``os._exit``) may be FINISHED with its status or FAILED, depending on what the scheduler sees.
    """

    batch_id: int
    exit_code: int
    reason: ExitReason = ExitReason.FINISHED
    wall_time: float | None = None
    message: str = ""  # human words: "exit code 3", "TIMEOUT after 60 s", ...

    @property
    def succeeded(self) -> bool:
        return self.reason is ExitReason.FINISHED and self.exit_code == 0

    @property
    def exitReason(self) -> BatchJobExitReason:
        """Toil's name for how the job ended."""
        if self.reason is ExitReason.FINISHED and self.exit_code != 0:
            return BatchJobExitReason.FAILED
        return TOIL_EXIT_REASONS[self.reason.value]


def describe_bytes(amount: float) -> str:
    """``1.5 GiB``-style words for a number of bytes."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(amount) < 1024 or unit == "TiB":
            return f"{amount:g} {unit}" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= 1024
    raise AssertionError("unreachable")


def request_problem(
    job: BatchJob, cores: float | None, memory: int | None, disk: int | None, verb: str
) -> str | None:
    """Why ``job`` asks for more than these limits (None: it fits, or no limit is set); ``verb``
    says what the limits are ("available", "allowed"). For ImpossibleRequestError."""
    if job.cores < 0 or job.memory < 0 or job.disk < 0 or job.accelerators < 0:
        return "asks for a negative amount of a resource"
    if cores is not None and job.cores > cores + 1e-9:
        return f"asks for {job.cores:g} cores but at most {cores:g} are {verb} (--maxCores)"
    if memory is not None and job.memory > memory:
        return (f"asks for {describe_bytes(job.memory)} of memory but at most"
                f" {describe_bytes(memory)} is {verb} (--maxMemory)")
    if disk is not None and job.disk > disk:
        return (f"asks for {describe_bytes(job.disk)} of disk but at most"
                f" {describe_bytes(disk)} is {verb} (--maxDisk)")
    return None


@dataclass(frozen=True)
class BatchConfig:
    """What every batch system is built from. ``extra`` carries plugin options by name."""

    max_cores: float
    max_memory: int
    max_disk: int
    work_dir: str | None = None
    environment: Mapping[str, str] = field(default_factory=dict)
    extra: Mapping[str, object] = field(default_factory=dict)


class BatchSystem(abc.ABC):
    """About six methods; implementations are found through ``flow.batchsystems.registry``."""

    name: ClassVar[str] = ""
    #: What users read in messages ("the local batch system"); defaults to the name.
    title: ClassVar[str] = ""

    def __init__(self, config: BatchConfig) -> None:
        self.config = config
        self._closed = False  # shutdown() sets it
        self._next_id = 1

    @abc.abstractmethod
    def check_fits(self, job: BatchJob) -> None:
        """Raise ImpossibleRequestError if ``job`` could never run here (checked before issue)."""

    @abc.abstractmethod
    def issue(self, job: BatchJob) -> int:
        """Queue ``job``; return its batch id (unique for this object's life). Never blocks on
        the job. Raises ImpossibleRequestError or SubmissionError for a refused request."""

    @abc.abstractmethod
    def kill(self, batch_ids: Iterable[int]) -> None:
        """Kill these jobs (queued or running) and return when they are gone. Killed jobs
        produce no JobExit. Unknown or already finished ids are ignored."""

    @abc.abstractmethod
    def wait(self, timeout: float) -> list[JobExit]:
        """Block until at least one issued job has ended or ``timeout`` seconds pass; return
        the ends not reported yet (possibly empty). Each issued job is reported exactly once."""

    @abc.abstractmethod
    def running(self) -> dict[int, float]:
        """Batch ids of jobs that have started running and not been reported, with seconds since
        they started."""

    @abc.abstractmethod
    def shutdown(self) -> None:
        """Kill everything still queued or running (and their child processes) and release
        resources. Idempotent; the object is unusable afterwards."""

    def job_limits(self) -> tuple[float | None, int | None, int | None]:
        """The most cores, memory and disk one job may ask for; None where the scheduler alone
        decides (a cluster). Front-ends scale a tool's wish (CWL coresMax, WDL cpu) to this."""
        return self.config.max_cores, self.config.max_memory, self.config.max_disk

    @classmethod
    def cancel_run(cls, run_id: str, config: BatchConfig) -> list[str]:
        """Cancel the jobs of run ``run_id`` that a leader which is gone left queued or running
        (for ``flow kill`` and ``flow clean``); returns their scheduler ids. Only a scheduler
        whose jobs outlive the leader has any: the default does nothing."""
        return []

    def begin_run(self, run_id: str, restart: bool) -> None:
        """Called once before the first ``issue`` of a run with its stable id (the same across
        restarts). A scheduler whose jobs outlive the leader tags its jobs with ``run_id`` and,
        when ``restart``, cancels the jobs an earlier leader of the run left behind.
        The default does nothing."""
        return None

    # -- for implementations ---------------------------------------------------------------

    def _new_batch_id(self, job: BatchJob) -> int:
        """The prologue of every ``issue``: the batch system is open and ``job`` fits; return
        the job's new batch id."""
        self._check_open()
        self.check_fits(job)
        batch_id = self._next_id
        self._next_id += 1
        return batch_id

    def _check_open(self) -> None:
        if self._closed:
            raise BatchSystemError(f"the {self.title or self.name} batch system has been shut down")
