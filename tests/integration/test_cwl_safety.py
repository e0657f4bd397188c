"""flow-cwl data safety (issue 18): outputs from outside the tool's directories are refused
without a container too; cwltool:Secrets values never reach the job store."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.test_cwl import flow_cwl

pytest.importorskip("cwltool")

#: Each makes `out.txt` (or a directory `d`) that resolves outside the tool's directories.
ESCAPES = {
    "absolute_symlink": ("ln -s {host} out.txt", "File", "out.txt"),
    "relative_symlink": ("ln -s {rel} out.txt", "File", "out.txt"),
    "glob_through_symlinked_dir": ("ln -s {hostdir} d", "File", "d/host.txt"),
    "symlink_in_output_dir": ("mkdir d && ln -s {host} d/x.txt", "Directory", "d"),
    "cwl_output_json_dotdot": (
        "printf '{{\"o\": {{\"class\": \"File\", \"location\": \"{rel}\"}}}}' > cwl.output.json", "File", None),
}


def escape_tool(command: str, kind: str, glob: str | None) -> str:
    binding = f", outputBinding: {{glob: '{glob}'}}" if glob else ""
    return (
        "cwlVersion: v1.2\nclass: CommandLineTool\nrequirements: {ShellCommandRequirement: {}}\n"
        f"inputs: []\narguments: [{{valueFrom: {json.dumps(command)}, shellQuote: false}}]\n"
        f"outputs:\n  o: {{type: {kind}{binding}}}\n"
    )


@pytest.mark.parametrize("case", sorted(ESCAPES))
def test_outputs_outside_the_tools_directories_are_refused(tmp_path: Path, case: str) -> None:
    hostdir = tmp_path / "host"
    hostdir.mkdir()
    host = hostdir / "host.txt"
    host.write_text("host secret\n")
    command, kind, glob = ESCAPES[case]
    # ../ enough times to reach / from any directory, then down to the host file.
    rel = "../" * 40 + str(host).lstrip("/")
    (tmp_path / "tool.cwl").write_text(escape_tool(command.format(host=host, rel=rel, hostdir=hostdir), kind, glob))
    outdir = tmp_path / "out"
    done = flow_cwl("--outdir", str(outdir), "tool.cwl", cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    assert "outside the tool's directories" in done.stderr
    if glob:  # cwltool names the output parameter when collecting it
        assert "'o'" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    assert json.loads(done.stdout) == {}
    copied = [p for p in outdir.rglob("*") if p.is_file() and p.read_text() == "host secret\n"] if outdir.exists() else []
    assert copied == []
    assert host.read_text() == "host secret\n"


def test_a_symlink_inside_the_tools_directories_is_collected(tmp_path: Path) -> None:
    (tmp_path / "tool.cwl").write_text(escape_tool("mkdir a && echo hi > a/x && ln -s a/x out.txt", "File", "out.txt"))
    done = flow_cwl("--outdir", str(tmp_path / "out"), "tool.cwl", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out" / "out.txt").read_text() == "hi\n"


SECRET_TOOL = """
cwlVersion: v1.2
class: CommandLineTool
$namespaces: {cwltool: "http://commonwl.org/cwltool#"}
hints:
  cwltool:Secrets: {secrets: [pw]}
requirements:
  ShellCommandRequirement: {}
  InlineJavascriptRequirement: {}
  EnvVarRequirement: {envDef: {PW_ENV: "$(inputs.pw)"}}
inputs:
  pw: string
  other: string
arguments:
  - valueFrom: printf %s "$(inputs.pw)" | sha1sum | cut -c1-40 > digest.txt; printf %s "$PW_ENV" | wc -c > envlen.txt
    shellQuote: false
outputs:
  digest: {type: string, outputBinding: {glob: digest.txt, loadContents: true, outputEval: "$(self[0].contents.trim())"}}
  envlen: {type: int, outputBinding: {glob: envlen.txt, loadContents: true, outputEval: "$(parseInt(self[0].contents))"}}
  other_out: {type: string, outputBinding: {outputEval: "$(inputs.other)"}}
