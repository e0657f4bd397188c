"""The shared job-store records that the leader, workers and the ``flow`` command share, and the
one place where the core reads its own records back.

Every read of a job record, the run's configuration or a text record goes through the functions
below, which turn a missing, truncated or garbage item into a typed error naming the item
(:class:`~flow.jobstores.abstract.DamagedRecordError`), so that ``--restart`` and ``flow status``
can say what is damaged instead of failing with a traceback.
"""

from __future__ import annotations

import pickle
from typing import Any

from flow.core.description import JobDescription
from flow.jobstores.abstract import DamagedRecordError, JobStore, NoSuchJobError

CONFIG = "config"  # WorkerConfig of the run (pickled)
ROOT = "root"  # the root job's id
RESULT = "result"  # (job id, path) of the promise Flow.start returns
STATUS = "status"  # b"running", b"succeeded" or b"failed"
LEADER = "leader"  # b"<host> <pid> <process start time>"
BATCH_SYSTEM = "batch_system"  # the --batchSystem the leader runs jobs on (for flow kill/clean)
KILL = "kill"  # present: 'flow kill' asked the leader to stop
PROVISIONER = "provisioner"  # pickled {"name", "run_id", "extra"}: written before the first node is launched
NODES = "nodes"  # pickled list of the run's nodes: {"id", "type", "launched", "ended"} (wall-clock seconds)
STORY = "story-{}"  # a job that failed for good: its last events in the leader, one a line

#: Whatever unpickling a damaged record may raise.
UNREADABLE = (
    pickle.UnpicklingError, EOFError, TypeError, ValueError, AttributeError, ImportError,
    IndexError, KeyError, MemoryError, RecursionError, UnicodeDecodeError,
)


def load_description(store: JobStore, job_id: str) -> JobDescription:
    """A job's description. NoSuchJobError when it has none; DamagedRecordError when unreadable."""
    raw = store.read_job(job_id)
    try:
        return JobDescription.loads(raw)
    except UNREADABLE as exc:
        raise DamagedRecordError(
            store.locator, f"the record of job {job_id}", f"is unreadable ({_why(exc, raw)})"
        ) from None


def load_config(store: JobStore) -> Any:
    """The run's configuration (a WorkerConfig), or None when the run never wrote one."""
    raw = store.read_shared(CONFIG)
    if raw is None:
        return None
    try:
        config = pickle.loads(raw)
    except UNREADABLE as exc:
        raise DamagedRecordError(
            store.locator, f"the run's configuration (shared record {CONFIG!r})",
            f"is unreadable ({_why(exc, raw)})",
        ) from None
    if not isinstance(getattr(config, "workflow_id", None), str):
        raise DamagedRecordError(
            store.locator, f"the run's configuration (shared record {CONFIG!r})",
            f"is not a flow run configuration (a {type(config).__name__})",
        )
    return config


def load_text(store: JobStore, name: str) -> str | None:
    """A shared text record (status, root id, leader ...), or None when absent."""
    raw = store.read_shared(name)
    if raw is None:
        return None
    try:
        return raw.decode().strip()
    except UnicodeDecodeError:
        raise DamagedRecordError(store.locator, f"the shared record {name!r}", "is not text") from None


def load_root(store: JobStore) -> str | None:
    """The root job's id, checked to name a job with a readable record; None when never started."""
    root = load_text(store, ROOT)
    if root is None:
        return None
    try:
        load_description(store, root)
    except NoSuchJobError:
        raise DamagedRecordError(
            store.locator, f"the root job {root!r} (shared record {ROOT!r})", "has no job record"
        ) from None
    return root


def _why(exc: BaseException, raw: bytes) -> str:
    if not raw:
        return "it is empty"
    text = str(exc).strip() or type(exc).__name__
    return f"{text[:200]}; {len(raw)} bytes"
