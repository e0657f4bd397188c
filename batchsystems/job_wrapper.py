"""The job wrapper: what an HPC batch system's job runs on the compute node.

``python -m flow.batchsystems.job_wrapper [--time-limit=S] [--marker=PATH] -- module:fn arg...``
makes itself a process group, calls the worker function in-process, enforces the job's precise
time limit (the scheduler's own limit is rounded up to minutes, with a margin), and kills what the
call left behind in its process group. At the time limit it writes the marker file (so that the
leader can tell the wrapper's limit from an exit status the job chose) and exits with
:data:`TIME_LIMIT_EXIT`. The leader side (:mod:`flow.batchsystems.hpc`) builds the command line
with :func:`job_command`; this module imports nothing of the leader's, to start fast.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

import psutil

from flow.batchsystems import call

#: Exit status of a job that the job wrapper ended at its time limit (as coreutils' timeout).
TIME_LIMIT_EXIT = 124
MODULE = "flow.batchsystems.job_wrapper"


def job_command(
    python: str, function: str, args: Sequence[str], time_limit: float | None, marker: str | None
) -> list[str]:
    """The command line of the job wrapper that calls ``function(*args)`` in a scheduler job."""
    options = []
    if time_limit is not None:
        options.append(f"--time-limit={time_limit!r}")
        if marker:
            options.append(f"--marker={marker}")
    return [python, "-m", MODULE, *options, "--", function, *args]


def _kill_group_members() -> None:
    """SIGKILL every other process in this process group (what the call left behind)."""
    me = os.getpid()
    group = os.getpgid(0)
    for pid in psutil.pids():
        if pid == me:
            continue
        try:
            if os.getpgid(pid) == group:
                os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def _time_is_up(limit: float, marker: str | None) -> None:
    print(f"flow: the job exceeded its time limit of {limit:g} s and was ended", file=sys.stderr)
    call.flush_std_streams()
    _kill_group_members()
    if marker:
        try:
            Path(marker).write_text(f"{limit!r}\n")
        except OSError as exc:
            print(f"flow: could not write the time-limit marker {marker}: {exc}", file=sys.stderr)
    os._exit(TIME_LIMIT_EXIT)


def job_main(argv: Sequence[str]) -> int:
    """``python -m flow.batchsystems.job_wrapper [--time-limit=S] [--marker=PATH] -- module:fn arg...``"""
    argv = list(argv)
    limit: float | None = None
    marker: str | None = None
    while argv and argv[0] != "--":
        option, _, value = argv.pop(0).partition("=")
        if option == "--time-limit":
            limit = float(value)
        elif option == "--marker":
            marker = value
        else:
            print(f"flow job wrapper: unknown option {option}", file=sys.stderr)
            return 2
    if len(argv) < 2:
        print("usage: python -m flow.batchsystems.job_wrapper [options] -- module:function [arg ...]",
              file=sys.stderr)
        return 2
    try:
        os.setpgid(0, 0)  # our own group, so that leftovers can be found and killed
    except PermissionError:
        pass  # a session leader already leads its own group
    timer = None
    if limit is not None:
        timer = threading.Timer(max(0.0, limit), _time_is_up, (limit, marker))
        timer.daemon = True
        timer.start()
    code = call.call_function(argv[1], argv[2:])
    if timer is not None:
        timer.cancel()
    call.flush_std_streams()
    _kill_group_members()
    return code


if __name__ == "__main__":
    sys.exit(job_main(sys.argv[1:]))
