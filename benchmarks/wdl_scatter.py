"""WDL scatter: N one-line tasks scattered and gathered, timed for flow-wdl and for miniwdl.

    python benchmarks/wdl_scatter.py 200                 # flow-wdl, then miniwdl if it can run
    python benchmarks/wdl_scatter.py 2000 --only flow-wdl
    python benchmarks/wdl_scatter.py 200 --miniwdl-backend podman
    python benchmarks/wdl_scatter.py 200 2000 20000 --only flow-wdl   # how it scales

flow-wdl runs the tasks on the host (--container none). miniwdl runs every task in a container
(docker by default: without a Docker engine it cannot run a task, and the script says so; with
``--miniwdl-backend podman`` it uses miniwdl's podman backend and its default image). Prints
'name: value unit' lines and checks that every runner gathered all N lines, in order.

flow-wdl's leader runs in a small wrapper that reports its peak RSS (``ru_maxrss`` of the leader
process only: the pool's workers are processes of their own), printed as ``flow-wdl_leader_peak``.
With several sizes, each size's figures are suffixed ``[n=N]``, and the growth from one size to
the next is printed as the ratio of wall time per task and of peak memory. ``_cpu`` is the user + system time of the runner and all its processes
(the tasks' commands included): steadier than wall time on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

from _bench import compile_flow

WORKFLOW = """version 1.1

workflow scatter_gather {
  input {
    Array[String] words
  }
  scatter (word in words) {
    call say { input: word = word }
  }
  call gather { input: files = say.out }
  output {
    File all = gather.all
  }
}

task say {
  input {
    String word
  }
  command <<< echo ~{word} >>>
  output {
    File out = stdout()
  }
}

task gather {
  input {
    Array[File] files
  }
  command <<< cat ~{sep(" ", files)} >>>
  output {
    File all = stdout()
  }
}
"""


def write_inputs(directory: str, n: int) -> tuple[str, str]:
    workflow = os.path.join(directory, "scatter.wdl")
    with open(workflow, "w") as handle:
        handle.write(WORKFLOW)
    inputs = os.path.join(directory, "inputs.json")
    with open(inputs, "w") as handle:
        json.dump({"scatter_gather.words": [f"word{i}" for i in range(n)]}, handle)
    return workflow, inputs


#: Runs flow-wdl's main in this interpreter, then writes the process's peak RSS (bytes) to the
#: file named by $WDL_SCATTER_PEAK.
LEADER = """
import os, resource, sys
from flow.wdl.main import main
code = main(sys.argv[1:])
with open(os.environ["WDL_SCATTER_PEAK"], "w") as handle:
    handle.write(str(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024))
sys.exit(code)
"""


def gathered_lines(stdout: str) -> int:
    return len(gathered(stdout))


def gathered(stdout: str) -> list[str]:
    data = json.loads(stdout)
    data = data.get("outputs", data)
    with open(data["scatter_gather.all"]) as handle:
        return handle.read().splitlines()


@dataclass
class Result:
    wall: float
    cpu: float  # user + system seconds of the runner and every process under it
    peak: int | None  # bytes; None where not measured


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_once(name: str, command: list[str], env: dict[str, str], n: int) -> Result | str:
    """Wall seconds (and the leader's peak memory), or why the runner could not run."""
    work = tempfile.mkdtemp(prefix=f"wdl-scatter-{name}-")
    peak_file = os.path.join(work, "peak")
    try:
        cpu0 = children_cpu()
        start = time.perf_counter()
        result = subprocess.run(command, cwd=work, capture_output=True, text=True,
                                env={**env, "WDL_SCATTER_PEAK": peak_file})
        wall = time.perf_counter() - start
        cpu = children_cpu() - cpu0
        if result.returncode != 0:
            last = (result.stderr.strip().splitlines() or [""])[-1]
            return f"failed (exit {result.returncode}): {last[:300]}"
        lines = gathered(result.stdout)
        if lines != [f"word{i}" for i in range(n)]:
            return f"gathered {len(lines)} lines, expected word0 .. word{n - 1} in order"
        peak = None
        if os.path.exists(peak_file):
            with open(peak_file) as handle:
                peak = int(handle.read())
        return Result(wall, cpu, peak)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("n", type=int, nargs="*", default=[200], help="scatter sizes (default 200)")
    parser.add_argument("--runs", type=int, default=1, help="runs of each runner; the best is printed")
    parser.add_argument("--only", choices=["flow-wdl", "miniwdl"], default=None)
    parser.add_argument("--miniwdl-backend", default=None,
                        help="miniwdl's container backend (docker by default; e.g. podman)")
    args = parser.parse_args()
    compile_flow()  # as a regular install has it (see _bench.compile_flow)
    print(f"load_average: {os.getloadavg()[0]:.2f}")
    previous: dict[str, tuple[int, Result]] = {}
    for n in args.n:
        suffix = f"[n={n}]" if len(args.n) > 1 else ""
        for name, best in run_size(n, args).items():
            if isinstance(best, str):
                print(f"{name}{suffix}: {best}")
                continue
            print(f"{name}_wall{suffix}: {best.wall:.2f} s ({1000 * best.wall / n:.2f} ms per task)")
            print(f"{name}_cpu{suffix}: {best.cpu:.2f} s (all its processes; "
                  f"{1000 * best.cpu / n:.2f} ms per task)")
            if best.peak is not None:
                print(f"{name}_leader_peak{suffix}: {best.peak / 2**20:.0f} MiB")
            if name in previous:
                m, before = previous[name]
                growth = (best.wall / n) / (before.wall / m)
                print(f"{name}_wall_per_task_growth[{m}->{n}]: {growth:.2f}x")
                if best.peak is not None and before.peak is not None:
                    print(f"{name}_leader_peak_growth[{m}->{n}]: {best.peak / before.peak:.2f}x "
                          f"(tasks {n / m:.0f}x)")
            previous[name] = (n, best)
        print(f"load_average: {os.getloadavg()[0]:.2f}", flush=True)


def run_size(n: int, args: argparse.Namespace) -> dict[str, Result | str]:
    """Each runner's best run for ``n`` tasks, or why it cannot run."""
    bindir = os.path.dirname(sys.executable)
    work = tempfile.mkdtemp(prefix="wdl-scatter-")
    out: dict[str, Result | str] = {}
    try:
        workflow, inputs = write_inputs(work, n)
        runners = {
            "flow-wdl": ([sys.executable, "-c", LEADER, workflow, inputs, "--container", "none",
                          "--noProgress", "--logLevel", "WARNING", "-o", "out"], dict(os.environ)),
            "miniwdl": ([os.path.join(bindir, "miniwdl"), "run", workflow, "-i", inputs, "--dir", ".",
                         "--no-color"],
                        {**os.environ, **({"MINIWDL__SCHEDULER__CONTAINER_BACKEND": args.miniwdl_backend}
                                          if args.miniwdl_backend else {})}),
        }
        for name, (command, env) in runners.items():
            if args.only and name != args.only:
                continue
            if name == "miniwdl" and not os.path.exists(command[0]):
                out[name] = "not installed"
                continue
            results = [run_once(name, command, env, n) for _ in range(args.runs)]
            times = [r for r in results if isinstance(r, Result)]
            out[name] = min(times, key=lambda r: r.wall) if times else f"cannot run here: {results[0]}"
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return out


if __name__ == "__main__":
    main()
