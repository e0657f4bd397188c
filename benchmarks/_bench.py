"""Helpers shared by the benchmark scripts: a scratch job store, run options, figure lines.

Not a benchmark itself. The scripts import it as ``_bench`` (their own directory is on
``sys.path`` when run as ``python benchmarks/X.py``).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass

from flow.core.job import Job


@dataclass(frozen=True)
class Scratch:
    """Where one benchmark run keeps its job store and its workers' scratch files."""

    base: str  # a fresh directory, deleted at the end
    job_store: str
    work_dir: str


def add_store_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--jobStore", default=None, metavar="DIR",
        help="job store to create (must not exist yet; deleted at the end); "
             "default: a fresh directory under $TMPDIR",
    )


@contextlib.contextmanager
def scratch(job_store: str | None) -> Iterator[Scratch]:
    """A temporary directory (under $TMPDIR) for the job store and the work dir; removed after."""
    base = tempfile.mkdtemp(prefix="flow-bench-")
    work_dir = os.path.join(base, "work")
    os.mkdir(work_dir)
    try:
        yield Scratch(base, job_store or os.path.join(base, "jobstore"), work_dir)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def flow_options(where: Scratch, max_cores: float | None = None, **extra: object) -> argparse.Namespace:
    """Run options: quiet (WARNING, no progress bar), the job store always deleted at the end."""
    options = Job.Runner.getDefaultOptions(where.job_store)
    options.workDir = where.work_dir
    options.noProgress = True
    options.logLevel = "WARNING"
    options.clean = "always"
    options.maxCores = max_cores
    for key, value in extra.items():
        setattr(options, key, value)
    return options


def figure(name: str, value: float | int | str, unit: str = "", digits: int = 3) -> None:
    """Print one figure as ``name: value unit``."""
    text = f"{value:.{digits}f}" if isinstance(value, float) else str(value)
    print(f"{name}: {text} {unit}".rstrip(), flush=True)


def cpu_seconds(who: int) -> float:
    """User + system CPU seconds of this process (RUSAGE_SELF) or its reaped children."""
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def process_seconds() -> float:
    """Wall seconds since this process started (from /proc; 0.0 where that is unavailable)."""
    try:
        with open("/proc/self/stat") as handle:
            fields = handle.read().rpartition(")")[2].split()
        start_ticks = int(fields[19])  # field 22 of proc(5), counting after "pid (comm)"
        with open("/proc/uptime") as handle:
            uptime = float(handle.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 0.0
    return uptime - start_ticks / os.sysconf("SC_CLK_TCK")


def compile_flow() -> None:
    """Compile flow's modules to bytecode, as installing a package does. An editable install
    (``pip install -e``) compiles them at first import, and never where PYTHONDONTWRITEBYTECODE
    is set: every run would then compile flow from source (0.1 s and more per process) while
    cwltool and miniwdl, installed from wheels, run from bytecode. Comparisons would not be fair."""
    import compileall
    import importlib.util

    for name in ("core", "cwl", "wdl", "batchsystems", "jobstores", "provisioners"):
        spec = importlib.util.find_spec(f"flow.{name}")
        for path in (spec.submodule_search_locations or []) if spec else []:
            compileall.compile_dir(path, quiet=2)


def fail(message: str) -> int:
    print(f"FAILED: {message}", file=sys.stderr, flush=True)
    return 1


class Stopwatch:
    """``perf_counter`` seconds and this process's CPU seconds between start and stop."""

    def __init__(self) -> None:
        self.wall = 0.0
        self.cpu = 0.0
        self._wall0 = 0.0
        self._cpu0 = 0.0

    def __enter__(self) -> Stopwatch:
        self._cpu0 = cpu_seconds(resource.RUSAGE_SELF)
        self._wall0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self._wall0
        self.cpu = cpu_seconds(resource.RUSAGE_SELF) - self._cpu0
