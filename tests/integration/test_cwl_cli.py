"""flow-cwl as a drop-in for cwltool (issue 20): document forms, output objects, tool inputs as
options, cwltool's options, failure output."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.test_cwl import ECHO_TOOL, SCATTER_WF, WC_TOOL, flow_cwl

pytest.importorskip("cwltool")

CWLTOOL = str(Path(sys.executable).with_name("cwltool"))


@pytest.fixture
def packed(tmp_path: Path) -> Path:
    """``cwltool --pack`` of the scatter workflow, in its own directory."""
    src = tmp_path / "src"
    src.mkdir()
    for name, text in (("echo.cwl", ECHO_TOOL), ("wc.cwl", WC_TOOL), ("wf.cwl", SCATTER_WF)):
        (src / name).write_text(text)
    done = subprocess.run([CWLTOOL, "--pack", str(src / "wf.cwl")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    (tmp_path / "packed").mkdir()
    path = tmp_path / "packed" / "packed.cwl"
    path.write_text(done.stdout)
    (tmp_path / "packed" / "job.json").write_text(json.dumps({"messages": ["a", "b"]}))
    return path


@pytest.mark.parametrize("form", ["relative#main", "relative", "absolute#main", "uri#main"])
def test_a_packed_workflow_runs_in_every_form_cwltool_accepts(tmp_path: Path, packed: Path, form: str) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    document = {"relative#main": "../packed/packed.cwl#main", "relative": "../packed/packed.cwl",
                "absolute#main": f"{packed}#main", "uri#main": f"{packed.as_uri()}#main"}[form]
    done = flow_cwl("--outdir", "out", document, "../packed/job.json", cwd=elsewhere)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"counts": [1, 1], "last": 1}


def test_validate_takes_a_uri_with_a_fragment(packed: Path) -> None:
    done = flow_cwl("--validate", f"{packed.as_uri()}#main", cwd=packed.parent)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"{packed.as_uri()}#main is valid CWL."


def test_a_missing_fragment_names_the_ids_that_exist(packed: Path) -> None:
    done = flow_cwl("packed.cwl#nope", "job.json", cwd=packed.parent)
    assert done.returncode == 1
    assert "'#nope'" in done.stderr and "#main" in done.stderr and "#wc.cwl" in done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1


DIR_TOOL = """
cwlVersion: v1.2
class: CommandLineTool
requirements: {ShellCommandRequirement: {}}
inputs: []
arguments: [{valueFrom: "mkdir -p d/sub && echo a > d/a.txt && echo b > d/sub/b.txt && echo c > c.txt", shellQuote: false}]
outputs:
  d: {type: Directory, outputBinding: {glob: d}}
  c: {type: File, outputBinding: {glob: c.txt}}
"""


def _normalised(value: object, outdir: Path) -> object:
    if isinstance(value, dict):
        return {k: _normalised(v, outdir) for k, v in value.items()}
    if isinstance(value, list):
        return sorted((_normalised(v, outdir) for v in value), key=lambda v: json.dumps(v, sort_keys=True))
    return value.replace(str(outdir), "OUT") if isinstance(value, str) else value


def test_output_object_is_cwltools(tmp_path: Path) -> None:
    (tmp_path / "dir.cwl").write_text(DIR_TOOL)
    flow = flow_cwl("--outdir", "o1", "dir.cwl", cwd=tmp_path)
    assert flow.returncode == 0, flow.stderr
    ref = subprocess.run([CWLTOOL, "--quiet", "--no-container", "--outdir", "o2", "dir.cwl"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert ref.returncode == 0, ref.stderr
    ours = _normalised(json.loads(flow.stdout), tmp_path / "o1")
    assert ours == _normalised(json.loads(ref.stdout), tmp_path / "o2")
    listing = json.loads(flow.stdout)["d"]["listing"]
    assert all("checksum" in f and "size" in f for f in listing if f["class"] == "File")
    assert "nameroot" not in json.loads(flow.stdout)["c"]


@pytest.mark.parametrize("content", ["", "[" * 10000 + "]" * 10000])
def test_empty_or_absurdly_nested_documents_get_one_paragraph(tmp_path: Path, content: str) -> None:
    (tmp_path / "bad.cwl").write_text(content)
    done = flow_cwl("bad.cwl", cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr.startswith("flow: error:") and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


MSG_TOOL = """
cwlVersion: v1.2
class: CommandLineTool
baseCommand: echo
inputs:
  message: {type: string, inputBinding: {position: 1}}
  count: {type: "int?", inputBinding: {position: 2}}
