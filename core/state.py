"""The leader's scheduling decisions: a state machine with no I/O.

Events (frozen dataclasses) go in through :meth:`Scheduler.step`; instructions come out. The
thin loop in :mod:`flow.core.leader` reads job descriptions from the job store, talks to the batch
system, and translates both ways. One :class:`JobRecord` per job, with a :class:`Status` enum.

Semantics (Toil's): a job runs once all its predecessors have reached it; after its body ran,
its services start, then its children run, then (once every child's subtree is done) its
follow-ons; then its services stop and the job is done, which its predecessors count. A failed
job's successors never run; independent branches finish; failure propagates up once a phase has
settled, and a checkpoint job with retries left re-runs its whole subtree instead of failing.

The machine checks itself (as dask's worker state machine does): every status change must be in
:data:`TRANSITIONS` (else :class:`InvalidTransition`, with the job's recent events), each job keeps
a bounded story of its last events (:attr:`JobRecord.story`), and :meth:`Scheduler.validate`
checks every invariant of the whole state (see :mod:`flow.core.invariants`); the unit tests call
it after every step, and the leader does too when ``FLOW_VALIDATE=1``.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, assert_never

from flow.core.description import JobDescription, JobState


class Status(enum.Enum):
    WAITING = "waiting"  # known; not all predecessors have reached it
    ISSUED = "issued"  # handed to the batch system (queued or running)
    STARTING_SERVICES = "starting_services"  # body ran; waiting for its services to start
    RUNNING_SUCCESSORS = "running_successors"  # body ran; children or follow-ons under way
    STOPPING_SERVICES = "stopping_services"  # successors settled; waiting for services to exit
    SERVICE_RUNNING = "service_running"  # a service host that has started
    DONE = "done"
    FAILED = "failed"  # settled as failed: its own failure or one in its subtree
    BLOCKED = "blocked"  # will never run: a predecessor failed


SETTLED = frozenset({Status.DONE, Status.FAILED, Status.BLOCKED})
#: States of a job whose body has run and that waits for its services or successors.
OWNING = frozenset({Status.STARTING_SERVICES, Status.RUNNING_SUCCESSORS, Status.STOPPING_SERVICES})

_S = Status
#: The legal status changes. WAITING -> DONE/FAILED is a stored run replayed on restart (or a job
#: with no retries left); an owning job goes back to WAITING when its checkpoint re-runs.
TRANSITIONS: Mapping[Status, frozenset[Status]] = {
    _S.WAITING: frozenset({_S.ISSUED, _S.STARTING_SERVICES, _S.RUNNING_SUCCESSORS, _S.DONE,
                           _S.FAILED, _S.BLOCKED}),
    _S.ISSUED: frozenset({_S.WAITING, _S.SERVICE_RUNNING, _S.DONE, _S.FAILED}),
    _S.SERVICE_RUNNING: frozenset({_S.DONE, _S.FAILED}),
    _S.STARTING_SERVICES: frozenset({_S.RUNNING_SUCCESSORS, _S.STOPPING_SERVICES, _S.FAILED,
                                     _S.WAITING}),
    _S.RUNNING_SUCCESSORS: frozenset({_S.RUNNING_SUCCESSORS, _S.STOPPING_SERVICES, _S.DONE,
                                      _S.FAILED, _S.WAITING}),
    _S.STOPPING_SERVICES: frozenset({_S.DONE, _S.FAILED, _S.WAITING}),
    _S.DONE: frozenset(),
    _S.FAILED: frozenset(),
    _S.BLOCKED: frozenset(),
}

#: Events kept per job in its story.
STORY_LENGTH = 32


class Phase(enum.Enum):
    """Which successors of a job are under way."""

    CHILDREN = "children"
    FOLLOW_ONS = "follow_ons"


class SchedulerBug(Exception):
    """The scheduler broke its own rules: a bug in flow, not in the workflow."""


class InvalidTransition(SchedulerBug):
    """A status change that :data:`TRANSITIONS` does not allow."""

    def __init__(self, job_id: str, start: Status, finish: Status, story: Iterable[str]) -> None:
        self.job_id = job_id
        self.start = start
        self.finish = finish
        self.story = tuple(story)
        events = "".join(f"\n  {line}" for line in self.story)
        super().__init__(
            f"scheduler bug: job {job_id} may not go from {start.value} to {finish.value}; "
            f"its last events:{events or ' none'}"
        )


class InvariantViolation(SchedulerBug):
    """:meth:`Scheduler.validate` found the state inconsistent; ``problems`` says how."""

    def __init__(self, problems: Iterable[str]) -> None:
        self.problems = tuple(problems)
        shown = "".join(f"\n  - {p}" for p in self.problems[:20])
        more = f"\n  ... and {len(self.problems) - 20} more" if len(self.problems) > 20 else ""
        super().__init__(f"scheduler bug: {len(self.problems)} invariant(s) broken:{shown}{more}")


# ---- events --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Started:
    """A new run (or a restart): the root and every description read so far."""

    root_id: str
    descriptions: tuple[JobDescription, ...]
    #: A restart: jobs that have not run get the full --retryCount again (as after a fix).
    fresh_retries: bool = False


@dataclass(frozen=True)
class JobEnded:
    """A batch job for ``job_id`` ended. ``descriptions`` holds the job's description as stored
    now, the descriptions of any successors the scheduler did not know (see :meth:`Scheduler.knows`),
    and of chained jobs the worker ran after it."""

    job_id: str
    succeeded: bool
    reason: str = ""
    lost: bool = False
    descriptions: tuple[JobDescription, ...] = ()
    #: The job can never run (e.g. an impossible resource request): no retries.
    permanent: bool = False


@dataclass(frozen=True)
class ServiceStarted:
    job_id: str


@dataclass(frozen=True)
class Tick:
    """Time passes. ``running`` maps started job ids to their seconds of run time."""

    now: float
    running: Mapping[str, float] = field(default_factory=dict)


Event = Started | JobEnded | ServiceStarted | Tick


# ---- instructions --------------------------------------------------------------------------
@dataclass(frozen=True)
class Issue:
    job_id: str
    label: str
    cores: float
    memory: int
    disk: int
    accelerators: int
    preemptible: bool
    time_limit: float | None
    is_service: bool
    accelerator_specs: tuple[dict[str, object], ...] = ()


@dataclass(frozen=True)
class Kill:
    job_ids: tuple[str, ...]
    reason: str


@dataclass(frozen=True)
class StopService:
    job_id: str


@dataclass(frozen=True)
class SaveRetries:
    """Persist a job's remaining retries (so that a restart keeps counting)."""

    job_id: str
    retries_left: int


