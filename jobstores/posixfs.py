"""POSIX helpers of the file job store (``flow.jobstores.file``): private files and folders,
temporary names, fsync of a path, and handing a file over by rename or hard link."""

from __future__ import annotations

import base64
import os
import stat
from contextlib import suppress
from typing import IO

from flow.jobstores.leases import release as release_lease
from flow.jobstores.leases import take_write_lease

#: Prefix of the temporary files every write goes through (every listing ignores them).
TMP_PREFIX = ".tmp-"


def token() -> str:
    """16 lowercase base32 characters (80 random bits): unique across processes and hosts,
    and safe on case-insensitive file systems."""
    return base64.b32encode(os.urandom(10)).decode("ascii").lower()


def tmp_path(directory: str) -> str:
    return f"{directory}/{TMP_PREFIX}{os.getpid()}-{os.urandom(6).hex()}"


def mkdir_private(path: str) -> None:
    with suppress(FileExistsError):
        os.mkdir(path, 0o700)


def current_umask() -> int:
    """This process's umask, read without changing it (os.umask would, for every thread)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o022


def unlink_quiet(path: str) -> None:
    with suppress(FileNotFoundError):
        os.unlink(path)


def fsync_path(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def open_new(path: str) -> IO[bytes]:
    """A new file, readable by its owner only (records may hold what a user would not share)."""
    return os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb")


def read_or_none(path: str) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return None


def rename_unshared(fd: int, local_path: str, target: str) -> bool:
    """Rename ``local_path`` (open as ``fd``) to ``target`` if it is a regular file with one
    name and no other open descriptor, the write lease on it kept (the caller releases
    it); False, with nothing changed and no lease, otherwise."""
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
        return False
    if take_write_lease(fd) != "taken":  # open elsewhere, or no way to tell
        return False
    try:
        try:
            os.rename(local_path, target)
        except FileNotFoundError:
            if not os.path.lexists(local_path):
                raise
            mkdir_private(os.path.dirname(target))  # a flat file's shard, not made yet
            os.rename(local_path, target)
    except OSError:  # another file system (EXDEV), ...
        release_lease(fd)
        return False
    return True


def link_into(local_path: str, target: str) -> bool:
    """Hard-link ``local_path`` as ``target`` (its shard made if missing); False where that
    cannot be done (cross-device, no hard links, ...): copy instead."""
    for _ in range(2):
        try:
            os.link(local_path, target)
            return True
        except FileNotFoundError:
            if not os.path.exists(local_path):
                return False
            mkdir_private(os.path.dirname(target))
        except OSError:
            return False
    return False
