"""``Flow``: the context manager that owns a job store and runs workflows (Toil's ``Toil``)."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import pickle
import signal
import sys
import tempfile
import types
from typing import TYPE_CHECKING, Any, Literal, overload

import psutil

from flow.batchsystems.abstract import BatchConfig, BatchSystem
from flow.batchsystems.registry import make_batch_system
from flow.core import leaderlock, promise, records
from flow.core.description import new_job_id
from flow.core.exceptions import FailedJobsException, FlowError
from flow.core.filestore import FileID, import_to_store
from flow.core.job import Job
from flow.core.joblogs import write_job_logs
from flow.core.leader import Leader, LeaderSettings
from flow.core.logs import install_excepthook, remove_handler, setup_logging
from flow.core.options import check_options, default_options, log_level, normalise_options, set_env
from flow.core.progress import Progress
from flow.core.realtime import RealtimeServer
from flow.core.resources import machine_cores, machine_disk, machine_memory, parse_cores
from flow.core.state import Defaults
from flow.core.urls import export_url
from flow.core.worker import (
    WorkerConfig,
    collect_new_jobs,
    read_return_value,
    write_new_jobs,
)
from flow.jobstores.abstract import (
    JobStore,
    JobStoreError,
    JobStoreExistsError,
    JobStoreLockedError,
    JobStoreWriteError,
)
from flow.jobstores.registry import create_job_store, open_job_store
from flow.jobstores.removal import remove_trees

if TYPE_CHECKING:
    from flow.core.autoscale import Autoscaling

logger = logging.getLogger("flow")



class Flow:
    """Run a workflow in a job store::

        with Flow(options) as flow:
            result = flow.restart() if options.restart else flow.start(root_job)
    """

    def __init__(self, options: argparse.Namespace) -> None:
        base = default_options()
        for key, value in vars(base).items():
            if not hasattr(options, key):
                setattr(options, key, value)
        normalise_options(options)
        if not options.jobStore:
            options.jobStore = tempfile.mkdtemp(prefix="flow-jobstore-")
            os.rmdir(options.jobStore)
        if options.stats and options.clean in ("always", "onSuccess"):
            options.clean = "never"  # as in Toil: --stats keeps the store for 'flow stats'
        check_options(options)
        self.options = options
        self._store: JobStore | None = None
        self._batch: BatchSystem | None = None
        self._config: WorkerConfig | None = None
        self._log_handler: logging.Handler | None = None
        self._owner: str | None = None  # our text in the store's leader lock
        self._created = False  # this Flow made the store
        #: "succeeded" or "failed" once a run ended here as a workflow; None while the store's
        #: state is not known to be finished (never run, or a fault of the store itself).
        self._outcome: str | None = None
        self._realtime: RealtimeServer | None = None
        install_excepthook()
        if getattr(options, "provisioner", None):  # its node types, before anything starts
            from flow.core.autoscale import check_options as check_autoscaling  # only then: 20 ms

            check_autoscaling(options)

    # ---- context ------------------------------------------------------------------------------
    def __enter__(self) -> Flow:
        self._log_handler = setup_logging(log_level(self.options), self.options.logFile)
        try:
            self._open_store()
            check_work_dir(self.options.workDir)
            # Started now, so that workers start up while the caller builds or loads its workflow.
            self._batch = self._make_batch_system()
        except BaseException:
            self._let_go()
            raise
        return self

    def _open_store(self) -> None:
        """Open (--restart) or create the store, then take its leader lock."""
        locator = self.options.jobStore
        if self.options.restart:
            self._store = open_job_store(locator)
        else:
            try:
                self._store = create_job_store(locator)
            except JobStoreExistsError:
                raise FlowError(
                    f"The job store {locator} already holds a workflow. Resume it with --restart, "
                    f"or delete it with 'flow clean {locator}' to start over."
                ) from None
            self._created = True
        try:
            self._owner = leaderlock.take(self._store, force=bool(self.options.force))
        except JobStoreLockedError as exc:
            self._store = None  # not ours: nothing of it is touched on the way out
            raise FlowError(leaderlock.locked_message(exc)) from None

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: types.TracebackType | None
    ) -> None:
        self._stop_realtime_logging()
        if self._batch is not None:
            self._batch.shutdown()
            self._batch = None
        store = self._store
        try:
            if store is not None and self._should_destroy(store, exc_type):
                store.destroy()
        except (OSError, JobStoreError) as err:
            logger.warning("could not delete the job store %s: %s", store.locator if store else "", err)
        finally:
            self._let_go()

    def deletes_store_on_success(self) -> bool:
        """Whether leaving the ``with`` block after a successful run deletes the job store
        (--clean always or onSuccess): a front-end may then hand the stored outputs over
        instead of copying them (``JobStore.hand_over_file``)."""
        return self.options.clean in ("always", "onSuccess")

    def _should_destroy(self, store: JobStore, exc_type: type[BaseException] | None) -> bool:
        """Delete only a store known to be this run's and finished as --clean says; never one
        whose state is unknown (a restart that could not read it, a fault of the store)."""
        if self._outcome is None:  # ours and never started: there is nothing to resume
            return self._created and store.read_shared(records.ROOT) is None
        clean = self.options.clean
        return clean == "always" or (clean == "onError" and self._outcome == "failed") or (
            clean == "onSuccess" and self._outcome == "succeeded" and exc_type is None
        )

    def _let_go(self) -> None:
        """Release the store's lock and the log handler (the store itself is left as it is)."""
        if self._store is not None and self._owner is not None:
            with contextlib.suppress(OSError, JobStoreError):
                self._store.release_lock(self._owner)
        self._store = None
        self._owner = None
        remove_handler(self._log_handler)
        self._log_handler = None

    def job_limits(self) -> tuple[float | None, int | None, int | None]:
        """The most cores, memory and disk one job may ask for on this run's batch system (None:
        the cluster's scheduler decides). For front-ends that scale a tool's request to fit."""
        if self._batch is None:
            raise FlowError("the Flow object is not open: use it in a 'with' block")
        return self._batch.job_limits()

    @property
    def jobStore(self) -> JobStore:
        if self._store is None:
            raise FlowError("the Flow object is not open: use it in a 'with' block")
        return self._store

    # ---- files ------------------------------------------------------------------------------
    @overload
    def importFile(self, srcUrl: str, sharedFileName: None = None, symlink: bool = True,
                   check_existence: Literal[True] = True) -> FileID: ...

    @overload
    def importFile(self, srcUrl: str, sharedFileName: str | None = None, symlink: bool = True,
                   check_existence: bool = True) -> FileID | None: ...

    def importFile(self, srcUrl: str, sharedFileName: str | None = None, symlink: bool = True,
                   check_existence: bool = True) -> FileID | None:
        """Copy a file (path, file:// or http(s):// URL) into the job store; its id. As Toil's:
        with ``sharedFileName`` it becomes that shared file (jobs read it with
        ``fileStore.readSharedFileStream``) and None is returned; with ``check_existence=False``
        a missing file gives None instead of FileNotFoundError."""
        return import_to_store(self.jobStore, srcUrl, sharedFileName, check_existence,
                               link=bool(self.options.linkImports))

    import_file = importFile

    def exportFile(self, jobStoreFileID: str, dstUrl: str) -> None:
        """Copy a file out of the job store to a path or file:// URL."""
        export_url(self.jobStore, jobStoreFileID, dstUrl)

    export_file = exportFile

    # ---- running ------------------------------------------------------------------------------
    def start(self, rootJob: Job) -> Any:
        """Run a new workflow from ``rootJob``; returns the root job's return value."""
        if self.options.restart:
            raise FlowError("start() runs a new workflow; use restart() with --restart")
        rootJob.checkJobGraphForDeadlocks()
        store = self.jobStore
        root = next(iter(rootJob.getRootJobs()))
        value = root.rv()  # an encapsulated root promises its inner job's value
        workflow_id = new_job_id()
        self._save_config(workflow_id)  # the jobs' defaults (--defaultPreemptible ...) come from it
        descs = write_new_jobs(store, [root, *collect_new_jobs(root)], self._config)
        store.write_shared(records.RESULT, pickle.dumps((value.job_id, value.path)))
        store.write_shared(records.ROOT, root.jobStoreID.encode())  # the workflow now exists
        try:
            return self._run(root.jobStoreID, descs, workflow_id)
        finally:
            write_job_logs(store, self.options)

    def restart(self) -> Any:
        """Resume the workflow in the job store; finished jobs are not run again.

        Everything is read first: a damaged or partial store is reported, naming what is
        missing, before anything in it changes."""
        store = self.jobStore
        root = records.load_root(store)
        if root is None:
            jobs = sum(1 for _ in store.list_jobs())
            what = (f"it has {jobs} job record(s) but no root record (shared record {records.ROOT!r}), "
                    "so it is damaged or its start was interrupted") if jobs else "it was never started"
            raise FlowError(
                f"The job store {store.locator} holds no workflow to restart: {what}. Nothing in it "
                f"was changed or deleted; see 'flow status {store.locator}', and delete it with "
                f"'flow clean --force {store.locator}' if it is of no use."
            )
        config = records.load_config(store)
        try:
            return self._run(root, [], config.workflow_id if config else new_job_id(), restart=True)
        finally:
            write_job_logs(self.jobStore, self.options)

    def _save_config(self, workflow_id: str) -> None:
        o = self.options
        if o.caching:
            logger.warning("--caching true: flow keeps no file cache between jobs; each job reads "
                           "its own copies (Toil's --disableCaching behaviour)")
        self._config = WorkerConfig(
            workflow_id=workflow_id,
            work_dir=os.path.abspath(o.workDir or tempfile.gettempdir()),
            log_level=log_level(o),
            stats=bool(o.stats),
            default_cores=parse_cores(o.defaultCores) or 0,
            default_memory=int(o.defaultMemory),
            default_disk=int(o.defaultDisk),
            chaining=not o.disableChaining,
            keep_all_logs=bool(o.writeLogsFromAllJobs),
            max_log_size=int(o.maxLogFileSize),
            coordination_dir=_coordination_dir(o.coordinationDir),
            clean_work_dir=str(o.cleanWorkDir),
            bad_worker=float(o.badWorker),
            bad_worker_interval=float(o.badWorkerFailInterval),
            default_preemptible=bool(o.defaultPreemptible),
            default_accelerators=tuple(tuple(sorted(spec.items())) for spec in o.defaultAccelerators),
        )
        self.jobStore.write_shared(records.CONFIG, self._config.dumps())

    def _run(self, root_id: str, known: list[Any], workflow_id: str, restart: bool = False) -> Any:
        store = self.jobStore
        batch = self._batch or self._make_batch_system()
        progress = Progress(enabled=not self.options.noProgress)
        leader = Leader(store, batch, self._leader_settings(), progress)
        leader.load(root_id, known, restart=restart)  # a damaged record stops us here, unchanged
        previous = signal.signal(signal.SIGTERM, _raise_interrupt) if _main_thread() else None
        autoscaling: Autoscaling | None = None
        try:
            self._begin(batch, workflow_id, restart)
            if self.options.provisioner:  # a cluster scaler
                from flow.core.autoscale import Autoscaling

                autoscaling = Autoscaling(store, self.options, workflow_id, batch, restart)
                leader.on_tick = autoscaling.on_tick
            ok = leader.run()
            store.write_shared(records.STATUS, b"succeeded" if ok else b"failed")
        except BaseException as exc:
            leader.kill_all()  # first: the run's jobs must not outlive a leader that fails
            self._fail(exc)
            if isinstance(exc, JobStoreWriteError):
                raise _write_fault(exc) from exc
            raise
        finally:
            progress.close()
            batch.shutdown()
            if autoscaling is not None:  # every node of the run, whatever the outcome
                autoscaling.shutdown()
            if self._config is not None:  # the run's scratch space (jobs clean their own)
                remove_trees([os.path.join(self._config.work_dir, f"flow-{self._config.workflow_id}")])
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
        self._outcome = "succeeded" if ok else "failed"
        if not ok:
            raise FailedJobsException(store.locator, leader.failed)
        return self._root_value(root_id)

    def _begin(self, batch: BatchSystem, workflow_id: str, restart: bool) -> None:
        """The run's first writes: configuration, leader, status; then tag its batch jobs (on
        restart, that clears an earlier leader's leftovers)."""
        store = self.jobStore
        store.delete_shared(records.KILL)
        self._save_config(workflow_id)
        started = psutil.Process().create_time()
        store.write_shared(records.LEADER, f"{os.uname().nodename} {os.getpid()} {started}".encode())
        store.write_shared(records.STATUS, b"running")
        store.write_shared(records.BATCH_SYSTEM, str(self.options.batchSystem).encode())
        batch.begin_run(workflow_id, restart)

    def _fail(self, exc: BaseException) -> None:
        """Record how the run ended. A fault of the store itself leaves its state as it was
        (resumable, never deleted); any other end is the workflow's failure."""
        if isinstance(exc, JobStoreError):
            return
        self._outcome = "failed"
        with contextlib.suppress(OSError, JobStoreError):
            self.jobStore.write_shared(records.STATUS, b"failed")


    def _root_value(self, root_id: str) -> Any:
        """What the root job's promise resolves to (for an encapsulated root, its inner job's)."""
        store = self.jobStore
        raw = store.read_shared(records.RESULT)
        job_id, path = pickle.loads(raw) if raw else (root_id, ())
        with promise.resolving(lambda job_id: read_return_value(store, job_id)):
            return promise.Promise(job_id, path).resolve()

    def _make_batch_system(self) -> BatchSystem:
        o = self.options
        work_dir = os.path.abspath(o.workDir or tempfile.gettempdir())
        config = BatchConfig(
            max_cores=float(o.maxCores) if o.maxCores else machine_cores(),
            max_memory=int(o.maxMemory) if o.maxMemory else machine_memory(),
            max_disk=int(o.maxDisk) if o.maxDisk else machine_disk(work_dir),
            work_dir=work_dir,
            environment={**_worker_environment(), **self._realtime_environment(), **set_env(o)},
            extra=vars(o),
        )
        try:
            return make_batch_system(o.batchSystem, config)
        except KeyError as exc:
            raise FlowError(str(exc.args[0])) from None

    def _realtime_environment(self) -> dict[str, str]:
        """With --realTimeLogging: listen for jobs' RealtimeLogger messages; where, for workers."""
        if not getattr(self.options, "realTimeLogging", False):
            return {}
        if self._realtime is None:
            self._realtime = RealtimeServer(log_level(self.options))
        return self._realtime.environment()

    def _stop_realtime_logging(self) -> None:
        if self._realtime is not None:
            self._realtime.close()
            self._realtime = None

    def _leader_settings(self) -> LeaderSettings:
        o = self.options
        defaults = Defaults(
            cores=float(o.defaultCores), memory=int(o.defaultMemory), disk=int(o.defaultDisk),
            retry_count=int(o.retryCount), max_job_duration=o.maxJobDuration,
            deadlock_wait=float(o.deadlockWait),
        )
        tick = min(1.0, float(o.rescueJobsFrequency))
        return LeaderSettings(
            defaults=defaults, tick_interval=tick, double_mem=bool(getattr(o, "doubleMem", False)),
            max_services=int(o.maxServiceJobs), max_preemptible_services=int(o.maxPreemptibleServiceJobs),
        )


