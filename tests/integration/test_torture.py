"""The torture suite (tests/torture.py) at a small count: 3 leader kills per front-end.

Each front-end's leader is killed with SIGKILL at 3 seeded random moments and restarted each
time, and one pool worker is killed mid-run; the suite must report every kill resumed, the
right answer and no re-run beyond the jobs in flight, and leave no process behind.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "torture.py"
LINE = re.compile(r"^(python|cwl|wdl): (\d+)/(\d+) resumed, answers correct, extra re-runs (\d+)$")
DETAIL = re.compile(r"^(python|cwl|wdl): (\d+) leader kills in \d+ run\(s\), (\d+) worker kills")


def _processes_under(path: Path) -> list[str]:
    """Command lines of live processes that mention ``path`` (what the suite started there)."""
    found = []
    for entry in os.listdir("/proc"):
        try:
            cmdline = Path("/proc", entry, "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, UnicodeDecodeError):
            continue
        if str(path) in cmdline:
            found.append(f"{entry}: {cmdline}")
    return found


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the suite needs /proc and prctl")
def test_torture_three_kills_each(tmp_path: Path) -> None:
    # A smaller Python workflow than the script's 1,000 jobs keeps CI within its time; the kills,
    # restarts and checks are the same.
    command = [sys.executable, str(SCRIPT), "--kills", "3", "--seed", "18", "--python-jobs", "300",
               "--cwl-jobs", "40", "--wdl-jobs", "40", "--workdir", str(tmp_path)]
    suite = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        stdout, stderr = suite.communicate(timeout=840)
    except subprocess.TimeoutExpired:
        suite.terminate()  # the suite kills what it started on SIGTERM
        stdout, stderr = suite.communicate(timeout=120)
    finally:
        suite.kill()
        leftovers = _processes_under(tmp_path)
        for pid in (int(line.split(":")[0]) for line in leftovers):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    report = f"exit code {suite.returncode}\nstdout:\n{stdout}\nstderr:\n{stderr[-4000:]}"
    assert leftovers == [], f"processes left behind: {leftovers}\n{report}"
    assert suite.returncode == 0, report
    lines = stdout.splitlines()
    assert [LINE.match(line) is not None for line in lines] == [True] * 3, report
    for match in map(LINE.match, lines):
        assert match is not None
        assert (match[2], match[3], match[4]) == ("3", "3", "0"), report
    details = [m for m in map(DETAIL.match, stderr.splitlines()) if m]
    assert sorted(m[1] for m in details) == ["cwl", "python", "wdl"], report
    assert all(m[2] == "3" for m in details), report
    assert sum(int(m[3]) for m in details) >= 1, f"no worker was killed\n{report}"
    assert os.listdir(tmp_path) == [], "the suite kept its scratch after a success"
