"""``flow plan JOBSTORE --nodeTypes ...``: what a cluster of that shape would have made of a run.

The run's jobs are read back from the job store: each job's request (its description, with the
run's defaults), its measured runtime (the ``--stats`` records) and the jobs it waited for (the
job graph, with Toil's rule that a follow-on waits for its parent's children and everything
they started). They are replayed through the same scaler, on the simulated cluster, in virtual
time; ``flow plan`` prints the predicted makespan, node-hours per type, peak nodes and idle
fraction. Jobs start as soon as what they wait for has ended and a node has room (the recorded
run's scheduling delays are not replayed). In a run still going, a job that has not run yet is
given the mean runtime of its kind (none if no job of its kind has run).
"""

from __future__ import annotations

import argparse
import json
import pickle
from typing import Any

from flow.core import records
from flow.core.description import JobDescription
from flow.core.exceptions import FlowError
from flow.jobstores.abstract import JobStore, NoSuchJobError
from flow.jobstores.registry import open_job_store
from flow.provisioners.contract import RecordedJob, ScalerConfigError
from flow.provisioners.registry import predict
from flow.provisioners.shape import Shape


def add_plan_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--nodeTypes", required=True,
                        help="node types, comma-separated NAME:CORES/MEMORY[/DISK][:preemptible][:cost=PRICE]")
    parser.add_argument("--minNodes", default="0", help="per node type, comma-separated (0)")
    parser.add_argument("--maxNodes", default="10", help="per node type, comma-separated; a shorter list repeats its last (10)")
    parser.add_argument("--targetTime", type=float, default=1800.0, help="seconds queued work may take (1800)")
    parser.add_argument("--betaInertia", type=float, default=0.1, help="0 to 1 (0.1)")
    parser.add_argument("--scaleInterval", type=float, default=60.0, help="seconds between scaler rounds (60)")
    parser.add_argument("--preemptibleCompensation", type=float, default=0.0, help="0 to 1 (0)")
    parser.add_argument("--targetDeadline", action="store_true",
                        help="--targetTime runs from when each job was issued, not from each scaler round")
    parser.add_argument("--bootDelay", type=float, default=60.0, help="seconds a node takes to boot (60)")
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")


def recorded_jobs(store: JobStore) -> tuple[list[RecordedJob], float | None]:
    """The run's jobs as a workload to replay, and the recorded run's makespan (None without
    ``--stats`` records)."""
    raw_root, raw_config = store.read_shared(records.ROOT), store.read_shared(records.CONFIG)
    if raw_root is None or raw_config is None:
        raise FlowError(f"The job store {store.locator} holds no workflow: nothing to plan from.")
    config = pickle.loads(raw_config)
    stats = [pickle.loads(raw) for raw in store.read_stats()]
    if not stats:
        raise FlowError(f"The run in {store.locator} recorded no runtimes: run it with --stats to plan from it.")
    wall = {str(r["job_id"]): float(r.get("wall", 0.0)) for r in stats}  # a retried job: its last run
    kinds: dict[str, list[float]] = {}
    for r in stats:
        kinds.setdefault(str(r["kind"]), []).append(float(r.get("wall", 0.0)))
    by_kind = {kind: sum(times) / len(times) for kind, times in kinds.items()}  # for jobs yet to run
    descs = _graph(store, raw_root.decode())
    index = {job_id: i for i, job_id in enumerate(descs)}
    jobs: list[RecordedJob] = []
    after: list[list[int]] = [[] for _ in descs]
    for desc in descs.values():
        shape = Shape(0.0, int(config.default_memory if desc.memory is None else desc.memory),
                      float(config.default_cores if desc.cores is None else desc.cores),
                      int(config.default_disk if desc.disk is None else desc.disk), desc.preemptible)
        jobs.append(RecordedJob(desc.name, shape, wall.get(desc.job_id, by_kind.get(desc.name, 0.0))))
        for succ in [*desc.services, *desc.children, *desc.follow_ons]:
            if succ in index:
                after[index[succ]].append(index[desc.job_id])
    _follow_ons_wait_for_subtrees(descs, index, jobs, after)
    jobs = [RecordedJob(j.name, j.request, j.runtime, tuple(a)) for j, a in zip(jobs, after, strict=True)]
    starts = [float(r["end"]) - float(r.get("wall", 0.0)) for r in stats if "end" in r]
    ends = [float(r["end"]) for r in stats if "end" in r]
    return jobs, (max(ends) - min(starts)) if ends else None


