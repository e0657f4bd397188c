"""flow core engine: the job API, leader, worker, file store.

``from flow.core import Job, Flow`` is the Toil-compatible entry point. Names are imported on
first use so that a worker process loads only what it runs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "Flow": "flow.core.common",
    "FailedJobsException": "flow.core.exceptions",
    "FlowError": "flow.core.exceptions",
    "JobException": "flow.core.exceptions",
    "JobGraphDeadlockException": "flow.core.exceptions",
    "PromiseError": "flow.core.exceptions",
    "FileID": "flow.core.filestore",
    "FileStore": "flow.core.filestore",
    "EncapsulatedJob": "flow.core.job",
    "FunctionWrappingJob": "flow.core.job",
    "Job": "flow.core.job",
    "JobFunctionWrappingJob": "flow.core.job",
    "ServiceHostJob": "flow.core.job",
    "Promise": "flow.core.promise",
}

__all__ = [
    "EncapsulatedJob",
    "FailedJobsException",
    "FileID",
    "FileStore",
    "Flow",
    "FlowError",
    "FunctionWrappingJob",
    "Job",
    "JobException",
    "JobFunctionWrappingJob",
    "JobGraphDeadlockException",
    "Promise",
    "PromiseError",
    "ServiceHostJob",
]

if TYPE_CHECKING:
    from flow.core.common import Flow
    from flow.core.exceptions import (
        FailedJobsException,
        FlowError,
        JobException,
        JobGraphDeadlockException,
        PromiseError,
    )
    from flow.core.filestore import FileID, FileStore
    from flow.core.job import (
        EncapsulatedJob,
        FunctionWrappingJob,
        Job,
        JobFunctionWrappingJob,
        ServiceHostJob,
    )
    from flow.core.promise import Promise


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'flow.core' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
