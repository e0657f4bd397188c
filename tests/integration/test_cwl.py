"""flow-cwl end to end: tools, workflows, scatter, conditionals, errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("cwltool")

ECHO_TOOL = """
cwlVersion: v1.2
class: CommandLineTool
baseCommand: echo
inputs:
  message: {type: string, inputBinding: {position: 1}}
outputs:
  out: {type: stdout}
stdout: message.txt
"""

WC_TOOL = """
cwlVersion: v1.2
class: CommandLineTool
baseCommand: [wc, -l]
stdin: $(inputs.file.path)
requirements: {InlineJavascriptRequirement: {}}
inputs:
  file: File
outputs:
  lines: {type: int, outputBinding: {glob: out.txt, loadContents: true, outputEval: "$(parseInt(self[0].contents))"}}
stdout: out.txt
"""

SCATTER_WF = """
cwlVersion: v1.2
class: Workflow
requirements: {ScatterFeatureRequirement: {}, InlineJavascriptRequirement: {}, StepInputExpressionRequirement: {}}
inputs:
  messages: string[]
  skip: {type: boolean, default: false}
outputs:
  counts: {type: "int[]", outputSource: count/lines}
  last: {type: "int?", outputSource: maybe/lines}
steps:
  say:
    run: echo.cwl
    scatter: message
    in: {message: messages}
    out: [out]
  count:
    run: wc.cwl
    scatter: file
    in: {file: say/out}
    out: [lines]
  maybe:
    run: wc.cwl
    when: $(!inputs.skip)
    in:
      file: {source: say/out, valueFrom: "$(self.length ? self[self.length - 1] : null)"}
      skip: skip
    out: [lines]
"""


def flow_cwl(*args: str, cwd: Path, env: dict[str, str] | None = None,
             timeout: float = 180) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "flow.cwl.main", "--no-container", "--noProgress", *args]
    environment = None if env is None else {**os.environ, **env}
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=environment)


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    for name, text in (("echo.cwl", ECHO_TOOL), ("wc.cwl", WC_TOOL), ("wf.cwl", SCATTER_WF)):
        (tmp_path / name).write_text(textwrap.dedent(text))
    return tmp_path


def outputs(result: subprocess.CompletedProcess[str]) -> Any:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_tool_output_file_lands_in_outdir(docs: Path) -> None:
    (docs / "job.json").write_text(json.dumps({"message": "hello flow"}))
    out = outputs(flow_cwl("--outdir", "results", "echo.cwl", "job.json", cwd=docs))
    path = Path(out["out"]["path"])
    assert path.parent == docs / "results"
    assert path.read_text() == "hello flow\n"
    assert out["out"]["checksum"].startswith("sha1$")
    assert out["out"]["size"] == len("hello flow\n")


def test_tool_reads_an_input_file(docs: Path) -> None:
    (docs / "data.txt").write_text("a\nb\nc\n")
    (docs / "job.json").write_text(json.dumps({"file": {"class": "File", "location": "data.txt"}}))
    assert outputs(flow_cwl("wc.cwl", "job.json", cwd=docs)) == {"lines": 3}


def test_workflow_with_scatter_valuefrom_and_when(docs: Path) -> None:
    (docs / "job.json").write_text(json.dumps({"messages": ["one", "two", "three"]}))
    assert outputs(flow_cwl("wf.cwl", "job.json", cwd=docs)) == {"counts": [1, 1, 1], "last": 1}
    (docs / "skip.json").write_text(json.dumps({"messages": ["one"], "skip": True}))
    assert outputs(flow_cwl("wf.cwl", "skip.json", cwd=docs)) == {"counts": [1], "last": None}


def test_empty_scatter_gives_empty_arrays(docs: Path) -> None:
    (docs / "job.json").write_text(json.dumps({"messages": [], "skip": True}))
    assert outputs(flow_cwl("wf.cwl", "job.json", cwd=docs)) == {"counts": [], "last": None}


def _assert_clean_error(result: subprocess.CompletedProcess[str], code: int, *words: str) -> None:
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr
    assert "flow: error:" in result.stderr
    for word in words:
        assert word in result.stderr


def test_invalid_document_is_one_clear_error(docs: Path) -> None:
    (docs / "bad.cwl").write_text("cwlVersion: v1.2\nclass: CommandLineTool\ninputs: {x: {type: nosuchtype}}\noutputs: {}\n")
    _assert_clean_error(flow_cwl("bad.cwl", cwd=docs), 1, "bad.cwl", "nosuchtype")


def test_missing_input_file(docs: Path) -> None:
    (docs / "job.json").write_text(json.dumps({"file": {"class": "File", "location": "absent.txt"}}))
    _assert_clean_error(flow_cwl("wc.cwl", "job.json", cwd=docs), 1, "absent.txt")


def test_wrong_input_type(docs: Path) -> None:
    (docs / "job.json").write_text(json.dumps({"message": {"not": "a string"}}))
    _assert_clean_error(flow_cwl("echo.cwl", "job.json", cwd=docs), 1, "message")


def test_required_container_without_runtime_exits_33(docs: Path) -> None:
    text = ECHO_TOOL.replace("baseCommand: echo", "baseCommand: echo\nrequirements: {DockerRequirement: {dockerPull: 'debian:stable-slim'}}")
    (docs / "docker.cwl").write_text(textwrap.dedent(text))
    (docs / "job.json").write_text(json.dumps({"message": "x"}))
    _assert_clean_error(flow_cwl("docker.cwl", "job.json", cwd=docs), 33, "DockerRequirement")


def test_validate_only(docs: Path) -> None:
    result = flow_cwl("--validate", "wf.cwl", cwd=docs)
    assert result.returncode == 0 and "is valid CWL" in result.stdout


def test_temporary_job_store_is_removed_on_success(docs: Path, tmp_path: Path) -> None:
    (docs / "job.json").write_text(json.dumps({"message": "x"}))
    env_tmp = tmp_path / "tmp"
    env_tmp.mkdir()
    result = subprocess.run(
        [sys.executable, "-m", "flow.cwl.main", "--no-container", "--noProgress", "echo.cwl", "job.json"],
        cwd=docs, capture_output=True, text=True, timeout=180, env={**os.environ, "TMPDIR": str(env_tmp)},
    )
    assert result.returncode == 0, result.stderr
    assert not [p for p in env_tmp.iterdir() if p.name.startswith("flow-jobstore-")]


def test_schema_cache_is_written_reused_and_replaced_when_corrupt(docs: Path, tmp_path: Path) -> None:
    """The parsed CWL schemas are kept in one file: written by the first run, read (not
    rewritten) by the next, and replaced when it is damaged; every run gives the same outputs."""
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache")}
    (docs / "job.json").write_text(json.dumps({"messages": ["one", "two"]}))

    def run(outdir: str) -> Any:
        return outputs(flow_cwl("--outdir", outdir, "wf.cwl", "job.json", cwd=docs, env=env))

    first = run("out1")
    assert first == {"counts": [1, 1], "last": 1}
    (cache,) = (tmp_path / "cache" / "flow").glob("cwl-schemas-*.pickle")
    written = cache.stat()
    assert written.st_size > 100_000
    assert run("out2") == first  # counts and last are plain values: equal across outdirs
    assert cache.stat().st_ino == written.st_ino, "a readable cache must not be rewritten"
    cache.write_bytes(b"not a pickle")
    assert run("out3") == first
    assert cache.stat().st_size > 100_000, "a damaged cache is replaced"


RESOURCE_TOOL = """
cwlVersion: v1.2
class: CommandLineTool
baseCommand: echo
requirements:
  InlineJavascriptRequirement: {}
  ResourceRequirement: {coresMin: 1, ramMin: $(inputs.mebibytes)}