outputs:
  out: stdout
stdout: o.txt
"""


def test_tool_inputs_as_options(tmp_path: Path) -> None:
    (tmp_path / "msg.cwl").write_text(MSG_TOOL)
    done = flow_cwl("--outdir", "out", "msg.cwl", "--message", "hi there", "--count", "3", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out" / "o.txt").read_text() == "hi there 3\n"
    bad = flow_cwl("msg.cwl", "--count", "x", cwd=tmp_path)
    assert bad.returncode == 1 and "--count" in bad.stderr and "Traceback" not in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1


def test_a_flow_option_after_the_document_is_refused_unless_the_tool_has_that_input(tmp_path: Path) -> None:
    (tmp_path / "msg.cwl").write_text(MSG_TOOL)
    (tmp_path / "job.json").write_text(json.dumps({"message": "hi"}))
    done = flow_cwl("--jobStore", "js", "msg.cwl", "job.json", "--restart", cwd=tmp_path)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "--restart comes after the document" in done.stderr and "flow-cwl --restart" in done.stderr
    assert not (tmp_path / "js").exists()  # refused before any job store was made
    (tmp_path / "opt.cwl").write_text(MSG_TOOL.replace("count:", "stats:"))
    done = flow_cwl("--outdir", "out", "opt.cwl", "--message", "hi", "--stats", "7", cwd=tmp_path)
    assert done.returncode == 0, done.stderr  # --stats is the tool's input here, as in cwltool
    assert (tmp_path / "out" / "o.txt").read_text() == "hi 7\n"


def test_cwltool_options(tmp_path: Path) -> None:
    (tmp_path / "msg.cwl").write_text(MSG_TOOL)
    version = flow_cwl("--version", cwd=tmp_path)
    assert version.returncode == 0
    assert [line.split()[0] for line in version.stdout.splitlines()] == ["flow", "cwltool", "miniwdl"]
    for option in (["--cachedir", "c"], ["--single-step", "s"], ["--bogus-option"]):
        done = flow_cwl(*option, "msg.cwl", cwd=tmp_path)
        assert done.returncode == 2
        assert len(done.stderr.strip().splitlines()) == 1 and option[0] in done.stderr, done.stderr
    ours = flow_cwl("--pack", "msg.cwl", cwd=tmp_path)
    ref = subprocess.run([CWLTOOL, "--pack", "msg.cwl"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert ours.returncode == 0 and json.loads(ours.stdout) == json.loads(ref.stdout)


FAIL_TOOL = """
cwlVersion: v1.2
class: CommandLineTool
baseCommand: [sh, -c, 'test -e "$0" || { echo "no marker" >&2; exit 3; }']
inputs:
  marker: {type: string, inputBinding: {position: 1}}
