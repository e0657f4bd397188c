"""A large CWL scatter runs its invocations in batch jobs: same outputs as cwltool, in order,
skipped elements null, a failing invocation fails the run naming its command."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("cwltool")

SAY = """
cwlVersion: v1.2
class: CommandLineTool
baseCommand: [sh, -c, 'test "$0" != bad && echo "$0"']
inputs:
  word: {type: string, inputBinding: {position: 1}}
outputs:
  out: {type: stdout}
"""

GATHER = """
cwlVersion: v1.2
class: CommandLineTool
baseCommand: cat
inputs:
  files: {type: 'File[]', inputBinding: {position: 1}}
outputs:
  all: {type: stdout}
stdout: all.txt
"""

WF = """
cwlVersion: v1.2
class: Workflow
requirements: {ScatterFeatureRequirement: {}, InlineJavascriptRequirement: {}, MultipleInputFeatureRequirement: {}}
inputs:
  words: string[]
  grid: string[]
outputs:
  all: {type: File, outputSource: gather/all}
  sizes: {type: 'int[]', outputSource: sizes/size}
  pairs: {type: 'File[]', outputSource: cross/out}
steps:
  say:
    run: say.cwl
    scatter: word
    in: {word: words}
    out: [out]
  gather:
    run: gather.cwl
    in: {files: say/out}
    out: [all]
  sizes:
    run:
      class: ExpressionTool
      inputs: {f: File}
      outputs: {size: int}
      expression: '$({"size": inputs.f.size})'
    scatter: f
    in: {f: say/out}
    out: [size]
  cross:
    run: say.cwl
    scatter: word
    in: {word: {source: [grid, grid], linkMerge: merge_flattened}}
    out: [out]
"""

@pytest.fixture
def docs(tmp_path: Path) -> Path:
    for name, text in (("say.cwl", SAY), ("gather.cwl", GATHER), ("wf.cwl", WF)):
        (tmp_path / name).write_text(textwrap.dedent(text))
    return tmp_path


def _run(command: list[str], cwd: Path, outdir: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*command, "--no-container", "--outdir", outdir, "wf.cwl", "job.json"],
                          cwd=cwd, capture_output=True, text=True, timeout=300)


def _comparable(out: dict[str, Any]) -> dict[str, Any]:
    """The output object without where cwltool and flow put the files."""
    def strip(value: Any) -> Any:
        if isinstance(value, list):
            return [strip(v) for v in value]
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k not in ("location", "path")}
        return value
    return dict(strip(out))


def test_large_scatter_runs_in_batches_with_cwltools_outputs(docs: Path) -> None:
    words = [f"word{i}" for i in range(60)]
    (docs / "job.json").write_text(json.dumps({"words": words, "grid": ["x", "y", "z"]}))
    flow = _run([sys.executable, "-m", "flow.cwl.main", "--noProgress", "--maxCores", "1",
                 "--jobStore", "js", "--stats"], docs, "flow-out")
    assert flow.returncode == 0, flow.stderr
    ours = json.loads(flow.stdout)
    assert Path(ours["all"]["path"]).read_text().splitlines() == words  # gathered in order
    assert ours["sizes"] == [len(w) + 1 for w in words]
    assert [Path(f["path"]).read_text() for f in ours["pairs"]] == ["x\n", "y\n", "z\n"] * 2
    cwltool = shutil.which("cwltool", path=os.path.dirname(sys.executable))
    assert cwltool is not None
    theirs = _run([cwltool, "--quiet"], docs, "cwltool-out")
    assert theirs.returncode == 0, theirs.stderr
    assert _comparable(ours) == _comparable(json.loads(theirs.stdout))
    stats = subprocess.run([sys.executable, "-m", "flow.core.cli", "stats", "--json", "--all", "js"],
                           cwd=docs, capture_output=True, text=True, timeout=60, check=True)
    kinds = {row["kind"]: row["count"] for row in json.loads(stats.stdout)["kinds"]}
    # one core, 4 batches a slot: 60 invocations in batches of 15, twice; 6 in batches of 2
    assert kinds.get("CWLBatch") == 4 + 4 + 3, kinds


def test_a_failing_invocation_in_a_batch_fails_the_run(docs: Path) -> None:
    words = [f"word{i}" for i in range(40)]
    words[23] = "bad"
    (docs / "job.json").write_text(json.dumps({"words": words, "grid": []}))
    result = _run([sys.executable, "-m", "flow.cwl.main", "--noProgress", "--maxCores", "1"], docs, "out")
    assert result.returncode == 1, result.stderr
    assert "exited with status 1" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert json.loads(result.stdout) == {}


RESUMING = """
cwlVersion: v1.2
class: Workflow
requirements: {ScatterFeatureRequirement: {}}
inputs:
  words: string[]
  marker: string