def _coordination_dir(path: str | None) -> str | None:
    if path is None:
        return None
    if not os.path.isdir(path):
        raise FlowError(f"--coordinationDir {path} is not a directory: create it first (jobs keep "
                        "their state and log files there)")
    return os.path.abspath(path)


def _write_fault(exc: JobStoreWriteError) -> FlowError:
    return FlowError(
        f"The leader could not write to its job store: {exc} It stopped and killed the run's "
        f"jobs; the job store {exc.locator} is left as it was. Once the cause is fixed (free "
        "some space, make it writable), run the same command with --restart to resume."
    )


def check_work_dir(work_dir: str | None) -> None:
    """Jobs make their scratch directories in --workDir: fail now, in one paragraph, if they
    cannot, rather than as every job's 'exit code 1'."""
    path = os.path.abspath(work_dir or tempfile.gettempdir())
    try:
        os.makedirs(path, exist_ok=True)
        os.rmdir(tempfile.mkdtemp(prefix=".flow-check-", dir=path))
    except OSError as exc:
        raise FlowError(
            f"The work directory {path} (--workDir) cannot be used: {exc.strerror or exc}. Jobs "
            "make their scratch directories there; give a writable directory with --workDir."
        ) from None


def _worker_environment() -> dict[str, str]:
    """Let workers import what the leader imports: the user's script directory and sys.path."""
    prefixes = {os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)}
    paths = [
        os.path.abspath(p or os.getcwd()) for p in sys.path
        if not any(os.path.realpath(p or ".").startswith(pre) for pre in prefixes)
    ]
    existing = os.environ.get("PYTHONPATH")
    if existing:
        paths.append(existing)
    return {"PYTHONPATH": os.pathsep.join(dict.fromkeys(paths))} if paths else {}


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _raise_interrupt(signum: int, frame: types.FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")
