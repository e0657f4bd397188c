"""The scheduler against random job graphs and random event orders (property-based, hypothesis).

A :class:`Driver` plays the leader, the job store and the batch system around a real
:class:`~flow.core.state.Scheduler`: it hands out the descriptions the leader would read, ends
issued jobs in a random order (success, failure, lost with or without a committed run, an
impossible request), starts and stops services, resets checkpoints, and crashes the leader to
restart from the stored state. After every step the scheduler's invariants must hold, and every
run must settle with what :class:`Reference`, a direct recursive reading of Toil's semantics,
says: the root's outcome, each known job's final status, and which jobs failed for good.

Each job's fate is fixed in advance so that the answer cannot depend on the order: it fails its
first ``f`` attempts (``f`` at most --retryCount, so it then succeeds whatever the order or a
restart's fresh retries), or always, or is impossible (no retries); a service starts, or dies
before it starts (at most one per job). A checkpoint job's successors exist only once it ran, and
each re-run creates them anew (ids with ``@round``); they may fare differently from the first
round ("later" fates).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from flow.core import state as sm
from flow.core.description import JobDescription, JobState

ALWAYS = -1  # fails every attempt
IMPOSSIBLE = -2  # can never run here (a permanent failure: no retries)
MAX_CRASHES = 2
MAX_STEPS = 5000


@dataclass
class Template:
    """One job of the random graph; instances of it are its runs in a checkpoint's rounds."""

    name: str
    children: list[str] = field(default_factory=list)
    follow_ons: list[str] = field(default_factory=list)
    services: list[str] = field(default_factory=list)
    dynamic: bool = False  # successors appear only once it ran
    checkpoint: bool = False
    is_service: bool = False
    service_parent: str | None = None
    preds: int = 1
    fate: int = 0  # failing attempts in its first round (or ALWAYS / IMPOSSIBLE)
    later_fate: int = 0  # the same in later rounds of a checkpoint
    dies: bool = False  # a service that dies before it starts (first round)
    later_dies: bool = False


@dataclass
class Graph:
    jobs: dict[str, Template]
    retries: int

    def successor_suffix(self, inst: str, round_: int) -> str:
        """The suffix of ``inst``'s successors' ids: a checkpoint's add its round."""
        t, suffix = split(inst)
        return f"{suffix}@{round_}" if self.jobs[t].checkpoint else suffix

    def successors(self, inst: str, round_: int) -> tuple[list[str], list[str], list[str]]:
        t = self.jobs[split(inst)[0]]
        sfx = self.successor_suffix(inst, round_)
        return ([c + sfx for c in t.children], [f + sfx for f in t.follow_ons],
                [s + sfx for s in t.services])

    def fate(self, inst: str) -> tuple[int, bool]:
        t, suffix = split(inst)
        later = any(part != "0" for part in suffix.split("@")[1:])
        job = self.jobs[t]
        return (job.later_fate, job.later_dies) if later else (job.fate, job.dies)


def split(inst: str) -> tuple[str, str]:
    name, at, rest = inst.partition("@")
    return name, at + rest


# ---- random graphs -------------------------------------------------------------------------
@st.composite
def graphs(draw: st.DrawFn) -> Graph:
    retries = draw(st.integers(0, 2))
    n = draw(st.integers(1, 12))
    # Mostly jobs that succeed (at once or after some retries), so that deep graphs get run.
    fates = st.integers(0, 19).map(lambda k: ALWAYS if k == 0 else IMPOSSIBLE if k == 1 else k % (retries + 1))
    g = Graph({}, retries)
    creator: dict[str, str] = {}  # job -> the job whose run created it ("" for the script)
    for i in range(n):
        name = f"j{i}"
        checkpoint = draw(st.integers(0, 5)) == 0
        fate = draw(st.sampled_from([0, 0, 0, ALWAYS, IMPOSSIBLE]) if checkpoint else fates)
        job = g.jobs[name] = Template(
            name, checkpoint=checkpoint, dynamic=checkpoint or draw(st.booleans()),
            fate=fate, later_fate=fate if checkpoint else draw(fates),
        )
        creator[name] = ""
        if i > 0:
            parent = g.jobs[f"j{draw(st.integers(0, i - 1))}"]
            (parent.children if draw(st.booleans()) else parent.follow_ons).append(name)
            creator[name] = parent.name if parent.dynamic else creator[parent.name]
            _add_predecessors(draw, g, job, parent, creator)
        _add_services(draw, g.jobs, job)
    return g


