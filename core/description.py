"""The durable record of one job, as the job store keeps it and the leader reads it."""

from __future__ import annotations

import enum
import os
import pickle
from dataclasses import dataclass, field


class JobState(enum.IntEnum):
    """What the job store knows about a job (the leader adds in-memory states on top)."""

    PENDING = 0  # body not run (or to be re-run)
    RAN = 1  # body returned and its successors are registered


#: Bodies and return values up to this size live inside the description: one file, not two.
INLINE_LIMIT = 16 * 1024
#: The worker's exit status when a job itself failed (raised) and its log, saved in the job store,
#: says why (BSD sysexits' EX_SOFTWARE). The leader then reports the job's own error alone: the
#: worker's status tells nothing more about the job, and a front-end's error (a CWL tool's or WDL
#: task's real exit status) must not be followed by the worker's. Not 1: any Python crash exits 1.
JOB_FAILED_EXIT = 70


def new_job_id() -> str:
    """A fresh job id: 64 random bits, hex, unique across processes and hosts."""
    return os.urandom(8).hex()


@dataclass(slots=True)
class JobDescription:
    """One job's metadata. Cheap to pickle; the job's code lives in a separate body record."""

    job_id: str
    name: str  # job kind: the class or function name (statistics group by it)
    display_name: str = ""
    unit_name: str = ""
    #: Requests; None means the run's --defaultCores / --defaultMemory / --defaultDisk.
    cores: float | None = None
    memory: int | None = None
    disk: int | None = None
    accelerators: int = 0  # how many, in all (the local batch system has none)
    #: Toil's accelerator requirements: {"count", "kind", "model", "brand", "api"} dicts.
    accelerator_specs: list[dict[str, object]] = field(default_factory=list)
    preemptible: bool = False
    checkpoint: bool = False
    #: Hidden from what users see (progress bar, default log): a front-end's internal job.
    hidden: bool = False
    is_service: bool = False
    #: For a service host: the host of the service it was added under (``parentService``).
    service_parent: str | None = None
    state: JobState = JobState.PENDING
    children: list[str] = field(default_factory=list)
    follow_ons: list[str] = field(default_factory=list)
    services: list[str] = field(default_factory=list)
    #: Successors defined before the job ran (restored when a checkpoint job re-runs).
    static_children: list[str] = field(default_factory=list)
    static_follow_ons: list[str] = field(default_factory=list)
    static_services: list[str] = field(default_factory=list)
    #: How many jobs list this one as a successor; it runs after all of them.
    predecessors: int = 1
    retries_left: int = -1  # -1: not yet set by the leader (then --retryCount)
    attempts: int = 0
    #: Set when the worker runs this job's single successor in the same process.
    chained_to: str | None = None
    #: Wall-time limit in seconds (e.g. a front-end's tool time limit); None = unlimited.
    time_limit: float | None = None
    #: Messages the job logged for the leader during its last run.
    messages: list[str] = field(default_factory=list)
    #: Whether anyone holds a promise of this job's return value.
    has_promises: bool = False
    #: The pickled job body when small (else it is the job store's body record).
    body: bytes | None = None
    #: The pickled return value when small (else it is the job store's result record).
    result: bytes | None = None
    #: When the job returned another job's promise: that (job id, path), followed in a loop.
    result_promise: tuple[str, tuple[object, ...]] | None = None

    @property
    def label(self) -> str:
        """What users see: display name, with unit name when given."""
        base = self.display_name or self.name
        return f"{base} ({self.unit_name})" if self.unit_name else base

    def dumps(self) -> bytes:
        return pickle.dumps(self, protocol=pickle.HIGHEST_PROTOCOL)

    @staticmethod
    def loads(data: bytes) -> JobDescription:
        desc = pickle.loads(data)
        if not isinstance(desc, JobDescription):
            raise TypeError(f"not a job description: {type(desc).__name__}")
        return desc
