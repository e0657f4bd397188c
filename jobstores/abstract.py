"""The job store contract: durable, byte-level storage for one workflow.

A job store holds everything a run needs to resume with ``--restart``: job descriptions,
job bodies, return values, global files, logs, statistics and a few named "shared" records.
It knows nothing about jobs beyond opaque bytes; the core serialises its own records.

Every write is atomic: a reader sees the old bytes or the new bytes, never a mix, and a
process killed mid-write leaves the old value in place. Concurrent workers (processes, possibly
on several hosts sharing a file system) may call these methods at the same time.
"""

from __future__ import annotations

import abc
import os
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, suppress
from typing import IO


class JobStoreError(Exception):
    """Base class of job-store errors; ``locator`` names the store."""

    def __init__(self, locator: str, message: str) -> None:
        super().__init__(f"job store {locator!r}: {message}")
        self.locator = locator


class NoSuchJobStoreError(JobStoreError):
    """The locator names no job store (nothing there, or an empty directory)."""


class JobStoreExistsError(JobStoreError):
    """``create`` was asked for a locator that already holds a job store."""


class CorruptJobStoreError(JobStoreError):
    """Something is there but is not a readable flow job store (foreign or damaged)."""


class JobStoreDeletingError(CorruptJobStoreError):
    """The store was being deleted when that was interrupted: only finishing the deletion is left."""


class DamagedRecordError(CorruptJobStoreError):
    """One stored item (a job record, a shared record, ...) is missing, truncated or garbage."""

    def __init__(self, locator: str, item: str, problem: str) -> None:
        super().__init__(locator, f"{item} {problem}")
        self.item = item
        self.problem = problem


class JobStoreWriteError(JobStoreError, OSError):
    """Writing to the store failed (no space left, read-only, I/O error): ``item`` names what."""

    def __init__(self, locator: str, item: str, error: OSError) -> None:
        JobStoreError.__init__(self, locator, f"cannot write {item}: {error.strerror or error}.")
        self.item = item
        # Not OSError's errno/strerror: with those set, str() would drop the message above.
        self.error = error


class JobStoreLockedError(JobStoreError):
    """Another leader holds the store's lock; ``holder`` is what it wrote there."""

    def __init__(self, locator: str, holder: str, message: str) -> None:
        super().__init__(locator, message)
        self.holder = holder


class NoSuchJobError(JobStoreError):
    """A job id with no record in the store."""

    def __init__(self, locator: str, job_id: str) -> None:
        super().__init__(locator, f"no job {job_id!r}")
        self.job_id = job_id


class NoSuchFileError(JobStoreError):
    """A file id with no file in the store."""

    def __init__(self, locator: str, file_id: str) -> None:
        super().__init__(locator, f"no file {file_id!r}")
        self.file_id = file_id


