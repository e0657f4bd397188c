"""CWL scatter: N echo steps scattered and gathered, timed for flow-cwl and for cwltool.

    python benchmarks/cwl_scatter.py 200            # both runners, one run each
    python benchmarks/cwl_scatter.py 2000 --runs 2  # best of two

Prints 'name: value unit' lines and checks that every runner produced all N lines.
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
    for name, text in (("echo.cwl", ECHO), ("gather.cwl", GATHER), ("wf.cwl", WORKFLOW)):
        with open(os.path.join(directory, name), "w") as handle:
            handle.write(text)
    job = os.path.join(directory, "job.json")
    with open(job, "w") as handle:
        json.dump({"words": [f"word{i}" for i in range(n)]}, handle)
    return os.path.join(directory, "wf.cwl"), job


def run_once(command: list[str], workflow: str, job: str, n: int) -> float:
    outdir = tempfile.mkdtemp(prefix="cwl-scatter-out-")
    try:
        start = time.perf_counter()
        result = subprocess.run([*command, "--outdir", outdir, workflow, job], capture_output=True, text=True)
        wall = time.perf_counter() - start
        if result.returncode != 0:
            sys.exit(f"{command[0]} failed ({result.returncode}):\n{result.stderr[-3000:]}")
        path = json.loads(result.stdout)["all"]["path"]
        with open(path) as handle:
            lines = handle.read().splitlines()
        if len(lines) != n:
            sys.exit(f"{command[0]}: expected {n} lines, got {len(lines)}")
        return wall
    finally:
        shutil.rmtree(outdir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("n", type=int, nargs="?", default=200)
    parser.add_argument("--runs", type=int, default=1, help="runs of each runner; the best is printed")
    parser.add_argument("--only", choices=["flow-cwl", "cwltool"], default=None)
    args = parser.parse_args()
    bindir = os.path.dirname(sys.executable)
    runners = {
        "flow-cwl": [os.path.join(bindir, "flow-cwl"), "--no-container", "--quiet"],
        "cwltool": [os.path.join(bindir, "cwltool"), "--no-container", "--quiet"],
    }
    work = tempfile.mkdtemp(prefix="cwl-scatter-")
    try:
        workflow, job = write_inputs(work, args.n)
        print(f"n: {args.n} scattered steps")
        for name, command in runners.items():
            if args.only and name != args.only:
                continue
            if not os.path.exists(command[0]):
                print(f"{name}: not installed")
                continue
            best = min(run_once(command, workflow, job, args.n) for _ in range(args.runs))
            print(f"{name}_wall: {best:.2f} s")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
