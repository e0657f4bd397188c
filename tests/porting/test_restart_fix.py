"""Fix, then --restart, runs the fix: jobs of the main script are stored by reference to it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.porting.conftest import port


@pytest.mark.parametrize("pool_start", ["fork", "spawn"])
def test_fixing_the_script_then_restarting_runs_the_fix(tmp_path: Path, pool_start: str) -> None:
    script = port("restart_fix.py", tmp_path)
    env = {**os.environ, "FLOW_POOL_START": pool_start}

    def run(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, str(script), str(tmp_path / "js"), "--noProgress", *extra],
                              cwd=tmp_path, capture_output=True, text=True, timeout=240, env=env, check=False)

    first = run()
    assert first.returncode != 0
    assert "bug: not fixed yet" in first.stderr
    source = script.read_text()
    script.write_text(source.replace('raise RuntimeError("bug: not fixed yet")  # FIXME',
                                     "return value + OFFSET"))
    second = run("--restart")
    assert second.returncode == 0, second.stderr
    assert second.stdout.strip() == "result 21"  # Doubler(10) ran once, then the fixed step
