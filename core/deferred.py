"""``Job.defer`` across abnormal ends: each deferred call is also written to a file in the run's
scratch directory (or ``--coordinationDir``) while its job runs, and removed once it has been
called. A worker that dies (kill -9, out of memory) leaves its files behind; the next worker of
the run on that machine to start a job runs them, as Toil's deferred-function manager does."""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
from collections.abc import Callable
from typing import Any

import dill
import psutil

from flow.core import scriptref

logger = logging.getLogger(__name__)
SUFFIX = ".defer"


def record(directory: str, job_id: str, index: int, call: tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]) -> str | None:
    """Write one deferred call; its path (None if it cannot be pickled: then it runs only in
    this process, as before)."""
    try:
        data = scriptref.dumps(call)
    except (pickle.PicklingError, TypeError, AttributeError):  # the in-process call still happens
        logger.debug("deferred call of job %s cannot be stored; it runs only in this process", job_id)
        return None
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, f"{os.getpid()}-{job_id}-{index:06d}{SUFFIX}")
    with open(path + ".tmp", "wb") as handle:
        handle.write(data)
    os.replace(path + ".tmp", path)
    return path


def call(function: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], owner: str) -> None:
    try:
        function(*args, **kwargs)
    except Exception:  # a cleanup's failure must not hide the job's own outcome
        logger.exception("deferred function %s of %s failed", getattr(function, "__name__", function), owner)


def run_orphans(directory: str) -> int:
    """Run the deferred calls that dead workers left in ``directory``; how many ran."""
    try:
        names = sorted(os.listdir(directory), reverse=True)  # latest registered first
    except FileNotFoundError:
        return 0
    ran = 0
    for name in names:
        if not name.endswith(SUFFIX):
            continue
        pid = int(name.split("-", 1)[0]) if name.split("-", 1)[0].isdigit() else -1
        if pid == os.getpid() or (pid > 0 and psutil.pid_exists(pid)):
            continue
        path = os.path.join(directory, name)
        claimed = f"{path}.claimed-{os.getpid()}"
        try:
            os.rename(path, claimed)  # atomic: one worker runs it
        except FileNotFoundError:
            continue
        try:
            with open(claimed, "rb") as handle:
                function, args, kwargs = dill.loads(handle.read())
            call(function, args, kwargs, f"a killed worker (pid {pid})")
            ran += 1
        except Exception:  # a damaged record must not stop this worker's job
            logger.exception("could not run the deferred call %s of a killed worker", name)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(claimed)
    return ran
