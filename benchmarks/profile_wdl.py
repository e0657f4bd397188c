"""Where a WDL task's time goes: a scatter of N trivial tasks + gather, run by flow-wdl on the host.

    python benchmarks/profile_wdl.py 2000            # the breakdown per task
    python benchmarks/profile_wdl.py 2000 --cprofile 25   # and cProfile's top 25 functions

Runs ``flow-wdl --container none`` in this process (the local pool's workers are forked from it,
so they inherit the timing hooks) on benchmarks/wdl_scatter.py's workflow. Each hook adds the
time spent in one stage, exclusive of the stages nested in it, per process; workers write their
totals to a scratch folder after every job, and the script prints the sum over all processes
divided by N, in milliseconds per task, largest first, with the wall time and the leader's and
workers' CPU time. The stages:

- document: parsing, type-checking, loading the cached document (miniwdl)
- workflow eval: the workflow job's evaluation (scatter expansion, call inputs, gathers)
- requirements: the runtime values evaluated when a task job is made (its cores, memory)
- job records: pickling new jobs and writing their records; a job's completion record
- job load: reading and unpickling a job in the worker, its promises resolved
- staging: a task's input files copied out of the file store
- binding: input declarations, runtime section and command evaluated by miniwdl, the command
  file written
- fork/exec: the command run with bash (its stdout and stderr files opened), or in a batch's
  bash
- outputs: output declarations evaluated, String paths turned into file URIs
- file store writes: output files stored (``writeGlobalFile``) and the job's files committed
- call records: a batch's record of each finished call, written and looked up (and the
  leader's few shared records)
- scratch: a batch's finished calls' folders checked and kept for the next call, or moved aside
- leader reads: the leader reading the records of finished jobs
- leader scheduling: the scheduler's steps and issuing jobs to the batch system
- leader waiting for workers: the leader idle, waiting for a job to end
- cleanup: the run's scratch space and the job store removed at the end
- export: the outputs copied out of the job store at the end
- other: everything else (the worker loop, the pool's pipes, interpreter start-up)

The CPU line counts the leader, the workers, and the processes the workers ran and waited for
(the tasks' bash, the scratch space's ``rm``): the stages above are wall time in the leader and
workers only. On ext4 without a journal (this project's machines), a file or folder made costs
kernel time that grows with the inodes removed nearby in the last minutes (``recently_deleted``
in ``perf report``): it shows in the stages that make files (fork/exec, file store writes,
staging) and in the system CPU time.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import functools
import importlib
import io
import json
import os
import pstats
import resource
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from wdl_scatter import gathered_lines, write_inputs

#: Per process: stage -> exclusive seconds; the stack of stages running.
_totals: dict[str, float] = defaultdict(float)
_stack: list[list[float]] = []  # [start, time spent in nested stages]
_owner = os.getpid()
_profile: cProfile.Profile | None = None
_profile_pid = os.getpid()


def _timed(stage: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        frame = [time.perf_counter(), 0.0]
        _stack.append(frame)
        try:
            return fn(*args, **kwargs)
        finally:
            _stack.pop()
            spent = time.perf_counter() - frame[0]
            _totals[stage] += spent - frame[1]
            if _stack:
                _stack[-1][1] += spent
    return wrapper


def _hook(owner: Any, name: str, stage: str) -> None:
    """Time ``owner.name`` as ``stage`` (if this version of flow has it: before/after runs)."""
    if hasattr(owner, name):
        setattr(owner, name, _timed(stage, getattr(owner, name)))


def install_hooks(out_dir: str, use_cprofile: bool) -> None:
    """Wrap the stages' functions (import them first, so that forked workers have them)."""
    from flow.batchsystems.single_machine import SingleMachineBatchSystem
    from flow.core import common, leader, records, state, worker
    from flow.core.filestore import FileStore
    from flow.jobstores.file import FileJobStore
    from flow.wdl import adapter, files, task, workflow
    batch = _import_or_none("flow.wdl.batch")  # None before batches

    _hook(adapter, "load", "document")
    _hook(workflow.WDLWorkflowJob, "evaluate", "workflow eval")
    _hook(workflow.WDLContinuation, "evaluate", "workflow eval")
    _hook(adapter, "static_runtime", "requirements")
    _hook(worker, "write_new_jobs", "job records")
    _hook(worker, "_commit", "job records")
    _hook(worker, "_load_job", "job load")
    _hook(files.Localizer, "__call__", "staging")
    if hasattr(files.Localizer, "materialize"):
        _hook(files.Localizer, "materialize", "staging")
    _hook(adapter.TaskContext, "bind_inputs", "binding")
    _hook(adapter.TaskContext, "runtime", "binding")
    _hook(adapter.TaskContext, "command", "binding")
    _hook(task, "write_over", "binding")
    _hook(task, "execute", "fork/exec")
    shell = _import_or_none("flow.wdl.shell")  # None before a batch's calls shared a bash
    if shell is not None:
        _hook(shell.BatchShell, "run", "fork/exec")
    if batch is not None:
        _hook(batch.WDLTaskBatch, "_finished", "call records")
        _hook(batch, "_set_aside", "scratch")
        _hook(batch, "_clear_for_next", "scratch")
    _hook(FileJobStore, "write_shared", "call records")
    _hook(FileJobStore, "append_shared", "call records")
    steplog = _import_or_none("flow.core.steplog")  # None before the step log
    if steplog is not None:
        _hook(steplog.StepLog, "finished", "call records")
    _hook(adapter.TaskContext, "outputs", "outputs")
    _hook(files.Localizer, "uris_for_paths", "outputs")
    _hook(FileStore, "writeGlobalFile", "file store writes")
    _hook(FileStore, "commit", "file store writes")
    _hook(leader.Leader, "_read_finished", "leader reads")
    _hook(leader.Leader, "_closure", "leader reads")
    _hook(state.Scheduler, "step", "leader scheduling")
    _hook(leader.Leader, "_issue", "leader scheduling")
    _hook(records, "load_description", "job records read")
    _hook(SingleMachineBatchSystem, "wait", "leader waiting for workers")
    _hook(FileJobStore, "destroy", "cleanup")
    if hasattr(common, "shutil"):  # before: the scratch space (and the store's trees) by rmtree
        _hook(common.shutil, "rmtree", "cleanup")
    _hook(common, "remove_trees", "cleanup")
    _hook(files.Exporter, "__call__", "export")

    run_job = worker.run_job

    @functools.wraps(run_job)
    def run_and_report(locator: str, job_id: str) -> int:
        global _profile
        if _profile_pid != os.getpid():  # the first job of a worker forked from the leader
            _start_worker(use_cprofile)
        if _profile is not None:
            _profile.enable()
        try:
            return int(_timed("worker total", run_job)(locator, job_id))
        finally:
            if _profile is not None:
                _profile.disable()
            _dump(out_dir)

    worker.run_job = run_and_report


