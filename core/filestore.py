"""The file store handed to ``Job.run``: global files between jobs, local scratch space, logs.

Stored files are immutable (issue 18): ``writeGlobalFile`` stores a copy of the job's file and
``readGlobalFile`` hands out a copy of the stored one, both made by the job store as cheaply as
the file system allows (a reflink on XFS/btrfs, an in-kernel copy elsewhere: see
``flow.jobstores.file``). Hard links, used before, let a job that appended to its file after
storing it, or wrote to a file it had read, change what every later job read; file permissions
would not have stopped a job running as root. ``symlink=True`` is accepted (Toil's API) and also
gets a copy, since a link into the store is a way to write to it.

A job may not change a file it read without ``mutable=True`` (Toil's rule): its copy's inode,
size and modification time are recorded, and at the end of the job any difference fails the
job with a :class:`~flow.core.exceptions.ChangedReadFileError` naming the file. The recorded
modification time is set 1 ns before the stored file's, so any later write, which stamps the
current time, changes it even within the file system's clock tick. Only the job is at fault:
the stored file never changed. A mutable copy may be changed freely.
"""

from __future__ import annotations

import atexit
import concurrent.futures
import contextlib
import errno
import io
import logging
import os
import queue
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import IO, Any, Literal, overload

from flow.core.exceptions import ChangedReadFileError, FlowError
from flow.core.urls import export_url, import_url
from flow.jobstores.abstract import JobStore
from flow.jobstores.placement import spread_subdirectories

logger = logging.getLogger(__name__)

SERVICE_STARTED = "svc-started-{}"
SERVICE_STOP = "svc-stop-{}"


#: From this many files :meth:`FileStore.readGlobalFiles` copies them with READ_THREADS threads
#: (a gather of 200 files: 2x faster on this project's ext4).
PARALLEL_READS = 16
READ_THREADS = 4


class FileID(str):
    """A global file's id (a string), carrying its size like Toil's ``FileID``."""

    size: int

    def __new__(cls, file_id: str, size: int = -1) -> FileID:
        obj = super().__new__(cls, file_id)
        obj.size = size
        return obj

    def __reduce__(self) -> tuple[Any, ...]:
        return (FileID, (str(self), self.size))


