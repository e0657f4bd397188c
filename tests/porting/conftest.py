"""Run Toil-style scripts after the import change alone (``flow.core.port``)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from flow.core.port import port_source

SCRIPTS = Path(__file__).parent / "scripts"
PortedRun = Callable[..., subprocess.CompletedProcess[str]]


def port(name: str, directory: Path) -> Path:
    """``scripts/name`` ported into ``directory``."""
    target = directory / name
    target.write_text(port_source((SCRIPTS / name).read_text()))
    return target


@pytest.fixture
def run_ported(tmp_path: Path) -> PortedRun:
    """Port a script into tmp_path and run it there: ``run_ported("x.py", *args)``."""

    def run(name: str, *args: str, env: dict[str, str] | None = None, timeout: float = 240,
            check: bool = True) -> subprocess.CompletedProcess[str]:
        script = port(name, tmp_path)
        done = subprocess.run([sys.executable, str(script), *args], cwd=tmp_path, capture_output=True,
                              text=True, timeout=timeout, env={**os.environ, **(env or {})}, check=False)
        if check and done.returncode != 0:
            pytest.fail(f"{name} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
        return done

    return run


def popen_ported(name: str, directory: Path, args: Sequence[str]) -> subprocess.Popen[str]:
    script = port(name, directory)
    return subprocess.Popen([sys.executable, str(script), *args], cwd=directory, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
