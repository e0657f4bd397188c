"""Toil's accelerator forms and preemptible flag on Slurm's command line, Toil's exit reasons,
and the cluster options (--batchLogsDir, --statePollingWait) on the real local Slurm cluster
(skipped, saying why, where none answers). --doubleMem is not tested here: this cluster does not
enforce jobs' memory, so no job ends OUT_OF_MEMORY."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from flow.batchsystems import BatchJob, BatchJobExitReason, ExitReason, JobExit, WorkerCall
from flow.batchsystems.slurm import gres_request, sbatch_command
from flow.core.exceptions import FailedJobsException
from flow.core.job import Job
from flow.core.requirements import parse_accelerators
from tests.contract.test_batchsystem import require_slurm

MiB = 1024**2


def batch_job(accelerators: object, preemptible: bool = False) -> BatchJob:
    specs = tuple(parse_accelerators(accelerators))
    return BatchJob("id", "x", WorkerCall("m:f"), accelerators=sum(int(s["count"]) for s in specs),
                    accelerator_specs=specs, preemptible=preemptible)


@pytest.mark.parametrize(("accelerators", "gres"), [
    (2, "gpu:2"),
    ("cuda:1", "gpu:1"),
    ("nvidia-tesla-k80:2", "gpu:nvidia-tesla-k80:2"),
    ({"kind": "gpu", "model": "a100", "count": 4}, "gpu:a100:4"),
    (["cuda:1", 1, {"model": "a100"}], "gpu:2,gpu:a100:1"),
    (0, ""),
])
def test_accelerators_in_toils_forms_become_gres(accelerators: object, gres: str) -> None:
    job = batch_job(accelerators)
    assert gres_request(job) == gres
    argv = sbatch_command(job, "o", "flow:t", None, [])
    assert (f"--gres={gres}" in argv) if gres else not any(a.startswith("--gres") for a in argv)


def test_preemptible_jobs_go_to_the_preemptible_partition() -> None:
    assert "--partition=spot" in sbatch_command(batch_job(0, True), "o", "flow:t", "main", [], "spot")
    assert "--partition=main" in sbatch_command(batch_job(0, False), "o", "flow:t", "main", [], "spot")
    assert "--partition=main" in sbatch_command(batch_job(0, True), "o", "flow:t", "main", [], None)


def test_exit_reasons_have_toils_int_values() -> None:
    assert [(r.name, int(r)) for r in BatchJobExitReason][:4] == [
        ("FINISHED", 1), ("FAILED", 2), ("LOST", 3), ("KILLED", 4)]
    assert JobExit(1, 0).exitReason is BatchJobExitReason.FINISHED
    assert JobExit(1, 3).exitReason is BatchJobExitReason.FAILED
    assert JobExit(1, -9, ExitReason.OUT_OF_MEMORY).exitReason is BatchJobExitReason.MEMLIMIT
    assert JobExit(1, 1, ExitReason.TIMEOUT).exitReason is BatchJobExitReason.MAXJOBDURATION


def slurm_options(tmp_path: Path) -> argparse.Namespace:
    options = Job.Runner.getDefaultOptions(str(tmp_path / "js"))
    options.batchSystem = "slurm"
    options.noProgress = True
    options.workDir = str(tmp_path / "work")
    options.retryCount = 0
    return options


def hello() -> str:
    print("hello from a slurm job")
    return "hi"


def test_accelerators_reach_sbatch(tmp_path: Path) -> None:
    require_slurm()
    options = slurm_options(tmp_path)
    root = Job.wrapFn(hello, cores=1, memory="50M", accelerators="cuda:1")
    with pytest.raises(FailedJobsException, match="(?i)gres|generic resource"):
        Job.Runner.startFlow(root, options)  # this cluster has no GPUs: sbatch says so


def test_batch_logs_dir_keeps_slurms_output(tmp_path: Path) -> None:
    require_slurm()
    options = slurm_options(tmp_path)
    options.batchLogsDir = str(tmp_path / "batch-logs")
    options.statePollingWait = 0.5
    assert Job.Runner.startFlow(Job.wrapFn(hello, cores=1, memory="50M"), options) == "hi"
    outputs = list((tmp_path / "batch-logs").glob("flow-hello-*.out"))
    assert len(outputs) == 1


def test_state_polling_wait_spaces_the_state_queries(tmp_path: Path) -> None:
    from flow.batchsystems import BatchConfig, make_batch_system

    def intervals(**extra: object) -> tuple[float, float]:
        config = BatchConfig(max_cores=1, max_memory=MiB, max_disk=MiB, work_dir=str(tmp_path), extra=extra)
        system = make_batch_system("slurm", config)
        try:
            return system.poll_interval  # type: ignore[attr-defined]
        finally:
            system.shutdown()

    assert intervals() == (1.0, 15.0)
    assert intervals(statePollingWait=5) == (5.0, 15.0)
    assert intervals(statePollingWait=30) == (30.0, 30.0)
