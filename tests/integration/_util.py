"""Helpers shared by the integration tests (not jobs: jobs live in the test modules)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from pathlib import Path


def touch(path: str | os.PathLike[str], text: str = "") -> None:
    """Create a marker file (atomically enough for one writer)."""
    Path(path).write_text(text)


def append_line(path: str | os.PathLike[str], line: str) -> None:
    """Append one line with a single write (O_APPEND: concurrent writers do not interleave)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, (line.rstrip("\n") + "\n").encode())
    finally:
        os.close(fd)


def read_lines(path: str | os.PathLike[str]) -> list[str]:
    p = Path(path)
    return p.read_text().splitlines() if p.exists() else []


def count_lines(path: str | os.PathLike[str]) -> int:
    return len(read_lines(path))


def record_interval(directory: str | os.PathLike[str], name: str, seconds: float) -> None:
    """Sleep ``seconds`` and record ``start end`` (time.time()) in ``directory/name``."""
    start = time.time()
    time.sleep(seconds)
    end = time.time()
    Path(directory, name).write_text(f"{start!r} {end!r}\n")


def read_intervals(directory: str | os.PathLike[str]) -> list[tuple[float, float]]:
    out = []
    for path in sorted(Path(directory).iterdir()):
        start, end = path.read_text().split()
        out.append((float(start), float(end)))
    return out


def max_overlap(intervals: Iterable[tuple[float, float]]) -> int:
    """The largest number of intervals open at one instant (half-open: an end before a start)."""
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals],
                    key=lambda ev: (ev[0], ev[1]))
    best = current = 0
    for _, delta in events:
        current += delta
        best = max(best, current)
    return best
