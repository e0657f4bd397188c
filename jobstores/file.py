"""The file job store: one directory on a local or shared POSIX file system.

Layout under the store root (mode 0700; every directory 0700, every record 0600)::

    flow-jobstore.json                   marker, written last by ``create``
    flow-jobstore.deleting               the marker, renamed there by ``destroy`` where the
                                         store cannot be renamed away first (see ``destroy``)
    leader.lock, leader.lock.mutex       the leader lock (see ``acquire_lock``)
    jobs/<id[:2]>/<id>.job|.body|.result|.log
    files/<tok[0]>/<tok>.<basename>      file id "<tok[:2]>/<tok>/<basename>" (format version 2;
                                         a name too long for that, and every file of a version
                                         1 store: files/<tok[:2]>/<tok>/<basename>)
    shared/<name>
    stats/<tok[:2]>/<tok>.rec            one file per record

Every write goes to a hidden temp file (``.tmp-<pid>-<random>``) in the target's directory and is
renamed over the target, so readers see the old or the new bytes and a killed process leaves the
old value (plus at worst a stray temp file, which every listing ignores). The one exception is
``append_shared``, for logs of many small entries: it appends in place (O_APPEND), and its readers
skip an entry a killed writer left cut short. Shard directories are
made lazily: a write tries first and makes the missing shard only on FileNotFoundError, so the hot
path costs no extra ``stat``/``mkdir``, and a store destroyed under a worker is never re-created.

Version 2 stores a file beside others instead of in a directory of its own, in one of 32
directories (by the token's first letter; version 1 had a directory per file in one of 1,024):
making and removing those directories was most of what storing a small file cost (on this
project's ext4 a ``mkdir`` costs 0.1 to 2 ms, an ``rmdir`` soon after up to 4 ms of journal
waits), and a scatter stores thousands of small files. File ids are the same in both versions;
a store keeps the version it was created with.

Stored files are immutable: no path outside the store shares an inode with a stored file, so
nothing a job does to a path it holds (append, truncate, write through a link: as root too, whom
permissions do not stop) changes what later jobs read and what is exported. ``write_file`` and
``read_file`` therefore copy, through ``flow.jobstores.copying.copy_data``: a reflink where the
file system has copy-on-write extents (XFS, btrfs: no data copied), else an in-kernel
``copy_file_range``. Before issue 18 both hard-linked; ``benchmarks/filestore_immutability.py``
prints what the copies cost: 1 to 7 s per GiB each way on this project's ext4 test machine, by
how busy the disk is, and about twice the time of a link for small files. Read-only permissions
would not stop root, and the immutable attribute (``chattr +i``) needs root and forbids hard
links to the file anyway. A stored file is only ever replaced by a rename (``update_file``),
never written in place.

The one exception is ``write_file(link=True)``, used only for ``--linkImports``: the user
promises not to change their input files during the run, so the store hard-links the file
itself (no copy of a large input) and the stored copy is the user's file. Jobs still read copies.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import shutil
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import IO

from flow.jobstores.abstract import (
    CorruptJobStoreError,
    JobStore,
    JobStoreDeletingError,
    JobStoreError,
    JobStoreExistsError,
    JobStoreLockedError,
    JobStoreWriteError,
    NoSuchFileError,
    NoSuchJobError,
    NoSuchJobStoreError,
)
from flow.jobstores.copying import copy_data
from flow.jobstores.leases import release as release_lease
from flow.jobstores.leases import take_write_lease
from flow.jobstores.placement import spread_subdirectories
from flow.jobstores.posixfs import (
    TMP_PREFIX,
    current_umask,
    fsync_path,
    link_into,
    mkdir_private,
    open_new,
    read_or_none,
    rename_unshared,
    tmp_path,
    token,
    unlink_quiet,
)
from flow.jobstores.registry import split_locator
from flow.jobstores.removal import remove_trees

MARKER = "flow-jobstore.json"
DELETING = "flow-jobstore.deleting"
LOCK = "leader.lock"
FORMAT = "flow-file-jobstore"
VERSION = 2
#: The first version storing files as files/<letter>/<token>.<basename> (see the module docstring).
FLAT_FILES = 2
#: The longest file name most file systems allow (NAME_MAX).
_NAME_MAX = 255
_SUBDIRS = ("jobs", "files", "shared", "stats")
_JOB_SUFFIXES = (".job", ".body", ".result", ".log")
_JOB_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")
_TOKEN = re.compile(r"[a-z2-7]{16}")
#: A file id inside a longer text: its shard and token identify the file; the base name runs
#: to the end of the text or the next '/' (a URI may go on with more path).
_FILE_ID_IN = re.compile(r"(?<![a-z2-7])([a-z2-7]{2})/(\1[a-z2-7]{14})/([^/\x00]*)")
_FOREIGN = (
    "{root} is not empty but has no " + MARKER + " marker, so it is not a flow job store "
    "(or its creation was interrupted); refusing to touch it."
)
_DELETING = (
    "{root} was being deleted when that was interrupted (it has " + DELETING + " instead of "
    + MARKER + "); finish the deletion with 'flow clean'."
)
_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,199}")


def _check_basename(name: str) -> str:
    if name in ("", ".", "..") or "/" in name or "\0" in name:
        raise ValueError(f"invalid file base name {name!r}")
    return name


def _marker_problem(raw: bytes) -> str | int:
    """What is wrong with the marker's content, or the store's format version."""
    try:
        info = json.loads(raw)
    except ValueError:
        return "is not valid JSON"
    if not isinstance(info, dict) or info.get("format") != FORMAT:
        return f"does not describe a {FORMAT} store"
    version = info.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        return f"has an invalid version {version!r}"
    if version > VERSION:
        return f"has format version {version}, newer than the version {VERSION} this flow reads"
    return version


class FileJobStore(JobStore):
    """A job store in a directory; see the module docstring for the layout."""

    scheme = "file"
    #: fsync every write (and its directory). Off by default: process crashes are safe without it.
    fsync: bool = False

    def __init__(self, locator: str, fsync: bool | None = None, version: int = VERSION) -> None:
        super().__init__(locator)
        self.root = self._root(locator)
        if fsync is not None:
            self.fsync = fsync
        self.version = version
        self._jobs = f"{self.root}/jobs"
        self._files = f"{self.root}/files"
        self._shared = f"{self.root}/shared"
        self._stats = f"{self.root}/stats"

    @staticmethod
    def _root(locator: str) -> str:
        _, path = split_locator(locator)
        if not path:
            raise ValueError(f"job store locator {locator!r} names no directory")
        return os.path.abspath(os.path.expanduser(path))

    # ---- lifecycle -----------------------------------------------------------------------------
    @staticmethod
    def _inspect(root: str) -> str:
        """What is at ``root``: "store", "deleting", "missing", "not-dir", "empty" or "foreign"."""
        if os.path.lexists(f"{root}/{MARKER}"):
            return "store"
        if os.path.lexists(f"{root}/{DELETING}"):
            return "deleting"
        if not os.path.lexists(root):
            return "missing"
        if not os.path.isdir(root):
            return "not-dir"
        with os.scandir(root) as entries:
            return "foreign" if next(entries, None) is not None else "empty"

    @classmethod
    def create(cls, locator: str) -> FileJobStore:
        root = cls._root(locator)
        cls._sweep_trash(root)
        try:
            cls._make_root(locator, root)
            spread_subdirectories(root)
            for sub in _SUBDIRS:
                mkdir_private(f"{root}/{sub}")
            for sub in ("files", "jobs"):  # their shards: see flow.jobstores.placement
                spread_subdirectories(f"{root}/{sub}")
        except OSError as exc:  # read-only file system, no permission, a parent is a file, ...
            raise JobStoreError(
                locator, f"cannot create a job store at {root}: {exc.strerror or exc}."
            ) from None
        store = cls(locator)
        store._write_marker()
        return store

    @classmethod
    def _make_root(cls, locator: str, root: str) -> None:
        try:
            os.makedirs(root, mode=0o700)
        except FileExistsError:
            state = cls._inspect(root)
            if state == "store":
                raise JobStoreExistsError(
                    locator, f"a job store already exists at {root}."
                ) from None
            if state == "deleting":
                raise JobStoreDeletingError(locator, _DELETING.format(root=root)) from None
            if state != "empty":
                raise CorruptJobStoreError(locator, _FOREIGN.format(root=root)) from None
        os.chmod(root, 0o700)

    def _write_marker(self) -> None:
        """Write the marker last and exclusively (a hard link fails if it exists)."""
        marker = f"{self.root}/{MARKER}"
        tmp = tmp_path(self.root)
        try:
            with open_new(tmp) as f:
                f.write(json.dumps({"format": FORMAT, "version": VERSION}).encode())
            try:
                os.link(tmp, marker)
            except FileExistsError:
                raise JobStoreExistsError(
                    self.locator, f"a job store already exists at {self.root}."
                ) from None
            except OSError:  # no hard links on this file system: best effort
                os.replace(tmp, marker)
        finally:
            unlink_quiet(tmp)
        if self.fsync:
            fsync_path(marker)
            fsync_path(self.root)

    @classmethod
    def open(cls, locator: str) -> FileJobStore:
        root = cls._root(locator)
        marker = f"{root}/{MARKER}"
        try:
            with open(marker, "rb") as f:
                raw = f.read()
        except (FileNotFoundError, NotADirectoryError):
            state = cls._inspect(root)
            if state == "deleting":
                raise JobStoreDeletingError(locator, _DELETING.format(root=root)) from None
            if state == "missing":
                cls._sweep_trash(root)
                raise NoSuchJobStoreError(locator, f"there is no job store at {root}.") from None
            if state == "empty":
                raise NoSuchJobStoreError(locator, f"{root} is an empty directory.") from None
            raise CorruptJobStoreError(locator, _FOREIGN.format(root=root)) from None
        except OSError as e:
            raise CorruptJobStoreError(
                locator, f"the marker {marker} cannot be read ({e.strerror})."
            ) from None
        problem = _marker_problem(raw)
        if isinstance(problem, str):
            raise CorruptJobStoreError(locator, f"the marker {marker} {problem}.")
        return cls(locator, version=problem)

    @classmethod
    def exists(cls, locator: str) -> bool:
        return os.path.isfile(f"{cls._root(locator)}/{MARKER}")

    def destroy(self) -> None:
        """Delete everything, so that a destroy cut short (kill -9 in end-of-run cleanup) never
        leaves a partial store to be taken for one that was never started.

        The store is first renamed, in one step, to a hidden sibling (``.NAME.flow-deleting-*``)
        and deleted there: the store is whole or gone, and whoever next creates or opens the
        locator finishes deleting such leftovers. Where it cannot be renamed (a mount point, a
        parent it may not write), the marker is renamed to ``DELETING`` instead: ``open`` then
        says what happened and a repeated destroy finishes the job; that marker goes last."""
        state = self._inspect(self.root)
        if state in ("not-dir", "foreign"):
            raise CorruptJobStoreError(
                self.locator, f"refusing to delete {self.root}: it has no {MARKER} marker."
            )
        if state in ("store", "deleting"):
            trash = f"{self._trash_prefix(self.root)}{token()}"
            try:
                os.rename(self.root, trash)
            except OSError:
                pass
            else:
                remove_trees([trash])
                return
        if state == "store":
            os.replace(f"{self.root}/{MARKER}", f"{self.root}/{DELETING}")
            state = "deleting"
        if state == "deleting":
            with os.scandir(self.root) as entries:
                listed = list(entries)
            for entry in listed:
                if not entry.is_dir(follow_symlinks=False) and entry.name != DELETING:
                    unlink_quiet(entry.path)
            remove_trees(e.path for e in listed if e.is_dir(follow_symlinks=False))
            unlink_quiet(f"{self.root}/{DELETING}")
        with suppress(FileNotFoundError):
            shutil.rmtree(self.root)

    @staticmethod
    def _trash_prefix(root: str) -> str:
        parent, name = os.path.split(root)
        return f"{parent}/.{name}.flow-deleting-"

    @classmethod
    def _sweep_trash(cls, root: str) -> None:
        """Finish deleting what an interrupted destroy of the store at ``root`` left (only
        directories that hold a flow marker: nothing else is ever touched)."""
        prefix = cls._trash_prefix(root)
        parent, start = os.path.dirname(prefix), os.path.basename(prefix)
        try:
            with os.scandir(parent) as entries:
                leftovers = [e.path for e in entries if e.name.startswith(start) and e.is_dir(follow_symlinks=False)]
        except OSError:
            return
        for path in leftovers:
            if os.path.lexists(f"{path}/{MARKER}") or os.path.lexists(f"{path}/{DELETING}"):
                remove_trees([path])

    # ---- the leader lock -----------------------------------------------------------------------
    @contextmanager
    def _lock_mutex(self) -> Iterator[None]:
        """Serialise lock changes: an flock on a file beside the lock (NFS clients map it to
        POSIX locks). Held for a few system calls only."""
        fd = os.open(f"{self.root}/{LOCK}.mutex", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the flock

    def acquire_lock(self, owner: str, may_take: Callable[[str], bool]) -> None:
        path = f"{self.root}/{LOCK}"
        try:
            with self._lock_mutex():
                holder = read_or_none(path)
                if holder is not None and holder.decode(errors="replace") != owner:
                    text = holder.decode(errors="replace")
                    if not may_take(text):
                        raise JobStoreLockedError(
                            self.locator, text, f"another leader holds its lock ({text})."
                        )
                self._write_atomic(path, owner.encode())
        except OSError as exc:
            if isinstance(exc, JobStoreError):
                raise
            raise JobStoreWriteError(self.locator, f"the lock {path}", exc) from None

    def release_lock(self, owner: str) -> None:
        path = f"{self.root}/{LOCK}"
        with suppress(FileNotFoundError), self._lock_mutex():
            holder = read_or_none(path)
            if holder is not None and holder.decode(errors="replace") == owner:
                unlink_quiet(path)

    def lock_holder(self) -> str | None:
        raw = read_or_none(f"{self.root}/{LOCK}")
        return None if raw is None else raw.decode(errors="replace")

    # ---- atomic writes -------------------------------------------------------------------------
    def _write_atomic(self, path: str, data: bytes = b"", copy_from: str | IO[bytes] | None = None) -> None:
        """Write ``data`` (or a copy of the local file ``copy_from``, a path or an open file
        read from where it stands, left open) to ``path`` atomically.

        A failure of the store's own file system (no space, read-only, I/O error) is a
        JobStoreWriteError naming the item; one reading ``copy_from`` stays the OSError it is."""
        src = open(copy_from, "rb") if isinstance(copy_from, str) else copy_from
        try:
            self._write_tmp_and_replace(path, data, src)
        except JobStoreError:
            raise
        except OSError as exc:
            raise JobStoreWriteError(self.locator, os.path.relpath(path, self.root), exc) from exc
        finally:
            if isinstance(copy_from, str) and src is not None:
                src.close()

    def _write_tmp_and_replace(self, path: str, data: bytes, src: IO[bytes] | None) -> None:
        directory = os.path.dirname(path)
        tmp = tmp_path(directory)
        try:
            f = open_new(tmp)
        except FileNotFoundError:  # shard directory not made yet
            mkdir_private(directory)
            f = open_new(tmp)
        done = False
        try:
            with f:
                if src is None:
                    f.write(data)
                else:
                    copy_data(src.fileno(), f.fileno())
                if self.fsync:
                    f.flush()
                    os.fsync(f.fileno())
            os.replace(tmp, path)
            done = True
        finally:
            if not done:
                unlink_quiet(tmp)
        if self.fsync:
            fsync_path(directory)

    # ---- shared records ------------------------------------------------------------------------
    def _shared_path(self, name: str) -> str:
        if _NAME.fullmatch(name) is None:
            raise ValueError(f"invalid shared record name {name!r}")
        return f"{self._shared}/{name}"

    def write_shared(self, name: str, data: bytes) -> None:
        self._write_atomic(self._shared_path(name), data)

    def read_shared(self, name: str) -> bytes | None:
        return read_or_none(self._shared_path(name))

    def delete_shared(self, name: str) -> None:
        unlink_quiet(self._shared_path(name))

    def append_shared(self, name: str, data: bytes) -> None:
        # O_APPEND: each write lands whole at the end, also with concurrent appenders.
        path = self._shared_path(name)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                if self.fsync:
                    os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise JobStoreWriteError(self.locator, os.path.relpath(path, self.root), exc) from exc

    # ---- jobs ----------------------------------------------------------------------------------
    def _job_base(self, job_id: str) -> str | None:
        """Path of the job's files without suffix, or None for an id that cannot be ours."""
        if _JOB_ID.fullmatch(job_id) is None:
            return None
        return f"{self._jobs}/{job_id[:2]}/{job_id}"

    def _job_write(self, job_id: str, suffix: str, data: bytes) -> None:
        base = self._job_base(job_id)
        if base is None:
            raise ValueError(f"invalid job id {job_id!r}")
        self._write_atomic(base + suffix, data)

    def _job_read(self, job_id: str, suffix: str) -> bytes | None:
        base = self._job_base(job_id)
        return None if base is None else read_or_none(base + suffix)

    def new_job_id(self) -> str:
        return token()

    def write_job(self, job_id: str, description: bytes) -> None:
        self._job_write(job_id, ".job", description)

    def read_job(self, job_id: str) -> bytes:
        data = self._job_read(job_id, ".job")
        if data is None:
            raise NoSuchJobError(self.locator, job_id)
        return data

    def job_exists(self, job_id: str) -> bool:
        base = self._job_base(job_id)
        return base is not None and os.path.exists(base + ".job")

    def delete_job(self, job_id: str) -> None:
        base = self._job_base(job_id)
        if base is not None:
            for suffix in _JOB_SUFFIXES:
                unlink_quiet(base + suffix)

    def list_jobs(self) -> Iterator[str]:
        for name in self._walk_shards(self._jobs, ".job"):
            yield name[:-4]

    def write_body(self, job_id: str, body: bytes) -> None:
        self._job_write(job_id, ".body", body)

    def read_body(self, job_id: str) -> bytes:
        data = self._job_read(job_id, ".body")
        if data is None:
            raise NoSuchJobError(self.locator, job_id)
        return data

    def write_result(self, job_id: str, result: bytes) -> None:
        self._job_write(job_id, ".result", result)

    def read_result(self, job_id: str) -> bytes | None:
        return self._job_read(job_id, ".result")

    def write_log(self, job_id: str, text: bytes) -> None:
        self._job_write(job_id, ".log", text)

    def read_log(self, job_id: str) -> bytes | None:
        return self._job_read(job_id, ".log")

    @staticmethod
    def _walk_shards(top: str, suffix: str) -> Iterator[str]:
        """Names ending in ``suffix`` one shard level below ``top`` (temp files skipped)."""
        with os.scandir(top) as shards:
            shard_paths = [e.path for e in shards if e.is_dir(follow_symlinks=False)]
        for shard in shard_paths:
            try:
                with os.scandir(shard) as entries:
                    names = [e.name for e in entries]
            except FileNotFoundError:
                continue
            for name in names:
                if name.endswith(suffix) and not name.startswith("."):
                    yield name

    # ---- global files --------------------------------------------------------------------------
    def _file_path(self, file_id: str) -> str | None:
        """The stored path of a well-formed file id, else None (no traversal possible)."""
        parts = file_id.split("/")
        if len(parts) != 3:
            return None
        shard, tok, base = parts
        if _TOKEN.fullmatch(tok) is None or shard != tok[:2]:
            return None
        if base in ("", ".", "..") or "\0" in base:
            return None
        return f"{self._files}/{tok[0]}/{tok}.{base}" if self._flat(tok, base) else f"{self._files}/{file_id}"

    def _flat(self, tok: str, basename: str) -> bool:
        """Whether the file is stored beside others, not in a directory of its own (see the
        module docstring)."""
        return self.version >= FLAT_FILES and len(f"{tok}.{basename}".encode(errors="surrogateescape")) <= _NAME_MAX

    def _valid_file_path(self, file_id: str) -> str:
        path = self._file_path(file_id)
        if path is None:
            raise NoSuchFileError(self.locator, file_id)
        return path

    def _new_file(self, basename: str) -> tuple[str, str, str | None]:
        """A fresh file id; its path; the directory made for it alone (None: stored flat, its
        shard made when first written to)."""
        _check_basename(basename)
        tok = token()
        file_id = f"{tok[:2]}/{tok}/{basename}"
        if self._flat(tok, basename):
            return file_id, f"{self._files}/{tok[0]}/{tok}.{basename}", None
        directory = f"{self._files}/{tok[:2]}/{tok}"
        try:
            os.mkdir(directory, 0o700)
        except FileNotFoundError:
            mkdir_private(f"{self._files}/{tok[:2]}")
            os.mkdir(directory, 0o700)
        return file_id, f"{directory}/{basename}", directory

    def write_file(self, local_path: str, job_id: str | None = None, link: bool = False) -> str:
        # job_id is not recorded: the contract has no per-job file listing or cleanup call yet.
        file_id, target, directory = self._new_file(os.path.basename(local_path))
        done = False
        try:
            if link:  # --linkImports only: see the module docstring
                done = link_into(local_path, target)
            if not done:
                self._write_atomic(target, copy_from=local_path)
                done = True
        finally:
            if not done and directory is not None:
                with suppress(OSError):
                    os.rmdir(directory)
        return file_id

    def move_file(self, local_path: str, job_id: str | None = None) -> str:
        """Rename the file into the store (made private, 0600) when nothing else can reach it
        afterwards: a regular file with no other name that no process holds open. The last is
        checked with a write lease (``F_SETLEASE``: granted only when no other descriptor of
        the file is open anywhere; a few microseconds), held across the rename, so a process
        a tool left running cannot go on writing into a stored file. Stored files stay
        immutable (see the module docstring) and no data is copied. Anything else (another
        hard link, a symlink, an open file, another file system, no lease support) is copied."""
        basename = os.path.basename(local_path)
        file_id, target, directory = self._new_file(basename)
        try:
            fd = os.open(local_path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:  # a symlink (ELOOP), a FIFO or device that would block, ...
            fd = -1
        try:
            if fd >= 0 and rename_unshared(fd, local_path, target):
                if fcntl.fcntl(fd, fcntl.F_GETLEASE) == fcntl.F_WRLCK:
                    return self._moved(fd, file_id, target)
                # A process began to open the file by its old name during the rename: once the
                # lease goes it holds the stored file. Store a copy (the content cannot have
                # changed: the opener waits for the lease) and let it have the moved one.
                # Read through our own descriptor: opening the file again would wait for the
                # lease like the other opener (lease-break-time, 45 s by default).
                copy_id, copy_target, _ = self._new_file(basename)
                with os.fdopen(os.dup(fd), "rb") as source:
                    self._write_atomic(copy_target, copy_from=source)
                os.unlink(target)
                return copy_id
        finally:
            if fd >= 0:
                with suppress(OSError):
                    release_lease(fd)
                os.close(fd)
        if directory is not None:
            with suppress(OSError):
                os.rmdir(directory)
        return super().move_file(local_path, job_id)

    def _moved(self, fd: int, file_id: str, target: str) -> str:
        with suppress(OSError):
            os.fchmod(fd, 0o600)
        if self.fsync:
            os.fsync(fd)
            fsync_path(os.path.dirname(target))
        return file_id

    @contextmanager
    def write_file_stream(
        self, job_id: str | None = None, basename: str | None = None
    ) -> Iterator[tuple[IO[bytes], str]]:
        file_id, target, directory = self._new_file("stream" if basename is None else basename)
        tmp = tmp_path(os.path.dirname(target))
        done = False
        try:
            try:
                handle = open_new(tmp)
            except FileNotFoundError:  # a flat file's shard, not made yet
                mkdir_private(os.path.dirname(target))
                handle = open_new(tmp)
            with handle as f:
                yield f, file_id
                if self.fsync:
                    f.flush()
                    os.fsync(f.fileno())
            self._publish_stream(tmp, target)
            done = True
        finally:
            if not done:
                unlink_quiet(tmp)
                if directory is not None:
                    with suppress(OSError):
                        os.rmdir(directory)

    def _publish_stream(self, tmp: str, target: str) -> None:
        """Rename a finished stream's file into place, unless a descriptor of it is still open
        (the job duplicated the stream's, or a process it started inherited it): that one
        could write into the stored file later, so the store keeps a copy made now instead.
        A write lease (``F_SETLEASE``, granted only when no other descriptor of the file is
        open anywhere) tells, in microseconds; where the file system has no leases (EINVAL:
        NFS, ...), the file is renamed as before."""
        fd = os.open(tmp, os.O_RDONLY)
        try:
            lease = take_write_lease(fd)
            if lease == "held":
                self._write_atomic(target, copy_from=tmp)
                unlink_quiet(tmp)
                return
            try:
                os.replace(tmp, target)
            finally:
                if lease == "taken":
                    release_lease(fd)
        finally:
            os.close(fd)

    def update_file(self, file_id: str, local_path: str) -> None:
        path = self._valid_file_path(file_id)
        if not os.path.isfile(path):
            raise NoSuchFileError(self.locator, file_id)
        self._write_atomic(path, copy_from=local_path)

    def read_file(self, file_id: str, local_path: str) -> None:
        path = self._valid_file_path(file_id)
        try:
            src = open(path, "rb")  # held open: a concurrent update cannot change what we copy
        except FileNotFoundError:
            raise NoSuchFileError(self.locator, file_id) from None
        with src:
            dst = open(local_path, "xb")  # FileExistsError if it exists: nothing of ours to undo
            done = False
            try:
                with dst:
                    copy_data(src.fileno(), dst.fileno())
                    stored = os.fstat(src.fileno())
                    os.utime(dst.fileno(), ns=(stored.st_atime_ns, stored.st_mtime_ns))
                done = True
            finally:
                if not done:
                    unlink_quiet(local_path)

    def hand_over_file(self, file_id: str, local_path: str) -> None:
        """A hard link to the stored file, given the mode a copy would have (the store's own
        names are 0600), when ``local_path`` is on the store's file system and the store's is
        the file's only name; else a copy.
        Until the store is deleted the two names share the inode: callers hand over only
        what no job reads again (see the contract)."""
        path = self._valid_file_path(file_id)
        try:
            shared = os.stat(path).st_nlink != 1  # a --linkImports file is the user's own
            if not shared:
                os.link(path, local_path)
        except FileNotFoundError:
            if not os.path.exists(path):
                raise NoSuchFileError(self.locator, file_id) from None
            raise
        except OSError as exc:
            if exc.errno in (errno.EEXIST, errno.ENOTDIR):
                raise
            shared = True  # another file system, no hard links, ...: copy
        if shared:
            self.read_file(file_id, local_path)
            return
        with suppress(OSError):
            os.chmod(local_path, 0o666 & ~current_umask())

    @contextmanager
    def read_file_stream(self, file_id: str) -> Iterator[IO[bytes]]:
        path = self._valid_file_path(file_id)
        try:
            f = open(path, "rb")
        except FileNotFoundError:
            raise NoSuchFileError(self.locator, file_id) from None
        with f:
            yield f

    def file_exists(self, file_id: str) -> bool:
        path = self._file_path(file_id)
        return path is not None and os.path.isfile(path)

    def file_size(self, file_id: str) -> int:
        try:
            return os.stat(self._valid_file_path(file_id)).st_size
        except FileNotFoundError:
            raise NoSuchFileError(self.locator, file_id) from None

    def delete_file(self, file_id: str) -> None:
        path = self._valid_file_path(file_id)
        unlink_quiet(path)
        if os.path.basename(os.path.dirname(path)) == file_id.split("/")[1]:  # a directory of its own
            with suppress(OSError):  # gone already, or holds a concurrent writer's temp file
                os.rmdir(os.path.dirname(path))

    def missing_files_in(self, text: str) -> Iterator[str]:
        texts = [text, urllib.parse.unquote(text)] if "%" in text else [text]
        seen: set[str] = set()
        for match in (m for t in texts for m in _FILE_ID_IN.finditer(t)):
            tok = match.group(2)
            if tok in seen:
                continue
            seen.add(tok)
            if not self._stored(tok, match.group(3)):
                yield match.group(0)

    def _stored(self, tok: str, base: str) -> bool:
        """Whether a file of token ``tok`` is stored; ``base``, its base name as the text had it,
        may run on past the name (then the flat files of its letter are looked through)."""
        try:
            with os.scandir(f"{self._files}/{tok[:2]}/{tok}") as entries:
                if any(not e.name.startswith(TMP_PREFIX) for e in entries):
                    return True
        except (FileNotFoundError, NotADirectoryError):
            pass
        if self.version < FLAT_FILES:
            return False
        if os.path.isfile(f"{self._files}/{tok[0]}/{tok}.{base}"):
            return True
        try:
            with os.scandir(f"{self._files}/{tok[0]}") as entries:
                return any(e.name.startswith(f"{tok}.") for e in entries)
        except (FileNotFoundError, NotADirectoryError):
            return False

    # ---- statistics ----------------------------------------------------------------------------
    def append_stats(self, record: bytes) -> None:
        tok = token()
        self._write_atomic(f"{self._stats}/{tok[:2]}/{tok}.rec", record)

    def read_stats(self) -> Iterator[bytes]:
        for name in self._walk_shards(self._stats, ".rec"):
            data = read_or_none(f"{self._stats}/{name[:2]}/{name}")
            if data is not None:
                yield data
