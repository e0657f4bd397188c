"""Long chains of jobs that each return their successor's promise (Toil's idiom)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flow.core.common import Flow
from flow.core.job import Job


def step(job: Job, i: int, n: int) -> Any:
    if i == n:
        return {"last": [i]}
    return job.addFollowOnJobFn(step, i + 1, n, cores=0.1, memory="10M").rv()


def take(job: Job, n: int) -> Any:
    return job.addChildJobFn(step, 0, n, cores=0.1, memory="10M").rv("last", 0)


def test_chain_of_returned_promises_deeper_than_the_python_stack(tmp_path: Path) -> None:
    options = Job.Runner.getDefaultOptions(str(tmp_path / "js"))
    options.noProgress = True
    options.logLevel = "WARNING"
    with Flow(options) as flow:
        assert flow.start(Job.wrapJobFn(take, 1500, cores=0.1, memory="10M")) == 1500