def _graph(store: JobStore, root: str) -> dict[str, JobDescription]:
    descs: dict[str, JobDescription] = {}
    stack = [root]
    while stack:
        job_id = stack.pop()
        if job_id in descs:
            continue
        try:
            desc = JobDescription.loads(store.read_job(job_id))
        except NoSuchJobError:
            continue
        descs[job_id] = desc
        stack.extend([*desc.services, *desc.children, *desc.follow_ons])
    return descs


def _follow_ons_wait_for_subtrees(descs: dict[str, JobDescription], index: dict[str, int],
                                  jobs: list[RecordedJob], after: list[list[int]]) -> None:
    """A follow-on waits for its parent's children and all they started: add a barrier job
    "subtree of X is over" for each such child X (and, below it, each job with successors)."""
    done_of: dict[str, int] = {}  # job id -> the job or barrier that ends its subtree

    def successors(job_id: str) -> list[str]:
        d = descs[job_id]
        return [s for s in (*d.services, *d.children, *d.follow_ons) if s in index]

    def subtree_end(top: str) -> int:
        stack: list[tuple[str, bool]] = [(top, False)]
        while stack:
            job_id, expanded = stack.pop()
            if job_id in done_of:
                continue
            succ = successors(job_id)
            if not succ:
                done_of[job_id] = index[job_id]
            elif not expanded:
                stack.append((job_id, True))
                stack.extend((s, False) for s in succ if s not in done_of)
            else:
                jobs.append(RecordedJob("(subtree)", Shape(0.0, 0, 0.0, 0), 0.0))
                after.append([index[job_id], *(done_of[s] for s in succ)])
                done_of[job_id] = len(jobs) - 1
        return done_of[top]

    for desc in descs.values():
        children = [c for c in (*desc.services, *desc.children) if c in index]
        for follow_on in (f for f in desc.follow_ons if f in index):
            after[index[follow_on]].extend(subtree_end(c) for c in children)


def cmd_plan(args: argparse.Namespace) -> int:
    store = open_job_store(args.jobStore)
    jobs, recorded = recorded_jobs(store)
    try:
        result, types = predict(vars(args), jobs, boot_delay=float(args.bootDelay))
    except (ScalerConfigError, ValueError) as exc:
        raise FlowError(str(exc)) from None
    real = [j for j in jobs if not j.is_barrier]
    hours = {name: seconds / 3600 for name, seconds in result.node_seconds.items()}
    cost = sum(t.cost * hours[t.name] for t in types)
    summary: dict[str, Any] = {
        "job_store": store.locator, "jobs": len(real), "jobs_run": result.jobs_done - (len(jobs) - len(real)),
        "recorded_makespan": recorded, "makespan": result.makespan, "node_hours": hours, "cost": cost,
        "peak_nodes": result.peak_nodes, "peak_by_type": result.peak_by_type, "idle_fraction": result.idle_fraction,
    }
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        _print(summary, args, types_text=args.nodeTypes)
    return 0 if result.jobs_done == len(jobs) else 1


def _print(s: dict[str, Any], args: argparse.Namespace, types_text: str) -> None:
    print(f"Plan for the run in {s['job_store']} on {types_text} (--maxNodes {args.maxNodes}, "
          f"--targetTime {args.targetTime:g} s, nodes boot in {args.bootDelay:g} s):")
    if s["jobs_run"] < s["jobs"]:
        print(f"  only {s['jobs_run']} of {s['jobs']} jobs could run: the node types or --maxNodes leave no room")
    recorded = f" (the recorded run: {_hms(s['recorded_makespan'])})" if s["recorded_makespan"] is not None else ""
    print(f"  {s['jobs']} job{'' if s['jobs'] == 1 else 's'}; predicted makespan {_hms(s['makespan'])}{recorded}")
    print("  node-hours: " + ", ".join(f"{name} {h:.3f}" for name, h in s["node_hours"].items())
          + f" (cost {s['cost']:.3f})")
    print(f"  peak nodes: {s['peak_nodes']} (" + ", ".join(f"{n} {c}" for n, c in s["peak_by_type"].items()) + ")")
    print(f"  idle: {s['idle_fraction']:.0%} of the nodes' core-hours")


def _hms(seconds: float) -> str:
    whole = int(round(seconds))
    return f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}"
