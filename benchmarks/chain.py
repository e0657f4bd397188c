"""Chain throughput: N follow-ons in a line, each job waiting for the one before it.

    python benchmarks/chain.py              # 1000 follow-ons added one by one as the jobs run
    python benchmarks/chain.py --static     # the same chain, built before Flow.start
    python benchmarks/chain.py 1000 --disableChaining

Dynamic (default): the root is step 0; step i adds step i + 1 as its follow-on; step N returns
N and writes it to a file that is read back at the end. With ``--returnPromises`` step i returns
step i + 1's promise instead, so ``Flow.start`` itself returns N through N nested promises (the
Toil idiom; it is checked too).
Static: the N + 1 jobs are linked before ``Flow.start``; link i gets link i - 1's promise and
checks it is i - 1, and link N writes N to the file.

N + 1 jobs in all; ``jobs_per_second`` is (N + 1) / ``start_wall`` (``Flow.start`` alone). By
default a worker runs a job's single follow-on itself (chaining, as Toil does);
``--disableChaining`` sends every job back through the leader. Exits 1 on a wrong result.
"""

from __future__ import annotations

import argparse
import os
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


def step(job: Job, i: int, n: int, out_path: str, return_promise: bool) -> object:
    """Dynamic chain: add the next step as a follow-on; the last step records and returns n."""
    if i < n:
        nxt = job.addFollowOnJobFn(step, i + 1, n, out_path, return_promise, **REQUESTS)
        return nxt.rv() if return_promise else i
    with open(out_path, "w") as handle:
        handle.write(str(n))
    return n


def link(job: Job, i: int, previous: int | None, n: int, out_path: str) -> int:
    """Static chain: check the predecessor's value; the last link records n."""
    if previous is not None and previous != i - 1:
        raise RuntimeError(f"link {i} got {previous!r} from its predecessor, expected {i - 1}")
    if i == n:
        with open(out_path, "w") as handle:
            handle.write(str(n))
    return i


def static_chain(n: int, out_path: str) -> Job:
    root = Job.wrapJobFn(link, 0, None, n, out_path, **REQUESTS)
    current = root
    for i in range(1, n + 1):
        current = current.addFollowOnJobFn(link, i, current.rv(), n, out_path, **REQUESTS)
    return root


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("n", type=int, nargs="?", default=1000, help="follow-ons in the chain (default 1000)")
    parser.add_argument("--static", action="store_true", help="build the whole chain before Flow.start")
    parser.add_argument("--returnPromises", action="store_true",
                        help="dynamic chain: each step returns its follow-on's promise")
    parser.add_argument("--disableChaining", action="store_true",
                        help="no chaining: every job goes back through the leader")
    parser.add_argument("--maxCores", type=float, default=None, help="cores the run may use (default: all)")
    add_store_options(parser)
    args = parser.parse_args(argv)
    if args.n < 0:
        parser.error("N must be >= 0")
    if args.static and args.returnPromises:
        parser.error("--returnPromises is for the dynamic chain")

    jobs = args.n + 1
    with scratch(args.jobStore) as where:
        options = flow_options(where, args.maxCores, disableChaining=args.disableChaining)
        out_path = os.path.join(where.base, "last-link")
        with Stopwatch() as build:
            if args.static:
                root = static_chain(args.n, out_path)
            else:
                root = Job.wrapJobFn(step, 0, args.n, out_path, args.returnPromises, **REQUESTS)
        with Stopwatch() as whole:
            with Flow(options) as flow:
                with Stopwatch() as run:
                    result = flow.start(root)
        with open(out_path) as handle:
            recorded = int(handle.read())

    figure("variant", "static" if args.static else "dynamic")
    if not args.static:
        figure("returns", "promises" if args.returnPromises else "values")
    figure("chaining", "off" if args.disableChaining else "on")
    figure("n", args.n, "follow-ons")
    figure("jobs", jobs, "jobs")
    if args.static:
        figure("build_wall", build.wall, "s")
    figure("start_wall", run.wall, "s")
    figure("jobs_per_second", jobs / run.wall, "jobs/s", digits=1)
    figure("open_start_close_wall", whole.wall, "s")
    figure("leader_cpu", run.cpu, "s")
    figure("worker_cpu", cpu_seconds(resource.RUSAGE_CHILDREN), "s")
    figure("process_wall", process_seconds(), "s")
    if recorded != args.n:
        return fail(f"the last job recorded {recorded!r}, expected {args.n}")
    expected = args.n if args.returnPromises else 0
    if result != expected:
        return fail(f"Flow.start returned {result!r}, expected {expected}")
    figure("result", "ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
