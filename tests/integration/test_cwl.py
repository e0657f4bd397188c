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


def flow_cwl(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "flow.cwl.main", "--no-container", "--noProgress", *args]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=180)


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
