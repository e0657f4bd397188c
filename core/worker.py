"""The worker: run one job, commit its completion durably, then chain into its successor.

``run_job(locator, job_id)`` is what batch systems call (``flow.core.worker:run_job``). The
commit point of a job is the atomic rewrite of its description with ``state=RAN`` and its
successors; everything the job created (new jobs, its return value) is written before it, so a
kill -9 at any moment re-runs at most the job that was running.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import random
import resource
import signal
import sys
import threading
import time
import traceback
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import dill

import flow.batchsystems
import flow.jobstores
from flow.core import deferred, promise, records, scriptref
from flow.core.description import INLINE_LIMIT, JOB_FAILED_EXIT, JobDescription, JobState
from flow.core.exceptions import FlowError, PromiseError
from flow.core.filestore import FileStore
from flow.core.job import Job
from flow.core.requirements import accelerator_count
from flow.jobstores.abstract import JobStore, JobStoreError
from flow.jobstores.placement import spread_subdirectories
from flow.jobstores.registry import open_job_store

logger = logging.getLogger(__name__)

LOG_TAIL_BYTES = 64_000  # Toil's --maxLogFileSize default


@dataclass(frozen=True)
class WorkerConfig:
    """What workers need to know about the run (stored once in the job store)."""

    workflow_id: str
    work_dir: str
    log_level: int = logging.INFO
    stats: bool = False
    default_cores: float = 1.0
    default_memory: int = 2 * 1024**3
    default_disk: int = 2 * 1024**3
    chaining: bool = True
    #: Toil's options (README, "Porting from Toil").
    keep_all_logs: bool = False  # --writeLogsFromAllJobs
    max_log_size: int = LOG_TAIL_BYTES  # --maxLogFileSize (0: all, negative: the head)
    coordination_dir: str | None = None  # --coordinationDir
    clean_work_dir: str = "always"  # --cleanWorkDir
    bad_worker: float = 0.0  # --badWorker
    bad_worker_interval: float = 0.01  # --badWorkerFailInterval
    default_preemptible: bool = False  # --defaultPreemptible
    default_accelerators: tuple[tuple[tuple[str, Any], ...], ...] = ()  # --defaultAccelerators

    def dumps(self) -> bytes:
        return pickle.dumps(self)


_stores: dict[str, tuple[JobStore, WorkerConfig]] = {}
_made_dirs: set[str] = set()


def _open(locator: str) -> tuple[JobStore, WorkerConfig]:
    cached = _stores.get(locator)
    if cached is None:
        store = open_job_store(locator)
        config = records.load_config(store)
        if config is None:
            raise FlowError(f"the job store {locator} has no run configuration")
        cached = _stores[locator] = (store, config)
        logging.basicConfig(
            level=config.log_level, stream=sys.stderr,
            format="[%(asctime)s] %(levelname)s %(name)s: %(message)s",
        )
    return cached


def run_job(locator: str, job_id: str) -> int:
    """Run job ``job_id`` and any successors it can chain into. 0 if all committed,
    JOB_FAILED_EXIT if a job failed (its log says why)."""
    store, config = _open(locator)
    _arm_bad_worker(config)
    current: str | None = job_id
    while current is not None:
        desc = records.load_description(store, current)
        if desc.state is JobState.RAN:
            return 0  # already committed (e.g. reissued after a leader restart)
        ok, nxt = _run_one(store, config, desc)
        if not ok:
            return JOB_FAILED_EXIT
        current = nxt
    return 0


def _run_one(store: JobStore, config: WorkerConfig, desc: JobDescription) -> tuple[bool, str | None]:
    temp_root = os.path.join(config.work_dir, f"flow-{config.workflow_id}")
    if temp_root not in _made_dirs:
        try:
            os.makedirs(temp_root, mode=0o700, exist_ok=True)
            spread_subdirectories(temp_root)  # jobs' scratch folders away from freed inodes
        except OSError as exc:  # the job's log says why, not only the worker's exit code
            store.write_log(desc.job_id, f"cannot make the job's scratch directory {temp_root} "
                            f"(--workDir): {exc.strerror or exc}\n".encode())
            return False, None
        _made_dirs.add(temp_root)
    file_store = FileStore(store, desc.job_id, temp_root)
    log_path = os.path.join(config.coordination_dir or temp_root, f"worker-{os.getpid()}.log")
    defer_dir = os.path.join(config.coordination_dir or temp_root, "deferred")
    deferred.run_orphans(defer_dir)  # what workers killed earlier (kill -9) left to call
    usage = _Usage(config.stats)
    ok = False
    try:
        with _captured_output(log_path):
            try:
                job = _load_job(store, desc)
                job._fileStore = file_store
                job._resource_defaults = (config.default_cores, config.default_memory, config.default_disk)  # type: ignore[attr-defined]
                job._defer_dir = defer_dir  # type: ignore[attr-defined]
                try:
                    value = job.run(file_store)
                finally:
                    job._run_deferred()
                file_store.check_read_files()
                nxt = _commit(store, config, job, value, file_store)
                ok = True
            except BaseException as exc:
                _print_traceback(exc)
                raise
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt):
            raise
        try:
            _save_log(store, desc.job_id, log_path, exc, config.max_log_size)
        except JobStoreError as err:  # the store itself failing (full disk): say so in one line
            print(f"flow: job {desc.label} ({desc.job_id}) failed, and its log could not be "
                  f"saved: {err}", file=sys.stderr)
        return False, None
    finally:
        _finish_scratch(file_store, config, desc, ok)
    if config.keep_all_logs:  # --writeLogsFromAllJobs: a successful job's log is kept too
        _save_log(store, desc.job_id, log_path, None, config.max_log_size)
    if config.stats:
        store.append_stats(pickle.dumps(usage.record(desc)))
    return True, nxt


def read_return_value(store: JobStore, job_id: str) -> Any:
    """A job's return value (inline in its description, or its result record).

    A job that returned another job's promise (``return child.rv()``, often down a long chain)
    is followed in a loop, so the depth of such chains is not bounded by the Python stack."""
    paths: list[tuple[Any, ...]] = []
    for _ in range(10_000_000):
        desc = records.load_description(store, job_id)
        if desc.result_promise is None:
            break
        job_id, path = desc.result_promise
        paths.append(path)
    raw = desc.result if desc.result is not None else store.read_result(job_id)
    if raw is None:
        raise PromiseError(
            f"a promise of job {desc.label} ({job_id}) was read before that job returned; "
            "promises may only be passed to successors of the job that makes them"
        )
    value = dill.loads(raw)
    for path in reversed(paths):
        value = promise.walk(value, path, job_id)
    return value


def _load_job(store: JobStore, desc: JobDescription) -> Job:
    with promise.resolving(lambda job_id: read_return_value(store, job_id)):
        job = dill.loads(desc.body if desc.body is not None else store.read_body(desc.job_id))
    if not isinstance(job, Job):
        raise TypeError(f"job body of {desc.job_id} is a {type(job).__name__}, not a Job")
    job._description = desc
    return job


def _commit(store: JobStore, config: WorkerConfig, job: Job, value: Any, file_store: FileStore) -> str | None:
    """Write what the job created, then the job's RAN record (the commit point)."""
    desc = job._description
    if file_store.cleanup_ids:
        _schedule_cleanup(job, file_store.cleanup_ids)
    new_jobs = collect_new_jobs(job)
    if new_jobs:
        job.checkJobGraphAcylic()
    new_descs = write_new_jobs(store, new_jobs, config)
    if desc.has_promises and isinstance(value, promise.Promise):
        desc.result_promise = (value.job_id, value.path)
    elif desc.has_promises:
        result = scriptref.dumps(value)
        if len(result) <= INLINE_LIMIT:
            desc.result = result
        else:
            store.write_result(desc.job_id, result)
    desc.children = desc.children + [j.jobStoreID for j in job._children]
    desc.follow_ons = desc.follow_ons + [j.jobStoreID for j in job._follow_ons]
    desc.services = desc.services + [j.jobStoreID for j in job._services]
    desc.messages = file_store.messages
    desc.state = JobState.RAN
    desc.attempts += 1
    desc.chained_to = _chain_target(store, config, desc, {d.job_id: d for d in new_descs})
    store.write_job(desc.job_id, desc.dumps())
    file_store.commit()
    return desc.chained_to


