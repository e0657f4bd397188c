"""flow-cwl reports a tool's failing expression in one paragraph: no traceback of the
expression library's (cwltool prints one), unless --debug asks for it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.integration.test_cwl import flow_cwl

pytest.importorskip("cwltool")

#: ``$((n+1))`` is a shell's arithmetic and, without InlineJavascriptRequirement, a malformed
#: CWL parameter reference: found only when the tool runs.
BAD_REFERENCE = """\
cwlVersion: v1.2
class: CommandLineTool
requirements: {ShellCommandRequirement: {}}
inputs: []
arguments:
  - valueFrom: "n=$((n+1))"
    shellQuote: false
outputs: []
"""


@pytest.mark.parametrize("debug", [False, True])
def test_a_malformed_parameter_reference_is_one_paragraph(tmp_path: Path, debug: bool) -> None:
    (tmp_path / "tool.cwl").write_text(BAD_REFERENCE)
    done = flow_cwl(*(["--debug"] if debug else []), "tool.cwl", cwd=tmp_path)
    assert done.returncode == 1
    assert "Syntax error in parameter reference '((n+1))'" in done.stderr
    assert "tool.cwl:6:5" in done.stderr  # where in the document
    assert ("Traceback" in done.stderr) == debug, done.stderr


JS_ERROR = """\
cwlVersion: v1.2
class: CommandLineTool
requirements: {InlineJavascriptRequirement: {}}
inputs: []
baseCommand: echo
arguments: ["$(inputs.nothing.deeper)"]
outputs: []
"""


@pytest.mark.skipif(not (shutil.which("node") or shutil.which("nodejs")), reason="no node.js to run expressions")
def test_a_failing_javascript_expression_is_summed_up_by_its_error(tmp_path: Path) -> None:
    """node's report ends with its stack; the one-line summary of the failed job is its error."""
    (tmp_path / "tool.cwl").write_text(JS_ERROR)
    done = flow_cwl("tool.cwl", cwd=tmp_path)
    assert done.returncode == 1
    summary = done.stderr.split("job(s) failed", 1)[1].splitlines()[1]
    assert "tool.cwl:6:13: TypeError: Cannot read properties of undefined (reading 'deeper')" in summary, done.stderr
