"""The same fan-out on Slurm and on the local batch system, in one run, with Slurm's command counts.

    python benchmarks/slurm_fanout.py 200
    python benchmarks/slurm_fanout.py 200 --slurmOnly

Runs N + 2 jobs (root, N children with cores=0.1 and memory=10M, one follow-on that sums their
values) first with ``--batchSystem single_machine`` and then with ``--batchSystem slurm``, and
prints one ``name: value unit`` line per figure: each run's ``Flow.start`` wall time, and for
Slurm how many times each scheduler command ran (counted by ``flow.batchsystems.hpc``), the
poll rounds and the calls per round (one squeue per round for up to 500 jobs in flight; the poll
interval starts at 1 s and backs off while nothing changes), squeue calls per second and per job.
Slurm gives each job at least one whole CPU: the local node of ``../shared/slurm`` has 2. As
root, starts that cluster first when its script is there. Exits 1 on a wrong result.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from _bench import Stopwatch, add_store_options, fail, figure, flow_options, scratch
from fanout import REQUESTS, fan_out

from flow.batchsystems import hpc
from flow.batchsystems.slurm import SlurmBatchSystem
from flow.core.common import Flow
from flow.core.job import Job

START_SLURM = Path(__file__).resolve().parents[2] / "shared" / "slurm" / "start-local-slurm"


def run(n: int, batch_system: str, job_store: str | None) -> tuple[float, object]:
    """(Flow.start wall seconds, its result) of one fan-out on ``batch_system``."""
    with scratch(job_store) as where:
        max_cores = 2.0 if batch_system == "single_machine" else None
        options = flow_options(where, max_cores, batchSystem=batch_system)
        with Flow(options) as flow, Stopwatch() as watch:
            result = flow.start(Job.wrapJobFn(fan_out, n, **REQUESTS))
    return watch.wall, result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("n", type=int, nargs="?", default=200, help="jobs under the root (default 200)")
    parser.add_argument("--slurmOnly", action="store_true", help="skip the local run")
    add_store_options(parser)
    args = parser.parse_args(argv)
    if args.n < 0:
        parser.error("N must be >= 0")
    if os.geteuid() == 0 and START_SLURM.exists():
        env = {**os.environ, "LOCAL_SLURM_ELASTIC": os.environ.get("LOCAL_SLURM_ELASTIC", "4")}  # as the tests
        subprocess.run([str(START_SLURM)], check=True, capture_output=True, timeout=900, env=env)
    expected = args.n * (args.n - 1) // 2
    figure("n", args.n, "jobs")
    if not args.slurmOnly:
        local_wall, result = run(args.n, "single_machine", args.jobStore)
        if result != expected:
            return fail(f"single_machine: the follow-on returned {result!r}, expected {expected}")
        figure("single_machine_start_wall", local_wall, "s")
    hpc.reset_command_calls()
    slurm_wall, result = run(args.n, "slurm", args.jobStore)
    calls = hpc.command_calls()
    if result != expected:
        return fail(f"slurm: the follow-on returned {result!r}, expected {expected}")
    figure("slurm_start_wall", slurm_wall, "s")
    for command in ("sbatch", "squeue", "scontrol", "sacct", "scancel"):
        figure(f"slurm_{command}_calls", calls.get(command, 0), "calls")
    polls = max(1, hpc.poll_rounds())
    figure("slurm_poll_rounds", hpc.poll_rounds(), "polls")
    figure("slurm_squeue_per_poll", calls.get("squeue", 0) / polls, "calls/poll")
    figure("slurm_scontrol_per_poll", calls.get("scontrol", 0) / polls, "calls/poll")
    figure("slurm_mean_poll_interval", slurm_wall / polls, "s")
    figure("slurm_min_poll_interval", SlurmBatchSystem.poll_interval[0], "s")
    figure("slurm_squeue_per_second", calls.get("squeue", 0) / slurm_wall, "calls/s")
    figure("slurm_squeue_per_job", calls.get("squeue", 0) / (args.n + 2), "calls/job")
    figure("result", "ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