@dataclass(frozen=True)
class ResetCheckpoint:
    """Rewrite a checkpoint job as not run, with only its original successors."""

    job_id: str
    retries_left: int


@dataclass(frozen=True)
class JobFailed:
    """A job failed for good (no retries left); for the log and the final report."""

    job_id: str
    label: str
    reason: str
    #: The job's last events in the scheduler, for ``flow status --job`` (not compared).
    story: tuple[str, ...] = field(default=(), compare=False)


@dataclass(frozen=True)
class JobRetried:
    job_id: str
    label: str
    reason: str
    retries_left: int


@dataclass(frozen=True)
class Finished:
    succeeded: bool


@dataclass(frozen=True)
class Abort:
    reason: str


Instruction = Issue | Kill | StopService | SaveRetries | ResetCheckpoint | JobFailed | JobRetried | Finished | Abort


@dataclass(frozen=True)
class Defaults:
    cores: float = 1.0
    memory: int = 2 * 1024**3
    disk: int = 2 * 1024**3
    retry_count: int = 1
    max_job_duration: float | None = None
    deadlock_wait: float = 60.0
    max_lost_reissues: int = 3


class JobRecord:
    """Everything the leader tracks for one job."""

    __slots__ = (
        "job_id", "label", "hidden", "is_service", "checkpoint", "requests", "time_limit",
        "status", "stored_ran", "retries_left", "lost_reissues", "preds_needed", "preds_arrived",
        "parents", "children", "follow_ons", "services", "phase", "outstanding", "phase_failed",
        "services_pending", "services_alive", "owner", "reason", "stop_sent", "service_parent",
        "accelerator_specs", "max_retries", "story",
    )

    def __init__(self, desc: JobDescription, defaults: Defaults) -> None:
        self.job_id = desc.job_id
        self.label = desc.label
        self.hidden = desc.hidden
        self.is_service = desc.is_service
        self.checkpoint = desc.checkpoint
        self.requests = (
            defaults.cores if desc.cores is None else desc.cores,
            defaults.memory if desc.memory is None else desc.memory,
            defaults.disk if desc.disk is None else desc.disk,
            desc.accelerators,
            desc.preemptible,
        )
        self.accelerator_specs = tuple(desc.accelerator_specs)
        limits = [t for t in (desc.time_limit, defaults.max_job_duration) if t is not None]
        self.time_limit = min(limits) if limits else None
        self.status = Status.WAITING
        self.retries_left = desc.retries_left if desc.retries_left >= 0 else defaults.retry_count
        self.max_retries = max(self.retries_left, defaults.retry_count)
        self.story: deque[str] = deque(maxlen=STORY_LENGTH)
        self.lost_reissues = 0
        self.preds_needed = desc.predecessors
        self.preds_arrived = 0
        self.parents: list[str] = []
        self.owner = ""
        self.reason = ""
        self.stop_sent = False
        self.service_parent = desc.service_parent
        self.phase = Phase.CHILDREN
        self.outstanding = 0
        self.phase_failed = False
        self.services_pending = 0
        self.services_alive = 0
        self.update_from(desc)

    def update_from(self, desc: JobDescription) -> None:
        self.stored_ran = desc.state is JobState.RAN
        self.children = tuple(desc.children)
        self.follow_ons = tuple(desc.follow_ons)
        self.services = tuple(desc.services)

    def successors(self) -> Iterable[str]:
        yield from self.services
        yield from self.children
        yield from self.follow_ons


