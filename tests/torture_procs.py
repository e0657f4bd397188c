"""Process bookkeeping for the torture suite: every process it starts, and theirs, found and ended.

The suite makes itself a child subreaper (Linux ``PR_SET_CHILD_SUBREAPER``), so a pool worker
orphaned by a killed leader becomes its child instead of init's: "every descendant of this
process" then covers each leader, its workers in their own sessions, and the commands they run,
even after a kill -9. They are read from /proc.
"""

from __future__ import annotations

import ctypes
import os
import signal
import time
from collections.abc import Callable

PR_SET_CHILD_SUBREAPER = 36


class ProcessError(Exception):
    """A process the suite started did not end when it should have."""


def become_subreaper() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise ProcessError(f"prctl(PR_SET_CHILD_SUBREAPER) failed: {os.strerror(ctypes.get_errno())}")


def _stat(pid: int) -> tuple[str, int, int] | None:
    """(state, parent pid, session id) of a process, or None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rpartition(")")[2].split()
    except (OSError, IndexError):
        return None
    return fields[0], int(fields[1]), int(fields[3])


def parent_of(pid: int) -> int | None:
    stat = _stat(pid)
    return None if stat is None or stat[0] == "Z" else stat[1]


def session_of(pid: int) -> int | None:
    stat = _stat(pid)
    return None if stat is None or stat[0] == "Z" else stat[2]


def alive(pid: int) -> bool:
    stat = _stat(pid)
    return stat is not None and stat[0] not in ("Z", "X")


def descendants(root: int | None = None) -> dict[int, int]:
    """pid -> parent pid of every live process below ``root`` (default: this process)."""
    root = os.getpid() if root is None else root
    children: dict[int, list[int]] = {}
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _stat(int(entry))
            if stat is not None and stat[0] not in ("Z", "X"):
                children.setdefault(stat[1], []).append(int(entry))
                parents[int(entry)] = stat[1]
    out: dict[int, int] = {}
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            out[child] = parents[child]
            todo.append(child)
    return out


def reap_orphans(keep: set[int]) -> None:
    """Wait for exited children of this process that are not ``keep`` (orphans handed to us)."""
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) not in keep:
            stat = _stat(int(entry))
            if stat is not None and stat[1] == os.getpid() and stat[0] == "Z":
                try:
                    os.waitpid(int(entry), os.WNOHANG)
                except ChildProcessError:
                    pass


def command_line(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read().replace(b"\0", b" ").decode(errors="replace").strip()[:200]
    except OSError:
        return "?"


def wait_for(condition: Callable[[], bool], deadline: float, what: str, poll: float = 0.02) -> None:
    """Poll ``condition`` until it holds; ProcessError naming ``what`` after ``deadline`` seconds."""
    end = time.monotonic() + deadline
    while not condition():
        if time.monotonic() > end:
            raise ProcessError(f"timed out after {deadline:g} s waiting for {what}")
        time.sleep(poll)


def wait_all_gone(keep: set[int], deadline: float, what: str) -> None:
    """Wait until no process below this one is left (reaping orphans); ProcessError naming the
    survivors after ``deadline`` seconds."""
    end = time.monotonic() + deadline
    while True:
        reap_orphans(keep)
        left = descendants()
        if not left:
            return
        if time.monotonic() > end:
            names = "; ".join(f"{pid} ({command_line(pid)})" for pid in sorted(left))
            raise ProcessError(f"{what}: still running after {deadline:g} s: {names}")
        time.sleep(0.05)


def kill_everything(keep: set[int]) -> None:
    """SIGKILL every process below this one (each process and its group), then reap orphans."""
    for _ in range(50):
        left = descendants()
        if not left:
            break
        for pid in left:
            for kill in (os.killpg, os.kill):
                try:
                    kill(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
        time.sleep(0.05)
        reap_orphans(keep)
