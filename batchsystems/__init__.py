"""Batch systems: where workers run. ``single_machine`` (local, default)."""

from flow.batchsystems.abstract import (
    BatchConfig,
    BatchJob,
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
    "BatchSystem",
    "BatchSystemError",
    "ExitReason",
    "ImpossibleRequestError",
    "JobExit",
    "SubmissionError",
    "WorkerCall",
    "batch_system_class",
    "make_batch_system",
    "register_batch_system",
]