inputs:
  mebibytes: int
outputs:
  out: {type: stdout}
"""


def test_resource_expressions_reach_the_batch_system(docs: Path) -> None:
    """ramMin is an expression of the inputs: a small request runs, an impossible one is
    refused by the batch system with one clear paragraph (not run with a default)."""
    (docs / "res.cwl").write_text(textwrap.dedent(RESOURCE_TOOL))
    (docs / "small.json").write_text(json.dumps({"mebibytes": 10}))
    assert "out" in outputs(flow_cwl("res.cwl", "small.json", cwd=docs))
    (docs / "huge.json").write_text(json.dumps({"mebibytes": 1024**3}))  # 1 PiB
    result = flow_cwl("res.cwl", "huge.json", cwd=docs)
    _assert_clean_error(result, 1, "memory")


RESTART_WF = """
cwlVersion: v1.2
class: Workflow
requirements: {ShellCommandRequirement: {}}
inputs:
  marker: string
outputs:
  out: {type: File, outputSource: second/out}
steps:
  first:
    run:
      class: CommandLineTool
      requirements: {ShellCommandRequirement: {}}
      inputs: {marker: string}
      arguments: [{shellQuote: false, valueFrom: "echo ran >> $(inputs.marker).log; echo first"}]
      outputs: {out: {type: stdout}}
    in: {marker: marker}
    out: [out]
  second:
    run:
      class: CommandLineTool
      requirements: {ShellCommandRequirement: {}}
      inputs: {marker: string, previous: File}
      arguments: [{shellQuote: false, valueFrom: "test -e $(inputs.marker).ok && cat $(inputs.previous.path)"}]
      outputs: {out: {type: stdout}}
    in: {marker: marker, previous: first/out}
    out: [out]
