"""``conformance/run-wdl`` against a stand-in runner and a two-test suite (a few seconds)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("ruamel.yaml")

REPO = Path(__file__).resolve().parents[2]
RUN_WDL = REPO / "conformance" / "run-wdl"

SUITE = """
- id: says_hi
  versions: ["1.0", "1.1"]
  inputs: {dir: tests/hi, wdl: hi.wdl, json: hi.json}
  outputs:
    wf.greeting: {type: String, value: "hi"}
    wf.n: {type: "Array[Int]", value: [1, 2]}
- id: must_fail
  versions: ["1.1"]
  fail: true
  inputs: {dir: tests/hi, wdl: hi.wdl, json: hi.json}
"""

# Writes the outputs JSON (-m FILE) that FAKE_OUTPUT says, and exits FAKE_EXIT; checks that it
# got a document rewritten to the version asked for, and the run.py the suite root must hold.
RUNNER = """#!/bin/sh
wdl=$1; shift
grep -q "^version $WANT_VERSION" "$wdl" || { echo "wrong version in $wdl" >&2; exit 9; }
[ -f run.py ] || { echo "no run.py" >&2; exit 9; }
while [ $# -gt 0 ]; do [ "$1" = -m ] && out=$2; shift; done
printf '%s' "$FAKE_OUTPUT" > "$out"
exit ${FAKE_EXIT:-0}
"""


@pytest.fixture
def suite(tmp_path: Path) -> Path:
    root = tmp_path / "suite"
    (root / "tests" / "hi").mkdir(parents=True)
    (root / "conformance.yaml").write_text(SUITE)
    (root / "tests" / "hi" / "hi.wdl").write_text("version 1.1\nworkflow wf {}\n")
    (root / "tests" / "hi" / "hi.json").write_text("{}")
    runner = tmp_path / "runner"
    runner.write_text(RUNNER)
    runner.chmod(0o755)
    return root


def run_wdl(suite: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, str(RUN_WDL), "--suite", str(suite), "--runner", str(suite.parent / "runner"),
               "-j", "2", "--results", str(suite.parent / "results"), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120,
                          env={**os.environ, **env}, cwd=suite.parent)


def test_passes_and_failures(suite: Path) -> None:
    good = '{"wf.greeting": "hi", "wf.n": [1, 2]}'
    proc = run_wdl(suite, "--versions", "1.0", WANT_VERSION="1.0", FAKE_OUTPUT=good)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "WDL 1.0: passed 1, failed 0 of 1 tests" in proc.stdout
    proc = run_wdl(suite, "--versions", "1.1", WANT_VERSION="1.1", FAKE_OUTPUT=good)
    assert proc.returncode == 1
    assert "passed 1, failed 1 of 2" in proc.stdout and "must_fail: should fail, but succeeded" in proc.stdout
    wrong = '{"wf.greeting": "hi", "wf.n": [1, 3]}'
    proc = run_wdl(suite, "--versions", "1.0", WANT_VERSION="1.0", FAKE_OUTPUT=wrong)
    assert proc.returncode == 1 and "wf.n[1]: expected 2, got 3" in proc.stdout


def test_baseline_regression(suite: Path, tmp_path: Path) -> None:
    baseline = tmp_path / "passing-{version}.txt"
    (tmp_path / "passing-1.1.txt").write_text("# expected\nsays_hi\n")
    proc = run_wdl(suite, "--versions", "1.1", "--baseline", str(baseline), WANT_VERSION="1.1",
                   FAKE_OUTPUT="{}", FAKE_EXIT="1")
    assert proc.returncode == 1
    assert "REGRESSIONS (1): says_hi" in proc.stdout and "improvements (1): must_fail" in proc.stdout
    good = '{"wf.greeting": "hi", "wf.n": [1, 2]}'
    proc = run_wdl(suite, "--versions", "1.1", "--baseline", str(baseline), WANT_VERSION="1.1",
                   FAKE_OUTPUT=good)
    assert proc.returncode == 0, proc.stdout  # must_fail fails, but it is not in the baseline
    assert "no regression" in proc.stdout
