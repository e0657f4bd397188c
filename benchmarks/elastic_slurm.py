"""A fan-out on the elastic local Slurm, grown and shrunk by ``--provisioner slurm``: the figures.

    python benchmarks/elastic_slurm.py 60 --seconds 2 --maxNodes 3

Runs N + 2 one-CPU jobs (root, N children sleeping ``--seconds``, a follow-on summing their
values) with ``--batchSystem slurm --provisioner slurm`` on dynamic nodes of 1 CPU and 1 GiB that
``../shared/slurm/add-local-node`` starts (about 1 s each) and ``remove-local-node`` stops, and
prints one ``name: value unit`` line per figure: the time from the first queued job (the root,
queued when the run starts) to the first node of the run idle in Slurm (watched with ``scontrol``
every 0.1 s), the nodes launched and their peak, the node-seconds paid against the jobs'
core-seconds (from ``--stats``), and the run's wall time. As root; starts the cluster in elastic
mode first. Exits 1 on a wrong result or a node left behind.
"""

from __future__ import annotations

import argparse
import os
import pickle
import subprocess
import sys
import threading
import time
from pathlib import Path

from _bench import Stopwatch, add_store_options, fail, figure, flow_options, scratch

from flow.batchsystems.slurm_nodes import read_nodes
from flow.core import records
from flow.core.autoscale import node_usage
from flow.core.cli import _records as stats_records
from flow.core.common import Flow
from flow.core.job import Job
from flow.jobstores.abstract import JobStore
from flow.provisioners.slurm import node_prefix

SLURM = Path(__file__).resolve().parents[2] / "shared" / "slurm"


def leaf(job: Job, i: int, seconds: float) -> int:
    time.sleep(seconds)
    return i


def total(job: Job, values: list[int]) -> int:
    return sum(values)


def fan_out(job: Job, n: int, seconds: float) -> object:
    values = [job.addChildJobFn(leaf, i, seconds, cores=1, memory="100M").rv() for i in range(n)]
    return job.addFollowOnJobFn(total, values, cores=1, memory="100M").rv()


class Watcher(threading.Thread):
    """Polls Slurm's nodes: when the first node whose name starts with ``prefix`` was idle."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.store: JobStore | None = None
        self.prefix: str | None = None
        self.first_idle: float | None = None
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.1) and self.first_idle is None:
            if self.prefix is None:  # the run's id names its nodes: from its configuration
                config = records.load_config(self.store) if self.store is not None else None
                self.prefix = node_prefix(config.workflow_id) if config is not None else None
                continue
            for node in read_nodes().values():
                if node.name.startswith(self.prefix) and "IDLE" in node.state:
                    self.first_idle = time.time()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("n", type=int, nargs="?", default=60, help="jobs under the root (default 60)")
    parser.add_argument("--seconds", type=float, default=2.0, help="each child's sleep (default 2)")
    parser.add_argument("--maxNodes", default="3", help="at most this many nodes (default 3)")
    parser.add_argument("--scaleInterval", type=float, default=1.0, help="seconds between scaler rounds (1)")
    add_store_options(parser)
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        return fail("elastic Slurm nodes are started as root")
    env = {**os.environ, "LOCAL_SLURM_ELASTIC": os.environ.get("LOCAL_SLURM_ELASTIC", "4")}
    started = subprocess.run([str(SLURM / "start-local-slurm")], capture_output=True, text=True, timeout=900, env=env)
    if started.returncode != 0:
        return fail(f"start-local-slurm failed: {started.stderr[-800:]}")
    with scratch(args.jobStore) as where:
        options = flow_options(
            where, None, batchSystem="slurm", slurmPartition="elastic", provisioner="slurm",
            nodeTypes="small:1/1G", minNodes="0", maxNodes=args.maxNodes, scaleInterval=args.scaleInterval,
            targetTime=5.0, nodeLaunchCommand=f"{SLURM / 'add-local-node'} {{name}} {{cores}} {{memory_mb}} {{features}}",
            nodeTerminateCommand=f"{SLURM / 'remove-local-node'} {{name}}", stats=True, clean="never")
        watcher = Watcher()
        watcher.start()
        with Flow(options) as flow, Stopwatch() as watch:
            watcher.store = flow.jobStore
            first_queued = time.time()
            result = flow.start(Job.wrapJobFn(fan_out, args.n, args.seconds, cores=1, memory="100M"))
            watcher.stop.set()
            store = flow.jobStore
            nodes = pickle.loads(store.read_shared(records.NODES) or pickle.dumps([]))
            usage = node_usage(store, stats_records(store)) or {}
            job_core_seconds = sum(float(r.get("wall", 0.0)) for r in stats_records(store))  # 1 core each
        left = [n for n in read_nodes() if watcher.prefix and n.startswith(watcher.prefix)]
    if result != args.n * (args.n - 1) // 2:
        return fail(f"the follow-on returned {result!r}")
    if left:
        return fail(f"nodes left in Slurm: {left}")
    node_seconds = sum(float(n["ended"]) - float(n["launched"]) for n in nodes)
    figure("n", args.n, "jobs")
    if watcher.first_idle is not None:
        figure("first_queued_to_first_node_idle", watcher.first_idle - first_queued, "s")
    figure("nodes_launched", len(nodes), "nodes")
    figure("nodes_peak", int(usage.get("peak_nodes", 0)), "nodes")
    figure("node_seconds", node_seconds, "s")
    figure("job_core_seconds", job_core_seconds, "s")
    figure("node_seconds_per_job_core_second", node_seconds / job_core_seconds if job_core_seconds else 0.0, "")
    figure("run_wall", watch.wall, "s")
    figure("result", "ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