class DeleteFiles(Job):
    """Deletes global files written with ``cleanup=True`` (hidden)."""

    hidden = True

    def __init__(self, file_ids: list[str]) -> None:
        super().__init__(cores=0, memory=0, disk=0)
        self.file_ids = list(file_ids)

    def run(self, fileStore: FileStore) -> None:
        for file_id in self.file_ids:
            if fileStore.globalFileExists(file_id):
                fileStore.deleteGlobalFile(file_id)


def _schedule_cleanup(job: Job, file_ids: list[str]) -> None:
    """Toil's ``cleanup=True``: the files go when the job and its successors are done. The
    successors the job added while running move under one hidden child, and a hidden follow-on
    deletes the files: follow-ons run after the whole subtree of the children. (Follow-ons the
    job had before it ran may still be running then: they were stored before it ran.)"""
    holder = Job(cores=0, memory=0, disk=0)
    holder._description.hidden = True
    for successors, add in ((job._children, holder.addChild), (job._follow_ons, holder.addFollowOn)):
        for successor in list(successors):
            successor._predecessors.remove(job)
            add(successor)
        successors.clear()
    if holder._children or holder._follow_ons:
        job.addChild(holder)
    job.addFollowOn(DeleteFiles(file_ids))


def collect_new_jobs(job: Job) -> list[Job]:
    """The in-memory jobs reachable from ``job`` through successor links (not ``job`` itself)."""
    seen = {id(job)}
    order: list[Job] = []
    stack = list(job._successors())
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        order.append(current)
        stack.extend(current._successors())
    return order


