"""The job API, with Toil's public names: ``Job``, ``addChildJobFn``, ``rv``, ``Job.Runner`` ...

A Toil script ports by changing its imports (``from flow.core.job import Job``); names with
"Toil" in them have "Flow" instead (``Job.Runner.startFlow``, ``Job.Runner.addFlowOptions``).
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import logging
import os
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, ClassVar

from flow.core.description import JobDescription, new_job_id
from flow.core.exceptions import JobException, JobGraphDeadlockException
from flow.core.promise import Promise
from flow.core.requirements import PromisedRequirement, accelerator_count, parse_accelerators
from flow.core.resources import parse_cores, parse_size

__all__ = ["EncapsulatedJob", "FunctionWrappingJob", "Job", "JobFunctionWrappingJob", "PromisedRequirement",
           "ServiceHostJob"]

if TYPE_CHECKING:
    from flow.core.filestore import FileStore

logger = logging.getLogger(__name__)

#: Attributes that describe the graph in memory; never part of a job's pickled body.
_GRAPH_ATTRS = ("_description", "_children", "_follow_ons", "_services", "_predecessors", "_fileStore")
_RESOURCE_KWARGS = (
    "memory", "cores", "disk", "accelerators", "preemptible", "preemptable",
    "checkpoint", "unitName", "displayName",
)


class Job:
    """A unit of work. Subclass it and override :meth:`run`, or wrap a function."""

    #: Internal jobs of a front-end set this; they are hidden from the progress bar and log.
    hidden: ClassVar[bool] = False

    def __init__(
        self,
        memory: int | str | None = None,
        cores: int | float | str | None = None,
        disk: int | str | None = None,
        accelerators: Any = None,
        preemptible: bool | None = None,
        preemptable: bool | None = None,
        unitName: str | None = "",
        checkpoint: bool | None = False,
        displayName: str | None = "",
        descriptionClass: Any = None,
        local: bool | None = None,
        files: Any = None,
    ) -> None:
        name = self._kind_name()
        requests = _parse_requests(name, memory, cores, disk)
        accelerator_specs = parse_accelerators(accelerators)
        self._description = JobDescription(
            job_id=new_job_id(),
            name=name,
            display_name=displayName or name,
            unit_name=unitName or "",
            cores=requests[1],
            memory=requests[0],
            disk=requests[2],
            accelerators=accelerator_count(accelerator_specs),
            accelerator_specs=accelerator_specs,
            preemptible=bool(preemptible if preemptible is not None else preemptable),
            checkpoint=bool(checkpoint),
            hidden=type(self).hidden,
        )
        self._children: list[Job] = []
        self._follow_ons: list[Job] = []
        self._services: list[ServiceHostJob] = []
        self._predecessors: list[Job] = []
        self._fileStore: FileStore | None = None
        #: Requirements the job states itself (the others take --defaultPreemptible ...).
        self._given = frozenset(name for name, value in (
            ("preemptible", preemptible if preemptible is not None else preemptable),
            ("accelerators", accelerators)) if value is not None)

    # ---- identity and requirements -----------------------------------------------------------
    def _kind_name(self) -> str:
        return type(self).__name__

    @property
    def jobStoreID(self) -> str:
        return self._description.job_id

    @property
    def description(self) -> JobDescription:
        return self._description

    @property
    def displayName(self) -> str:
        return self._description.display_name

    @property
    def unitName(self) -> str:
        return self._description.unit_name

    def _default(self, index: int) -> Any:
        """The run's --defaultCores/--defaultMemory/--defaultDisk (set by the worker), else None."""
        defaults = self.__dict__.get("_resource_defaults")
        return None if defaults is None else defaults[index]

    @property
    def memory(self) -> int | None:
        """Bytes of memory; inside ``run()`` the run's default when the job named none."""
        value = self._description.memory
        return self._default(1) if value is None else value

    @memory.setter
    def memory(self, value: int | str) -> None:
        self._description.memory = parse_size(value, "memory")

    @property
    def cores(self) -> float | None:
        """Cores; inside ``run()`` the run's default when the job named none."""
        value = self._description.cores
        return self._default(0) if value is None else value

    @cores.setter
    def cores(self, value: float | str) -> None:
        self._description.cores = parse_cores(value)

    @property
    def disk(self) -> int | None:
        """Bytes of disk; inside ``run()`` the run's default when the job named none."""
        value = self._description.disk
        return self._default(2) if value is None else value

    @disk.setter
    def disk(self, value: int | str) -> None:
        self._description.disk = parse_size(value, "disk")

    @property
    def preemptible(self) -> bool:
        return self._description.preemptible

    preemptable = preemptible

    @property
    def accelerators(self) -> list[dict[str, Any]]:
        """Toil's form: a list of ``{"count", "kind", "model", "brand", "api"}`` dicts."""
        return [dict(spec) for spec in self._description.accelerator_specs]

    @property
    def checkpoint(self) -> bool:
        return self._description.checkpoint

    def __repr__(self) -> str:
        desc = self.__dict__.get("_description")
        if desc is None:  # not yet initialised (an error inside Job.__init__ names the job)
            return f"<{type(self).__name__}>"
        return f"<{desc.label} {desc.job_id}>"

    # ---- running -----------------------------------------------------------------------------
    def run(self, fileStore: FileStore) -> Any:
        """Override to do the work; the return value is what ``rv()`` promises resolve to."""
        return None

    @property
    def fileStore(self) -> FileStore:
        if self._fileStore is None:
            raise JobException(f"{self!r} has no file store: it is not running")
        return self._fileStore

    @property
    def tempDir(self) -> str:
        """A directory for this job's scratch files, removed after the job."""
        return self.fileStore.getLocalTempDir()

    def log(self, text: str, level: int = logging.INFO) -> None:
        """Send a message to the leader's log."""
        self.fileStore.log_to_leader(text, level)

    def defer(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        """Call ``function(*args, **kwargs)`` when this attempt at the job ends: after ``run``
        returns or raises, in the same process, latest registered first (Toil's order). Errors
        of a deferred function are logged, not raised. For releasing what ``run`` acquired
        outside the file store (a lock, a container). If the worker dies instead (kill -9), the
        next worker of the run on this machine calls it."""
        from flow.core import deferred as persisted

        calls = self.__dict__.setdefault("_deferred", [])
        directory = self.__dict__.get("_defer_dir")
        path = persisted.record(directory, self.jobStoreID, len(calls), (function, args, kwargs)) if directory else None
        calls.append((function, args, kwargs, path))

    def _run_deferred(self) -> None:
        from flow.core import deferred as persisted

        for function, args, kwargs, path in reversed(self.__dict__.pop("_deferred", [])):
            persisted.call(function, args, kwargs, repr(self))
            if path is not None:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)

    # ---- building the graph -----------------------------------------------------------------
    def addChild(self, childJob: Job) -> Job:
        """``childJob`` runs after this job, in parallel with its other children."""
        self._check_successor(childJob)
        self._children.append(childJob)
        childJob._predecessors.append(self)
        return childJob

    def addFollowOn(self, followOnJob: Job) -> Job:
        """``followOnJob`` runs after this job and all its children (and their successors)."""
        self._check_successor(followOnJob)
        self._follow_ons.append(followOnJob)
        followOnJob._predecessors.append(self)
        return followOnJob

    def addService(self, service: Job.Service, parentService: Job.Service | None = None) -> Promise:
        """Start ``service`` before this job's successors and stop it after them.

        Returns a promise of the value its ``start`` returns."""
        if not isinstance(service, Job.Service):
            raise JobException(f"addService expects a Job.Service, got {type(service).__name__}")
        host = ServiceHostJob(service)
        if parentService is not None:
            if not parentService._host_id:
                raise JobException("parentService must itself be added with addService first")
            host._description.service_parent = parentService._host_id
        service._host_id = host.jobStoreID
        self._services.append(host)
        host._predecessors.append(self)
        return host.rv()

    def hasChild(self, childJob: Job) -> bool:
        return any(c is childJob for c in self._children)

    def hasFollowOn(self, followOnJob: Job) -> bool:
        return any(c is followOnJob for c in self._follow_ons)

    def _check_successor(self, job: Job) -> None:
        if not isinstance(job, Job):
            raise JobException(f"successors must be Job objects, got {type(job).__name__}")
        if job is self:
            raise JobException(f"{self!r} cannot be its own successor")

    def addChildFn(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> FunctionWrappingJob:
        job = FunctionWrappingJob(fn, *args, **kwargs)
        self.addChild(job)
        return job

    def addChildJobFn(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> JobFunctionWrappingJob:
        job = JobFunctionWrappingJob(fn, *args, **kwargs)
        self.addChild(job)
        return job

    def addFollowOnFn(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> FunctionWrappingJob:
        job = FunctionWrappingJob(fn, *args, **kwargs)
        self.addFollowOn(job)
        return job

    def addFollowOnJobFn(
        self, fn: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> JobFunctionWrappingJob:
        job = JobFunctionWrappingJob(fn, *args, **kwargs)
        self.addFollowOn(job)
        return job

    @staticmethod
    def wrapFn(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> FunctionWrappingJob:
        return FunctionWrappingJob(fn, *args, **kwargs)

    @staticmethod
    def wrapJobFn(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> JobFunctionWrappingJob:
        return JobFunctionWrappingJob(fn, *args, **kwargs)

    def encapsulate(self, name: str | None = None) -> EncapsulatedJob:
        """A job whose successors run after this job *and all its successors*."""
        return EncapsulatedJob(self, unitName=name)

    def rv(self, *path: Any) -> Promise:
        """A promise of this job's return value (or of ``value[path[0]][path[1]]...``)."""
        self._description.has_promises = True
        return Promise(self._description.job_id, tuple(path))

    # ---- graph checks ----------------------------------------------------------------------
    def _successors(self) -> Iterator[Job]:
        yield from self._children
        yield from self._follow_ons
        yield from self._services

    def _connected(self) -> list[Job]:
        """Every in-memory job reachable from this one through successor or predecessor links."""
        seen: dict[int, Job] = {id(self): self}
        stack = [self]
        while stack:
            job = stack.pop()
            for other in (*job._successors(), *job._predecessors):
                if id(other) not in seen:
                    seen[id(other)] = other
                    stack.append(other)
        return list(seen.values())

    def getRootJobs(self) -> set[Job]:
        """The jobs of this job's connected graph that have no predecessor."""
        return {job for job in self._connected() if not job._predecessors}

    def checkJobGraphConnected(self) -> None:
        roots = self.getRootJobs()
        if len(roots) != 1:
            names = ", ".join(sorted(repr(r) for r in roots))
            raise JobGraphDeadlockException(f"the job graph has {len(roots)} root jobs, not one: {names}")

    def checkJobGraphAcylic(self) -> None:
        """Raise JobGraphDeadlockException if child/follow-on links (with the implied
        "a follow-on waits for every descendant of its predecessor's children") form a cycle."""
        jobs = self._connected()
        edges: dict[int, list[Job]] = {id(j): list(j._successors()) for j in jobs}
        for job in jobs:
            for child in job._children:
                for descendant in _descendants(child):
                    edges[id(descendant)].extend(job._follow_ons)
        _find_cycle(jobs, edges)

    checkJobGraphAcyclic = checkJobGraphAcylic

    def checkJobGraphForDeadlocks(self) -> None:
        self.checkJobGraphConnected()
        self.checkJobGraphAcylic()

    # ---- pickling: the body holds the code and arguments, not the graph ----------------------
    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in _GRAPH_ATTRS}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._children, self._follow_ons, self._services, self._predecessors = [], [], [], []
        self._fileStore = None

    # ---- nested API classes ----------------------------------------------------------------
    class Service:
        """A long-running helper (a database, a server) for a job's successors."""

        def __init__(
            self,
            memory: int | str | None = None,
            cores: int | float | str | None = None,
            disk: int | str | None = None,
            accelerators: int | None = None,
            preemptible: bool | None = None,
            unitName: str | None = None,
        ) -> None:
            self.memory = parse_size(memory, "memory")
            self.cores = parse_cores(cores)
            self.disk = parse_size(disk, "disk")
            self.accelerators = accelerators
            self.preemptible = bool(preemptible)
            self.unitName = unitName or ""
            self._host_id = ""

        def start(self, job: Job) -> Any:
            """Start the service; the return value is what ``addService``'s promise resolves to."""
            raise NotImplementedError

        def stop(self, job: Job) -> None:
            """Stop the service."""
            raise NotImplementedError

        def check(self) -> bool:
            """Called periodically while running; return False or raise to fail the service."""
            return True

    class Runner:
        """Toil's ``Job.Runner`` with "Flow" for "Toil"."""

        @staticmethod
        def getDefaultArgumentParser(jobstore_as_flag: bool = False) -> argparse.ArgumentParser:
            """flow's options on a configargparse parser: ``--config FILE`` and ``FLOW_<OPTION>``
            environment variables give defaults."""
            from flow.core.options import default_argument_parser

            return default_argument_parser(jobstore_as_flag)

        @staticmethod
        def getDefaultOptions(jobStore: str | None = None, jobstore_as_flag: bool = False) -> argparse.Namespace:
            from flow.core.options import default_options

            return default_options(jobStore)

        @staticmethod
        def addFlowOptions(parser: Any, jobstore_as_flag: bool = False) -> None:
            """Add flow's options to an argparse, configargparse or optparse parser."""
            from flow.core.options import add_flow_options

            add_flow_options(parser, jobstore_as_flag=jobstore_as_flag)

        @staticmethod
        def startFlow(job: Job, options: argparse.Namespace) -> Any:
            from flow.core.common import Flow

            with Flow(options) as flow:
                if getattr(options, "restart", False):
                    return flow.restart()
                return flow.start(job)


class InvalidRequirementError(JobException, ValueError):
    """A job's memory, cores or disk is not a size or number (a ValueError, as before)."""


def _parse_requests(name: str, memory: Any, cores: Any, disk: Any) -> tuple[int | None, float | None, int | None]:
    for what, value in (("memory", memory), ("cores", cores), ("disk", disk)):
        if isinstance(value, Job):
            raise InvalidRequirementError(
                f"job {name}: its {what} is a job ({value!r}); was the job passed to "
                "Job.__init__ as an argument, as in super().__init__(self)? Call "
                "super().__init__() (or Job.__init__(self)) with requirements by keyword")
    try:
        return parse_size(memory, "memory"), parse_cores(cores), parse_size(disk, "disk")
    except ValueError as exc:
        raise InvalidRequirementError(f"job {name}: {exc}") from None


def _descendants(job: Job) -> Iterator[Job]:
    seen = {id(job)}
    stack = [job]
    while stack:
        current = stack.pop()
        yield current
        for nxt in current._successors():
            if id(nxt) not in seen:
                seen.add(id(nxt))
                stack.append(nxt)


def _find_cycle(jobs: Iterable[Job], edges: dict[int, list[Job]]) -> None:
    """Iterative three-colour DFS; raises on the first back edge."""
    colour: dict[int, int] = {}
    for start in jobs:
        if colour.get(id(start)):
            continue
        stack: list[tuple[Job, Iterator[Job]]] = [(start, iter(edges[id(start)]))]
        colour[id(start)] = 1
        while stack:
            node, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                colour[id(node)] = 2
                stack.pop()
            elif colour.get(id(nxt)) == 1:
                raise JobGraphDeadlockException(f"the job graph has a cycle through {nxt!r} and {node!r}")
            elif not colour.get(id(nxt)):
                colour[id(nxt)] = 1
                stack.append((nxt, iter(edges[id(nxt)])))


def _split_resource_kwargs(fn: Callable[..., Any], kwargs: dict[str, Any]) -> dict[str, Any]:
    """Toil's convention: resource keywords given to a wrapped function configure the job,
    and so do defaults of those names in the function's signature."""
    resources: dict[str, Any] = {}
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        params = {}  # type: ignore[assignment]
    for name in _RESOURCE_KWARGS:
        if name in kwargs and name not in params:
            resources[name] = kwargs.pop(name)
        elif name in params and params[name].default is not inspect.Parameter.empty:
            resources[name] = kwargs.get(name, params[name].default)
    return resources


#: What a job waiting for its PromisedRequirements asks for (it only adds the real job).
_STAND_IN_RESOURCES = {"cores": 0.1, "memory": "32M", "disk": "1M"}


class FunctionWrappingJob(Job):
    """A job that calls ``fn(*args, **kwargs)``."""

    def __init__(self, userFunction: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        if not callable(userFunction):
            raise JobException(f"expected a function, got {type(userFunction).__name__}")
        self._fn = userFunction
        resources = _split_resource_kwargs(userFunction, kwargs)
        #: PromisedRequirements: this job is a stand-in until they can be resolved.
        self._promised = {k: v for k, v in resources.items() if isinstance(v, PromisedRequirement)}
        self._resources = {k: v for k, v in resources.items() if k not in self._promised}
        if self._promised:
            super().__init__(**{**self._resources, **_STAND_IN_RESOURCES})
            self._description.hidden = True
        else:
            super().__init__(**resources)
        self._args = args
        self._kwargs = kwargs

    def _kind_name(self) -> str:
        return getattr(self._fn, "__name__", type(self).__name__)

    def run(self, fileStore: FileStore) -> Any:
        if self._promised:
            return self._run_with_promised_requirements()
        return self._fn(*self._args, **self._kwargs)

    def _run_with_promised_requirements(self) -> Any:
        """The promises are resolved now: run the function as a child with its requirements."""
        values = {name: req.getValue() for name, req in self._promised.items()}
        kwargs = {**self._kwargs, **self._resources, **values}
        child = type(self)(self._fn, *self._args, **kwargs)
        self.addChild(child)
        return child.rv()


class JobFunctionWrappingJob(FunctionWrappingJob):
    """A job that calls ``fn(job, *args, **kwargs)``; ``job.fileStore`` is the file store."""

    def run(self, fileStore: FileStore) -> Any:
        if self._promised:
            return self._run_with_promised_requirements()
        return self._fn(self, *self._args, **self._kwargs)


class EncapsulatedJob(Job):
    """Wraps a job so that successors of the wrapper run after the job's whole subtree."""

    def __init__(self, job: Job, unitName: str | None = None) -> None:
        super().__init__(cores=0, memory=0, disk=0, unitName=unitName)
        self._description.hidden = True
        self.encapsulatedJob = job
        Job.addChild(self, job)
        self.encapsulatedFollowOn = Job(cores=0, memory=0, disk=0)
        self.encapsulatedFollowOn._description.hidden = True
        Job.addFollowOn(self, self.encapsulatedFollowOn)

    def addChild(self, childJob: Job) -> Job:
        return self.encapsulatedFollowOn.addChild(childJob)

    def addService(self, service: Job.Service, parentService: Job.Service | None = None) -> Promise:
        return self.encapsulatedFollowOn.addService(service, parentService)

    def addFollowOn(self, followOnJob: Job) -> Job:
        return self.encapsulatedFollowOn.addFollowOn(followOnJob)

    def rv(self, *path: Any) -> Promise:
        return self.encapsulatedJob.rv(*path)


class ServiceHostJob(Job):
    """Runs a :class:`Job.Service`: start, publish the start value, check until told to stop."""

    #: Seconds between ``check()`` calls.
    check_interval: ClassVar[float] = 1.0

    def __init__(self, service: Job.Service) -> None:
        self.service = service
        super().__init__(
            memory=service.memory,
            cores=service.cores,
            disk=service.disk,
            accelerators=service.accelerators,
            preemptible=service.preemptible,
            unitName=service.unitName,
        )
        self._description.is_service = True

    def _kind_name(self) -> str:
        return type(self.service).__name__

    def run(self, fileStore: FileStore) -> Any:
        value = self.service.start(self)
        fileStore.service_started(value)
        try:
            fileStore.wait_for_service_stop(self.service.check, self.check_interval)
        finally:
            self.service.stop(self)
        return value


def _install_error_report() -> None:
    """flow's errors in a script (a bad requirement while building jobs, before any Flow
    exists) print as one paragraph, not a traceback."""
    from flow.core.logs import install_excepthook

    install_excepthook()


_install_error_report()