class Scheduler:
    """The state machine. ``step(event)`` returns the instructions it leads to.

    Transitions that cascade (a chain of finished jobs settling its predecessors, a restart
    replaying thousands of stored runs) go through an agenda drained iteratively, so depth never
    grows with the graph.
    """

    def __init__(self, defaults: Defaults | None = None) -> None:
        self.defaults = defaults or Defaults()
        self.jobs: dict[str, JobRecord] = {}
        self.root_id = ""
        self.finished: bool | None = None  # None while running, then success or not
        self.failed: dict[str, str] = {}  # job id -> reason, jobs that failed for good
        self.visible_done = 0
        self.visible_issued = 0
        self.visible_waiting = 0
        self._out: list[Instruction] = []
        self._agenda: deque[tuple[Callable[..., None], tuple[Any, ...]]] = deque()
        self._deadlock_since: float | None = None
        self._steps = 0  # events handled, for the stories

    # ---- queries (no state change) ---------------------------------------------------------
    def knows(self, job_id: str) -> bool:
        return job_id in self.jobs

    def record(self, job_id: str) -> JobRecord:
        return self.jobs[job_id]

    def story(self, job_id: str) -> tuple[str, ...]:
        """The job's last events (oldest first); empty for a job the scheduler does not know."""
        rec = self.jobs.get(job_id)
        return tuple(rec.story) if rec is not None else ()

    def validate(self) -> None:
        """Check every invariant of the state; raise :class:`InvariantViolation` if one fails."""
        from flow.core.invariants import problems  # it imports this module

        found = problems(self)
        if found:
            raise InvariantViolation(found)

    # ---- the one entry point -------------------------------------------------------------------
    def step(self, event: Event) -> list[Instruction]:
        self._steps += 1
        match event:
            case Started():
                self._on_started(event)
            case JobEnded():
                self._on_job_ended(event)
            case ServiceStarted():
                self._on_service_started(event.job_id)
            case Tick():
                self._on_tick(event)
            case _:
                assert_never(event)
        while self._agenda:
            action, args = self._agenda.popleft()
            if args and isinstance(args[0], JobRecord) and self.jobs.get(args[0].job_id) is not args[0]:
                continue  # a job forgotten since (a checkpoint's subtree that re-runs)
            action(*args)
        out, self._out = self._out, []
        return out

    def _later(self, action: Callable[..., None], *args: Any) -> None:
        self._agenda.append((action, args))

    def _tell(self, rec: JobRecord, text: str) -> None:
        """Add ``text`` to the job's story."""
        rec.story.append(f"#{self._steps} {text}")

    # ---- event handlers --------------------------------------------------------------------
    def _on_started(self, event: Started) -> None:
        self._learn(event.descriptions)
        if event.fresh_retries:
            for rec in self.jobs.values():
                rec.retries_left = self.defaults.retry_count
        self.root_id = event.root_id
        root = self.jobs[event.root_id]
        root.preds_needed = 0
        self._ready(root)

    def _on_job_ended(self, event: JobEnded) -> None:
        rec = self.jobs.get(event.job_id)
        if rec is None or rec.status not in (Status.ISSUED, Status.SERVICE_RUNNING):
            return  # a late report for a job already killed or settled
        self._learn(event.descriptions)
        how = "succeeded" if event.succeeded else f"failed: {event.reason or 'no reason given'}"
        flags = "".join(f" [{w}]" for w, on in (("lost", event.lost), ("permanent", event.permanent)) if on)
        self._tell(rec, f"batch job ended, {how}{flags}")
        if rec.is_service:
            self._service_exited(rec, event)
            return
        self._set_status(rec, Status.WAITING)
        chain = self._chain(rec, {d.job_id: d for d in event.descriptions})
        # A committed run is the truth: only a job that did not commit has failed.
        culprit = next((r for r in chain if not r.stored_ran), None)
        if culprit is not None:
            reason = event.reason or "the worker exited without finishing the job"
            if event.permanent:
                culprit.reason, culprit.retries_left = reason, -1
            else:
                self._attempt_failed(culprit, reason, event.lost)
        self._ready(rec)

    def _chain(self, rec: JobRecord, descs: Mapping[str, JobDescription]) -> list[JobRecord]:
        """The job and the successors its worker ran after it, in order."""
        chain = [rec]
        desc = descs.get(rec.job_id)
        while desc is not None and desc.state is JobState.RAN and desc.chained_to:
            nxt = self.jobs.get(desc.chained_to)
            if nxt is None:
                break
            chain.append(nxt)
            desc = descs.get(nxt.job_id)
        return chain

    def _attempt_failed(self, rec: JobRecord, reason: str, lost: bool) -> None:
        """Count a failed attempt; the job re-runs when it becomes ready, if retries remain."""
        rec.reason = reason
        self._tell(rec, f"attempt failed: {reason}" + (" (lost)" if lost else ""))
        if lost and rec.lost_reissues < self.defaults.max_lost_reissues:
            rec.lost_reissues += 1
            self._out.append(JobRetried(rec.job_id, rec.label, reason, rec.retries_left))
            return
        rec.retries_left -= 1
        if rec.retries_left >= 0:
            self._out.append(JobRetried(rec.job_id, rec.label, reason, rec.retries_left))
            self._out.append(SaveRetries(rec.job_id, rec.retries_left))

    def _on_service_started(self, job_id: str) -> None:
        host = self.jobs.get(job_id)
        if host is None or host.status is not Status.ISSUED:
            return
        self._set_status(host, Status.SERVICE_RUNNING)
        owner = self.jobs[host.owner]
        if owner.status is Status.STOPPING_SERVICES:
            self._stop_services(owner)
            return
        owner.services_pending -= 1
        for child in self._service_children(owner, job_id):
            if child.status is Status.WAITING:
                self._ready(child)
        if owner.services_pending == 0 and owner.status is Status.STARTING_SERVICES:
            self._begin_phase(owner, Phase.CHILDREN)

    def _service_children(self, owner: JobRecord, host_id: str) -> list[JobRecord]:
        """Services of ``owner`` added with ``parentService`` = the service ``host_id``."""
        return [self.jobs[h] for h in owner.services if self.jobs[h].service_parent == host_id]

    def _parent_service_up(self, host: JobRecord) -> bool:
        parent = self.jobs.get(host.service_parent) if host.service_parent else None
        return parent is None or parent.status in (Status.SERVICE_RUNNING, Status.DONE)

    def _on_tick(self, event: Tick) -> None:
        for job_id, seconds in event.running.items():
            rec = self.jobs.get(job_id)
            if rec is None or rec.is_service or rec.status is not Status.ISSUED:
                continue
            if rec.time_limit and seconds > rec.time_limit:
                self._out.append(Kill((job_id,), f"ran longer than its limit of {rec.time_limit:g} s"))
                self._on_job_ended(JobEnded(
                    job_id, False, f"killed after {seconds:.0f} s: over its time limit of {rec.time_limit:g} s"
                ))
        self._check_deadlock(event)

    def _check_deadlock(self, event: Tick) -> None:
        started = [self.jobs[j] for j in event.running if j in self.jobs]
        only_services = bool(started) and all(r.is_service for r in started)
        waiting = 0
        if only_services:
            running = set(event.running)
            waiting = sum(
                1 for j in self.jobs.values()
                if j.status is Status.ISSUED and not j.is_service and j.job_id not in running
            )
        if not waiting:
            self._deadlock_since = None
        elif self._deadlock_since is None:
            self._deadlock_since = event.now
        elif event.now - self._deadlock_since >= self.defaults.deadlock_wait:
            self._out.append(Abort(
                f"deadlock: only services have been running for {self.defaults.deadlock_wait:g} s "
                f"while {waiting} job(s) wait for the resources they hold; give the run more "
                "cores or memory (--maxCores, --maxMemory) or let the services ask for less"
            ))

    # ---- transitions ------------------------------------------------------------------------
    def _learn(self, descs: Iterable[JobDescription]) -> None:
        for desc in descs:
            rec = self.jobs.get(desc.job_id)
            if rec is None:
                rec = self.jobs[desc.job_id] = JobRecord(desc, self.defaults)
                if not rec.hidden:
                    self.visible_waiting += 1
            elif rec.status is Status.WAITING or rec.status is Status.ISSUED:
                rec.update_from(desc)

    def _set_status(self, rec: JobRecord, status: Status) -> None:
        if status not in TRANSITIONS[rec.status]:
            raise InvalidTransition(rec.job_id, rec.status, status, rec.story)
        self._tell(rec, f"{rec.status.value} -> {status.value}")
        self._count(rec, status)
        rec.status = status

    def _count(self, rec: JobRecord, status: Status | None) -> None:
        """Keep the visible counters as ``rec`` goes to ``status`` (None: forgotten)."""
        if not rec.hidden:
            for st, delta in ((rec.status, -1), (status, 1)):
                if st is Status.WAITING:
                    self.visible_waiting += delta
                elif st is Status.ISSUED:
                    self.visible_issued += delta
                elif st is Status.DONE:
                    self.visible_done += delta

    def _ready(self, rec: JobRecord) -> None:
        """All predecessors have reached ``rec``: run it (or take its stored run)."""
        if rec.stored_ran:
            self._ran(rec)
        elif rec.retries_left < 0:
            self._fail(rec, rec.reason)
        else:
            self._set_status(rec, Status.ISSUED)
            cores, memory, disk, accelerators, preemptible = rec.requests
            self._out.append(Issue(
                rec.job_id, rec.label, cores, memory, disk, accelerators, preemptible,
                rec.time_limit, rec.is_service, rec.accelerator_specs,
            ))

    def _ran(self, rec: JobRecord) -> None:
        """The job's body has run; start its services, then its successor phases."""
        hosts = [self.jobs[h] for h in rec.services]
        rec.services_alive = rec.services_pending = 0
        for host in hosts:
            host.owner = rec.job_id
            if host.stored_ran:  # restart: it ran and stopped before the crash
                self._set_status(host, Status.DONE)
            else:
                rec.services_alive += 1
                rec.services_pending += 1
        if rec.services_pending:
            self._set_status(rec, Status.STARTING_SERVICES)
            for host in hosts:  # a service with a parent service starts once that one is up
                if host.status is Status.WAITING and self._parent_service_up(host):
                    self._ready(host)
        else:
            self._begin_phase(rec, Phase.CHILDREN)

    def _begin_phase(self, rec: JobRecord, phase: Phase) -> None:
        members = rec.children if phase is Phase.CHILDREN else rec.follow_ons
        if not members:
            if phase is Phase.CHILDREN:
                self._begin_phase(rec, Phase.FOLLOW_ONS)
            else:
                self._finish(rec)
            return
        self._set_status(rec, Status.RUNNING_SUCCESSORS)
        rec.phase, rec.outstanding, rec.phase_failed = phase, len(members), False
        for member_id in members:
            member = self.jobs[member_id]
            member.parents.append(rec.job_id)
            member.preds_arrived += 1
            if member.status in SETTLED:
                self._later(self._notify_parent, rec, member.status is Status.DONE)
            elif member.status is Status.WAITING and member.preds_arrived >= member.preds_needed:
                self._later(self._ready, member)

    def _notify_parent(self, parent: JobRecord, ok: bool) -> None:
        parent.outstanding -= 1
        if not ok:
            parent.phase_failed = True
        if parent.outstanding == 0 and parent.status is Status.RUNNING_SUCCESSORS:
            if parent.phase_failed:
                self._finish(parent, failed=True)
            elif parent.phase is Phase.CHILDREN:
                self._begin_phase(parent, Phase.FOLLOW_ONS)
            else:
                self._finish(parent)

    def _finish(self, rec: JobRecord, failed: bool = False) -> None:
        """Successors settled (or can never run): stop the job's services, then settle it."""
        rec.phase_failed = failed
        if failed:
            for job_id in rec.successors():
                if job_id in self.jobs:
                    self._later(self._block, self.jobs[job_id])
        if rec.services_alive:
            self._set_status(rec, Status.STOPPING_SERVICES)
            self._stop_services(rec)
            if rec.services_alive:
                return
        if failed and rec.checkpoint and rec.retries_left > 0:
            self._restart_checkpoint(rec)
            return
        self._later(self._settle, rec, not failed)

    def _stop_services(self, rec: JobRecord) -> None:
        """Stop the job's services, each only after its child services have gone."""
        for host_id in rec.services:
            host = self.jobs[host_id]
            if host.stop_sent or host.status in SETTLED:
                continue
            if host.status is Status.WAITING:  # never started: its parent service never came up
                host.stop_sent = True
                self._set_status(host, Status.BLOCKED)
                rec.services_alive -= 1
                continue
            if any(c.status not in SETTLED for c in self._service_children(rec, host_id)):
                continue
            host.stop_sent = True
            if host.status is Status.SERVICE_RUNNING:
                self._out.append(StopService(host_id))
            else:
                self._out.append(Kill((host_id,), "its job ended before the service started"))
                self._later(self._service_exited, host, JobEnded(host_id, True))

    def _service_exited(self, host: JobRecord, event: JobEnded) -> None:
        expected = host.stop_sent
        ok = event.succeeded and expected
        self._set_status(host, Status.DONE if ok else Status.FAILED)
        owner = self.jobs.get(host.owner)
        if owner is None:
            return
        owner.services_alive -= 1
        if not ok:
            reason = event.reason or "the service exited before it was asked to stop"
            self._record_failure(host, f"service failed: {reason}")
            owner.phase_failed = True
            if owner.status is Status.STARTING_SERVICES:
                self._finish(owner, failed=True)
                return
        if owner.status is Status.STOPPING_SERVICES:
            self._stop_services(owner)  # its parent service may stop now
            if owner.services_alive == 0:
                self._finish(owner, failed=owner.phase_failed)

    def _restart_checkpoint(self, rec: JobRecord) -> None:
        """Forget the subtree and run the checkpoint job again."""
        for job_id in self._subtree(rec):
            gone = self.jobs.pop(job_id)
            self._count(gone, None)  # forgotten, not settled
            self.failed.pop(job_id, None)
        rec.retries_left -= 1
        rec.stored_ran = False
        rec.children = rec.follow_ons = rec.services = ()
        self._out.append(ResetCheckpoint(rec.job_id, rec.retries_left))
        self._out.append(JobRetried(rec.job_id, rec.label, "a job in its subtree failed", rec.retries_left))
        self._set_status(rec, Status.WAITING)
        self._ready(rec)

    def _subtree(self, rec: JobRecord) -> list[str]:
        seen: set[str] = set()
        stack = list(rec.successors())
        while stack:
            job_id = stack.pop()
            if job_id in seen or job_id not in self.jobs:
                continue
            seen.add(job_id)
            stack.extend(self.jobs[job_id].successors())
        return list(seen)

    def _fail(self, rec: JobRecord, reason: str) -> None:
        """The job itself failed for good: block its successors, settle it."""
        self._record_failure(rec, reason)
        for job_id in rec.successors():
            if job_id in self.jobs:
                self._later(self._block, self.jobs[job_id])
        self._later(self._settle, rec, False)

    def _record_failure(self, rec: JobRecord, reason: str) -> None:
        self.failed[rec.job_id] = reason
        self._tell(rec, f"failed for good: {reason}")
        self._out.append(JobFailed(rec.job_id, rec.label, reason, tuple(rec.story)))

    def _block(self, rec: JobRecord) -> None:
        """``rec`` can never run. Settle it for predecessors that already reached it."""
        if rec.status is not Status.WAITING:
            return
        self._set_status(rec, Status.BLOCKED)
        for job_id in rec.successors():
            if job_id in self.jobs:
                self._later(self._block, self.jobs[job_id])
        for parent_id in rec.parents:
            self._later(self._notify_parent, self.jobs[parent_id], False)

    def _settle(self, rec: JobRecord, ok: bool) -> None:
        self._set_status(rec, Status.DONE if ok else Status.FAILED)
        for parent_id in rec.parents:
            self._later(self._notify_parent, self.jobs[parent_id], ok)
        if rec.job_id == self.root_id:
            self.finished = ok and not self.failed
            self._out.append(Finished(self.finished))
