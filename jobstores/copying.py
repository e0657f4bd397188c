"""Copying a file's bytes as cheaply as the file system allows.

Stored files are never shared with a path a job holds (see ``flow.jobstores.file``), so every
write into the store and every read out of it is a copy. ``copy_data`` makes that copy:

1. a reflink (``FICLONE``): on file systems with copy-on-write extents (XFS with reflink, btrfs,
   bcachefs, OCFS2) the two files share blocks until one is written, so a 1 GiB copy costs one
   system call and no disk space;
2. ``copy_file_range``: the kernel copies without passing the bytes through this process, and
   some file systems (NFS 4.2, CIFS, Ceph) copy on the server;
3. plain ``read``/``write`` in 1 MiB chunks where neither is available.

What a file system does not support is remembered per device, so the cost of the failed attempt
is paid once per process and file system, not once per file (10,000 small files in a CWL scatter).
"""

from __future__ import annotations

import errno
import fcntl
import os

#: ``_IOW(0x94, 9, int)`` from <linux/fs.h>.
FICLONE = 0x40049409
_CHUNK = 1 << 20
_RANGE_CHUNK = 1 << 30
#: errnos that mean "this way of copying is not available here": fall back to the next one.
_UNSUPPORTED = frozenset(
    {errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOTTY, errno.EXDEV, errno.EINVAL, errno.ENOSYS,
     errno.EBADF, errno.EPERM}
)
_no_clone: set[tuple[int, int]] = set()  # (source, target) st_dev pairs without FICLONE
_no_range: set[tuple[int, int]] = set()  # ... without copy_file_range


def copy_data(src: int, dst: int) -> None:
    """Copy everything from file descriptor ``src`` (from offset 0) into the empty regular file
    open for writing at ``dst``."""
    source = os.fstat(src)
    devices = (source.st_dev, os.fstat(dst).st_dev)
    if devices not in _no_clone:
        try:
            fcntl.ioctl(dst, FICLONE, src)
            return
        except OSError as exc:
            if exc.errno not in _UNSUPPORTED:
                raise
            _no_clone.add(devices)
    if devices not in _no_range:
        copied = _copy_range(src, dst, source.st_size)
        if copied is None:
            _no_range.add(devices)
        elif copied > 0:
            return
    # Nothing copied yet. An empty file, or one of a pseudo file system (procfs, sysfs) whose
    # files read as data but copy as empty: one read says which.
    os.ftruncate(dst, 0)
    os.lseek(src, 0, os.SEEK_SET)
    os.lseek(dst, 0, os.SEEK_SET)
    while chunk := os.read(src, _CHUNK):
        view = memoryview(chunk)
        while view:
            view = view[os.write(dst, view):]


def _copy_range(src: int, dst: int, size: int) -> int | None:
    """``copy_file_range`` to the end of ``src`` (``size`` bytes when it was opened, more if it
    grew since): bytes copied, or None if it cannot be used here."""
    if not hasattr(os, "copy_file_range"):
        return None
    copied = 0
    while True:
        try:
            n = os.copy_file_range(src, dst, max(size - copied, _RANGE_CHUNK), copied, copied)
        except OSError as exc:
            if copied == 0 and exc.errno in _UNSUPPORTED:
                return None
            raise
        if n == 0:
            return copied
        copied += n
