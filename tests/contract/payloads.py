"""Worker-call payloads for the batch-system contract tests.

Each is ``function(*string_args) -> int`` and is called by a batch system's worker, so this module
must be importable there (the tests put the repository root on PYTHONPATH).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

MODULE = __name__


def ref(name: str) -> str:
    """The ``module:function`` spelling of a payload here."""
    return f"{MODULE}:{name}"


def succeed() -> int:
    return 0


def exit_with(code: str) -> int:
    return int(code)


def module_loaded(name: str) -> int:
    """3 if the worker has module ``name`` imported (it was forked from a leader that had), else 0."""
    return 3 if name in sys.modules else 0


def raise_system_exit(code: str) -> int:
    raise SystemExit(int(code))


def raise_error() -> int:
    raise RuntimeError("this payload fails on purpose")


def hard_exit(code: str) -> int:
    """Leave the process without unwinding (kills a pool worker)."""
    os._exit(int(code))


def kill_self(signum: str) -> int:
    os.kill(os.getpid(), int(signum))
    time.sleep(30)  # not reached
    return 0


def sleep(seconds: str) -> int:
    time.sleep(float(seconds))
    return 0


def touch(path: str) -> int:
    Path(path).write_text("ran\n")
    return 0


def record_interval(directory: str, name: str, seconds: str) -> int:
    """Write ``<start> <end>`` (time.time()) of a ``seconds`` long sleep to directory/name."""
    start = time.time()
    time.sleep(float(seconds))
    end = time.time()
    Path(directory, name).write_text(f"{start!r} {end!r}\n")
    return 0


def write_environment(name: str, path: str) -> int:
    """Write the value of environment variable ``name`` (or "<unset>") to ``path``."""
    Path(path).write_text(os.environ.get(name, "<unset>"))
    return 0


def chatty(marker: str) -> int:
    """Write to stdout in every way a job might, including bytes that look like protocol frames."""
    print("hello from a payload", marker)
    print("x" * 100_000)
    sys.stdout.flush()
    os.write(1, b"\x00\x00\x00\x05hello\x00\x00\x00\x00" + b"\x80\x04\x95" * 100)
    sys.stdout.buffer.write(b"\x00\x00\x00\x10 raw bytes on stdout\n")
    sys.stdout.flush()
    print("and on stderr", file=sys.stderr)
    line = sys.stdin.readline()  # must not read the protocol either
    return 0 if line == "" else 5


def spawn_sleepers(pid_file: str, count: str, then_sleep: str) -> int:
    """Start ``count`` ``sleep 1000`` processes, record their pids, then sleep ``then_sleep``."""
    pids = [
        subprocess.Popen(["sleep", "1000"], stdin=subprocess.DEVNULL).pid for _ in range(int(count))
    ]
    tmp = Path(pid_file + ".tmp")
    tmp.write_text(" ".join(map(str, pids)))
    tmp.rename(pid_file)
    time.sleep(float(then_sleep))
    return 0


SIGKILL = int(signal.SIGKILL)
