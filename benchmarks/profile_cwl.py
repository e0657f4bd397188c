"""Where a CWL step's time goes: flow-cwl --no-container on cwl_scatter.py's workflow, profiled.

    python benchmarks/profile_cwl.py 200          # N scattered echo steps + the gather
    python benchmarks/profile_cwl.py 200 --top 25 # also the top functions of workers and leader

Runs flow-cwl in this process under cProfile (the leader) with every pool worker (forked from
it) profiling each job it runs. Prints, per tool step (the N echo steps; the gather apart), the
milliseconds spent in each phase, nested phases indented under the phase that contains them,
and the leader's CPU per step. Figures are cProfile's (it slows Python code down ~1.5-2x): read
them as shares, not as wall times; cwl_scatter.py times the real thing.
"""

from __future__ import annotations

import argparse
import cProfile
import glob
import os
import pstats
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cwl_scatter import write_inputs

#: (label, depth, file suffix, function name): a phase is the cumulative time of its function.
WORKER_PHASES: list[tuple[str, int, str, str]] = [
    ("worker: run_job (whole job, incl. chained)", 0, "core/worker.py", "run_job"),
    ("load job record + promises", 1, "core/worker.py", "_load_job"),
    ("CWLJob/CWLBatch.run", 1, "cwl/jobs.py", "run"),
    ("resolve tool (cached load)", 2, "cwl/adapter.py", "resolve"),
    ("one invocation (run_tool)", 2, "cwl/jobs.py", "run_tool"),
    ("stage inputs (file store copies)", 3, "cwl/staging.py", "__call__"),
    ("cwltool run_process", 3, "cwl/adapter_run.py", "run_process"),
    ("cwltool job construction (tool.job)", 4, "cwltool/command_line_tool.py", "job"),
    ("input binding (bind_input)", 5, "cwltool/builder.py", "bind_input"),
    ("command line (generate_arg)", 5, "cwltool/builder.py", "generate_arg"),
    ("path mapper", 5, "cwltool/pathmapper.py", "__init__"),
    ("job run (stage + fork + wait)", 4, "cwltool/job.py", "run"),
    ("staging (stage_files)", 5, "cwltool/process.py", "stage_files"),
    ("subprocess (_job_popen)", 5, "cwltool/job.py", "_job_popen"),
    ("output collection", 5, "cwltool/command_line_tool.py", "collect_output_ports"),
    ("checksums (compute_checksums)", 6, "cwltool/process.py", "compute_checksums"),
    ("relocate outputs", 4, "cwltool/process.py", "relocateOutputs"),
    ("check read files", 3, "core/filestore.py", "check_read_files"),
    ("store outputs (moved or copied in)", 3, "cwl/staging.py", "store_outputs"),
    ("CWL step/scatter/gather jobs", 1, "cwl/workflow.py", "run"),
    ("commit (job records, result)", 1, "core/worker.py", "_commit"),
    ("new job records", 2, "core/worker.py", "write_new_jobs"),
    ("file store commit", 2, "core/filestore.py", "commit"),
    ("scratch cleanup", 1, "core/worker.py", "_finish_scratch"),
]


def _profiled_worker(profile_dir: str) -> None:
    """Make every forked pool worker profile its jobs (one stats file per process and tool)."""
    from flow.core import worker
    from flow.cwl import jobs

    original_run_job, original_run_tool = worker.run_job, jobs.run_tool
    profiles: dict[str, cProfile.Profile] = {}

    def profile(kind: str) -> cProfile.Profile:
        if kind not in profiles:
            profiles[kind] = cProfile.Profile()
        return profiles[kind]

    def run_job(locator: str, job_id: str) -> int:
        everything = profile("all")
        everything.enable()
        try:
            return original_run_job(locator, job_id)
        finally:
            everything.disable()
            for kind, prof in profiles.items():
                prof.dump_stats(os.path.join(profile_dir, f"{kind}-{os.getpid()}.prof"))

    def run_tool(process: Any, *args: Any) -> Any:
        label = "gather" if str(process.tool.get("id", "")).endswith("gather.cwl") else "tool"
        start = time.perf_counter()
        if label == "gather":
            profile("all").disable()
            profile("gather").enable()
        try:
            return original_run_tool(process, *args)
        finally:
            if label == "gather":
                profile("gather").disable()
                profile("all").enable()
            with open(os.path.join(profile_dir, f"walls-{os.getpid()}.txt"), "a") as handle:
                handle.write(f"{label} {time.perf_counter() - start:.6f}\n")

    worker.run_job = run_job
    jobs.run_tool = run_tool  # type: ignore[assignment]  # called by name from CWLJob.run and CWLBatch.run


def _stats(paths: list[str]) -> pstats.Stats | None:
    return pstats.Stats(*paths, stream=sys.stdout) if paths else None


