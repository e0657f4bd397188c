"""Fixtures of the end-to-end tests: real worker processes, the real file job store in tmp_path."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import pytest

from flow.core.job import Job


@pytest.fixture
def options(tmp_path: Path) -> argparse.Namespace:
    """Default options for a new workflow in ``tmp_path/js`` on 2 cores, scratch in ``tmp_path/work``."""
    opts = Job.Runner.getDefaultOptions(str(tmp_path / "js"))
    opts.noProgress = True
    opts.logLevel = "INFO"
    opts.maxCores = 2
    opts.workDir = str(tmp_path / "work")
    return opts


# Every leader in these tests checks the scheduler's invariants after each step (flow.core.leader).
os.environ.setdefault("FLOW_VALIDATE", "1")
