"""Job stores: durable state of a workflow. ``file`` is the embedded default."""

from flow.jobstores.abstract import (
    CorruptJobStoreError,
    DamagedRecordError,
    JobStore,
    JobStoreDeletingError,
    JobStoreError,
    JobStoreExistsError,
    JobStoreLockedError,
    JobStoreWriteError,
    NoSuchFileError,
    NoSuchJobError,
    NoSuchJobStoreError,
)
from flow.jobstores.registry import create_job_store, open_job_store, register_job_store

__all__ = [
    "CorruptJobStoreError",
    "DamagedRecordError",
    "JobStore",
    "JobStoreDeletingError",
    "JobStoreError",
    "JobStoreExistsError",
    "JobStoreLockedError",
    "JobStoreWriteError",
    "NoSuchFileError",
    "NoSuchJobError",
    "NoSuchJobStoreError",
    "create_job_store",
    "open_job_store",
    "register_job_store",
]