def _cumulative(stats: pstats.Stats, suffix: str, name: str) -> tuple[float, int]:
    total, calls = 0.0, 0
    for (filename, _line, function), (_cc, nc, _tt, ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        if function == name and filename.endswith(suffix):
            total += ct
            calls += nc
    return total, calls


def _print_phases(stats: pstats.Stats, per: int, title: str) -> None:
    print(f"\n{title} (ms per step, cProfile cumulative; nested phases indented)")
    for label, depth, suffix, name in WORKER_PHASES:
        seconds, calls = _cumulative(stats, suffix, name)
        if calls:
            print(f"  {'  ' * depth}{label:<{50 - 2 * depth}} {1000 * seconds / per:8.2f} ms  ({calls} calls)")


def _walls(profile_dir: str) -> dict[str, list[float]]:
    walls: dict[str, list[float]] = {}
    for path in glob.glob(os.path.join(profile_dir, "walls-*.txt")):
        with open(path) as handle:
            for line in handle:
                label, seconds = line.split()
                walls.setdefault(label, []).append(float(seconds))
    return walls


def _top(stats: pstats.Stats | None, title: str, top: int) -> None:
    if stats is not None and top:
        print(f"\n{title}: top {top} by own time")
        stats.sort_stats("tottime").print_stats(top)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("n", type=int, nargs="?", default=200)
    parser.add_argument("--top", type=int, default=0, help="also print the top functions by own time")
    args = parser.parse_args()
    from flow.cwl.main import main as flow_cwl

    base = tempfile.mkdtemp(prefix="profile-cwl-")
    profile_dir = os.path.join(base, "profiles")
    os.mkdir(profile_dir)
    try:
        workflow, job = write_inputs(base, args.n)
        _profiled_worker(profile_dir)
        leader = cProfile.Profile()
        start, cpu0 = time.perf_counter(), time.process_time()
        code = _call(leader, lambda: flow_cwl(["--no-container", "--quiet", "--outdir",
                                               os.path.join(base, "out"), workflow, job]), base)
        wall, leader_cpu = time.perf_counter() - start, time.process_time() - cpu0
        if code != 0:
            print(f"FAILED: flow-cwl exited {code}", file=sys.stderr)
            return 1
        _report(args, profile_dir, leader, wall, leader_cpu)
    finally:
        if not os.environ.get("PROFILE_CWL_KEEP"):
            shutil.rmtree(base, ignore_errors=True)
        else:
            print(f"kept: {profile_dir}")
    return 0


def _call(profile: cProfile.Profile, fn: Callable[[], int], base: str) -> int:
    devnull = os.open(os.devnull, os.O_WRONLY)
    saved = os.dup(1)
    os.dup2(devnull, 1)  # flow-cwl prints the output object
    try:
        return int(profile.runcall(fn))
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)


def _report(args: argparse.Namespace, profile_dir: str, leader: cProfile.Profile, wall: float,
            leader_cpu: float) -> None:
    walls = _walls(profile_dir)
    tool_walls = walls.get("tool", [])
    print(f"n: {args.n} scattered echo steps + gather (profiled: slower than a plain run)")
    print(f"wall: {wall:.2f} s   load average: {os.getloadavg()[0]:.2f}")
    print(f"leader CPU: {leader_cpu:.2f} s = {1000 * leader_cpu / max(1, args.n):.2f} ms per step")
    if tool_walls:
        print(f"tool invocation (run_tool) wall: mean {1000 * sum(tool_walls) / len(tool_walls):.2f} ms "
              f"over {len(tool_walls)} steps")
    for seconds in walls.get("gather", []):
        print(f"gather invocation (run_tool) wall: {1000 * seconds:.1f} ms")
    workers = _stats(glob.glob(os.path.join(profile_dir, "all-*.prof")))
    if workers is not None:
        _print_phases(workers, max(1, args.n), "worker, per scattered step (all jobs but the gather)")
    gather = _stats(glob.glob(os.path.join(profile_dir, "gather-*.prof")))
    if gather is not None:
        _print_phases(gather, 1, "the gather step (whole, not per step)")
    leader_stats = pstats.Stats(leader, stream=sys.stdout)
    print("\nleader (ms per step, cumulative)")
    for label, suffix, name in [("load document + inputs", "cwl/main.py", "_load"),
                                ("import inputs", "cwl/staging.py", "import_inputs"),
                                ("leader loop (scheduling, records)", "core/leader.py", "run"),
                                ("export outputs", "cwl/staging.py", "__call__")]:
        seconds, calls = _cumulative(leader_stats, suffix, name)
        print(f"  {label:<50} {1000 * seconds / max(1, args.n):8.2f} ms  ({calls} calls)")
    _top(workers, "workers", args.top)
    _top(leader_stats, "leader", args.top)


if __name__ == "__main__":
    sys.exit(main())
