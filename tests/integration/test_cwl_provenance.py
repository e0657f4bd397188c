"""``flow-cwl --provenance DIR``: the research object is loaded back and checked as cwltool's own
tests check cwltool's (a valid BagIt bag, the RO manifest, the PROV files, data/ by SHA-1, the
packed workflow and snapshot), for a tool, a scattering workflow, a failed run and its restart."""

from __future__ import annotations

import hashlib
import json
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from flow.cwl.jobs import BATCH_VARIABLE
from tests.integration.test_cwl import ECHO_TOOL, WC_TOOL, flow_cwl

pytest.importorskip("cwltool")
bagit = pytest.importorskip("bagit")
prov_model = pytest.importorskip("prov.model")

FILES_WF = """
cwlVersion: v1.2
class: Workflow
requirements: {ScatterFeatureRequirement: {}}
inputs:
  messages: string[]
  extra: {type: File, default: {class: File, location: extra.txt}}
outputs:
  files: {type: "File[]", outputSource: say/out}
  counts: {type: "int[]", outputSource: count/lines}
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
"""

#: wc.cwl that fails (exit 3) until a marker file exists, for the restart test.
FLAKY_WC = WC_TOOL.replace("baseCommand: [wc, -l]", "baseCommand: [sh, -c, 'test -e \"$0\" || exit 3; wc -l', MARKER]")

PROV_FORMATS = ("xml", "provn", "json", "ttl", "nt", "jsonld")


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    for name, text in (("echo.cwl", ECHO_TOOL), ("wc.cwl", WC_TOOL), ("wf.cwl", FILES_WF)):
        (tmp_path / name).write_text(text)
    (tmp_path / "extra.txt").write_text("extra\n")
    (tmp_path / "job.json").write_text(json.dumps({"messages": ["a", "b", "a"]}))
    return tmp_path


