"""Find a job store implementation from a locator such as ``./js``, ``file:./js`` or ``file:///abs``."""

from __future__ import annotations

import importlib

from flow.jobstores.abstract import JobStore

#: scheme -> "module:Class", imported lazily so that unused stores cost nothing.
_STORES: dict[str, str] = {
    "file": "flow.jobstores.file:FileJobStore",
}


def register_job_store(scheme: str, target: str) -> None:
    """Add a job store kind: ``target`` is "package.module:ClassName"."""
    _STORES[scheme] = target


def split_locator(locator: str) -> tuple[str, str]:
    """``"file:./js"`` -> ("file", "./js"); a bare path is a file store."""
    if ":" in locator:
        scheme, rest = locator.split(":", 1)
        if scheme in _STORES:
            if scheme == "file" and rest.startswith("//"):
                rest = rest[2:]
            return scheme, rest
    return "file", locator


def job_store_class(locator: str) -> type[JobStore]:
    scheme, _ = split_locator(locator)
    module_name, _, class_name = _STORES[scheme].partition(":")
    cls: type = getattr(importlib.import_module(module_name), class_name)
    assert issubclass(cls, JobStore)
    return cls


def create_job_store(locator: str) -> JobStore:
    return job_store_class(locator).create(locator)


def open_job_store(locator: str) -> JobStore:
    return job_store_class(locator).open(locator)
