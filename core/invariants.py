"""The invariants of the scheduler's state, checked by :meth:`flow.core.state.Scheduler.validate`.

Each check states one rule in its docstring and returns the ways the state breaks it (empty: it
holds). They hold between steps, when the scheduler's agenda is drained. They read the state only.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator

from flow.core.state import OWNING, SETTLED, JobRecord, Phase, Scheduler, Status


def problems(s: Scheduler) -> list[str]:
    """Every broken invariant of ``s``, in words."""
    found: list[str] = []
    for check in CHECKS:
        found.extend(check(s))
    return found


def _check_between_steps(s: Scheduler) -> Iterator[str]:
    """Nothing is left half-done between steps: the agenda and the output are empty."""
    if s._agenda:
        yield f"{len(s._agenda)} action(s) left on the agenda"
    if s._out:
        yield f"{len(s._out)} instruction(s) not handed out"


def _check_counters(s: Scheduler) -> Iterator[str]:
    """The visible counters equal the numbers of visible jobs waiting, issued and done."""
    counts = Counter(r.status for r in s.jobs.values() if not r.hidden)
    for name, status in (("waiting", Status.WAITING), ("issued", Status.ISSUED), ("done", Status.DONE)):
        counted = getattr(s, f"visible_{name}")
        if counted != counts[status]:
            yield f"visible_{name} is {counted} but {counts[status]} visible job(s) are {status.value}"


def _check_known(s: Scheduler) -> Iterator[str]:
    """Every successor of a job that has run, every parent and every service owner is known."""
    for rec in s.jobs.values():
        if rec.status in OWNING or rec.status is Status.DONE and not rec.is_service:
            for job_id in rec.successors():
                if job_id not in s.jobs:
                    yield f"{rec.job_id} ({rec.status.value}) has an unknown successor {job_id}"
        for parent in rec.parents:
            if parent not in s.jobs:
                yield f"{rec.job_id} has an unknown parent {parent}"
        if rec.owner and rec.owner not in s.jobs:
            yield f"service {rec.job_id} has an unknown owner {rec.owner}"


def _check_predecessors(s: Scheduler) -> Iterator[str]:
    """A job's arrived predecessors are its parents, each of which lists it as a successor of
    a phase it has begun; at most the number it waits for arrive; a job that all have reached
    is not left waiting, and a job that runs or ran was reached by all (the root by none)."""
    for rec in s.jobs.values():
        if rec.is_service:
            continue
        if rec.preds_arrived != len(rec.parents) or len(set(rec.parents)) != len(rec.parents):
            yield f"{rec.job_id}: {rec.preds_arrived} predecessor(s) arrived but parents are {rec.parents}"
        needed = 0 if rec.job_id == s.root_id else rec.preds_needed
        if rec.preds_arrived > needed:
            yield f"{rec.job_id}: {rec.preds_arrived} predecessors arrived, more than its {needed}"
        if rec.status is Status.WAITING and rec.preds_arrived >= needed:
            yield f"{rec.job_id} is waiting although all {needed} predecessor(s) reached it"
        if rec.status not in (Status.WAITING, Status.BLOCKED) and rec.preds_arrived < needed:
            yield f"{rec.job_id} is {rec.status.value} with {rec.preds_arrived}/{needed} predecessors"
        for parent_id in rec.parents:
            parent = s.jobs.get(parent_id)
            if parent is None:
                continue
            members = parent.children if parent.phase is Phase.CHILDREN else (
                *parent.children, *parent.follow_ons)
            if rec.job_id not in members or parent.status is Status.WAITING:
                yield f"{rec.job_id} counts {parent_id} as arrived, which has not reached it"


def _check_phases(s: Scheduler) -> Iterator[str]:
    """A job running successors waits for exactly the unsettled members of its phase, and knows
    whether one of them failed; a settled job has only settled successors (all done if it is)."""
    for rec in s.jobs.values():
        if rec.status is Status.RUNNING_SUCCESSORS:
            members = [s.jobs[m] for m in _members(rec) if m in s.jobs]
            open_ = sum(1 for m in members if m.status not in SETTLED)
            if rec.outstanding != open_ or open_ == 0:
                yield (f"{rec.job_id} waits for {rec.outstanding} successor(s) of its "
                       f"{rec.phase.value} but {open_} are unsettled")
            failed = any(m.status in (Status.FAILED, Status.BLOCKED) for m in members)
            if failed and not rec.phase_failed:
                yield f"{rec.job_id} missed a failure among its {rec.phase.value}"
        if rec.status in SETTLED:
            for job_id in rec.successors():
                succ = s.jobs.get(job_id)
                if succ is None:
                    continue
                if succ.status not in SETTLED:
                    yield f"{rec.job_id} is {rec.status.value} but its successor {job_id} is {succ.status.value}"
                elif rec.status is Status.DONE and succ.status is not Status.DONE:
                    yield f"{rec.job_id} is done but its successor {job_id} is {succ.status.value}"


def _members(rec: JobRecord) -> tuple[str, ...]:
    return rec.children if rec.phase is Phase.CHILDREN else rec.follow_ons


def _check_services(s: Scheduler) -> Iterator[str]:
    """A job with services counts its live and not-yet-started services right, starts its
    successors only once all are up, and is their owner; a running service has a live owner."""
    for rec in s.jobs.values():
        hosts = [s.jobs[h] for h in rec.services if h in s.jobs]
        if rec.status in OWNING:
            alive = sum(1 for h in hosts if h.status not in SETTLED)
            if rec.services_alive != alive:
                yield f"{rec.job_id} counts {rec.services_alive} live service(s), there are {alive}"
            if any(h.owner != rec.job_id for h in hosts):
                yield f"{rec.job_id} is not the owner of all its services"
        if rec.status is Status.STARTING_SERVICES:
            pending = sum(1 for h in hosts if h.status in (Status.WAITING, Status.ISSUED))
            if rec.services_pending != pending or pending == 0:
                yield f"{rec.job_id} waits for {rec.services_pending} service(s) to start, {pending} have not"
        if rec.status is Status.RUNNING_SUCCESSORS and any(
            h.status in (Status.WAITING, Status.ISSUED) for h in hosts
        ):
            yield f"{rec.job_id} runs its successors before all its services started"
        if rec.status is Status.STOPPING_SERVICES and rec.services_alive <= 0:
            yield f"{rec.job_id} is stopping services but none is alive"
        if rec.is_service and rec.status in (Status.ISSUED, Status.SERVICE_RUNNING):
            owner = s.jobs.get(rec.owner)
            if owner is None or owner.status not in OWNING:
                yield f"service {rec.job_id} is {rec.status.value} but its owner is not running"


def _check_retries(s: Scheduler) -> Iterator[str]:
    """Retries stay within bounds; a job out of retries never runs again; lost jobs are
    re-issued a bounded number of times."""
    for rec in s.jobs.values():
        if not -1 <= rec.retries_left <= rec.max_retries:
            yield f"{rec.job_id} has {rec.retries_left} retries left, outside [-1, {rec.max_retries}]"
        if rec.retries_left < 0 and rec.status not in SETTLED:
            yield f"{rec.job_id} has no retries left but is {rec.status.value}"
        if not 0 <= rec.lost_reissues <= s.defaults.max_lost_reissues:
            yield f"{rec.job_id} was re-issued {rec.lost_reissues} times after being lost"


def _check_outcome(s: Scheduler) -> Iterator[str]:
    """The run has finished exactly when the root has settled, successfully only if it is done
    and nothing failed; every job that failed for good is known and failed."""
    root = s.jobs.get(s.root_id)
    if s.root_id and root is None:
        yield f"the root {s.root_id} is unknown"
    settled = root is not None and root.status in SETTLED
    if (s.finished is not None) != settled:
        yield f"finished is {s.finished} but the root is {root.status.value if root else 'unknown'}"
    if s.finished and (s.failed or root is None or root.status is not Status.DONE):
        yield "the run succeeded with failed jobs or a root that is not done"
    for job_id in s.failed:
        rec = s.jobs.get(job_id)
        if rec is None or rec.status is not Status.FAILED:
            yield f"{job_id} failed for good but is {rec.status.value if rec else 'unknown'}"


CHECKS: tuple[Callable[[Scheduler], Iterator[str]], ...] = (
    _check_between_steps, _check_counters, _check_known, _check_predecessors, _check_phases,
    _check_services, _check_retries, _check_outcome,
)
