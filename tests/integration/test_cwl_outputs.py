"""flow-cwl moves a tool's own output files into the job store and hands the final outputs over
when the store is deleted after the run (no copy of a large output on its way): it must never
take a file that is not the tool's own, and never leave an exported output sharing an inode with
a store that is kept."""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_cwl import flow_cwl

pytest.importorskip("cwltool")

#: A tool whose outputs are: a file it writes, its input itself (outputEval), a hard link to its
#: input and a symbolic link to it, and a directory holding a file it writes.
TOOL = """\
cwlVersion: v1.2
class: CommandLineTool
requirements: {ShellCommandRequirement: {}, InlineJavascriptRequirement: {}}
inputs:
  x: File
arguments:
  - valueFrom: >-
      cat $(inputs.x.path) $(inputs.x.path) > made.txt &&
      ln $(inputs.x.path) hard.txt && ln -s $(inputs.x.path) soft.txt &&
      mkdir d && echo inside > d/in.txt
    shellQuote: false
outputs:
  made: {type: File, outputBinding: {glob: made.txt}}
  same: {type: File, outputBinding: {outputEval: $(inputs.x)}}
  hard: {type: File, outputBinding: {glob: hard.txt}}
  soft: {type: File, outputBinding: {glob: soft.txt}}
  d: {type: Directory, outputBinding: {glob: d}}
"""

#: The tool's output read by two later steps and also a workflow output itself.
WORKFLOW = """\
cwlVersion: v1.2
class: Workflow
requirements: {ShellCommandRequirement: {}}
inputs:
  infile: File
steps:
  make:
    run: tool.cwl
    in: {x: infile}
    out: [made, same, hard, soft, d]
  twice:
    run: cat.cwl
    in: {x: make/made}
    out: [out]
  again:
    run: cat.cwl
    in: {x: make/hard}
    out: [out]
outputs:
  made: {type: File, outputSource: make/made}
  same: {type: File, outputSource: make/same}
  soft: {type: File, outputSource: make/soft}
  d: {type: Directory, outputSource: make/d}
  read_twice: {type: File, outputSource: twice/out}
  read_again: {type: File, outputSource: again/out}
"""

CAT = """\
cwlVersion: v1.2
class: CommandLineTool
baseCommand: cat
inputs:
  x: {type: File, inputBinding: {position: 1}}
stdout: cat.txt
outputs:
  out: stdout
"""


@pytest.fixture
def workflow(tmp_path: Path) -> Path:
    for name, text in (("tool.cwl", TOOL), ("wf.cwl", WORKFLOW), ("cat.cwl", CAT)):
        (tmp_path / name).write_text(textwrap.dedent(text))
    (tmp_path / "user.txt").write_text("user data\n")
    return tmp_path


def _run(tmp_path: Path, *options: str) -> dict[str, Any]:
    done = flow_cwl(*options, "--outdir", str(tmp_path / "out"), "wf.cwl", "--infile", "user.txt", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


def _check(tmp_path: Path, result: dict[str, Any]) -> None:
    assert (tmp_path / "user.txt").read_text() == "user data\n"  # never taken, never changed
    assert os.stat(tmp_path / "user.txt").st_nlink == 1
    texts = {name: Path(result[name]["path"]).read_text() for name in ("made", "same", "soft", "read_twice", "read_again")}
    assert texts == {"made": "user data\nuser data\n", "same": "user data\n", "soft": "user data\n",
                     "read_twice": "user data\nuser data\n", "read_again": "user data\n"}
    assert (Path(result["d"]["path"]) / "in.txt").read_text() == "inside\n"
    for path in (tmp_path / "out").rglob("*"):
        assert path.is_dir() or not path.is_symlink()
        assert path.is_dir() or path.stat().st_nlink == 1, f"{path} shares its inode"


@pytest.mark.parametrize("clean", ["onSuccess", "never"])
def test_outputs_moved_and_handed_over_only_where_safe(workflow: Path, clean: str) -> None:
    store = workflow / "js"
    result = _run(workflow, "--jobStore", str(store), "--clean", clean)
    _check(workflow, result)
    assert store.exists() == (clean == "never")
    if clean == "never":  # what the store holds stays as it was when the exports change
        for path in (workflow / "out").rglob("*.txt"):
            path.write_text("changed by the user\n")
        stored = [p.read_text() for p in (store / "files").rglob("*") if p.is_file() and p.suffix == ".txt"]
        assert stored and "changed by the user\n" not in stored


def test_restart_of_a_finished_kept_store_exports_again(workflow: Path) -> None:
    store = workflow / "js"
    _run(workflow, "--jobStore", str(store), "--clean", "never")
    (workflow / "out" / "made.txt").write_text("changed by the user\n")
    result = _run(workflow, "--jobStore", str(store), "--clean", "never", "--restart")
    _check(workflow, result)


#: Step A leaves a process running that holds its output open and writes to it when step B
#: says so (a FIFO); step C reads A's output after that write.
STRAY_TOOL = """\
cwlVersion: v1.2
class: CommandLineTool
requirements: {ShellCommandRequirement: {}}
inputs:
  dir: string
arguments:
  - valueFrom: >-
      echo first > out.txt &&
      ( exec 3>>out.txt; touch $(inputs.dir)/ready; read go < $(inputs.dir)/fifo;
        echo late >&3; touch $(inputs.dir)/written ) > /dev/null 2>&1 &
      while [ ! -e $(inputs.dir)/ready ]; do sleep 0.01; done
    shellQuote: false
outputs:
  out: {type: File, outputBinding: {glob: out.txt}}
"""

TRIGGER_TOOL = """\
cwlVersion: v1.2
class: CommandLineTool
requirements: {ShellCommandRequirement: {}}
inputs:
  dir: string
  after: File
arguments:
  - valueFrom: >-
      echo go > $(inputs.dir)/fifo &&
      timeout 60 sh -c 'while [ ! -e $(inputs.dir)/written ]; do sleep 0.01; done' &&
      echo done > token.txt
    shellQuote: false
outputs:
  token: {type: File, outputBinding: {glob: token.txt}}
"""

STRAY_WORKFLOW = """\
cwlVersion: v1.2
class: Workflow
inputs:
  dir: string
steps:
  a: {run: stray.cwl, in: {dir: dir}, out: [out]}
  b: {run: trigger.cwl, in: {dir: dir, after: a/out}, out: [token]}
  c: {run: cat2.cwl, in: {x: a/out, token: b/token}, out: [out]}
outputs:
  seen: {type: File, outputSource: c/out}
"""

CAT2 = """\
cwlVersion: v1.2
class: CommandLineTool
baseCommand: cat
inputs:
  x: {type: File, inputBinding: {position: 1}}
  token: File
stdout: seen.txt
outputs:
  out: stdout
"""


def test_a_leftover_writer_never_changes_a_stored_output(tmp_path: Path) -> None:
    """A file some process still holds open is copied into the store, not moved: a later step
    reads what the tool left, whatever the leftover process writes afterwards."""
    for name, text in (("stray.cwl", STRAY_TOOL), ("trigger.cwl", TRIGGER_TOOL), ("wf.cwl", STRAY_WORKFLOW),
                       ("cat2.cwl", CAT2)):
        (tmp_path / name).write_text(text)
    shared = tmp_path / "shared"
    shared.mkdir()
    os.mkfifo(shared / "fifo")
    done = flow_cwl("--outdir", str(tmp_path / "out"), "wf.cwl", "--dir", str(shared), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (shared / "written").exists()  # the leftover process did write, before step c ran
    assert Path(json.loads(done.stdout)["seen"]["path"]).read_text() == "first\n"