def _add_predecessors(draw: st.DrawFn, g: Graph, job: Template, parent: Template,
                      creator: dict[str, str]) -> None:
    """More predecessors for ``job``, as Toil allows them: jobs made in the same run as ``job``
    that list it before they run, and that leave the graph free of deadlock."""
    others = [p for p in (f"j{k}" for k in range(int(job.name[1:])))
              if p != parent.name and not g.jobs[p].dynamic and creator[p] == creator[job.name]]
    if not others:
        return
    for extra in draw(st.lists(st.sampled_from(others), max_size=2, unique=True)):
        edges = g.jobs[extra].children if draw(st.booleans()) else g.jobs[extra].follow_ons
        edges.append(job.name)
        job.preds += 1
        if deadlocks(g):
            edges.pop()
            job.preds -= 1


def _add_services(draw: st.DrawFn, jobs: dict[str, Template], owner: Template) -> None:
    count = draw(st.sampled_from([0, 0, 0, 1, 2]))
    dying = draw(st.sampled_from([None, None, *range(count)]))
    later_dying = draw(st.sampled_from([None, None, *range(count)])) if owner.checkpoint else dying
    for k in range(count):
        name = f"{owner.name}s{k}"
        parent = f"{owner.name}s0" if k == 1 and draw(st.booleans()) else None
        jobs[name] = Template(name, is_service=True, service_parent=parent,
                              dies=dying == k, later_dies=later_dying == k)
        owner.services.append(name)


# ---- the reference model -----------------------------------------------------------------
class Deadlock(Exception):
    """The graph waits on itself (a job needs a predecessor that needs it): not a valid graph."""


class Reference:
    """Toil's semantics read directly: what each job instance ends as."""

    def __init__(self, g: Graph) -> None:
        self.g = g
        self.status: dict[str, str] = {}
        self.own_failure: set[str] = set()
        self.rounds: dict[str, int] = {}  # checkpoint instance -> its final round
        self._runs: dict[str, bool] = {}
        self._busy: set[str] = set()
        self.preds: dict[str, list[str]] = {}
        for t in g.jobs.values():
            for succ in (*t.children, *t.follow_ons):
                self.preds.setdefault(succ, []).append(t.name)

    def body_ok(self, inst: str) -> bool:
        fate = self.g.fate(inst)[0]
        return fate not in (ALWAYS, IMPOSSIBLE)

    def result(self, inst: str) -> str:
        if inst in self.status:
            return self.status[inst]
        if inst in self._busy:
            raise Deadlock(inst)
        self._busy.add(inst)
        if not self.runs(inst):
            outcome = "blocked"
        elif not self.body_ok(inst):
            outcome = "failed"
            self.own_failure.add(inst)
        else:
            outcome = self._after_body(inst)
        self._busy.discard(inst)
        self.status[inst] = outcome
        return outcome

    def _after_body(self, inst: str) -> str:
        job = self.g.jobs[split(inst)[0]]
        retries_left = self.g.retries  # a checkpoint's body never fails and then succeeds
        round_ = 0
        while True:
            self.rounds[inst] = round_
            outcome = self._phases(inst, round_)
            if outcome == "done" or not job.checkpoint or retries_left <= 0:
                return outcome
            retries_left -= 1
            round_ += 1

    def _phases(self, inst: str, round_: int) -> str:
        children, follow_ons, services = self.g.successors(inst, round_)
        dead = [s for s in services if self.g.fate(s)[1]]
        for s in services:
            parent = self.g.jobs[split(s)[0]].service_parent
            parent_dead = parent is not None and parent + split(s)[1] in dead
            self.status[s] = "failed" if s in dead else "blocked" if parent_dead else "done"
        self.own_failure.update(dead)
        results = [self.result(c) for c in children]
        results += [self.result(f) for f in follow_ons]  # blocked unless the children did it
        return "failed" if dead or any(r != "done" for r in results) else "done"

    def runs(self, inst: str) -> bool:
        """Do all the instance's predecessors reach it?"""
        if inst in self._runs:
            return self._runs[inst]
        name, suffix = split(inst)
        if name == "j0":
            return True
        ok = True
        for pred in self.preds.get(name, []):
            p = self.g.jobs[pred]
            p_inst = pred + (suffix.rsplit("@", 1)[0] if p.checkpoint else suffix)
            round_ = int(suffix.rsplit("@", 1)[1]) if p.checkpoint else 0
            ok = ok and self._reaches(p_inst, round_, inst)
        self._runs[inst] = ok
        return ok

    def _reaches(self, pred: str, round_: int, inst: str) -> bool:
        if not self.runs(pred) or not self.body_ok(pred):
            return False
        children, follow_ons, services = self.g.successors(pred, round_)
        if any(self.g.fate(s)[1] for s in services):
            return False  # its services never all started: no successor ran
        return inst in children or all(self.result(c) == "done" for c in children)

    def known(self) -> Iterator[str]:
        """The instances the scheduler ends up knowing: reachable through listed successors."""
        seen: set[str] = set()
        stack = ["j0"]
        while stack:
            inst = stack.pop()
            if inst in seen:
                continue
            seen.add(inst)
            job = self.g.jobs[split(inst)[0]]
            if job.is_service:
                self.status.setdefault(inst, "blocked")  # its job never ran
            elif inst not in self.status:
                self.result(inst)  # a successor of a job that failed: blocked
            yield inst
            ran = self.status.get(inst) in ("done", "failed") and inst not in self.own_failure
            if job.is_service or (job.dynamic and not ran):
                continue
            for group in self.g.successors(inst, self.rounds.get(inst, 0)):
                stack.extend(group)


