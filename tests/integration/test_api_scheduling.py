"""Resource limits end to end: --maxCores is never exceeded, fractional cores share a core."""

from __future__ import annotations

import argparse
from pathlib import Path

from flow.core.common import Flow
from flow.core.job import Job
from tests.integration._util import max_overlap, read_intervals, record_interval


def fan_out(job, directory, n, child_cores, seconds):
    for i in range(n):
        job.addChildFn(record_interval, directory, f"job{i:02d}", seconds, cores=child_cores, memory="50M")


def run_fan_out(options: argparse.Namespace, directory: Path, n: int, cores: float, seconds: float):
    directory.mkdir()
    with Flow(options) as flow:
        flow.start(Job.wrapJobFn(fan_out, str(directory), n, cores, seconds, cores=0.1, memory="50M"))
    intervals = read_intervals(directory)
    assert len(intervals) == n
    return intervals


def test_max_cores_never_exceeded(options: argparse.Namespace, tmp_path: Path) -> None:
    options.maxCores = 2
    intervals = run_fan_out(options, tmp_path / "intervals", 8, 1, 0.3)
    overlap = max_overlap(intervals)
    assert overlap <= 2, intervals
    assert overlap == 2, intervals  # both cores were used


def test_fractional_cores_share(options: argparse.Namespace, tmp_path: Path) -> None:
    options.maxCores = 2
    intervals = run_fan_out(options, tmp_path / "intervals", 8, 0.5, 0.6)
    overlap = max_overlap(intervals)
    assert overlap <= 4, intervals
    assert overlap > 2, intervals