def _import_or_none(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def _start_worker(use_cprofile: bool) -> None:
    """A forked worker's own totals and profile, not the leader's it was forked with."""
    global _profile, _profile_pid
    if _profile is not None:
        _profile.disable()
    _profile = cProfile.Profile() if use_cprofile else None
    _profile_pid = os.getpid()
    _totals.clear()
    _stack.clear()  # the leader's frames, which never return in this process


def _dump(out_dir: str) -> None:
    """This process's totals (and profile) to ``out_dir`` (a worker: after every job)."""
    with open(os.path.join(out_dir, f"{os.getpid()}.json"), "w") as handle:
        json.dump({"totals": _totals, "cpu": _cpu(resource.RUSAGE_SELF),
                   "children": _cpu(resource.RUSAGE_CHILDREN)}, handle)
    if _profile is not None:
        _profile.dump_stats(os.path.join(out_dir, f"{os.getpid()}.prof"))


def _cpu(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


@contextlib.contextmanager
def _quiet() -> Iterator[io.StringIO]:
    saved = sys.stdout
    sys.stdout = captured = io.StringIO()
    try:
        yield captured
    finally:
        sys.stdout = saved


def run(n: int, out_dir: str, work: str, use_cprofile: bool) -> tuple[float, str]:
    """Run the scatter in this process; its wall seconds and its JSON outputs."""
    from flow.wdl import main as wdl_main

    workflow, inputs = write_inputs(work, n)
    argv = [workflow, inputs, "--container", "none", "--noProgress", "--logLevel", "WARNING",
            "-o", os.path.join(work, "out"), "--jobStore", os.path.join(work, "store")]
    global _profile
    if use_cprofile:
        _profile = cProfile.Profile()
        _profile.enable()
    start = time.perf_counter()
    with _quiet() as captured:
        code = _timed("leader total", wdl_main.main)(argv)
    wall = time.perf_counter() - start
    if _profile is not None:
        _profile.disable()
    _dump(out_dir)
    if code != 0:
        raise SystemExit(f"flow-wdl failed (exit {code})")
    return wall, captured.getvalue()


def report(n: int, wall: float, out_dir: str, top: int) -> None:
    totals: dict[str, float] = defaultdict(float)
    workers_cpu = commands_cpu = 0.0
    for name in os.listdir(out_dir):
        if name.endswith(".json"):
            with open(os.path.join(out_dir, name)) as handle:
                data = json.load(handle)
            for stage, seconds in data["totals"].items():
                totals[stage] += seconds
            if name != f"{_owner}.json":
                workers_cpu += data["cpu"]
                commands_cpu += data.get("children", 0.0)
    leader_cpu = _cpu(resource.RUSAGE_SELF)
    print(f"n: {n} scattered tasks (+1 gather)")
    print(f"wall: {wall:.2f} s ({1000 * wall / n:.2f} ms per task); load average "
          f"{os.getloadavg()[0]:.2f}")
    total = leader_cpu + workers_cpu + commands_cpu
    print(f"cpu: leader {leader_cpu:.2f} s, workers {workers_cpu:.2f} s, the workers' commands "
          f"(bash, rm) {commands_cpu:.2f} s ({1000 * total / n:.2f} ms per task)")
    print("stage (exclusive, all processes): ms per task")
    # "worker total" and "leader total" hold what no other stage claimed
    totals["other (worker)"] = totals.pop("worker total", 0.0)
    totals["other (leader, incl. waiting)"] = totals.pop("leader total", 0.0)
    for stage, seconds in sorted(totals.items(), key=lambda item: -item[1]):
        print(f"  {stage:32s} {1000 * seconds / n:8.3f}")
    profiles = [os.path.join(out_dir, p) for p in os.listdir(out_dir) if p.endswith(".prof")]
    if top and profiles:
        print(f"cProfile, all processes, top {top} by own time:")
        stream = io.StringIO()
        pstats.Stats(*profiles, stream=stream).sort_stats("tottime").print_stats(top)
        print("\n".join(line for line in stream.getvalue().splitlines()[6:] if line.strip()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("n", type=int, nargs="?", default=2000)
    parser.add_argument("--cprofile", type=int, default=0, metavar="TOP",
                        help="also profile with cProfile and print the TOP functions by own time")
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="wdl-profile-")
    out_dir = os.path.join(work, "timings")
    os.mkdir(out_dir)
    try:
        install_hooks(out_dir, args.cprofile > 0)
        wall, outputs = run(args.n, out_dir, work, args.cprofile > 0)
        lines = gathered_lines(outputs)
        if lines != args.n:
            raise SystemExit(f"gathered {lines} lines, expected {args.n}")
        report(args.n, wall, out_dir, args.cprofile)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