outputs: []
"""


def test_a_failure_is_reported_once_with_the_exit_status_and_a_working_resume_command(tmp_path: Path) -> None:
    (tmp_path / "fail.cwl").write_text(FAIL_TOOL)
    marker = tmp_path / "marker"
    failed = flow_cwl("fail.cwl", "--marker", str(marker), cwd=tmp_path)
    assert failed.returncode == 1
    assert failed.stdout.strip() == "{}"
    assert "exited with status 3" in failed.stderr
    assert "exit code 1" not in failed.stderr  # the worker's exit status never follows the tool's
    reasons = [line for line in failed.stderr.splitlines() if " ERROR " in line or line.startswith("  - ")]
    assert len(reasons) == 2 and all(line.count("status 3") == 1 for line in reasons), failed.stderr
    assert failed.stderr.count("no marker") == 1
    hint = failed.stderr.strip().splitlines()[-1]
    assert hint.startswith("Fix the cause, then resume: flow-cwl --restart --jobStore ")
    command = shlex.split(hint.split(": ", 1)[1])
    marker.write_text("")
    resumed = subprocess.run([sys.executable, "-m", "flow.cwl.main", *command[1:]], cwd=tmp_path,
                             capture_output=True, text=True, timeout=180)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout) == {}


@pytest.mark.parametrize("option", ["--print-deps", "--make-template", "--print-dot", "--print-targets",
                                    "--print-input-deps", "--print-rdf"])
def test_options_that_only_print_answer_as_cwltool(tmp_path: Path, option: str) -> None:
    """cwltool itself answers them (nothing runs): the same output and exit status, for a
    workflow and for a tool (--print-dot refuses a tool, as cwltool)."""
    for name, text in (("echo.cwl", ECHO_TOOL), ("wc.cwl", WC_TOOL), ("wf.cwl", SCATTER_WF)):
        (tmp_path / name).write_text(text)
    (tmp_path / "job.json").write_text(json.dumps({"messages": ["a"]}))
    for document in ("wf.cwl", "echo.cwl"):
        ours = flow_cwl("--jobStore", "js", option, document, "job.json", cwd=tmp_path)
        ref = subprocess.run([CWLTOOL, option, document, "job.json"], cwd=tmp_path, capture_output=True,
                             text=True, timeout=120)
        assert ours.returncode == ref.returncode, ours.stderr
        if option == "--print-rdf":  # cwltool's own order of RDF statements varies from run to run
            from rdflib import Graph
            from rdflib.compare import isomorphic
            assert isomorphic(Graph().parse(data=ours.stdout, format="turtle"),
                              Graph().parse(data=ref.stdout, format="turtle"))
        else:
            assert ours.stdout == ref.stdout
        assert not (tmp_path / "js").exists()  # nothing ran


COUNT_AND_FAIL_TOOL = """
cwlVersion: v1.2
class: CommandLineTool
baseCommand: [sh, -c, 'echo ran >> "$0"; exit 3']
inputs:
  tally: {type: string, inputBinding: {position: 1}}
outputs: []
"""


@pytest.mark.parametrize("retries", [None, "1"])
def test_a_failed_tool_runs_again_only_when_asked(tmp_path: Path, retries: str | None) -> None:
    """cwltool never runs a failed tool twice, and neither does flow-cwl unless --retryCount says."""
    (tmp_path / "fail.cwl").write_text(COUNT_AND_FAIL_TOOL)
    tally = tmp_path / "tally"
    extra = ["--retryCount", retries] if retries else []
    failed = flow_cwl(*extra, "fail.cwl", "--tally", str(tally), cwd=tmp_path)
    assert failed.returncode == 1, failed.stderr
    assert tally.read_text().splitlines() == ["ran"] * (1 + int(retries or 0))


def test_runs_leave_nothing_in_the_temporary_directory_but_a_failed_runs_store(tmp_path: Path) -> None:
    """A run's scratch (and cwltool's directories for binding a tool's inputs) goes when it
    ends; a failed run keeps only the job store its resume command names."""
    (tmp_path / "echo.cwl").write_text(ECHO_TOOL)
    (tmp_path / "fail.cwl").write_text(FAIL_TOOL)
    (tmp_path / "job.json").write_text(json.dumps({"message": "hi"}))
    temp = tmp_path / "temp"
    temp.mkdir()
    env = {"TMPDIR": str(temp)}
    done = flow_cwl("--outdir", "out", "echo.cwl", "job.json", cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in temp.iterdir()) == []
    failed = flow_cwl("fail.cwl", "--marker", str(tmp_path / "absent"), cwd=tmp_path, env=env)
    assert failed.returncode == 1
    store = shlex.split(failed.stderr.strip().splitlines()[-1].split(": ", 1)[1])
    kept = Path(store[store.index("--jobStore") + 1])
    assert sorted(temp.iterdir()) == ([kept] if kept.parent == temp else [])
