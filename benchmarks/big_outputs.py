"""One step that writes a large output file, end to end: flow-cwl against cwltool, and flow-wdl,
with the time the write alone takes (the floor).

    python benchmarks/big_outputs.py            # 1024 MiB
    python benchmarks/big_outputs.py --mib 256

A tool's own output file is moved into the job store (no copy) and, since the store is deleted
after a successful run, handed over to the output directory (a hard link): the bytes are written
once, as with cwltool, which moves its outputs. Before that change, flow copied them twice (into
the store, then out of it). Prints 'name: value unit' lines; the outputs are checked by size.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

CWL = """\
cwlVersion: v1.2
class: CommandLineTool
baseCommand: [sh, -c, "head -c {size} /dev/zero > big.bin"]
inputs: []
outputs:
  out: {{type: File, outputBinding: {{glob: big.bin}}}}
"""

WDL = """\
version 1.0
task big {{
  command <<< head -c {size} /dev/zero > big.bin >>>
  output {{ File out = "big.bin" }}
}}
"""


def _timed(command: list[str], cwd: str, result: str, size: int) -> float:
    start = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0 or os.path.getsize(result) != size:
        sys.exit(f"{command[0]} failed (exit {done.returncode}): {done.stderr[-2000:]}")
    return wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mib", type=int, default=1024, help="output size in MiB (default 1024)")
    size = parser.parse_args().mib << 20
    bindir = os.path.dirname(sys.executable)
    base = tempfile.mkdtemp(prefix="flow-big-")
    try:
        with open(os.path.join(base, "big.cwl"), "w") as handle:
            handle.write(CWL.format(size=size))
        with open(os.path.join(base, "big.wdl"), "w") as handle:
            handle.write(WDL.format(size=size))
        print(f"output_size: {size >> 20} MiB")
        wall = _timed(["sh", "-c", f"head -c {size} /dev/zero > floor.bin"], base, os.path.join(base, "floor.bin"), size)
        print(f"write_alone_wall: {wall:.2f} s")
        for name, command, result in (
            ("flow-cwl", [os.path.join(bindir, "flow-cwl"), "--no-container", "--outdir", "o-flow", "big.cwl"],
             "o-flow/big.bin"),
            ("cwltool", [os.path.join(bindir, "cwltool"), "--no-container", "--outdir", "o-cwltool", "big.cwl"],
             "o-cwltool/big.bin"),
            ("flow-wdl", [os.path.join(bindir, "flow-wdl"), "big.wdl", "-o", "o-wdl"], "o-wdl/big.bin"),
        ):
            wall = _timed(command, base, os.path.join(base, result), size)
            print(f"{name}_wall: {wall:.2f} s")
            shutil.rmtree(os.path.join(base, os.path.dirname(result)))
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
