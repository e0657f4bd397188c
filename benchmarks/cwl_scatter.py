"""CWL scatter: N echo steps scattered and gathered, timed for flow-cwl and for cwltool.

    python benchmarks/cwl_scatter.py 200                 # flow-cwl, cwltool serial, cwltool --parallel
    python benchmarks/cwl_scatter.py 200 2000 20000      # how wall time and leader memory scale
    python benchmarks/cwl_scatter.py 2000 --runs 3       # best of three
    python benchmarks/cwl_scatter.py 20000 --only flow-cwl

Prints 'name: value unit' lines per N: each runner's wall time, flow-cwl's leader peak memory
(VmHWM of the flow-cwl process, read from /proc while it runs; its workers are other
processes), flow-cwl's time per step and its ratio to cwltool --parallel, and the load average
before each run (the machine is shared: figures under load are not comparable). Checks that
every runner produced all N lines, in order. Above 5,000 steps the gather reads the paths from
a file (a command line cannot hold them).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

from _bench import compile_flow

ECHO = """cwlVersion: v1.2
class: CommandLineTool
baseCommand: echo
inputs:
  word: {type: string, inputBinding: {position: 1}}
outputs:
  out: {type: stdout}
"""

GATHER = """cwlVersion: v1.2
class: CommandLineTool
baseCommand: cat
inputs:
  files: {type: 'File[]', inputBinding: {position: 1}}
outputs:
  all: {type: stdout}
stdout: all.txt
"""

#: The gather for large N: 20,000 paths overflow a command line (cat fails, E2BIG, as it does
#: under cwltool), so the paths go through a file that cwltool writes (one JavaScript evaluation).
GATHER_LISTED = """cwlVersion: v1.2
class: CommandLineTool
requirements:
  InlineJavascriptRequirement: {}
  InitialWorkDirRequirement:
    listing:
      - entryname: paths.txt
        entry: "${return inputs.files.map(function(f) { return f.path; }).join('\\\\n') + '\\\\n';}"
baseCommand: [sh, -c, 'tr "\\n" "\\0" < paths.txt | xargs -0 cat']
inputs:
  files: File[]
outputs:
  all: {type: stdout}
stdout: all.txt
"""
#: Above this many steps the gather reads its paths from a file (GATHER_LISTED).
LISTED_ABOVE = 5000

WORKFLOW = """cwlVersion: v1.2
class: Workflow
requirements: {ScatterFeatureRequirement: {}}
inputs:
  words: string[]
outputs:
  all: {type: File, outputSource: gather/all}
steps:
  say:
    run: echo.cwl
    scatter: word
    in: {word: words}
    out: [out]
  gather:
    run: gather.cwl
    in: {files: say/out}
    out: [all]
"""


def write_inputs(directory: str, n: int) -> tuple[str, str]:
    gather = GATHER_LISTED if n > LISTED_ABOVE else GATHER
    for name, text in (("echo.cwl", ECHO), ("gather.cwl", gather), ("wf.cwl", WORKFLOW)):
        with open(os.path.join(directory, name), "w") as handle:
            handle.write(text)
    job = os.path.join(directory, "job.json")
    with open(job, "w") as handle:
        json.dump({"words": [f"word{i}" for i in range(n)]}, handle)
    return os.path.join(directory, "wf.cwl"), job


def _peak_kib(pid: int) -> int:
    """VmHWM (peak resident set) of a running process in KiB; 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def run_once(command: list[str], workflow: str, job: str, n: int) -> tuple[float, int]:
    """(wall seconds, peak RSS in KiB of the runner's own process) of one whole run."""
    outdir = tempfile.mkdtemp(prefix="cwl-scatter-out-")
    try:
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            start = time.perf_counter()
            process = subprocess.Popen([*command, "--outdir", outdir, workflow, job], stdout=out, stderr=err)
            peak = 0
            while process.poll() is None:
                peak = max(peak, _peak_kib(process.pid))  # HWM only grows: the last read is close
                time.sleep(0.05)
            wall = time.perf_counter() - start
            out.seek(0)
            err.seek(0)
            stdout, stderr = out.read().decode(), err.read().decode(errors="replace")
        if process.returncode != 0:
            sys.exit(f"{command[0]} failed ({process.returncode}):\n{stderr[-3000:]}")
        path = json.loads(stdout)["all"]["path"]
        with open(path) as handle:
            lines = handle.read().splitlines()
        if lines != [f"word{i}" for i in range(n)]:
            sys.exit(f"{command[0]}: expected word0..word{n - 1}, one a line; got {len(lines)} lines")
        return wall, peak
    finally:
        shutil.rmtree(outdir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("n", type=int, nargs="*", default=[200], help="scatter sizes (default: 200)")
    parser.add_argument("--runs", type=int, default=1, help="runs of each runner; the best is printed")
    parser.add_argument("--only", choices=["flow-cwl", "cwltool", "cwltool-parallel"], action="append",
                        default=None, help="run only these runners (repeatable)")
    args = parser.parse_args()
    compile_flow()  # as a regular install has it (see _bench.compile_flow)
    bindir = os.path.dirname(sys.executable)
    runners = {
        "flow-cwl": [os.path.join(bindir, "flow-cwl"), "--no-container", "--quiet"],
        "cwltool": [os.path.join(bindir, "cwltool"), "--no-container", "--quiet"],
        "cwltool-parallel": [os.path.join(bindir, "cwltool"), "--no-container", "--quiet", "--parallel"],
    }
    for n in args.n:
        measure(n, {k: v for k, v in runners.items() if not args.only or k in args.only}, args.runs)


def measure(n: int, runners: dict[str, list[str]], runs: int) -> None:
    work = tempfile.mkdtemp(prefix="cwl-scatter-")
    try:
        workflow, job = write_inputs(work, n)
        print(f"n: {n} scattered steps", flush=True)
        walls: dict[str, float] = {}
        for name, command in runners.items():
            if not os.path.exists(command[0]):
                print(f"{name}: not installed")
                continue
            load = os.getloadavg()[0]
            best, peak = min(run_once(command, workflow, job, n) for _ in range(runs))
            walls[name] = best
            print(f"{name}_wall: {best:.2f} s (load average before: {load:.2f})", flush=True)
            if name == "flow-cwl":
                print(f"flow-cwl_leader_peak_rss: {peak / 1024:.1f} MiB", flush=True)
                print(f"flow-cwl_per_step: {1000 * best / n:.2f} ms", flush=True)
        if "flow-cwl" in walls and "cwltool-parallel" in walls:
            print(f"flow-cwl_vs_cwltool_parallel: {walls['flow-cwl'] / walls['cwltool-parallel']:.2f} x", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