outputs:
  out: {type: 'File[]', outputSource: say/out}
steps:
  say:
    run:
      class: CommandLineTool
      inputs: {word: string, marker: string}
      baseCommand: [sh, -c, 'test "$0" != bad || test -e "$1.ok" || exit 3; echo "$0" >> "$1.log"; echo "$0"']
      arguments: [$(inputs.word), $(inputs.marker)]
      outputs: {out: {type: stdout}}
    scatter: word
    in: {word: words, marker: marker}
    out: [out]
"""


def test_restart_runs_only_the_unfinished_invocations_of_a_batch(docs: Path, tmp_path: Path) -> None:
    """An invocation fails in the middle of a batch; after --restart every invocation has run
    exactly once to its end (those before it in its batch are not run again)."""
    marker = tmp_path / "marker"
    words = [f"word{i}" for i in range(40)]
    words[23] = "bad"
    (docs / "resume.cwl").write_text(textwrap.dedent(RESUMING))
    (docs / "job.json").write_text(json.dumps({"words": words, "marker": str(marker)}))
    store = str(tmp_path / "js")
    base = [sys.executable, "-m", "flow.cwl.main", "--no-container", "--noProgress", "--maxCores", "1",
            "--jobStore", store]
    failed = subprocess.run([*base, "--retryCount", "0", "resume.cwl", "job.json"], cwd=docs,
                            capture_output=True, text=True, timeout=300)
    assert failed.returncode == 1, failed.stderr
    assert "exited with status 3" in failed.stderr, failed.stderr
    ran_before = Path(f"{marker}.log").read_text().splitlines()
    assert "word22" in ran_before and "bad" not in ran_before  # batch of 10: 20..29
    Path(f"{marker}.ok").touch()
    resumed = subprocess.run([*base, "--restart", "resume.cwl", "job.json"], cwd=docs,
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    out = json.loads(resumed.stdout)["out"]
    assert [Path(f["path"]).read_text() for f in out] == [f"{w}\n" for w in words]
    ran = Path(f"{marker}.log").read_text().splitlines()
    assert sorted(ran) == sorted(words), "an invocation ran twice, or never"


LISTING = """
cwlVersion: v1.2
class: Workflow
requirements: {ScatterFeatureRequirement: {}}
inputs:
  words: string[]
outputs:
  seen: {type: 'File[]', outputSource: look/seen}
  made: {type: 'File[]', outputSource: look/made}
steps:
  look:
    run:
      class: CommandLineTool
      inputs: {word: string}
      baseCommand: [sh, -c, 'ls > "$0.seen"; echo "$0" > "$0.made"; test "$0" = keep && touch left-behind; true']
      arguments: [$(inputs.word)]
      outputs:
        seen: {type: File, outputBinding: {glob: '*.seen'}}
        made: {type: File, outputBinding: {glob: $(inputs.word).made}}
    scatter: word
    in: {word: words}
    out: [seen, made]
"""


def test_each_invocation_of_a_batch_starts_in_an_empty_output_directory(tmp_path: Path) -> None:
    """Invocations of one batch share directories where that cannot show (an output directory
    the previous tool left empty once its outputs were stored): each sees only its own files,
    also after a tool that left a file behind, and its outputs arrive whole."""
    (tmp_path / "wf.cwl").write_text(textwrap.dedent(LISTING))
    words = ["one", "keep", "two", "three", "four"]
    (tmp_path / "job.json").write_text(json.dumps({"words": words}))
    result = subprocess.run(
        [sys.executable, "-m", "flow.cwl.main", "--noProgress", "--no-container", "--outdir", "out",
         "wf.cwl", "job.json"], cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env={**os.environ, "FLOW_CWL_BATCH_SIZE": str(len(words))})
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert [Path(f["path"]).read_text() for f in out["seen"]] == [f"{w}.seen\n" for w in words]
    assert [Path(f["path"]).read_text() for f in out["made"]] == [f"{w}\n" for w in words]
    assert [f["size"] for f in out["made"]] == [len(w) + 1 for w in words]
