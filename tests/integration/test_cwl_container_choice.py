"""Without --docker/--podman/--singularity/--no-container, flow-cwl looks for a container
runtime only when the document has a DockerRequirement (requirement or hint): cwltool runs
every other tool on the host, and the look (``podman info``) costs half a second a run."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.integration.test_cwl import ECHO_TOOL

pytest.importorskip("cwltool")

HINTED = ECHO_TOOL.replace("baseCommand: echo", "baseCommand: echo\nhints: {DockerRequirement: {dockerPull: 'debian:stable-slim'}}")

WORKFLOW = """\
cwlVersion: v1.2
class: Workflow
inputs:
  message: string
steps:
  say: {run: STEP, in: {message: message}, out: [out]}
outputs:
  out: {type: File, outputSource: say/out}
"""


def _recording_podman(bin_dir: Path, log: Path) -> None:
    """A ``podman`` first on PATH that notes its arguments, then runs the real podman."""
    real = shutil.which("podman")
    script = f"#!/bin/sh\necho \"$1\" >> '{log}'\n" + (f"exec '{real}' \"$@\"\n" if real else "exit 127\n")
    (bin_dir / "podman").write_text(script)
    (bin_dir / "podman").chmod(0o755)


@pytest.mark.parametrize(("step", "probed"), [("echo.cwl", False), ("hinted.cwl", True)])
def test_runtime_looked_for_only_when_a_tool_names_an_image(tmp_path: Path, step: str, probed: bool) -> None:
    (tmp_path / "echo.cwl").write_text(ECHO_TOOL)
    (tmp_path / "hinted.cwl").write_text(HINTED)
    (tmp_path / "wf.cwl").write_text(textwrap.dedent(WORKFLOW).replace("STEP", step))
    (tmp_path / "job.json").write_text(json.dumps({"message": "hello"}))
    bin_dir, log = tmp_path / "bin", tmp_path / "podman-calls.txt"
    bin_dir.mkdir()
    _recording_podman(bin_dir, log)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run([sys.executable, "-m", "flow.cwl.main", "--noProgress", "--outdir", "out", "wf.cwl",
                           "job.json"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert Path(json.loads(done.stdout)["out"]["path"]).read_text() == "hello\n"
    calls = log.read_text().split() if log.exists() else []
    assert ("info" in calls) == probed, calls