def write_new_jobs(store: JobStore, jobs: Iterable[Job], config: WorkerConfig | None = None) -> list[JobDescription]:
    """Write bodies, then descriptions, of new jobs. Returns their descriptions."""
    descs = []
    for job in jobs:
        desc = job._description
        if config is not None:
            _apply_defaults(job, desc, config)
        desc.children = [j.jobStoreID for j in job._children]
        desc.follow_ons = [j.jobStoreID for j in job._follow_ons]
        desc.services = [j.jobStoreID for j in job._services]
        desc.static_children = list(desc.children)
        desc.static_follow_ons = list(desc.follow_ons)
        desc.static_services = list(desc.services)
        desc.predecessors = max(1, len(job._predecessors))
        body = scriptref.dumps(job)
        if len(body) <= INLINE_LIMIT:
            desc.body = body
        else:
            store.write_body(desc.job_id, body)
        descs.append(desc)
    for desc in descs:
        store.write_job(desc.job_id, desc.dumps())
    return descs


def _apply_defaults(job: Job, desc: JobDescription, config: WorkerConfig) -> None:
    """--defaultPreemptible and --defaultAccelerators for jobs that do not say."""
    given = job.__dict__.get("_given", frozenset())
    if config.default_preemptible and "preemptible" not in given:
        desc.preemptible = True
    if config.default_accelerators and "accelerators" not in given:
        desc.accelerator_specs = [dict(spec) for spec in config.default_accelerators]
        desc.accelerators = accelerator_count(desc.accelerator_specs)


def _chain_target(
    store: JobStore, config: WorkerConfig, desc: JobDescription, known: dict[str, JobDescription]
) -> str | None:
    """The single successor this worker can run next, as Toil chains, or None."""
    successors = desc.children + desc.follow_ons
    if not config.chaining or len(successors) != 1 or desc.services:
        return None
    nxt = known.get(successors[0])
    if nxt is None:
        nxt = records.load_description(store, successors[0])
    if nxt.predecessors != 1 or nxt.is_service or nxt.state is JobState.RAN or nxt.checkpoint:
        return None

    def need(d: JobDescription) -> tuple[float, int, int]:
        return (
            config.default_cores if d.cores is None else d.cores,
            config.default_memory if d.memory is None else d.memory,
            config.default_disk if d.disk is None else d.disk,
        )

    fits = all(a <= b for a, b in zip(need(nxt), need(desc), strict=True))
    fits = fits and nxt.accelerators <= desc.accelerators and (desc.preemptible or not nxt.preemptible)
    return nxt.job_id if fits else None