"""


def test_restart_resumes_after_a_failed_step(docs: Path, tmp_path: Path) -> None:
    """The second step fails until a marker exists; --restart then finishes the run without
    running the first step again."""
    marker = tmp_path / "marker"
    (docs / "restart.cwl").write_text(textwrap.dedent(RESTART_WF))
    (docs / "job.json").write_text(json.dumps({"marker": str(marker)}))
    store = str(tmp_path / "js")
    failed = flow_cwl("--jobStore", store, "--retryCount", "0", "restart.cwl", "job.json", cwd=docs)
    assert failed.returncode == 1, failed.stderr
    assert "--restart" in failed.stderr and os.path.isdir(store)
    Path(f"{marker}.ok").touch()
    resumed = flow_cwl("--jobStore", store, "--restart", "restart.cwl", "job.json", cwd=docs)
    out = outputs(resumed)["out"]
    assert Path(out["location"].removeprefix("file://")).read_text() == "first\n"
    assert Path(f"{marker}.log").read_text() == "ran\n", "the first step ran again"
    assert not os.path.exists(store), "--clean onSuccess (the default) removes the store"


SYMLINK_TOOL = """
cwlVersion: v1.2
class: CommandLineTool
requirements:
  DockerRequirement: {dockerPull: "debian:stable-slim"}
  ShellCommandRequirement: {}
inputs:
  target: string
outputs:
  linked: {type: File, outputBinding: {glob: link.txt}}
arguments:
  - {valueFrom: "echo inside > made.txt && ln -s $(inputs.target) link.txt", shellQuote: false}
"""


def _podman_works() -> bool:
    try:
        probe = ["podman", "run", "--rm", "--net=none", "debian:stable-slim", "true"]
        return subprocess.run(probe, capture_output=True, timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def test_container_symlink_outside_its_directories_is_not_retrieved(docs: Path, tmp_path: Path) -> None:
    """In a container, /x in a symlink is the container's /x: never the host file of that name."""
    if not _podman_works():
        pytest.skip("podman cannot run debian:stable-slim here (run ../shared/containers/make-local-images as root)")
    (docs / "link.cwl").write_text(textwrap.dedent(SYMLINK_TOOL))
    host_file = tmp_path / "on-the-host.txt"
    host_file.write_text("host data\n")
    command = [sys.executable, "-m", "flow.cwl.main", "--podman", "--noProgress", "link.cwl"]
    (docs / "out.json").write_text(json.dumps({"target": str(host_file)}))
    escaped = subprocess.run([*command, "out.json"], cwd=docs, capture_output=True, text=True, timeout=300)
    assert escaped.returncode == 1, escaped.stderr
    assert "Traceback" not in escaped.stderr and "link.txt" in escaped.stderr
    (docs / "in.json").write_text(json.dumps({"target": "made.txt"}))
    inside = subprocess.run([*command, "in.json"], cwd=docs, capture_output=True, text=True, timeout=300)
    assert inside.returncode == 0, inside.stderr
    assert Path(json.loads(inside.stdout)["linked"]["path"]).read_text() == "inside\n"


def test_internal_jobs_are_hidden_and_tool_runs_shown(docs: Path) -> None:
    """The scatter becomes hidden CWLScatter and CWLGather jobs; 'flow stats' shows the tool
    runs (CWLJob) and only lists the internal kinds with --all."""
    (docs / "job.json").write_text(json.dumps({"messages": ["one", "two", "three"]}))
    assert outputs(flow_cwl("--jobStore", "js", "--stats", "wf.cwl", "job.json", cwd=docs))["counts"] == [1, 1, 1]

    def stats(*flags: str) -> dict[str, dict[str, Any]]:
        done = subprocess.run([sys.executable, "-m", "flow.core.cli", "stats", "--json", *flags, "js"],
                              cwd=docs, capture_output=True, text=True, timeout=60, check=True)
        return {row["kind"]: row for row in json.loads(done.stdout)["kinds"]}

    every = stats("--all")
    assert every["CWLJob"]["count"] == 7 and not every["CWLJob"]["hidden"]  # 3 echo, 3 wc, 1 maybe
    for kind, count in (("CWLWorkflow", 1), ("CWLScatter", 2), ("CWLGather", 2), ("CWLStep", 1)):
        assert every[kind]["count"] == count and every[kind]["hidden"], (kind, every.get(kind))
    assert set(stats()) == {"CWLJob"}


CHANGES_INPUT_TOOL = """
cwlVersion: v1.2
class: CommandLineTool
baseCommand: [sh, -c, 'echo changed >> "$0"']
inputs:
  f: {type: File, inputBinding: {position: 1}}
outputs: {}
"""


def test_tool_changing_its_input_fails_and_leaves_the_input(docs: Path) -> None:
    """cwltool without a container lets the tool change the user's file; flow fails the step
    (as in a container, where inputs are read-only) and the input is untouched."""
    (docs / "changes.cwl").write_text(textwrap.dedent(CHANGES_INPUT_TOOL))
    (docs / "in.txt").write_text("original\n")
    (docs / "job.json").write_text(json.dumps({"f": {"class": "File", "location": "in.txt"}}))
    result = flow_cwl("changes.cwl", "job.json", cwd=docs)
    _assert_clean_error(result, 1, "changed its input file in.txt", "InplaceUpdateRequirement")
    assert (docs / "in.txt").read_text() == "original\n"