# ---- the driver: leader, job store and batch system around the scheduler ------------------
class Driver:
    def __init__(self, g: Graph, rng: random.Random) -> None:
        self.g = g
        self.rng = rng
        self.ran: set[str] = set()  # committed runs (the job store's RAN state)
        self.rounds: dict[str, int] = {}  # checkpoint instance -> round of its current run
        self.retries: dict[str, int] = {}  # saved retries_left
        self.attempts: dict[str, int] = {}  # attempts that counted, across restarts
        self.crashes = 0
        self.start()

    def start(self) -> None:
        self.s = sm.Scheduler(sm.Defaults(retry_count=self.g.retries))
        self.flight: dict[str, str] = {}  # issued instance -> "issued" / "started" / "stopping"
        self.lost: dict[str, int] = {}
        self.step(sm.Started("j0", tuple(self.closure(["j0"])), fresh_retries=self.crashes > 0))

    def desc(self, inst: str) -> JobDescription:
        job = self.g.jobs[split(inst)[0]]
        d = JobDescription(job_id=inst, name=job.name, checkpoint=job.checkpoint,
                           is_service=job.is_service, predecessors=job.preds,
                           retries_left=self.retries.get(inst, -1))
        if job.service_parent:
            d.service_parent = job.service_parent + split(inst)[1]
        if inst in self.ran:
            d.state = JobState.RAN
        if inst in self.ran or not job.dynamic:
            d.children, d.follow_ons, d.services = self.g.successors(inst, self.rounds.get(inst, 0))
        return d

    def closure(self, ids: list[str]) -> Iterator[JobDescription]:
        seen: set[str] = set()
        stack = list(ids)
        while stack:
            inst = stack.pop()
            if inst in seen or (self.s.knows(inst) and inst not in ids):
                continue
            seen.add(inst)
            d = self.desc(inst)
            yield d
            stack.extend([*d.services, *d.children, *d.follow_ons])

    def step(self, event: sm.Event) -> None:
        out = self.s.step(event)
        self.s.validate()
        for ins in out:
            self.carry_out(ins)
        in_flight = {j for j, r in self.s.jobs.items()
                     if r.status in (sm.Status.ISSUED, sm.Status.SERVICE_RUNNING)}
        assert in_flight == set(self.flight), (in_flight, self.flight)

    def carry_out(self, ins: sm.Instruction) -> None:
        match ins:
            case sm.Issue():
                assert ins.job_id not in self.flight, f"{ins.job_id} issued twice"
                self.flight[ins.job_id] = "issued"
            case sm.Kill():
                for job_id in ins.job_ids:
                    del self.flight[job_id]
            case sm.StopService():
                assert self.flight[ins.job_id] == "started"
                self.flight[ins.job_id] = "stopping"
            case sm.SaveRetries():
                self.retries[ins.job_id] = ins.retries_left
            case sm.ResetCheckpoint():
                event("a checkpoint re-ran its subtree")
                self.ran.discard(ins.job_id)
                self.retries[ins.job_id] = ins.retries_left
                self.rounds[ins.job_id] = self.rounds.get(ins.job_id, 0) + 1
            case sm.JobFailed() | sm.JobRetried() | sm.Finished():
                pass
            case sm.Abort():
                raise AssertionError(f"aborted: {ins.reason}")

    def run(self) -> None:
        for _ in range(MAX_STEPS):
            if self.s.finished is not None:
                return
            assert self.flight, "the scheduler waits for nothing but has not finished"
            if self.crashes < MAX_CRASHES and self.rng.random() < 0.03:
                self.crashes += 1
                event("the leader restarted")
                self.start()
                continue
            inst = self.rng.choice(sorted(self.flight))
            self.advance(inst)
        raise AssertionError("no end after many steps")

    def advance(self, inst: str) -> None:
        job = self.g.jobs[split(inst)[0]]
        fate, dies = self.g.fate(inst)
        if job.is_service:
            state = self.flight[inst]
            if state == "issued" and dies:
                del self.flight[inst]
                event("a service died")
                self.step(sm.JobEnded(inst, False, "the service died"))
            elif state == "issued":
                self.flight[inst] = "started"
                self.step(sm.ServiceStarted(inst))
            elif state == "stopping":
                self.end(inst, True)
            return  # a started service runs until it is asked to stop
        would_succeed = fate != ALWAYS and fate != IMPOSSIBLE and self.attempts.get(inst, 0) >= fate
        if fate == IMPOSSIBLE:
            del self.flight[inst]
            self.step(sm.JobEnded(inst, False, "impossible", permanent=True))
        elif self.lost.get(inst, 0) < 3 and self.rng.random() < 0.15:
            self.lost[inst] = self.lost.get(inst, 0) + 1
            event("a job was lost")
            commit = would_succeed and self.rng.random() < 0.5
            if commit:
                self.attempts[inst] = self.attempts.get(inst, 0) + 1
            self.end(inst, False, lost=True, commit=commit)
        else:
            self.attempts[inst] = self.attempts.get(inst, 0) + 1
            self.end(inst, would_succeed, commit=would_succeed)

    def end(self, inst: str, ok: bool, lost: bool = False, commit: bool | None = None) -> None:
        del self.flight[inst]
        if ok if commit is None else commit:
            self.ran.add(inst)
        descs = (self.desc(inst), *self.closure([s for s in self.successor_ids(inst)]))
        self.step(sm.JobEnded(inst, ok, "" if ok else "exit code 1", lost=lost, descriptions=descs))

    def successor_ids(self, inst: str) -> list[str]:
        d = self.desc(inst)
        return [j for j in (*d.services, *d.children, *d.follow_ons) if not self.s.knows(j)]


