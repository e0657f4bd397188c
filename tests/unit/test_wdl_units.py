"""Pieces of the WDL front-end that need no run: sizes, file URIs, error texts, the runner's
output comparison, the adapter's view of a document."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

pytest.importorskip("WDL")

from flow.wdl import adapter, files, main
from flow.wdl.task import RunSettings, parse_disks, parse_size, requirements, return_codes

REPO = Path(__file__).resolve().parents[2]


def run_wdl_module() -> ModuleType:
    loader = importlib.machinery.SourceFileLoader("run_wdl", str(REPO / "conformance" / "run-wdl"))
    spec = importlib.util.spec_from_loader("run_wdl", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["run_wdl"] = module  # its dataclasses look their module up
    loader.exec_module(module)
    return module


@pytest.mark.parametrize(("text", "expected"), [
    ("4 GB", 4 * 1000**3), ("4G", 4 * 1000**3), ("512 MiB", 512 * 1024**2), ("1.5 GiB", int(1.5 * 1024**3)),
    (1024, 1024), ("100", 100), ("lots", None), (True, None),
])
def test_parse_size(text: object, expected: int | None) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("local-disk 10 SSD", 10 * 1000**3), ("10 GB", 10 * 1000**3), ("/mnt/data 3 HDD", 3 * 1000**3),
    ("20 GiB", 20 * 1024**3), (2, 2 * 1024**3), (["local-disk 1 SSD", "/tmp 2 HDD"], 3 * 1000**3),
])
def test_parse_disks(text: object, expected: int) -> None:
    assert parse_disks(text) == expected


def test_requirements_are_capped_and_default_to_none() -> None:
    settings = RunSettings(max_cores=2, max_memory=8 * 1024**3)
    assert requirements({}, settings) == {"cores": None, "memory": None, "disk": None}
    got = requirements({"cpu": 16, "memory": "64 GB", "disks": "local-disk 5 SSD"}, settings)
    assert got == {"cores": 2.0, "memory": 8 * 1024**3, "disk": 5 * 1000**3}
    assert requirements({"cpu": "0.5"}, settings)["cores"] == 0.5
    cluster = RunSettings()  # no limits: the cluster's scheduler judges the request as written
    assert requirements({"cpu": 16, "memory": "64 GB"}, cluster) == {"cores": 16.0, "memory": 64 * 1000**3, "disk": None}


def test_return_codes() -> None:
    assert return_codes({}) == {0}
    assert return_codes({"returnCodes": "*"}) is None
    assert return_codes({"returnCodes": [0, 1]}) == {0, 1}
    assert return_codes({"returnCodes": 2}) == {2}


def test_file_uri_round_trip_keeps_basename() -> None:
    ref = files.FileRef("ab/abcdef/my file#1.txt", files.folder_key("x"), "my file#1.txt")
    assert files.parse(ref.uri) == ref
    assert ref.uri.rsplit("/", 1)[-1] == "my file#1.txt"  # what WDL's basename() sees
    assert files.parse("/plain/path.txt") is None


def test_uris_found_inside_text() -> None:
    a = files.FileRef("id/1", files.folder_key("x"), "a b~2.txt")
    b = files.FileRef("id/2", files.folder_key("y"), "b")
    text = f"cat {a.uri} {b.uri}.x > out"
    names = files.replace_uris(text, lambda uri: f"<{files.parse(uri).file_id}>")  # type: ignore[union-attr]
    assert names == "cat <id/1> <id/2>.x > out"
    assert files.replace_uris("flowfile:no", str.upper) == "flowfile:no"


def test_failure_texts_lose_their_tracebacks() -> None:
    log = ("[12:00:00] ERROR job wf.boom failed: x\n  | flow-wdl: call wf.boom failed: exit code 3\n"
           "  |     it broke\n  | Traceback (most recent call last):\n  |   File \"t.py\", line 1\n"
           "  |     raise X\n  | WDLTaskError: exit code 3\n")
    assert main.job_summary(log) == "call wf.boom failed: exit code 3\n    it broke"
    stripped = main.strip_tracebacks(log)
    assert "Traceback" not in stripped and "File" not in stripped and "WDLTaskError" in stripped


def test_runner_compares_as_the_suite_says(tmp_path: Path) -> None:
    run_wdl = run_wdl_module()
    out = tmp_path / "f.txt"
    out.write_text("hello\n")
    assert run_wdl.compare([1, 2], [1, 2], "Array[Int]", "x") is None
    assert run_wdl.compare([1, 2], [1, "2"], "Array[Int]", "x")
    assert run_wdl.compare({"left": 1, "right": "a"}, {"left": 1, "right": "a"}, "Pair[Int, String]", "p") is None
    assert run_wdl.compare({"a": 1}, {"a": 1}, "Map[String, Int]", "m") is None
    assert run_wdl.compare({"regex": "^hel"}, str(out), "File", "f") is None
    assert run_wdl.compare({"md5sum": "b1946ac92492d2347c6235b4d2611184"}, str(out), "File", "f") is None
    assert run_wdl.compare({"md5sum": "0" * 32}, str(out), "File", "f")
    assert run_wdl.compare([None, 1], [None, 1], "Array[Int?]", "x") is None
    assert run_wdl.compare({"a": 1, "b": "x"}, {"a": 1, "b": "x"}, {"a": "Int", "b": "String"}, "s") is None
    assert run_wdl.compare(1.0, 1, "Float", "f") is None
    assert run_wdl.compare(True, 1, "Boolean", "b")


def test_graph_of_a_document(tmp_path: Path) -> None:
    doc = tmp_path / "wf.wdl"
    doc.write_text("""version 1.1
workflow wf {
  input { Array[Int] xs  Int k = 2 }
  scatter (x in xs) { Int y = x * k }
  if (k > 1) { Int z = k }
  output { Array[Int] ys = y  Int? zz = z }
}
""")
    graph = adapter.graph(adapter.ExeRef(str(doc)))
    kinds = sorted(info.kind for info in graph.nodes.values())
    assert kinds == ["decl", "decl", "decl", "decl", "decl", "decl", "gather", "gather", "if", "scatter"]
    scatter = next(i for i in graph.nodes.values() if i.kind == "scatter")
    assert set(scatter.deps) == {"decl-xs", "decl-k"}  # its body reads k: the section waits for it
    assert graph.outputs == ("output-ys", "output-zz")


def test_a_batch_keeps_a_call_file_only_when_no_process_holds_it(tmp_path: Path) -> None:
    """The batch's check before it keeps a call's stdout or stderr for the next call: the size
    of a file nobody has open, nothing (None) for one another process holds, a FIFO (without
    waiting for a writer) or a link; 0 for a file the command removed."""
    import os
    import subprocess

    from flow.wdl.batch import _size_if_unheld

    path = tmp_path / "stdout.txt"
    path.write_bytes(b"abc")
    assert _size_if_unheld(str(path)) == 3
    with open(path, "ab") as held:
        holder = subprocess.Popen(["sleep", "30"], stdout=held)
    try:
        assert _size_if_unheld(str(path)) is None
    finally:
        holder.kill()
        holder.wait()
    assert _size_if_unheld(str(path)) == 3
    os.mkfifo(tmp_path / "fifo")
    assert _size_if_unheld(str(tmp_path / "fifo")) is None
    os.symlink(path, tmp_path / "link")
    assert _size_if_unheld(str(tmp_path / "link")) is None
    assert _size_if_unheld(str(tmp_path / "gone")) == 0