"""


def _files_holding(root: Path, needle: bytes) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and not p.is_symlink() and needle in p.read_bytes()]


def test_secret_inputs_never_reach_the_job_store(tmp_path: Path) -> None:
    secret = "s3cr3t-VALUE-7b1f"
    (tmp_path / "tool.cwl").write_text(SECRET_TOOL)
    (tmp_path / "job.json").write_text(json.dumps({"pw": secret, "other": "plain-value-9d2"}))
    store = tmp_path / "js"
    done = flow_cwl("--jobStore", str(store), "--clean", "never", "--outdir", str(tmp_path / "out"),
                    "tool.cwl", "job.json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    outputs = json.loads(done.stdout)
    # The tool got the real value, in its command line and in its environment.
    assert outputs["digest"] == hashlib.sha1(secret.encode()).hexdigest()
    assert outputs["envlen"] == len(secret)
    assert store.is_dir() and any(store.rglob("*"))
    # The check can fail: the input that is not secret is in the job records in plain text.
    assert _files_holding(store, b"plain-value-9d2")
    assert _files_holding(store, secret.encode()) == []
    assert secret not in done.stderr


SECRET_WF = """
cwlVersion: v1.2
class: Workflow
$namespaces: {cwltool: "http://commonwl.org/cwltool#"}
hints:
  cwltool:Secrets: {secrets: [pw]}
inputs:
  pw: string
  marker: string
outputs:
  digest: {type: string, outputSource: use/digest}
steps:
  gate:
    run:
      class: CommandLineTool
      baseCommand: [test, -e]
      inputs: {marker: {type: string, inputBinding: {position: 1}}}
      outputs: {ok: {type: string, outputBinding: {outputEval: $(inputs.marker)}}}
    in: {marker: marker}
    out: [ok]
  use:
    run: tool.cwl
    in: {pw: pw, other: gate/ok}
    out: [digest]
"""


def test_restart_gets_the_secrets_again_from_the_input_object(tmp_path: Path) -> None:
    secret = "another-s3cret-55a"
    (tmp_path / "tool.cwl").write_text(SECRET_TOOL)
    (tmp_path / "wf.cwl").write_text(SECRET_WF)
    marker = tmp_path / "marker"
    (tmp_path / "job.json").write_text(json.dumps({"pw": secret, "marker": str(marker)}))
    store = tmp_path / "js"
    common = ("--jobStore", str(store), "--outdir", str(tmp_path / "out"), "--retryCount", "0")
    first = flow_cwl(*common, "wf.cwl", "job.json", cwd=tmp_path)
    assert first.returncode == 1, first.stderr  # the gate fails: the store is kept for --restart
    assert _files_holding(store, secret.encode()) == []
    marker.write_text("")
    without = flow_cwl(*common, "--restart", "wf.cwl", cwd=tmp_path)
    assert without.returncode == 1
    assert "secret inputs (pw)" in without.stderr and "Traceback" not in without.stderr
    assert store.is_dir()
    again = flow_cwl(*common, "--restart", "wf.cwl", "job.json", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["digest"] == hashlib.sha1(secret.encode()).hexdigest()


@pytest.mark.slow
@pytest.mark.timeout(960)  # a shared cluster may queue the job a while
def test_secrets_reach_tools_run_by_slurm_and_not_its_files(tmp_path: Path) -> None:
    """Workers on Slurm get the values through the job's environment (sbatch --export=ALL)."""
    from tests.contract.test_batchsystem import require_slurm

    require_slurm()
    secret = "slurm-s3cret-0c4e"
    (tmp_path / "tool.cwl").write_text(SECRET_TOOL)
    (tmp_path / "job.json").write_text(json.dumps({"pw": secret, "other": "x"}))
    store, work = tmp_path / "js", tmp_path / "work"
    try:
        done = flow_cwl("--batchSystem", "slurm", "--jobStore", str(store), "--workDir", str(work),
                        "--clean", "never", "--outdir", str(tmp_path / "out"), "tool.cwl", "job.json",
                        cwd=tmp_path, timeout=840)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["digest"] == hashlib.sha1(secret.encode()).hexdigest()
        assert _files_holding(store, secret.encode()) == []
        assert work.is_dir() and _files_holding(work, secret.encode()) == []
    finally:  # cancels the Slurm job of a leader the timeout killed
        subprocess.run([sys.executable, "-m", "flow.core.cli", "clean", "--force", str(store)],
                       capture_output=True, timeout=120)