@contextlib.contextmanager
def _captured_output(path: str) -> Iterator[None]:
    """Send file descriptors 1 and 2 (the job's prints, its subprocesses) to ``path``."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    try:
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        os.close(saved[0])
        os.close(saved[1])


_FLOW_DIRS = tuple(
    os.path.dirname(os.path.abspath(path)) + os.sep
    for path in (__file__, flow.batchsystems.__file__, flow.jobstores.__file__)
    if path
)


def _print_traceback(exc: BaseException) -> None:
    """The job's traceback without flow's own frames, unless the error is flow's. A FlowError
    raised by a job (a front-end's failed tool or task) is its one-paragraph message."""
    sys.stdout.flush()  # what the job printed comes before its error in the log
    if isinstance(exc, FlowError):
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return
    report = traceback.TracebackException.from_exception(exc)
    own = [f for f in report.stack if not f.filename.startswith(_FLOW_DIRS)]
    if own:
        report.stack = traceback.StackSummary.from_list(own)
    print("".join(report.format()), end="", file=sys.stderr)


def _save_log(store: JobStore, job_id: str, log_path: str, exc: BaseException | None,
              limit: int = LOG_TAIL_BYTES) -> None:
    """Store the job's log: its last ``limit`` bytes (all if 0, the first -limit if negative)."""
    try:
        with open(log_path, "rb") as handle:
            if limit > 0:
                handle.seek(0, os.SEEK_END)
                handle.seek(max(0, handle.tell() - limit))
            tail = handle.read(-limit if limit < 0 else -1)
    except OSError:
        tail = b""
    if not tail.strip() and exc is not None:
        tail = "".join(traceback.format_exception(exc)).encode()
    store.write_log(job_id, tail)


def _finish_scratch(file_store: FileStore, config: WorkerConfig, desc: JobDescription, ok: bool) -> None:
    """--cleanWorkDir: remove the job's scratch directory, or move it to --workDir and say so."""
    policy = config.clean_work_dir
    keep = policy == "never" or (policy == "onSuccess" and not ok) or (policy == "onError" and ok)
    if keep:
        kept = file_store.keep_scratch(os.path.join(config.work_dir, f"flow-kept-{desc.job_id}"))
        if kept:
            logger.warning("kept the scratch directory of %s at %s (--cleanWorkDir %s)", desc.label, kept, policy)
    file_store.close()


def _arm_bad_worker(config: WorkerConfig) -> None:
    """--badWorker: for testing, SIGKILL this worker soon after a fraction of job starts."""
    if config.bad_worker > 0 and random.random() < config.bad_worker:
        delay = random.uniform(0, max(0.0, config.bad_worker_interval))
        timer = threading.Timer(delay, os.kill, (os.getpid(), signal.SIGKILL))
        timer.daemon = True
        timer.start()


class _Usage:
    """CPU time, wall time and peak memory of one job (for ``--stats``)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.start = time.time()
        self.self_cpu = self.child_cpu = 0.0
        self.kids_peak = 0
        if enabled:
            self.kids_peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
            with contextlib.suppress(OSError):
                with open("/proc/self/clear_refs", "w") as handle:
                    handle.write("5")  # reset this process's peak RSS
            self.self_cpu, self.child_cpu = self._cpu()

    @staticmethod
    def _cpu() -> tuple[float, float]:
        me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return me.ru_utime + me.ru_stime, kids.ru_utime + kids.ru_stime

    def record(self, desc: JobDescription) -> dict[str, Any]:
        me, kids = self._cpu()
        peak = 0
        with contextlib.suppress(OSError):
            with open("/proc/self/status") as handle:
                for line in handle:
                    if line.startswith("VmHWM:"):
                        peak = int(line.split()[1]) * 1024
        # RUSAGE_CHILDREN's peak never resets: it speaks for this job only if it grew during it.
        kids_peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        if kids_peak > self.kids_peak:
            peak = max(peak, kids_peak * 1024)
        return {
            "job_id": desc.job_id, "kind": desc.name, "hidden": desc.hidden,
            "wall": time.time() - self.start,
            "cpu": (me - self.self_cpu) + (kids - self.child_cpu),
            "memory": peak, "end": time.time(),
            # what it asked for (None: the run's default), for 'flow plan' and node usage
            "request": (desc.cores, desc.memory, desc.disk, desc.preemptible), "label": desc.label,
        }
