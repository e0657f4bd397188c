"""Batch systems: where workers run. ``single_machine`` (local, default) and ``slurm``
(:mod:`flow.batchsystems.slurm`, on the HPC base :mod:`flow.batchsystems.hpc`)."""

from flow.batchsystems.abstract import (
    WORKER_PRELOAD_VARIABLE,
    BatchConfig,
    BatchJob,
    BatchJobExitReason,
    BatchSystem,
    BatchSystemError,
    ExitReason,
    ImpossibleRequestError,
    JobExit,
    SubmissionError,
    WorkerCall,
)
from flow.batchsystems.registry import batch_system_class, make_batch_system, register_batch_system

__all__ = [
    "BatchConfig",
    "BatchJob",
    "BatchJobExitReason",
    "BatchSystem",
    "BatchSystemError",
    "ExitReason",
    "ImpossibleRequestError",
    "JobExit",
    "SubmissionError",
    "WORKER_PRELOAD_VARIABLE",
    "WorkerCall",
    "batch_system_class",
    "make_batch_system",
    "register_batch_system",
]