class _Janitor:
    """Removes finished jobs' scratch directories in a background thread.

    Removing a directory tree mostly waits on the disk (up to 3 ms per directory on an ext4 with
    online discard, nearly none of it CPU), and a CWL tool run leaves half a dozen directories:
    removing them in line held each worker up for tens of milliseconds per job. The thread is
    per process (started again in a forked child) and drained at exit; whatever a killed worker
    leaves is in the run's scratch directory, which the leader removes at the end.
    """

    #: Seconds an exiting process waits for its pending removals.
    DRAIN_TIMEOUT = 60.0
    #: Seconds the thread lets removals pile up before one ``rm`` takes them all. Waking it
    #: for every job cost short jobs a thread switch and a fork of ``rm`` (holding the GIL)
    #: each: 1 to 3 ms per job on a busy 2-core machine (benchmarks/profile_wdl.py).
    BATCH_DELAY = 0.25

    def __init__(self) -> None:
        self._pid = -1
        self._queue: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def remove(self, path: str) -> None:
        if self._pid != os.getpid():  # first use in this process (or a forked child of one)
            self._pid = os.getpid()
            self._queue = queue.SimpleQueue()
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._work, name="flow-janitor", daemon=True)
            self._thread.start()
            atexit.register(self.drain)
        self._queue.put(path)

    def _work(self) -> None:
        while True:
            paths = [self._queue.get()]
            self._stop.wait(self.BATCH_DELAY)  # not woken by later puts: they pile up meanwhile
            with contextlib.suppress(queue.Empty):
                while True:
                    paths.append(self._queue.get_nowait())
            todo = [path for path in paths if path is not None]
            if todo:
                self._remove(todo)
            if len(todo) < len(paths):
                return

    @staticmethod
    def _remove(paths: list[str]) -> None:
        """One ``rm -rf`` for what has piled up: it needs no GIL, where rmtree in this thread
        would wait for the busy job thread at each of its many system calls."""
        try:
            subprocess.run(["rm", "-rf", "--", *paths], stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        except OSError:  # no rm here
            for path in paths:
                shutil.rmtree(path, ignore_errors=True)

    def drain(self) -> None:
        """Finish the pending removals (at exit)."""
        if self._thread is not None and self._pid == os.getpid():
            self._queue.put(None)
            self._stop.set()
            self._thread.join(self.DRAIN_TIMEOUT)
            self._thread = None
            self._pid = -1


_janitor = _Janitor()


class FileStore:
    """One job's view of the job store's files."""

    def __init__(self, store: JobStore, job_id: str, temp_root: str) -> None:
        self.jobStore = store
        self.job_id = job_id
        self._temp_root = temp_root
        self._temp: str | None = None  # created on first use: most jobs never need one
        self._local_reads: dict[str, list[str]] = {}
        #: path -> (file id, inode, size, mtime_ns) of each copy read without mutable=True
        self._read_only: dict[str, tuple[str, int, int, int]] = {}
        self._pending_deletes: list[str] = []
        self.messages: list[str] = []
        #: Files written with cleanup=True: deleted after this job and all its successors.
        self.cleanup_ids: list[str] = []

    # ---- scratch space ----------------------------------------------------------------------
    @property
    def _temp_dir(self) -> str:
        if self._temp is None:
            self._temp = tempfile.mkdtemp(prefix=f"job-{self.job_id}-", dir=self._temp_root)
        return self._temp

    @property
    def localTempDir(self) -> str:
        return self._temp_dir

    def getLocalTempDir(self) -> str:
        """A new empty directory inside the job's scratch space."""
        return tempfile.mkdtemp(dir=self._temp_dir)

    def getLocalTempFile(self, suffix: str | None = None, prefix: str | None = None) -> str:
        handle, path = tempfile.mkstemp(suffix=suffix, prefix=prefix, dir=self._temp_dir)
        os.close(handle)
        return path

    def getLocalTempFileName(self, suffix: str | None = None, prefix: str | None = None) -> str:
        path = self.getLocalTempFile(suffix, prefix)
        os.unlink(path)
        return path

    # ---- global files -------------------------------------------------------------------------
    def writeGlobalFile(self, localFileName: str, cleanup: bool = False) -> FileID:
        """Store a copy of a local file; returns its id. The job may go on changing its file."""
        path = os.path.abspath(localFileName)
        file_id = self.jobStore.write_file(path, self.job_id)
        self._note_cleanup(file_id, cleanup)
        return FileID(file_id, self.jobStore.file_size(file_id))

    def moveGlobalFile(self, localFileName: str, cleanup: bool = False) -> FileID:
        """Store a file the job made and has finished with (flow's, not Toil's): the job store
        takes the file itself where it can instead of copying it (see ``JobStore.move_file``),
        and the local path is gone afterwards. A file the job read from the store
        (``readGlobalFile``) is copied and stays where it is, so the job-end check still finds
        it. For large outputs this saves a copy of every byte and the disk space it takes."""
        path = os.path.abspath(localFileName)
        if path in self._read_only or any(path in paths for paths in self._local_reads.values()):
            return self.writeGlobalFile(path, cleanup)
        file_id = self.jobStore.move_file(path, self.job_id)
        self._note_cleanup(file_id, cleanup)
        return FileID(file_id, self.jobStore.file_size(file_id))

    @contextlib.contextmanager
    def writeGlobalFileStream(
        self, cleanup: bool = False, basename: str | None = None, encoding: str | None = None,
        errors: str | None = None,
    ) -> Iterator[tuple[IO[Any], FileID]]:
        with self.jobStore.write_file_stream(self.job_id, basename) as (stream, file_id):
            self._note_cleanup(file_id, cleanup)
            if encoding is not None:
                import io

                text = io.TextIOWrapper(stream, encoding=encoding, errors=errors)
                yield text, FileID(file_id)
                text.flush()
                text.detach()
            else:
                yield stream, FileID(file_id)

    def readGlobalFile(
        self, fileStoreID: str, userPath: str | None = None, cache: bool = True,
        mutable: bool = False, symlink: bool = False,
    ) -> str:
        """Copy a global file to ``userPath`` (default: a new scratch directory) and return its
        path. Without ``mutable=True`` the job must not change the copy (checked at job end).

        The id is checked through the job store before any path is touched: a malformed or
        unknown id raises NoSuchFileError naming it. ``cache`` and ``symlink`` are accepted for
        Toil's API; the result is always a private copy (see the module docstring).
        """
        file_id = str(fileStoreID)
        self.jobStore.file_size(file_id)  # NoSuchFileError before anything is made or removed
        if userPath is None:
            userPath = os.path.join(self.getLocalTempDir(), os.path.basename(file_id))
        path = os.path.abspath(userPath)
        if os.path.lexists(path):
            os.unlink(path)
        self._read_only.pop(path, None)
        self.jobStore.read_file(file_id, path)
        if not mutable:
            st = os.stat(path)
            # 1 ns before the stored file's time: any later write stamps a different one
            os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns - 1))
            st = os.stat(path)  # as the file system stored it (its timestamps may be coarser)
            self._read_only[path] = (file_id, st.st_ino, st.st_size, st.st_mtime_ns)
        self._local_reads.setdefault(file_id, []).append(path)
        return path

    def readGlobalFiles(self, reads: Sequence[tuple[str, str]], mutable: bool = False,
                        spread_in: str | None = None) -> None:
        """:meth:`readGlobalFile` of each (file id, path), the path's folder made if missing (a
        front-end's input staging). From PARALLEL_READS files on they are copied side by side
        (a gather's thousands of inputs): each copy mostly waits on the file system (a folder
        and a file made), and the copies share nothing. ``spread_in``: the folder their folders
        are made in, marked then to spread them (:mod:`flow.jobstores.placement`). The first
        failure is raised, after the other copies ended."""

        def read(item: tuple[str, str]) -> None:
            file_id, path = item
            os.makedirs(os.path.dirname(path), exist_ok=True)
            self.readGlobalFile(file_id, userPath=path, mutable=mutable)

        if len(reads) < PARALLEL_READS:
            for item in reads:
                read(item)
            return
        if spread_in is not None:
            os.makedirs(spread_in, exist_ok=True)
            spread_subdirectories(spread_in)
        with concurrent.futures.ThreadPoolExecutor(READ_THREADS, "flow-file-reads") as pool:
            list(pool.map(read, reads))

    def check_read_files(self, paths: Iterable[str] | None = None) -> None:
        """At job end: fail if the job changed a file it read without ``mutable=True``; or
        only the copies at ``paths`` (those of one step of a job that runs several).

        A copy that is gone was deleted by the job, which is allowed (and changes nothing)."""
        copies = self._read_only
        if paths is not None:
            wanted = (os.path.abspath(p) for p in paths)
            copies = {path: copies[path] for path in wanted if path in copies}
        for path, (file_id, ino, size, mtime_ns) in copies.items():
            try:
                st = os.stat(path)
            except FileNotFoundError:
                continue
            if (st.st_ino, st.st_size, st.st_mtime_ns) != (ino, size, mtime_ns):
                raise ChangedReadFileError(self.job_id, file_id, path)

    @contextlib.contextmanager
    def readGlobalFileStream(
        self, fileStoreID: str, encoding: str | None = None, errors: str | None = None
    ) -> Iterator[IO[Any]]:
        with self.jobStore.read_file_stream(fileStoreID) as stream:
            if encoding is not None:
                import io

                yield io.TextIOWrapper(stream, encoding=encoding, errors=errors)
            else:
                yield stream

    def updateGlobalFile(self, fileStoreID: str, localFileName: str) -> None:
        """Replace a global file's content (atomically), keeping its id: for tools that update
        their inputs in place, whose change later readers of the same file must see."""
        self.jobStore.update_file(str(fileStoreID), os.path.abspath(localFileName))

    def getGlobalFileSize(self, fileStoreID: str) -> int:
        return self.jobStore.file_size(fileStoreID)

    def deleteLocalFile(self, fileStoreID: str) -> None:
        """Remove this job's local copies of a global file (read with readGlobalFile). As in
        Toil, OSError(ENOENT) when this job has none."""
        if str(fileStoreID) not in self._local_reads:
            raise OSError(errno.ENOENT, f"this job has no local copy of file {fileStoreID} to delete")
        self._drop_local_copies(fileStoreID)

    def _drop_local_copies(self, fileStoreID: str) -> None:
        for path in self._local_reads.pop(str(fileStoreID), []):
            self._read_only.pop(path, None)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)

    def deleteGlobalFile(self, fileStoreID: str) -> None:
        """Delete a global file once this job has finished successfully. As in Toil, deleting a
        file that is not there is no error; a malformed id raises NoSuchFileError at once."""
        file_id = str(fileStoreID)
        self._drop_local_copies(file_id)
        if not self.jobStore.file_exists(file_id):
            self.jobStore.delete_file(file_id)  # nothing to delete; NoSuchFileError if malformed
            return
        self._pending_deletes.append(file_id)

    def exportFile(self, jobStoreFileID: str, dstUrl: str) -> None:
        export_url(self.jobStore, jobStoreFileID, dstUrl)

    export_file = exportFile

    @overload
    def importFile(self, srcUrl: str, sharedFileName: None = None,
                   check_existence: Literal[True] = True) -> FileID: ...

    @overload
    def importFile(self, srcUrl: str, sharedFileName: str | None = None,
                   check_existence: bool = True) -> FileID | None: ...

    def importFile(self, srcUrl: str, sharedFileName: str | None = None,
                   check_existence: bool = True) -> FileID | None:
        """Copy a file (path, file:// or http(s):// URL) into the job store; its id. As Toil's:
        with ``sharedFileName`` it becomes that shared file (see :meth:`readSharedFileStream`)
        and None is returned; with ``check_existence=False`` a missing file gives None."""
        return import_to_store(self.jobStore, srcUrl, sharedFileName, check_existence)

    import_file = importFile

    # ---- logging -----------------------------------------------------------------------------
    def log_to_leader(self, text: str, level: int = logging.INFO) -> None:
        """Send a message to the leader's log (shown when the job finishes)."""
        self.messages.append(f"{logging.getLevelName(level)}\t{text}")
        logger.log(level, text)

    logToMaster = log_to_leader
    logToLeader = log_to_leader

    # ---- lifecycle (used by the worker) -----------------------------------------------------
    def commit(self) -> None:
        """After the job's completion is durable: apply deferred deletions."""
        for file_id in self._pending_deletes:
            self.jobStore.delete_file(file_id)
        self._pending_deletes.clear()

    def close(self) -> None:
        """Let go of the job's scratch space: removed in the background (see :class:`_Janitor`)."""
        if self._temp is not None:
            _janitor.remove(self._temp)
            self._temp = None

    # ---- services (used by ServiceHostJob) -------------------------------------------------
    def service_started(self, value: Any) -> None:
        """Publish a service's start value and tell the leader it is up."""
        import dill

        self.jobStore.write_result(self.job_id, dill.dumps(value, recurse=True))
        self.jobStore.write_shared(SERVICE_STARTED.format(self.job_id), b"1")

    def wait_for_service_stop(self, check: Callable[[], bool], interval: float) -> None:
        """Call ``check`` every ``interval`` s until the leader asks the service to stop."""
        stop_flag = SERVICE_STOP.format(self.job_id)
        next_check = time.monotonic() + interval
        while self.jobStore.read_shared(stop_flag) is None:
            if time.monotonic() >= next_check:
                if not check():
                    raise RuntimeError("the service's check() reported failure")
                next_check = time.monotonic() + interval
            time.sleep(0.05)

    # ---- more of Toil's FileStore API ------------------------------------------------------
    def keep_scratch(self, destination: str) -> str | None:
        """Move the job's scratch directory to ``destination`` (--cleanWorkDir); its new path,
        or None if the job made none."""
        if self._temp is None:
            return None
        shutil.move(self._temp, destination)
        self._temp = None
        return destination

    def _note_cleanup(self, file_id: str, cleanup: bool) -> None:
        if cleanup:
            self.cleanup_ids.append(str(file_id))

    @contextlib.contextmanager
    def updateGlobalFileStream(
        self, fileStoreID: str, encoding: str | None = None, errors: str | None = None
    ) -> Iterator[IO[Any]]:
        """A writable stream whose content replaces the global file's (atomically, at the end of
        the block, keeping its id); nothing changes if the block raises."""
        path = self.getLocalTempFile(prefix="update-")
        with open(path, "w" if encoding else "wb", encoding=encoding, errors=errors) as stream:
            yield stream
        self.updateGlobalFile(fileStoreID, path)
        os.unlink(path)

    def getEmptyFileStoreID(self, jobStoreID: str | None = None, cleanup: bool = False,
                            basename: str | None = None) -> FileID:
        """A new empty global file (to fill later with updateGlobalFile/updateGlobalFileStream)."""
        with self.jobStore.write_file_stream(jobStoreID or self.job_id, basename) as (_, file_id):
            pass
        self._note_cleanup(file_id, cleanup)
        return FileID(file_id, 0)

    def globalFileExists(self, fileStoreID: str) -> bool:
        return self.jobStore.file_exists(str(fileStoreID))

    def log_user_stream(self, name: str, stream: IO[bytes]) -> None:
        """Send a stream of UTF-8 text (a tool's output, say) to the leader's log as ``name``:
        logged there when the job has run, and written to ``--writeLogs`` as a file."""
        text = stream.read().decode("utf-8", "replace")
        self.messages.append(f"{USER_STREAM_TAG}{name}\t{text}")

    @contextlib.contextmanager
    def readSharedFileStream(self, sharedFileName: str) -> Iterator[IO[bytes]]:
        """A file imported with ``importFile(..., sharedFileName=name)``."""
        yield io.BytesIO(read_shared_file(self.jobStore, sharedFileName))


