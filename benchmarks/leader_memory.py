"""Leader memory: the leader's peak RSS while N jobs are issued or waiting at once.

    python benchmarks/leader_memory.py            # N = 100000 (a minute or two)
    python benchmarks/leader_memory.py 10000      # a quick check

``Flow.start`` runs the leader in this process (workers are separate processes), so this
process's peak RSS (``getrusage(RUSAGE_SELF).ru_maxrss``) is the leader's. The root job adds N
trivial children that each ask for 1 core, and the run gets ``--maxCores 1``: once the root has
finished, the leader has read all N descriptions and issued all N jobs, which queue in the batch
system behind the one that runs. A hook on ``Leader._show_progress`` (called once per pass of the
leader loop, after it has carried out the scheduler's instructions) reads the scheduler's counts
of issued and waiting jobs, takes the figures the first time they add up to N, then stops the run
(the job store is deleted as always).

Target: under 1 GiB for N = 100000. Exits 1 if the run ends before all N jobs were known.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from dataclasses import dataclass

from _bench import (
    Stopwatch,
    add_store_options,
    fail,
    figure,
    flow_options,
    process_seconds,
    scratch,
)

from flow.core.common import Flow
from flow.core.job import Job
from flow.core.leader import Leader

MIB = 1024 * 1024


def wait_in_queue(job: Job, i: int) -> int:
    return i


def add_children(job: Job, n: int) -> None:
    for i in range(n):
        job.addChildJobFn(wait_in_queue, i, cores=1, memory="10M")


class AllKnown(Exception):
    """Raised from the progress hook to stop the run once all N jobs are known."""


@dataclass
class Snapshot:
    seconds: float  # since Flow.start was called
    peak_rss: int  # bytes, ru_maxrss of this (the leader's) process
    rss: int  # bytes, current resident set
    known: int  # jobs the scheduler tracks
    done: int
    issued: int
    waiting: int


def current_rss() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * resource.getpagesize()


def peak_rss() -> int:
    """The larger of ru_maxrss and the current RSS (the kernel updates ru_maxrss lazily)."""
    return max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, current_rss())  # KiB on Linux


def install_hook(n: int, started: list[float], seen: list[Snapshot]) -> None:
    """Wrap ``Leader._show_progress``: the leader calls it after each pass over its events."""
    original = Leader._show_progress

    def show_progress(self: Leader) -> None:
        original(self)
        scheduler = self.scheduler
        issued, waiting = scheduler.visible_issued, scheduler.visible_waiting
        if issued + waiting >= n and not seen:
            seen.append(Snapshot(time.perf_counter() - started[0], peak_rss(), current_rss(),
                                 len(scheduler.jobs), scheduler.visible_done, issued, waiting))
            raise AllKnown

    Leader._show_progress = show_progress  # type: ignore[method-assign]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("n", type=int, nargs="?", default=100_000, help="jobs to hold at once (default 100000)")
    parser.add_argument("--maxCores", type=float, default=1.0,
                        help="cores the run may use (default 1, so the children queue)")
    add_store_options(parser)
    args = parser.parse_args(argv)
    if args.n < 1:
        parser.error("N must be >= 1")

    started = [0.0]
    seen: list[Snapshot] = []
    install_hook(args.n, started, seen)
    baseline = peak_rss()
    with scratch(args.jobStore) as where:
        options = flow_options(where, args.maxCores)
        root = Job.wrapJobFn(add_children, args.n, cores=1, memory="10M")
        with Stopwatch() as run:
            try:
                with Flow(options) as flow:
                    started[0] = time.perf_counter()
                    flow.start(root)
            except AllKnown:
                pass

    figure("n", args.n, "jobs")
    figure("baseline_peak_rss", baseline / MIB, "MiB", digits=1)
    if not seen:
        return fail(f"the run ended before {args.n} jobs were issued or waiting at once")
    snap = seen[0]
    figure("jobs_known", snap.known, "jobs")
    figure("jobs_issued", snap.issued, "jobs")
    figure("jobs_waiting", snap.waiting, "jobs")
    figure("leader_peak_rss", snap.peak_rss / MIB, "MiB", digits=1)
    figure("leader_rss_now", snap.rss / MIB, "MiB", digits=1)
    figure("peak_rss_per_job", (snap.peak_rss - baseline) / args.n, "bytes", digits=0)
    figure("time_to_all_known", snap.seconds, "s")
    figure("run_wall", run.wall, "s")
    figure("leader_cpu", run.cpu, "s")
    figure("process_wall", process_seconds(), "s")
    figure("under_1_GiB", "yes" if snap.peak_rss < 1024 * MIB else "no")
    return 0


if __name__ == "__main__":
    sys.exit(main())
