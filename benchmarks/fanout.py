"""Fan-out throughput: N trivial jobs under one root, then a follow-on that sums their promises.

    python benchmarks/fanout.py 1000
    python benchmarks/fanout.py 5000 --maxCores 2

Runs N + 2 jobs (root, N children with cores=0.1 and memory=10M, one follow-on) in a temporary
job store and prints one ``name: value unit`` line per figure. ``jobs_per_second`` is
(N + 2) / ``start_wall``, where ``start_wall`` times ``Flow.start`` alone. Exits 1 if the sum
is wrong or the run fails. Target: >= 300 jobs/s for N=1000 on a 2-core machine.
"""

from __future__ import annotations

import argparse
import resource
import sys

from _bench import (
    Stopwatch,
    add_store_options,
    cpu_seconds,
    fail,
    figure,
    flow_options,
    process_seconds,
    scratch,
)

from flow.core.common import Flow
from flow.core.job import Job

REQUESTS: dict[str, object] = {"cores": 0.1, "memory": "10M"}


def leaf(job: Job, i: int) -> int:
    return i


def total(job: Job, values: list[int]) -> int:
    return sum(values)


def fan_out(job: Job, n: int) -> object:
    values = [job.addChildJobFn(leaf, i, **REQUESTS).rv() for i in range(n)]
    return job.addFollowOnJobFn(total, values, **REQUESTS).rv()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("n", type=int, nargs="?", default=1000, help="jobs under the root (default 1000)")
    parser.add_argument("--maxCores", type=float, default=None, help="cores the run may use (default: all)")
    add_store_options(parser)
    args = parser.parse_args(argv)
    if args.n < 0:
        parser.error("N must be >= 0")

    jobs = args.n + 2
    with scratch(args.jobStore) as where:
        options = flow_options(where, args.maxCores)
        root = Job.wrapJobFn(fan_out, args.n, **REQUESTS)
        with Stopwatch() as whole:
            with Flow(options) as flow:
                with Stopwatch() as run:
                    result = flow.start(root)
    expected = args.n * (args.n - 1) // 2

    figure("n", args.n, "jobs")
    figure("jobs", jobs, "jobs")
    figure("start_wall", run.wall, "s")
    figure("jobs_per_second", jobs / run.wall, "jobs/s", digits=1)
    figure("open_start_close_wall", whole.wall, "s")
    figure("leader_cpu", run.cpu, "s")
    figure("worker_cpu", cpu_seconds(resource.RUSAGE_CHILDREN), "s")
    figure("process_wall", process_seconds(), "s")
    if result != expected:
        return fail(f"the follow-on returned {result!r}, expected {expected}")
    figure("result", "ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