class JobStore(abc.ABC):
    """One workflow's durable state. Subclasses are found through ``flow.jobstores.registry``."""

    #: URL scheme of this store kind, e.g. "file".
    scheme: str = ""

    def __init__(self, locator: str) -> None:
        self.locator = locator

    # ---- lifecycle -----------------------------------------------------------------------
    @classmethod
    @abc.abstractmethod
    def create(cls, locator: str) -> JobStore:
        """Make a new, empty store. Raises JobStoreExistsError if one is there already."""

    @classmethod
    @abc.abstractmethod
    def open(cls, locator: str) -> JobStore:
        """Open an existing store. NoSuchJobStoreError / CorruptJobStoreError otherwise."""

    @classmethod
    @abc.abstractmethod
    def exists(cls, locator: str) -> bool:
        """True if a flow job store is at the locator."""

    @abc.abstractmethod
    def destroy(self) -> None:
        """Delete the store and everything in it. Idempotent."""

    # ---- the leader lock ----------------------------------------------------------------------
    @abc.abstractmethod
    def acquire_lock(self, owner: str, may_take: Callable[[str], bool]) -> None:
        """Take the store's single leader lock for ``owner`` (an opaque text).

        When another owner holds it, ``may_take(holder)`` decides whether that holder is gone and
        its lock may be taken over; if not, raise JobStoreLockedError. Atomic across processes
        and hosts sharing the store: of two concurrent callers, exactly one gets the lock.
        """

    @abc.abstractmethod
    def release_lock(self, owner: str) -> None:
        """Give the lock up if ``owner`` holds it; otherwise do nothing."""

    @abc.abstractmethod
    def lock_holder(self) -> str | None:
        """The current holder's text, or None when nobody holds the lock."""

    # ---- named shared records (config, root job id, kill flag ...) --------------------------
    @abc.abstractmethod
    def write_shared(self, name: str, data: bytes) -> None:
        """Atomically (re)write the shared record ``name`` (a simple identifier)."""

    @abc.abstractmethod
    def read_shared(self, name: str) -> bytes | None:
        """The shared record's bytes, or None when absent."""

    @abc.abstractmethod
    def delete_shared(self, name: str) -> None:
        """Remove a shared record; no error if absent."""

    @abc.abstractmethod
    def append_shared(self, name: str, data: bytes) -> None:
        """Add ``data`` at the end of the shared record ``name`` (made if absent) in one write,
        without rewriting what is there: for logs of many small entries, where a record per
        entry would cost a new file each. A writer killed mid-write may leave its entry cut
        short: readers must recognise a whole entry (e.g. one JSON value per line)."""

    # ---- jobs --------------------------------------------------------------------------------
    @abc.abstractmethod
    def new_job_id(self) -> str:
        """A fresh unique job id (no record is written yet)."""

    @abc.abstractmethod
    def write_job(self, job_id: str, description: bytes) -> None:
        """Atomically (re)write a job's description."""

    @abc.abstractmethod
    def read_job(self, job_id: str) -> bytes:
        """A job's description bytes. NoSuchJobError if absent."""

    @abc.abstractmethod
    def job_exists(self, job_id: str) -> bool: ...

    @abc.abstractmethod
    def delete_job(self, job_id: str) -> None:
        """Remove a job's description, body, result and log; no error if absent."""

    @abc.abstractmethod
    def list_jobs(self) -> Iterator[str]:
        """Ids of all jobs with a description."""

    @abc.abstractmethod
    def write_body(self, job_id: str, body: bytes) -> None:
        """Atomically write the serialised job object (the code that runs)."""

    @abc.abstractmethod
    def read_body(self, job_id: str) -> bytes:
        """The job body. NoSuchJobError if absent."""

    @abc.abstractmethod
    def write_result(self, job_id: str, result: bytes) -> None:
        """Atomically write the job's serialised return value (what its promises resolve to)."""

    @abc.abstractmethod
    def read_result(self, job_id: str) -> bytes | None:
        """The job's return value bytes, or None if the job has not returned yet."""

    @abc.abstractmethod
    def write_log(self, job_id: str, text: bytes) -> None:
        """Atomically store the (tail of the) log of a job's last attempt."""

    @abc.abstractmethod
    def read_log(self, job_id: str) -> bytes | None: ...

    # ---- global files ---------------------------------------------------------------------
    @abc.abstractmethod
    def write_file(self, local_path: str, job_id: str | None = None, link: bool = False) -> str:
        """Store an independent copy of a local file; return its new file id.

        Stored files are immutable: nothing done to ``local_path`` afterwards (by anyone, root
        included) may change the stored copy, so a store shares no inode with it (a reflink,
        which shares blocks copy-on-write, is fine). The one exception is ``link=True``, for
        ``--linkImports`` only: the user promises not to change the file during the run, and the
        store may then keep the file itself (a hard link) instead of a copy.
        ``job_id`` (the writing job) is recorded for cleanup; it may be None (imports).
        The file id ends with the local file's base name so that reads can keep it.
        """

    def move_file(self, local_path: str, job_id: str | None = None) -> str:
        """Store a local file that its writer has finished with, and remove ``local_path``;
        return the new file id. For outputs a job made and will not touch again (a CWL tool's
        or WDL task's output files): a store may take the file itself instead of copying it,
        when no other path names the same inode and no process holds it open, so nothing
        outside the store can change it afterwards. This default copies (``write_file``), then
        removes the path; a copy whose original cannot be removed keeps the original.
        """
        file_id = self.write_file(local_path, job_id)
        with suppress(OSError):
            os.unlink(local_path)
        return file_id

    @abc.abstractmethod
    def write_file_stream(
        self, job_id: str | None = None, basename: str | None = None
    ) -> AbstractContextManager[tuple[IO[bytes], str]]:
        """Context manager yielding ``(writable binary stream, file_id)``.

        The file becomes visible under the id only when the block exits without an exception.
        """

    @abc.abstractmethod
    def update_file(self, file_id: str, local_path: str) -> None:
        """Atomically replace an existing file's content with a local file's."""

    @abc.abstractmethod
    def read_file(self, file_id: str, local_path: str) -> None:
        """Materialise a stored file at ``local_path`` (which must not exist) as an independent
        copy with the stored file's modification time: writing to it never changes the stored
        file. The file id is checked before anything is made: NoSuchFileError (naming the id)
        for a malformed or unknown id, and ``local_path`` is then not touched.
        """

    def hand_over_file(self, file_id: str, local_path: str) -> None:
        """As ``read_file``, when the store is deleted as soon as this run ends and nothing
        reads the file from the store again (a front-end exporting a successful run's outputs
        under --clean always/onSuccess): a store may then hand over the stored file itself
        (a hard link) instead of a copy. This default copies."""
        self.read_file(file_id, local_path)

    @abc.abstractmethod
    def read_file_stream(self, file_id: str) -> AbstractContextManager[IO[bytes]]:
        """Context manager yielding a readable binary stream of the file."""

    @abc.abstractmethod
    def file_exists(self, file_id: str) -> bool: ...

    @abc.abstractmethod
    def file_size(self, file_id: str) -> int:
        """Size in bytes. NoSuchFileError if absent."""

    @abc.abstractmethod
    def delete_file(self, file_id: str) -> None:
        """Remove a file; no error if absent."""

    @abc.abstractmethod
    def missing_files_in(self, text: str) -> Iterator[str]:
        """The ids of this store's files named in ``text`` (as they are, or inside a front-end's
        URIs, quoted or not) whose file is gone: for checks that what a job will read exists."""

    # ---- statistics ---------------------------------------------------------------------------
    @abc.abstractmethod
    def append_stats(self, record: bytes) -> None:
        """Add one statistics record (safe from concurrent writers)."""

    @abc.abstractmethod
    def read_stats(self) -> Iterator[bytes]:
        """All statistics records written so far, in no particular order."""
