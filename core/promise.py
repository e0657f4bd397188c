"""Promises: placeholders for a job's return value, resolved before the consuming job runs.

A :class:`Promise` pickles as a call to :func:`_resolve`; when a worker loads a job body (or a
return value) inside :func:`resolving`, that call reads the promised job's return value from the
job store, so promises nested anywhere in a job's arguments or attributes (lists, dicts, tuples,
objects) arrive resolved. Outside that context a promise stays a promise.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

from flow.core.exceptions import PromiseError

#: job id -> that job's return value; set by the worker while it loads a job.
_resolver: Callable[[str], Any] | None = None


class Promise:
    """The return value of job ``job_id`` (walked along ``path``), once that job has run."""

    __slots__ = ("job_id", "path")

    def __init__(self, job_id: str, path: tuple[Any, ...] = ()) -> None:
        self.job_id = job_id
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (_resolve, (self.job_id, self.path))

    def resolve(self) -> Any:
        """The promised value (inside :func:`resolving`)."""
        if _resolver is None:
            raise PromiseError(f"{self!r} cannot be resolved here: no job store to read it from")
        return _resolve(self.job_id, self.path)

    def __repr__(self) -> str:
        suffix = "".join(f"[{p!r}]" for p in self.path)
        return f"<Promise of job {self.job_id}{suffix}>"


def walk(value: Any, path: tuple[Any, ...], job_id: str) -> Any:
    """``value[path[0]][path[1]]...``, with a clear error when an item is missing."""
    for step in path:
        try:
            value = value[step]
        except (KeyError, IndexError, TypeError) as exc:
            raise PromiseError(
                f"promise of job {job_id}: its return value has no item {step!r} (path {path!r})"
            ) from exc
    return value


def _resolve(job_id: str, path: tuple[Any, ...]) -> Any:
    if _resolver is None:
        return Promise(job_id, path)
    return walk(_resolver(job_id), path, job_id)


@contextlib.contextmanager
def resolving(read_return_value: Callable[[str], Any]) -> Iterator[None]:
    """Within the block, unpickled promises resolve through ``read_return_value(job_id)``."""
    global _resolver
    previous = _resolver
    cache: dict[str, Any] = {}

    def cached(job_id: str) -> Any:
        if job_id not in cache:
            cache[job_id] = read_return_value(job_id)
        return cache[job_id]

    _resolver = cached
    try:
        yield
    finally:
        _resolver = previous
