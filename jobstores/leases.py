"""Write leases (``fcntl(F_SETLEASE, F_WRLCK)``): whether any other descriptor of a file is open
anywhere, asked in microseconds. Linux grants a write lease only to a file's one open
descriptor; a process that opens the file while the lease is held waits until it is released,
and the holder gets a signal. Used by the file job store before it takes a file over, and by
flow-wdl before it reuses a call's stdout for the next call."""

from __future__ import annotations

import errno
import fcntl
import signal


def take_write_lease(fd: int) -> str:
    """A write lease on ``fd``'s file: "taken" (release it with :func:`release`), "held" when
    another descriptor of the file is open anywhere, "none" where the file system grants no
    leases (NFS, ...) or the file is not this user's. The signal a lease break sends is
    SIGWINCH, ignored unless handled, instead of the default SIGIO, which would end the
    process."""
    try:
        fcntl.fcntl(fd, fcntl.F_SETSIG, signal.SIGWINCH)
        fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_WRLCK)
    except OSError as exc:
        if exc.errno in (errno.EAGAIN, errno.EBUSY):
            return "held"
        if exc.errno in (errno.EINVAL, errno.ENOLCK, errno.EACCES, errno.EPERM):
            return "none"
        raise
    return "taken"


def release(fd: int) -> None:
    fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_UNLCK)
