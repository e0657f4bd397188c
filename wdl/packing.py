"""WDL jobs and values pickled by the C pickler, inside the core's dill pickles.

The core pickles job bodies and return values with dill (``recurse=True``), whose pickler is
written in Python: for a scatter of trivial tasks, pickling each task job's body and each task's
outputs (a handful of miniwdl values with their types) was a tenth of the CPU a task cost. What
the WDL front-end stores is always plain data (miniwdl values and types, flow's own dataclasses
and promises, all importable by name), so its jobs and value dicts reduce to one ``pickle.dumps``
blob that dill passes through as bytes. Promises inside still resolve: the blob is unpickled
while dill loads the job, inside the worker's promise-resolving context.
"""

from __future__ import annotations

import pickle
from typing import Any

from flow.core.job import Job

_PROTOCOL = pickle.HIGHEST_PROTOCOL


class PackedValues(dict[str, Any]):
    """A dict of WDL values (outputs, exports) that pickles as one C-pickler blob."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (_values, (pickle.dumps(dict(self), protocol=_PROTOCOL),))


def _values(blob: bytes) -> PackedValues:
    return PackedValues(pickle.loads(blob))


class PackedJob(Job):
    """A job whose body (its state, as ``Job.__getstate__`` gives it) is one C-pickler blob."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (_job, (type(self), pickle.dumps(self.__getstate__(), protocol=_PROTOCOL)))


def _job(cls: type[PackedJob], blob: bytes) -> PackedJob:
    job = cls.__new__(cls)
    job.__setstate__(pickle.loads(blob))
    return job