def sha1(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


def check_bag(ro: Path) -> None:
    """A valid BagIt bag whose manifests list exactly its files (cwltool's check_bagit)."""
    for name in ("bagit.txt", "bag-info.txt", "manifest-sha1.txt", "tagmanifest-sha1.txt", "tagmanifest-sha256.txt"):
        assert (ro / name).is_file(), name
    bag = bagit.Bag(str(ro))
    assert bag.has_oxum()
    only_manifest, only_fs = bag.compare_manifests_with_fs()
    assert not list(only_manifest) and not list(only_fs)
    bag.validate()
    assert str(bag.info["External-Identifier"]).startswith("arcp://uuid,")


def check_ro_manifest(ro: Path, outputs: bool = True) -> list[str]:
    """metadata/manifest.json aggregates the PROV files and workflow files; returns its uris."""
    manifest = json.loads((ro / "metadata" / "manifest.json").read_text())
    uris = [str(a.get("uri")) for a in manifest["aggregates"]]
    for ext in PROV_FORMATS:
        assert f"../metadata/provenance/primary.cwlprov.{ext}" in uris
    wanted = ["../workflow/packed.cwl", "../workflow/primary-job.json"]
    for name in wanted + (["../workflow/primary-output.json"] if outputs else []):
        assert name in uris, name
    return uris


def load_prov(ro: Path) -> Any:
    with open(ro / "metadata" / "provenance" / "primary.cwlprov.json") as stream:
        return prov_model.ProvDocument.deserialize(stream, format="json")


def run_id(ro: Path) -> str:
    ident = bagit.Bag(str(ro)).info["External-Identifier"]
    return "urn:uuid:" + str(ident).removeprefix("arcp://uuid,").rstrip("/")


def activities(document: Any) -> dict[str, str]:
    """{activity id: label} of every activity."""
    return {str(a.identifier.uri): str(next(iter(a.get_attribute("prov:label")), ""))
            for a in document.get_records(prov_model.ProvActivity)}


def process_runs(document: Any, main: str) -> dict[str, tuple[Any, Any]]:
    """{step name: (start, end)} of the ProcessRuns that the workflow run ``main`` started and ended."""
    labels = activities(document)

    def times(kind: Any, who: str) -> dict[str, Any]:
        out = {}
        for record in document.get_records(kind):
            formal = {str(key): value for key, value in record.formal_attributes}
            if formal.get(who) is not None and str(formal[who].uri) == main:
                out[str(formal["prov:activity"].uri)] = formal["prov:time"]
        return out

    started, ended = times(prov_model.ProvStart, "prov:starter"), times(prov_model.ProvEnd, "prov:ender")
    return {labels[i].removeprefix("Run of workflow/packed.cwl#main/"): (started[i], ended.get(i)) for i in started}


def data_file(ro: Path, content: bytes) -> Path:
    path = ro / "data" / sha1(content)[:2] / sha1(content)
    assert path.is_file(), f"{content!r} is not in data/"
    assert path.read_bytes() == content
    return path


@pytest.mark.parametrize("batch", ["1", "2"])  # a job per invocation; CWLBatch jobs of two
def test_a_scattering_workflow(docs: Path, batch: str) -> None:
    done = flow_cwl("--provenance", "ro", "--outdir", "out", "--enable-user-provenance", "--full-name", "Ada L",
                    "wf.cwl", "job.json", cwd=docs, env={BATCH_VARIABLE: batch})
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["counts"] == [1, 1, 1]
    ro = docs / "ro"
    check_bag(ro)
    uris = check_ro_manifest(ro)
    # every file and string value by its SHA-1: outputs, intermediate files, inputs, defaults
    for path in json.loads(done.stdout)["files"]:
        content = Path(path["path"]).read_bytes()
        data_file(ro, content)
        assert f"urn:hash::sha1:{sha1(content)}" in uris
    data_file(ro, b"extra\n")
    data_file(ro, b"a")
    # copies, not hard links to the job store's files or the inputs; no temporary files left
    assert all(p.stat().st_nlink == 1 for p in (ro / "data").rglob("*") if p.is_file())
    assert not list(docs.glob(".ro.*"))
    output = json.loads((ro / "workflow" / "primary-output.json").read_text())
    assert [f["location"] for f in output["files"]] == [
        f"../data/{sha1(c)[:2]}/{sha1(c)}" for c in (b"a\n", b"b\n", b"a\n")]
    assert output["counts"] == [1, 1, 1]
    job = json.loads((ro / "workflow" / "primary-job.json").read_text())
    assert job["messages"] == ["a", "b", "a"] and job["extra"]["location"].startswith("../data/")
    packed = json.loads((ro / "workflow" / "packed.cwl").read_text())
    assert {p["id"] for p in packed["$graph"]} == {"#main", "#echo.cwl", "#wc.cwl"}
    assert sorted(p.name for p in (ro / "snapshot").iterdir()) == ["echo.cwl", "wc.cwl", "wf.cwl"]

    document = load_prov(ro)
    main = run_id(ro)
    labels = activities(document)
    assert labels[main] == "Run of workflow/packed.cwl#main"
    runs = process_runs(document, main)
    assert sorted(runs) == ["count", "count_2", "count_3", "say", "say_2", "say_3"]
    for start, end in runs.values():
        assert start <= end
    assert max(runs[n][1] for n in ("say", "say_2", "say_3")) <= max(runs[n][0] for n in ("count", "count_2", "count_3"))
    engine = [a for a in document.get_records(prov_model.ProvAgent)
              if "WorkflowEngine" in str(a.get_attribute("prov:type"))]
    assert len(engine) == 1 and str(next(iter(engine[0].get_attribute("prov:label")))).startswith("flow ")
    assert "Ada L" in (ro / "metadata" / "provenance" / "primary.cwlprov.provn").read_text()
    assert "Ada L" in (ro / "bag-info.txt").read_text()


def test_a_single_tool(tmp_path: Path) -> None:
    (tmp_path / "echo.cwl").write_text(ECHO_TOOL)
    done = flow_cwl("--provenance", "ro", "--outdir", "out", "echo.cwl", "--message", "hi there", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    ro = tmp_path / "ro"
    check_bag(ro)
    check_ro_manifest(ro)
    data_file(ro, b"hi there\n")
    data_file(ro, b"hi there")
    document = load_prov(ro)
    assert list(activities(document)) == [run_id(ro)]  # as cwltool's: the tool run is the only one
    out = json.loads((ro / "workflow" / "primary-output.json").read_text())["out"]
    digest = sha1(b"hi there\n")
    assert out["location"] == f"../data/{digest[:2]}/{digest}"


def test_a_failed_run_and_its_restart(docs: Path) -> None:
    marker = docs / "marker"
    (docs / "wc.cwl").write_text(FLAKY_WC.replace("MARKER", str(marker)))
    failed = flow_cwl("--provenance", "ro", "--retryCount", "0", "--jobStore", "js", "wf.cwl", "job.json", cwd=docs)
    assert failed.returncode == 1 and failed.stdout.strip() == "{}"
    ro = docs / "ro"
    check_bag(ro)  # as cwltool's: the research object of the failed run, without outputs
    check_ro_manifest(ro, outputs=False)
    first = process_runs(load_prov(ro), run_id(ro))
    assert sorted(first) == ["say", "say_2", "say_3"]
    engine_log = next((ro / "metadata" / "logs").glob("engine.*.txt")).read_text()
    assert "--provenance ro --retryCount 0" in engine_log and "exited with status 3" in engine_log
    assert "Final process status is permanentFail" in engine_log
    # the resume command that flow-cwl prints works as pasted, and replaces that research object
    hint = failed.stderr.strip().splitlines()[-1]
    command = shlex.split(hint.split(": ", 1)[1])
    assert "--provenance" in command
    marker.write_text("")
    resumed = subprocess.run([sys.executable, "-m", "flow.cwl.main", *command[1:]], cwd=docs,
                             capture_output=True, text=True, timeout=180)
    assert resumed.returncode == 0, resumed.stderr
    check_bag(ro)
    check_ro_manifest(ro)
    runs = process_runs(load_prov(ro), run_id(ro))
    assert sorted(runs) == ["count", "count_2", "count_3", "say", "say_2", "say_3"]
    assert json.loads((ro / "workflow" / "primary-job.json").read_text())["messages"] == ["a", "b", "a"]


def test_a_folder_that_holds_something_else_is_refused_before_the_run(docs: Path) -> None:
    (docs / "ro").mkdir()
    (docs / "ro" / "keep.txt").write_text("mine")
    done = flow_cwl("--provenance", "ro", "--jobStore", "js", "wf.cwl", "job.json", cwd=docs)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "not an empty directory" in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert (docs / "ro" / "keep.txt").read_text() == "mine" and not (docs / "js").exists()
    bad = flow_cwl("--provenance", "ro2", "--orcid", "0000-0002-1694-2332", "wf.cwl", "job.json", cwd=docs)
    assert bad.returncode == 1 and "--orcid" in bad.stderr and "Traceback" not in bad.stderr
    assert not (docs / "ro2").exists()