class NoSuchImportError(FlowError, FileNotFoundError):
    """importFile of a file that does not exist (Toil raises FileNotFoundError)."""

    def __init__(self, url: str) -> None:
        super().__init__(f"cannot import {url!r}: no such file")
        self.url = url


#: Prefix of job-store shared records holding files imported under a ``sharedFileName``.
USER_SHARED_PREFIX = "user-shared."
#: A message that is a named user stream (log_user_stream), not a log line.
USER_STREAM_TAG = "STREAM:"


def import_to_store(store: JobStore, url: str, shared_name: str | None, check_existence: bool,
                    link: bool = False) -> FileID | None:
    """Toil's importFile: a file id, or None for a shared file or (unchecked) a missing one."""
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme in ("", "file"):
        path = urllib.parse.unquote(parsed.path) if parsed.scheme == "file" else url
        if not os.path.isfile(path):
            if not check_existence:
                return None
            raise NoSuchImportError(url)
    if shared_name is not None:
        file_id = import_url(store, url)
        try:
            with store.read_file_stream(file_id) as handle:
                store.write_shared(USER_SHARED_PREFIX + shared_name, handle.read())
        finally:
            store.delete_file(file_id)
        return None
    file_id = import_url(store, url, link=link)
    return FileID(file_id, store.file_size(file_id))


def read_shared_file(store: JobStore, name: str) -> bytes:
    data = store.read_shared(USER_SHARED_PREFIX + name)
    if data is None:
        raise FileNotFoundError(errno.ENOENT, f"the job store has no shared file {name!r}", name)
    return data