def deadlocks(g: Graph) -> bool:
    """Would the graph wait on itself if every job succeeded? (Then it may hang whatever fails.)"""
    fine = {n: replace(t, fate=0, later_fate=0, dies=False, later_dies=False) for n, t in g.jobs.items()}
    try:
        Reference(Graph(fine, g.retries)).result("j0")
    except Deadlock:
        return True
    return False


def by_template(statuses: dict[str, str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for inst, status in statuses.items():
        name = split(inst)[0]
        assert name not in out, f"two live instances of {name}"
        out[name] = status
    return out


@settings(max_examples=2000, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(graphs(), st.integers(0, 2**32 - 1))
def test_random_graphs_settle_as_the_reference_says(g: Graph, seed: int) -> None:
    assume(not deadlocks(g))
    ref = Reference(g)
    expected_root = ref.result("j0")
    known = list(ref.known())
    driver = Driver(g, random.Random(seed))
    driver.run()
    s = driver.s
    event(f"the run {'succeeded' if s.finished else 'failed'}")
    event(f"{len(s.jobs) // 5 * 5}+ jobs")
    assert s.finished == (expected_root == "done")
    got = by_template({j: r.status.value for j, r in s.jobs.items()})
    assert got == by_template({j: ref.status.get(j, "?") for j in known})
    assert {split(j)[0] for j in s.failed} == {split(j)[0] for j in ref.own_failure if j in known}
