"""Typed exceptions of the core, each carrying its context."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class FlowError(Exception):
    """Base class of flow's own errors (shown to users as one paragraph, no traceback)."""


@dataclass(frozen=True)
class FailedJob:
    job_id: str
    name: str
    reason: str
    log_tail: str = ""


class FailedJobsException(FlowError):
    """The workflow ended with failed jobs; ``failed`` names each with its log tail."""

    def __init__(self, locator: str, failed: Sequence[FailedJob], exit_code: int = 1) -> None:
        self.jobStoreLocator = locator
        self.failed = list(failed)
        self.numberOfFailedJobs = len(self.failed)
        self.exit_code = exit_code
        super().__init__(self._message())

    def _message(self) -> str:
        lines = [f"The workflow in job store {self.jobStoreLocator} has {len(self.failed)} failed job(s):"]
        for job in self.failed:
            lines.append(f"  - {job.name} ({job.job_id}): {job.reason}")
            if job.log_tail.strip():
                tail = "\n".join("      " + line for line in job.log_tail.rstrip().splitlines()[-12:])
                lines.append(tail)
        lines.append(f"Fix the cause and resume with --restart (job store {self.jobStoreLocator}).")
        return "\n".join(lines)


class JobGraphDeadlockException(FlowError):
    """Only services are running and nothing else can make progress."""


class JobException(FlowError):
    """A job graph or job definition is invalid (cycle, bad argument, ...)."""


class ImpossibleJobError(FlowError):
    """A job asks for more resources than the batch system can ever give it."""


class PromiseError(FlowError):
    """A promise was read before the job that makes it returned."""


class WorkflowKilledError(FlowError):
    """The workflow was killed (``flow kill`` or a signal)."""


class ChangedReadFileError(FlowError):
    """A job changed a file it read with ``readGlobalFile`` without ``mutable=True``."""

    def __init__(self, job_id: str, file_id: str, path: str) -> None:
        super().__init__(
            f"job {job_id} changed {path}, its copy of global file {file_id!r} read without "
            "mutable=True (its size, modification time or inode differ from when it was read). "
            "The stored file is unchanged; read with readGlobalFile(..., mutable=True) to get a "
            "copy the job may change."
        )
        self.job_id = job_id
        self.file_id = file_id
        self.path = path
