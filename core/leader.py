"""The leader's loop: translate between the batch system, the job store and the scheduler.

All decisions are made by :class:`flow.core.state.Scheduler`; this loop only waits for batch
events (blocking in ``BatchSystem.wait``, so it reacts to a finished job at once), reads the
descriptions the scheduler needs, and carries out its instructions.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import assert_never

from flow.batchsystems.abstract import (
    BatchJob,
    BatchSystem,
    ExitReason,
    ImpossibleRequestError,
    JobExit,
    SubmissionError,
    WorkerCall,
)
from flow.core import records
from flow.core import state as sm
from flow.core.description import JOB_FAILED_EXIT, JobDescription, JobState
from flow.core.exceptions import FailedJob, JobGraphDeadlockException, WorkflowKilledError
from flow.core.filestore import SERVICE_STARTED, SERVICE_STOP
from flow.core.progress import Progress
from flow.jobstores.abstract import JobStore

logger = logging.getLogger("flow.leader")

WORKER_FUNCTION = "flow.core.worker:run_job"
#: Set to 1 to check the scheduler's invariants after every step (the tests do; it costs time
#: proportional to the number of jobs per step).
VALIDATE_VARIABLE = "FLOW_VALIDATE"


@dataclass
class LeaderSettings:
    defaults: sm.Defaults
    tick_interval: float = 1.0  # --rescueJobsFrequency bounds it from above
    service_poll: float = 0.1
    #: Toil's --doubleMem: a job that ran out of memory is retried with twice as much.
    double_mem: bool = False
    #: Toil's --maxServiceJobs / --maxPreemptibleServiceJobs: services beyond wait to be issued.
    max_services: int = sys.maxsize
    max_preemptible_services: int = sys.maxsize


class Leader:
    def __init__(self, store: JobStore, batch: BatchSystem, settings: LeaderSettings, progress: Progress) -> None:
        self.store = store
        self.batch = batch
        self.settings = settings
        self.progress = progress
        self.scheduler = sm.Scheduler(settings.defaults)
        self.failed: list[FailedJob] = []
        self._job_of: dict[int, str] = {}  # batch id -> job id
        self._batch_of: dict[str, int] = {}  # job id -> batch id
        self._starting_services: set[str] = set()
        self._events: deque[sm.Event] = deque()
        self._next_tick = 0.0
        #: Called with the leader at each tick (the cluster scaler: flow.core.autoscale).
        self.on_tick: Callable[[Leader], None] | None = None
        self._memory: dict[str, int] = {}  # job id -> memory of its last issue (--doubleMem)
        self._held_services: deque[sm.Issue] = deque()  # over --maxServiceJobs, in order
        self._services_up: dict[str, bool] = {}  # issued service job id -> preemptible
        self._outcome: bool | None = None  # set by the Finished instruction
        self._validate = os.environ.get(VALIDATE_VARIABLE, "") not in ("", "0")

    # ---- the loop ---------------------------------------------------------------------------
    def load(self, root_id: str, known: Iterable[JobDescription] = (), restart: bool = False) -> None:
        """Read the workflow's job records from ``root_id``; writes nothing, so a damaged record
        (a typed error naming it) stops a restart before anything changes."""
        descs = list(known)
        seen = {d.job_id for d in descs}
        descs.extend(self._closure([root_id, *(s for d in descs for s in _successors(d))], seen))
        self._events.append(sm.Started(root_id, tuple(descs), fresh_retries=restart))

    def run(self) -> bool:
        """Run the loaded workflow to the end; True if every job succeeded."""
        while True:
            self._step_events()
            self._show_progress()
            if self._outcome is not None:
                return self._outcome
            for ended in self.batch.wait(self._timeout()):
                if ended.batch_id in self._job_of:  # else: a job this leader killed
                    self._events.append(self._job_ended(ended))
            self._poll_services()
            # The jobs that the ended ones released are issued before the tick: else the cluster
            # scaler would see a fan-out's root gone and its children not yet issued, release
            # the root's node and buy another one round later.
            self._step_events()
            if self._outcome is None:
                self._maybe_tick()

    def _step_events(self) -> None:
        while self._events:
            self._carry_out(self.scheduler.step(self._events.popleft()))
            if self._validate:
                self.validate()

    def validate(self) -> None:
        """The scheduler's invariants, and that the jobs it has issued are the ones this leader
        has in the batch system (or whose end is queued as an event)."""
        self.scheduler.validate()
        queued = {e.job_id for e in self._events if isinstance(e, sm.JobEnded)}
        in_flight = {
            j for j, r in self.scheduler.jobs.items()
            if r.status in (sm.Status.ISSUED, sm.Status.SERVICE_RUNNING)
        }
        held = {i.job_id for i in self._held_services}  # over --maxServiceJobs: issued later
        problems = [f"{j} is issued in the scheduler but not in the batch system"
                    for j in sorted(in_flight - set(self._batch_of) - queued - held)]
        problems += [f"{j} is in the batch system but not issued in the scheduler"
                     for j in sorted(set(self._batch_of) - in_flight)]
        if problems:
            raise sm.InvariantViolation(problems)

    def _timeout(self) -> float:
        if self._starting_services:
            return self.settings.service_poll
        return max(0.0, min(self.settings.tick_interval, self._next_tick - time.monotonic()))

    def _show_progress(self) -> None:
        if not self.progress.active:
            return
        s = self.scheduler
        jobs = s.jobs
        running = sum(
            1 for b in self.batch.running()
            if b in self._job_of and self._job_of[b] in jobs and not jobs[self._job_of[b]].hidden
        )
        self.progress.update(s.visible_done, running, max(0, s.visible_issued - running), s.visible_waiting)

    def _maybe_tick(self) -> None:
        now = time.monotonic()
        if now < self._next_tick:
            return
        self._next_tick = now + self.settings.tick_interval
        if self.store.read_shared(records.KILL) is not None:
            raise WorkflowKilledError(f"the workflow in {self.store.locator} was killed (flow kill)")
        running = {self._job_of[b]: secs for b, secs in self.batch.running().items() if b in self._job_of}
        self._events.append(sm.Tick(now, running))
        if self.on_tick is not None:
            self.on_tick(self)

    def issued_jobs(self) -> list[tuple[str, str, tuple[float, int, int, int, bool], float | None, bool]]:
        """(job id, label, requests, seconds running or None while queued, is a service) of
        every issued job."""
        running = self.batch.running()
        jobs = self.scheduler.jobs
        return [(job_id, jobs[job_id].label, jobs[job_id].requests, running.get(batch_id), jobs[job_id].is_service)
                for batch_id, job_id in self._job_of.items() if job_id in jobs]

    def _poll_services(self) -> None:
        for job_id in list(self._starting_services):
            if self.store.read_shared(SERVICE_STARTED.format(job_id)) is not None:
                self._starting_services.discard(job_id)
                self._events.append(sm.ServiceStarted(job_id))

    # ---- batch events in ---------------------------------------------------------------------
    def _job_ended(self, ended: JobExit) -> sm.JobEnded:
        job_id = self._job_of.pop(ended.batch_id)
        del self._batch_of[job_id]
        self._starting_services.discard(job_id)
        self._release_service(job_id)
        if ended.reason is ExitReason.OUT_OF_MEMORY and self.settings.double_mem and job_id in self._memory:
            self._memory[job_id] *= 2
            logger.warning("%s ran out of memory: a retry gets %d MiB (--doubleMem)", job_id,
                           self._memory[job_id] // 2**20)
        descs = self._read_finished(job_id)
        for desc in descs:
            if desc.state is JobState.RAN and desc.messages:
                for message in desc.messages:
                    level, _, text = message.partition("\t")
                    logger.log(logging.getLevelName(level) if level.isupper() else logging.INFO, "%s: %s", desc.label, text)
        reason = "" if ended.succeeded else self._failure_reason(ended, descs)
        return sm.JobEnded(
            job_id, ended.succeeded, reason, lost=ended.reason is ExitReason.LOST,
            descriptions=tuple(descs),
        )

    def _failure_reason(self, ended: JobExit, descs: list[JobDescription]) -> str:
        """The last line the failing job logged (its exception, usually), and how the worker
        ended unless the job's own error is the whole story (see JOB_FAILED_EXIT)."""
        words = _describe_exit(ended)
        culprit = next((d for d in descs if d.state is not JobState.RAN), None)
        raw = self.store.read_log(culprit.job_id) if culprit is not None else None
        lines = [line.strip() for line in (raw or b"").decode(errors="replace").splitlines() if line.strip()]
        if lines and ended.reason is ExitReason.FINISHED and ended.exit_code == JOB_FAILED_EXIT:
            return lines[-1][:300]
        return f"{lines[-1][:300]} ({words})" if lines else words

    def _read_finished(self, job_id: str) -> list[JobDescription]:
        """The job's description, those of jobs it chained into, and any unknown successors."""
        descs: list[JobDescription] = []
        current: str | None = job_id
        while current is not None:
            desc = self._read(current)
            descs.append(desc)
            current = desc.chained_to if desc.state is JobState.RAN else None
        seen = {d.job_id for d in descs}
        descs.extend(self._closure((s for d in descs for s in _successors(d)), seen))
        return descs

    def _closure(self, ids: Iterable[str], seen: set[str] | None = None) -> list[JobDescription]:
        """Descriptions of the given jobs and their successors, skipping jobs already known."""
        seen = set() if seen is None else seen
        out: list[JobDescription] = []
        stack = list(ids)
        while stack:
            job_id = stack.pop()
            if job_id in seen or self.scheduler.knows(job_id):
                continue
            seen.add(job_id)
            desc = self._read(job_id)
            out.append(desc)
            stack.extend(_successors(desc))
        return out

    def _read(self, job_id: str) -> JobDescription:
        return records.load_description(self.store, job_id)

    # ---- instructions out ----------------------------------------------------------------------
    def _carry_out(self, instructions: Iterable[sm.Instruction]) -> None:
        for ins in instructions:
            match ins:
                case sm.Issue():
                    self._issue(ins)
                case sm.Kill():
                    self._kill(ins)
                case sm.StopService():
                    self.store.write_shared(SERVICE_STOP.format(ins.job_id), b"1")
                case sm.SaveRetries():
                    self._rewrite(ins.job_id, retries_left=ins.retries_left)
                case sm.ResetCheckpoint():
                    self._reset_checkpoint(ins)
                case sm.JobFailed():
                    self._report_failure(ins)
                case sm.JobRetried():
                    logger.warning("%s failed: %s; retrying (%d more retr%s allowed)", ins.label,
                                   ins.reason, ins.retries_left, "y" if ins.retries_left == 1 else "ies")
                case sm.Finished():
                    self._outcome = ins.succeeded
                case sm.Abort():
                    raise JobGraphDeadlockException(ins.reason)
                case _:
                    assert_never(ins)

    def _service_slot_free(self, ins: sm.Issue) -> bool:
        s = self.settings
        preemptible = sum(self._services_up.values())
        return len(self._services_up) < s.max_services and (
            not ins.preemptible or preemptible < s.max_preemptible_services)

    def _release_service(self, job_id: str) -> None:
        """A service ended or was killed: issue held ones that fit now."""
        self._held_services = deque(i for i in self._held_services if i.job_id != job_id)
        if self._services_up.pop(job_id, None) is None:
            return
        for held in list(self._held_services):
            if self._service_slot_free(held):
                self._held_services.remove(held)
                self._issue(held)

    def _issue(self, ins: sm.Issue) -> None:
        if ins.is_service and ins.job_id not in self._services_up:
            if not self._service_slot_free(ins):
                self._held_services.append(ins)
                logger.info("%s waits: %d service(s) already run (--maxServiceJobs)", ins.label,
                            len(self._services_up))
                return
            self._services_up[ins.job_id] = ins.preemptible
        if ins.is_service:  # flags of an earlier attempt or run must not be taken for this one
            self.store.delete_shared(SERVICE_STARTED.format(ins.job_id))
            self.store.delete_shared(SERVICE_STOP.format(ins.job_id))
        job = BatchJob(
            job_id=ins.job_id, name=ins.label,
            call=WorkerCall(WORKER_FUNCTION, (self.store.locator, ins.job_id)),
            cores=ins.cores, memory=self._memory.get(ins.job_id, ins.memory), disk=ins.disk,
            accelerators=ins.accelerators, accelerator_specs=ins.accelerator_specs,
            preemptible=ins.preemptible, time_limit=ins.time_limit,
        )
        self._memory[ins.job_id] = job.memory
        try:
            batch_id = self.batch.issue(job)
        except ImpossibleRequestError as exc:
            self._events.append(sm.JobEnded(ins.job_id, False, str(exc), permanent=True))
            return
        except SubmissionError as exc:
            self._events.append(sm.JobEnded(ins.job_id, False, str(exc)))
            return
        self._job_of[batch_id] = ins.job_id
        self._batch_of[ins.job_id] = batch_id
        if ins.is_service:
            self._starting_services.add(ins.job_id)
        logger.debug("issued %s (%s) as batch job %d", ins.label, ins.job_id, batch_id)

    def _kill(self, ins: sm.Kill) -> None:
        batch_ids = [self._batch_of.pop(j) for j in ins.job_ids if j in self._batch_of]
        for batch_id in batch_ids:
            self._job_of.pop(batch_id, None)
        self.batch.kill(batch_ids)
        for job_id in ins.job_ids:
            self._starting_services.discard(job_id)
            self._release_service(job_id)
            logger.info("killed job %s: %s", job_id, ins.reason)

    def _rewrite(self, job_id: str, retries_left: int) -> None:
        desc = self._read(job_id)
        desc.retries_left = retries_left
        self.store.write_job(job_id, desc.dumps())

    def _reset_checkpoint(self, ins: sm.ResetCheckpoint) -> None:
        desc = self._read(ins.job_id)
        desc.state = JobState.PENDING
        desc.children = list(desc.static_children)
        desc.follow_ons = list(desc.static_follow_ons)
        desc.services = list(desc.static_services)
        desc.chained_to = None
        desc.retries_left = ins.retries_left
        self.store.write_job(ins.job_id, desc.dumps())
        logger.warning("checkpoint %s restarts its subtree", desc.label)

    def _report_failure(self, ins: sm.JobFailed) -> None:
        raw = self.store.read_log(ins.job_id)
        if raw is None:  # it left no log (killed, or never started): 'flow status' needs one
            self.store.write_log(ins.job_id, f"{ins.label} failed: {ins.reason}\n".encode())
        tail = raw.decode(errors="replace") if raw else ""
        self.failed.append(FailedJob(ins.job_id, ins.label, ins.reason, tail))
        if ins.story:  # for flow status --job
            self.store.write_shared(records.STORY.format(ins.job_id), "\n".join(ins.story).encode())
        shown = "\n".join("  | " + line for line in tail.rstrip().splitlines()[-40:])
        logger.error("job %s (%s) failed: %s%s", ins.label, ins.job_id, ins.reason, "\n" + shown if shown else "")

    def kill_all(self) -> None:
        """Stop everything this leader issued (on failure, Ctrl-C, or abort)."""
        self.batch.kill(list(self._job_of))
        self._job_of.clear()
        self._batch_of.clear()


def _successors(desc: JobDescription) -> Iterable[str]:
    yield from desc.services
    yield from desc.children
    yield from desc.follow_ons


def _describe_exit(ended: JobExit) -> str:
    if ended.message:
        return ended.message
    if ended.reason is ExitReason.FINISHED:
        return f"exit code {ended.exit_code}"
    return f"{ended.reason.value.replace('_', ' ')} (exit code {ended.exit_code})"
