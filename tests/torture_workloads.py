"""The three workflows of the torture suite (tests/torture.py) and how to run and check them.

Every job appends ``S <job> <session>`` when it starts and ``E <job> <session>`` when it ends to
a run log outside the job store (one ``write`` with O_APPEND each, so concurrent jobs never
interleave). ``<session>`` is the session id of the process running the job: a pool worker of the
local batch system leads its own session, so it names the worker a job ran in.

- python: flow's Toil-style API, a root job, N children that each store "i i*i" in a global file,
  and a follow-on that reads them all back and joins them (N + 2 jobs).
- cwl: a CWL workflow scattering a tool over N indices, then gathering the N stdout files with cat.
- wdl: the same scatter and gather in WDL 1.1.

The known answer of each is the N lines "i i*i" in order.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass

#: The Python workflow, written to the scratch directory and run with the venv's interpreter.
PYTHON_WORKFLOW = '''"""The torture suite's Python workflow: N children store "i i*i", a follow-on joins them."""

import os
import time

from flow.core.common import Flow
from flow.core.job import Job


def mark(log, kind, name):
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, f"{kind} {name} {os.getsid(0)}\\n".encode())
    finally:
        os.close(fd)


def square(job, i, log, pause):
    mark(log, "S", i)
    time.sleep(pause)
    path = job.fileStore.getLocalTempFile()
    with open(path, "w") as handle:
        handle.write(f"{i} {i * i}\\n")
    file_id = job.fileStore.writeGlobalFile(path)
    mark(log, "E", i)
    return file_id


def gather(job, file_ids, log):
    mark(log, "S", "gather")
    parts = []
    for file_id in file_ids:
        with open(job.fileStore.readGlobalFile(file_id)) as handle:
            parts.append(handle.read())
    mark(log, "E", "gather")
    return "".join(parts)


def root(job, n, log, pause):
    mark(log, "S", "root")
    ids = [job.addChildJobFn(square, i, log, pause, cores=0.5, memory="50M").rv() for i in range(n)]
    value = job.addFollowOnJobFn(gather, ids, log, cores=0.5, memory="200M").rv()
    mark(log, "E", "root")
    return value


def main():
    parser = Job.Runner.getDefaultArgumentParser()
    parser.add_argument("--n", type=int, required=True)
    parser.add_argument("--log", required=True)
    parser.add_argument("--pause", type=float, default=0.0)
    parser.add_argument("--out", required=True)
    options = parser.parse_args()
    with Flow(options) as flow:
        if options.restart:
            text = flow.restart()
        else:
            text = flow.start(Job.wrapJobFn(root, options.n, options.log, options.pause, cores=0.5))
        with open(options.out + ".part", "w") as handle:
            handle.write(text)
        os.replace(options.out + ".part", options.out)


if __name__ == "__main__":
    main()
