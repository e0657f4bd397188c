"""WDL scatter: N one-line tasks scattered and gathered, timed for flow-wdl and for miniwdl.

    python benchmarks/wdl_scatter.py 200                 # flow-wdl, then miniwdl if it can run
    python benchmarks/wdl_scatter.py 2000 --only flow-wdl
    python benchmarks/wdl_scatter.py 200 --miniwdl-backend podman

flow-wdl runs the tasks on the host (--container none). miniwdl runs every task in a container
(docker by default: without a Docker engine it cannot run a task, and the script says so; with
``--miniwdl-backend podman`` it uses miniwdl's podman backend and its default image). Prints
'name: value unit' lines and checks that every runner gathered all N lines.
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


def gathered_lines(stdout: str) -> int:
    data = json.loads(stdout)
    data = data.get("outputs", data)
    with open(data["scatter_gather.all"]) as handle:
        return len(handle.read().splitlines())


def run_once(name: str, command: list[str], env: dict[str, str], n: int) -> float | str:
    """Wall seconds, or why the runner could not run."""
    work = tempfile.mkdtemp(prefix=f"wdl-scatter-{name}-")
    try:
        start = time.perf_counter()
        result = subprocess.run(command, cwd=work, capture_output=True, text=True, env=env)
        wall = time.perf_counter() - start
        if result.returncode != 0:
            last = (result.stderr.strip().splitlines() or [""])[-1]
            return f"failed (exit {result.returncode}): {last[:300]}"
        lines = gathered_lines(result.stdout)
        if lines != n:
            return f"gathered {lines} lines, expected {n}"
        return wall
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("n", type=int, nargs="?", default=200)
    parser.add_argument("--runs", type=int, default=1, help="runs of each runner; the best is printed")
    parser.add_argument("--only", choices=["flow-wdl", "miniwdl"], default=None)
    parser.add_argument("--miniwdl-backend", default=None,
                        help="miniwdl's container backend (docker by default; e.g. podman)")
    args = parser.parse_args()
    bindir = os.path.dirname(sys.executable)
    work = tempfile.mkdtemp(prefix="wdl-scatter-")
    try:
        workflow, inputs = write_inputs(work, args.n)
        runners = {
            "flow-wdl": ([os.path.join(bindir, "flow-wdl"), workflow, inputs, "--container", "none",
                          "--noProgress", "--logLevel", "WARNING", "-o", "out"], dict(os.environ)),
            "miniwdl": ([os.path.join(bindir, "miniwdl"), "run", workflow, "-i", inputs, "--dir", ".",
                         "--no-color"],
                        {**os.environ, **({"MINIWDL__SCHEDULER__CONTAINER_BACKEND": args.miniwdl_backend}
                                          if args.miniwdl_backend else {})}),
        }
        print(f"n: {args.n} scattered tasks")
        for name, (command, env) in runners.items():
            if args.only and name != args.only:
                continue
            if not os.path.exists(command[0]):
                print(f"{name}: not installed")
                continue
            results = [run_once(name, command, env, args.n) for _ in range(args.runs)]
            times = [r for r in results if isinstance(r, float)]
            if times:
                print(f"{name}_wall: {min(times):.2f} s")
            else:
                print(f"{name}: cannot run here: {results[0]}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
