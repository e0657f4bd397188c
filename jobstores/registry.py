"""Find a job store implementation from a locator such as ``./js``, ``file:./js`` or ``file:///abs``."""

from __future__ import annotations

import importlib
import re

from flow.jobstores.abstract import JobStore, JobStoreError

#: scheme -> "module:Class", imported lazily so that unused stores cost nothing.
_STORES: dict[str, str] = {
    "file": "flow.jobstores.file:FileJobStore",
}


def register_job_store(scheme: str, target: str) -> None:
    """Add a job store kind: ``target`` is "package.module:ClassName"."""
    _STORES[scheme] = target


#: What a locator's scheme looks like (RFC 3986); one letter is a drive, not a scheme.
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]+")


def split_locator(locator: str) -> tuple[str, str]:
    """``"file:./js"`` -> ("file", "./js"); a bare path is a file store. A scheme flow has no
    store for (Toil's ``aws:region:name``, ``google:...``) is refused, never taken for a path."""
    if ":" in locator:
        scheme, rest = locator.split(":", 1)
        if scheme in _STORES:
            if scheme == "file" and rest.startswith("//"):
                rest = rest[2:]
            return scheme, rest
        if _SCHEME.fullmatch(scheme):
            raise JobStoreError(
                locator, f"flow has no {scheme!r} job store (it has: {', '.join(sorted(_STORES))}"
                f"; a directory is the file store). For a local directory whose name has a ':' "
                f"in it, write ./{locator}."
            )
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
