"""Human-readable sizes ("2G", "500M", "1.5 GiB") and machine limits."""

from __future__ import annotations

import os
import re

_UNITS = {
    "": 1, "b": 1,
    "k": 1024, "ki": 1024, "kb": 1000, "kib": 1024,
    "m": 1024**2, "mi": 1024**2, "mb": 1000**2, "mib": 1024**2,
    "g": 1024**3, "gi": 1024**3, "gb": 1000**3, "gib": 1024**3,
    "t": 1024**4, "ti": 1024**4, "tb": 1000**4, "tib": 1024**4,
    "p": 1024**5, "pi": 1024**5, "pb": 1000**5, "pib": 1024**5,
}
_SIZE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([A-Za-z]*)\s*$")


def parse_size(value: str | int | float | None, what: str = "size") -> int | None:
    """Bytes from an int or a string such as "2G" (Toil's convention: K/M/G are binary)."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError(f"{what} must be a number of bytes or a size like '2G', not {value!r}")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError(f"{what} must not be negative, got {value!r}")
        return int(value)
    match = _SIZE.match(str(value))
    unit = match.group(2).lower() if match else None
    if match is None or unit not in _UNITS:
        raise ValueError(f"{what} {value!r} is not a size such as 500M, 2G or 1024")
    return int(float(match.group(1)) * _UNITS[unit])


def parse_cores(value: str | int | float | None, what: str = "cores") -> float | None:
    """A number of cores. Whole numbers given as ints or strings stay ints, as in Toil, so that
    ``range(job.cores)`` works in a job."""
    if value is None:
        return None
    try:
        cores = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a number, got {value!r}") from None
    if cores < 0:
        raise ValueError(f"{what} must not be negative, got {value!r}")
    if isinstance(value, bool):
        raise ValueError(f"{what} must be a number, got {value!r}")
    if isinstance(value, int) or (isinstance(value, str) and cores.is_integer()):
        return int(cores)
    return cores


def format_size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover


def machine_cores() -> float:
    try:
        return float(len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return float(os.cpu_count() or 1)


def machine_memory() -> int:
    import psutil

    return int(psutil.virtual_memory().total)


def machine_disk(path: str) -> int:
    probe = path
    while probe and not os.path.exists(probe):
        probe = os.path.dirname(probe) or "."
    import psutil

    return int(psutil.disk_usage(probe or ".").total)
