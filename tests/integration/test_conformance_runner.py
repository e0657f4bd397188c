"""``conformance/run-cwl`` against stand-in runners (no real CWL runner needed, a few seconds).

Needs cwltest in the venv and the CWL v1.2 suite at ../shared/cwl-v1.2; skipped otherwise.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RUN_CWL = REPO / "conformance" / "run-cwl"
SUITE = REPO.parent / "shared" / "cwl-v1.2"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("cwltest") is None, reason="cwltest not installed"),
    pytest.mark.skipif(not (SUITE / "conformance_tests.yaml").is_file(), reason="no CWL suite"),
]

# Suite numbers used below: 3 nested_cl_bindings (not required, must produce an output),
# 17 expression_any_nodefaultany (should_fail: passes when the runner exits non-zero).
RUNNER = """#!/bin/sh
for a in "$@"; do [ "$a" = --help ] && { echo "usage: fake"; exit 0; }; done
exit ${FAKE_EXIT:-1}
"""
HANGER = """#!/bin/sh
for a in "$@"; do [ "$a" = --help ] && { echo "usage: fake"; exit 0; }; done
sleep 300 &
sleep 300
"""


def script(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    path.chmod(0o755)
    return path


def run_cwl(tmp_path: Path, *args: str, env: dict[str, str] | None = None,
            ) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, str(RUN_CWL), "--junit", str(tmp_path / "junit.xml"), "-j", "2", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=REPO,
                          env={**os.environ, **(env or {})})


def test_missing_runner_is_a_clear_error(tmp_path: Path) -> None:
    proc = run_cwl(tmp_path, "--runner", str(tmp_path / "flow-cwl"), "-n", "1")
    assert proc.returncode == 2
    assert "runner not found" in proc.stderr


def test_runner_that_cannot_start_is_a_clear_error(tmp_path: Path) -> None:
    broken = script(tmp_path, "broken", "#!/bin/sh\necho 'ImportError: no flow.cwl' >&2\nexit 1\n")
    proc = run_cwl(tmp_path, "--runner", str(broken), "-n", "1")
    assert proc.returncode == 2
    assert "ImportError: no flow.cwl" in proc.stderr


def test_selection_by_number_reports_the_right_tests(tmp_path: Path) -> None:
    runner = script(tmp_path, "fake", RUNNER)
    proc = run_cwl(tmp_path, "--runner", str(runner), "-n", "17,3")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "passed 1, failed 1, unsupported 0 of 2 tests" in proc.stdout
    assert "[3] nested_cl_bindings" in proc.stdout
    junit = (tmp_path / "junit.xml").read_text()
    assert 'file="nested_cl_bindings"' in junit and 'file="expression_any_nodefaultany"' in junit


def test_unsupported_feature(tmp_path: Path) -> None:
    runner = script(tmp_path, "fake", RUNNER)
    proc = run_cwl(tmp_path, "--runner", str(runner), "-n", "3", env={"FAKE_EXIT": "33"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "passed 0, failed 0, unsupported 1 of 1 tests" in proc.stdout


def test_baseline_regressions_improvements_and_update(tmp_path: Path) -> None:
    runner = script(tmp_path, "fake", RUNNER)
    baseline = tmp_path / "baseline.txt"
    baseline.write_text("# expected\nnested_cl_bindings  # a comment\nwf_simple\n")
    proc = run_cwl(tmp_path, "--runner", str(runner), "-n", "3,17", "--baseline", str(baseline))
    assert proc.returncode == 1
    assert "REGRESSIONS (1)" in proc.stdout and "[3] nested_cl_bindings" in proc.stdout
    assert "improvements (1)" in proc.stdout and "[17] expression_any_nodefaultany" in proc.stdout

    proc = run_cwl(tmp_path, "--runner", str(runner), "-n", "3,17", "--baseline", str(baseline),
                   "--update-baseline")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    ids = [ln for ln in baseline.read_text().splitlines() if ln and not ln.startswith("#")]
    assert ids == ["expression_any_nodefaultany", "wf_simple"]  # wf_simple was not run: kept

    proc = run_cwl(tmp_path, "--runner", str(runner), "-n", "3,17", "--baseline", str(baseline))
    assert proc.returncode == 0 and "no regression" in proc.stdout


def test_hanging_runner_is_killed_with_its_children(tmp_path: Path) -> None:
    runner = script(tmp_path, "hang", HANGER)
    proc = run_cwl(tmp_path, "--runner", str(runner), "-n", "3", "--timeout", "2")
    assert proc.returncode == 1
    assert "[3] nested_cl_bindings (timed out)" in proc.stdout


def test_the_runner_gets_the_arguments_users_cwltest_gives(tmp_path: Path) -> None:
    """Relative paths with their #fragment, as cwltest gives them when run in the suite's folder."""
    log = tmp_path / "args.log"
    recorder = script(tmp_path, "recorder", RUNNER.replace("exit ${FAKE_EXIT:-1}", f'echo "$@" >> {log}\nexit 1'))
    proc = run_cwl(tmp_path, "--runner", str(recorder), "-n", "38")  # wf_scatter_two_flat_crossproduct
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert log.read_text().split()[-2:] == ["tests/scatter-wf3.cwl#main", "tests/scatter-job2.json"]
