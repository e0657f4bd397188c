"""flow-wdl moves a task's own output files into the job store and hands the final outputs over
when the store is deleted after the run: never a file that is not the task's own, and never an
exported output sharing an inode with a store that is kept or with the user's input."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.integration.test_wdl import flow_wdl, outputs

#: Outputs: a file the task writes, its input passed through, a hard link to its input, a
#: symbolic link to its own file; the written file is read again by a second call.
WORKFLOW = """\
version 1.0
task make {
  input { File x }
  command <<<
    cat ~{x} ~{x} > made.txt
    ln ~{x} hard.txt
    ln -s made.txt soft.txt
  >>>
  output {
    File made = "made.txt"
    File same = x
    File hard = "hard.txt"
    File soft = "soft.txt"
  }
}
task count {
  input { File x }
  command <<< wc -l < ~{x} >>>
  output { Int n = read_int(stdout()) }
}
workflow wf {
  input { File x }
  call make { input: x = x }
  call count { input: x = make.made }
  output {
    File made = make.made
    File same = make.same
    File hard = make.hard
    File soft = make.soft
    Int n = count.n
  }
}
"""


@pytest.fixture(scope="module")
def wdl_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("wdl-cache")


@pytest.mark.parametrize("clean", ["onSuccess", "never"])
def test_outputs_moved_and_handed_over_only_where_safe(tmp_path: Path, wdl_cache: Path, clean: str) -> None:
    (tmp_path / "wf.wdl").write_text(WORKFLOW)
    (tmp_path / "user.txt").write_text("user data\n")
    (tmp_path / "in.json").write_text(json.dumps({"wf.x": "user.txt"}))
    store = tmp_path / "js"
    got = outputs(flow_wdl("wf.wdl", "in.json", "-o", "results", "--jobStore", str(store), "--clean", clean,
                           cwd=tmp_path, cache=wdl_cache))
    assert (tmp_path / "user.txt").read_text() == "user data\n"
    assert os.stat(tmp_path / "user.txt").st_nlink == 1
    texts = {name: Path(got[f"wf.{name}"]).read_text() for name in ("made", "same", "hard", "soft")}
    assert texts == {"made": "user data\nuser data\n", "same": "user data\n", "hard": "user data\n",
                     "soft": "user data\nuser data\n"}
    assert got["wf.n"] == 2
    exported = [p for p in (tmp_path / "results").rglob("*") if p.is_file()]
    assert exported and all(p.stat().st_nlink == 1 for p in exported), "an export shares its inode"
    assert store.exists() == (clean == "never")
    if clean == "never":
        for path in exported:
            path.write_text("changed by the user\n")
        stored = [p.read_text() for p in (store / "files").rglob("*.txt") if p.is_file()]
        assert stored and "changed by the user\n" not in stored