'''

# The shell half shared by the CWL tool and the WDL task: $1 the index, $2 the log, $3 the pause.
# The session id is field 6 of /proc/$$/stat (field 2, "(bash)", has no spaces).
_SQUARE_SH = ('sid=$(cut -d" " -f6 /proc/$$/stat); echo "S $1 $sid" >> "$2"; sleep "$3"; '
              'echo "$1 $(($1 * $1))"; echo "E $1 $sid" >> "$2"')
_GATHER_SH = ('sid=$(cut -d" " -f6 /proc/$$/stat); log="$1"; shift; echo "S gather $sid" >> "$log"; '
              'cat "$@"; echo "E gather $sid" >> "$log"')

CWL_SQUARE = {
    "cwlVersion": "v1.2", "class": "CommandLineTool",
    "baseCommand": ["bash", "-c", _SQUARE_SH, "square"],
    "inputs": {
        "index": {"type": "int", "inputBinding": {"position": 1}},
        "log": {"type": "string", "inputBinding": {"position": 2}},
        "pause": {"type": "float", "inputBinding": {"position": 3}},
    },
    "outputs": {"out": {"type": "stdout"}},
}
CWL_GATHER = {
    "cwlVersion": "v1.2", "class": "CommandLineTool",
    "baseCommand": ["bash", "-c", _GATHER_SH, "gather"],
    "inputs": {
        "log": {"type": "string", "inputBinding": {"position": 1}},
        "files": {"type": "File[]", "inputBinding": {"position": 2}},
    },
    "outputs": {"all": {"type": "stdout"}},
    "stdout": "all.txt",
}
CWL_WORKFLOW = {
    "cwlVersion": "v1.2", "class": "Workflow",
    "requirements": {"ScatterFeatureRequirement": {}},
    "inputs": {"indices": "int[]", "log": "string", "pause": "float"},
    "outputs": {"all": {"type": "File", "outputSource": "gather/all"}},
    "steps": {
        "square": {"run": "square.cwl", "scatter": "index",
                   "in": {"index": "indices", "log": "log", "pause": "pause"}, "out": ["out"]},
        "gather": {"run": "gather.cwl", "in": {"files": "square/out", "log": "log"}, "out": ["all"]},
    },
}

WDL_WORKFLOW = """version 1.1

workflow torture {
  input {
    Int n
    String log
    Float pause
  }
  scatter (i in range(n)) {
    call square { input: index = i, log = log, pause = pause }
  }
  call gather { input: files = square.out, log = log }
  output {
    File all = gather.all
  }
}

task square {
  input {
    Int index
    String log
    Float pause
  }
  command <<<
    set -- ~{index} '~{log}' ~{pause}
    SQUARE
  >>>
  output {
    File out = stdout()
  }
}

task gather {
  input {
    Array[File] files
    String log
  }
  command <<<
    set -- '~{log}' ~{sep(" ", files)}
    GATHER
  >>>
  output {
    File all = stdout()
  }
}
""".replace("SQUARE", _SQUARE_SH).replace("GATHER", _GATHER_SH)


@dataclass(frozen=True)
class Run:
    """One leader process to start: its command line and where its answer will be."""

    argv: list[str]
    store: str  # the job store
    exported: str  # the file holding the answer once the run has exported it


@dataclass(frozen=True)
class Workload:
    """A front-end's workflow: its size, its known answer, how to start and restart it."""

    name: str
    jobs: list[str]  # the names every job writes in its markers
    answer: str
    command: Callable[[str, int, bool], Run]  # (scratch directory, segment number, restart)
    answer_of: Callable[[Run, str], str | None]  # (run, its stdout) -> the answer it gave


def expected(n: int) -> str:
    return "".join(f"{i} {i * i}\n" for i in range(n))


def _write(path: str, text: str) -> str:
    with open(path, "w") as handle:
        handle.write(text)
    return path


def _core_options(scratch: str) -> list[str]:
    # Retries: a killed worker fails its job once; a job hit by two worker kills must still pass.
    return ["--workDir", os.path.join(scratch, "work"), "--retryCount", "3", "--noProgress",
            "--logLevel", "WARNING"]


def python_workload(n: int, pause: float) -> Workload:
    def command(scratch: str, segment: int, restart: bool) -> Run:
        script = os.path.join(scratch, "workflow.py")
        if not os.path.exists(script):
            _write(script, PYTHON_WORKFLOW)
        out = os.path.join(scratch, "answer.txt")
        argv = [sys.executable, script, os.path.join(scratch, "js"), "--n", str(n),
                "--log", os.path.join(scratch, "runs.log"), "--pause", str(pause), "--out", out,
                "--maxCores", "2", *_core_options(scratch)]
        return Run([*argv, "--restart"] if restart else argv, os.path.join(scratch, "js"), out)

    return Workload("python", ["root", *map(str, range(n)), "gather"], expected(n), command,
                    lambda run, stdout: read_text(run.exported))


def read_text(path: str) -> str | None:
    try:
        with open(path) as handle:
            return handle.read()
    except OSError:
        return None


def _output_text(stdout: str, key: str) -> str | None:
    """The content of the output file ``key`` in a front-end's JSON on stdout."""
    try:
        data = json.loads(stdout)
        data = data.get("outputs", data)
        entry = data[key]
        path = entry["path"] if isinstance(entry, dict) else entry
    except (ValueError, KeyError, TypeError):
        return None
    return read_text(path)


def cwl_workload(n: int, pause: float) -> Workload:
    def command(scratch: str, segment: int, restart: bool) -> Run:
        workflow = os.path.join(scratch, "wf.cwl")
        if not os.path.exists(workflow):
            _write(os.path.join(scratch, "square.cwl"), json.dumps(CWL_SQUARE, indent=1))
            _write(os.path.join(scratch, "gather.cwl"), json.dumps(CWL_GATHER, indent=1))
            _write(workflow, json.dumps(CWL_WORKFLOW, indent=1))
            _write(os.path.join(scratch, "job.json"), json.dumps(
                {"indices": list(range(n)), "log": os.path.join(scratch, "runs.log"), "pause": pause}))
        out = os.path.join(scratch, f"out-{segment}")
        # flow-cwl's options go before the document: what follows it belongs to the tool
        argv = [os.path.join(os.path.dirname(sys.executable), "flow-cwl"), "--no-container", "--quiet",
                "--jobStore", os.path.join(scratch, "js"), "--outdir", out, "--maxCores", "2",
                *_core_options(scratch), *(["--restart"] if restart else []),
                workflow, os.path.join(scratch, "job.json")]
        return Run(argv, os.path.join(scratch, "js"), os.path.join(out, "all.txt"))

    return Workload("cwl", [*map(str, range(n)), "gather"], expected(n), command,
                    lambda run, stdout: _output_text(stdout, "all"))


def wdl_workload(n: int, pause: float) -> Workload:
    def command(scratch: str, segment: int, restart: bool) -> Run:
        workflow = os.path.join(scratch, "wf.wdl")
        if not os.path.exists(workflow):
            _write(workflow, WDL_WORKFLOW)
            _write(os.path.join(scratch, "inputs.json"), json.dumps(
                {"torture.n": n, "torture.log": os.path.join(scratch, "runs.log"), "torture.pause": pause}))
        out = os.path.join(scratch, f"out-{segment}")
        argv = [os.path.join(os.path.dirname(sys.executable), "flow-wdl"), workflow,
                os.path.join(scratch, "inputs.json"), "--container", "none", "-o", out,
                "--jobStore", os.path.join(scratch, "js"), "--maxCores", "2", *_core_options(scratch)]
        return Run([*argv, "--restart"] if restart else argv, os.path.join(scratch, "js"),
                   os.path.join(out, "stdout.txt"))  # the gather task's stdout, exported

    return Workload("wdl", [*map(str, range(n)), "gather"], expected(n), command,
                    lambda run, stdout: _output_text(stdout, "torture.all"))
