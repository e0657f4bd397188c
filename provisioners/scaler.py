"""The cluster scaler: each round, plan the cluster for the work in hand and make it so.

Growing: launch the missing nodes (journalled first, see ``journal``); nodes lost to preemption
while jobs wait for their type are launched again even when the plan, made afresh for a
shrinking queue, asks for fewer (else the cluster decays round after round). Shrinking: only by
draining; while queued jobs that belong on a type wait, its busy nodes are kept (or taken back
from draining) as far as their room, free now or within a round, is needed to start those jobs
(:func:`kept_for_waiting`). A node to remove is first ignored by the batch system (no
new job goes there), and terminated once nothing runs on it: by the next round, or as soon as
its last job ends when the caller calls :meth:`ClusterScaler.release_drained` then. Idle nodes
are chosen first, then booting ones, then the busy nodes whose jobs are expected to end soonest
(:func:`keep_order`: a node is paid until its last job ends, so the nodes kept are those whose
jobs end last, and those drained go soonest); a node that runs a job is kept in preference to an
idle one. A node that runs a job is never terminated. The scaler takes its
clock from its caller (``tick(work)``: each job's age), so it runs the same in the leader and
in virtual time.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace

from flow.batchsystems.scalable import NodeInfo, ScalableBatchSystem
from flow.provisioners.contract import Node, NodeState, Provisioner, Scaler, WorkItem
from flow.provisioners.planner import MIN_WALLTIME, Plan, PlanJob, ScalerParams, plan
from flow.provisioners.shape import NodeType, Shape, share

logger = logging.getLogger("flow.scaler")

#: journal(event, details): called before every launch ("launch": node_type, count), with the
#: ids before they are started by a provisioner that names its nodes first ("launching":
#: node_type, nodes), with the ids as soon as the launch returns ("launched": node_type, nodes)
#: and after every termination ("terminate": nodes); the core keeps it in the job store so that
#: nodes are found after a crash.
Journal = Callable[[str, Mapping[str, object]], None]


@dataclass
class RuntimeHistory:
    """Mean runtime of completed jobs per job name (Toil keeps the same)."""

    totals: dict[str, tuple[float, int]] = field(default_factory=dict)
    overall: tuple[float, int] = (0.0, 0)

    def record(self, name: str, seconds: float) -> None:
        total, n = self.totals.get(name, (0.0, 0))
        self.totals[name] = (total + seconds, n + 1)
        self.overall = (self.overall[0] + seconds, self.overall[1] + 1)

    def estimate(self, name: str, default: float) -> float:
        """The name's mean; else all jobs' mean; else ``default`` (the scaler's guess from the
        jobs running now, see ``ClusterScaler._plan_jobs``)."""
        total, n = self.totals.get(name, self.overall)
        return total / n if n else default


def expected_end(info: NodeInfo | None, runtimes: Mapping[str, float]) -> float:
    """Seconds until the last job running on a node is expected to end: per job, its kind's
    expected runtime (``runtimes``, by job name) minus how long it has run, at least
    MIN_WALLTIME (a job past its kind's mean may end any moment). 0 for a node that reports no
    job; infinity when it runs jobs the batch system cannot name or whose kind has no estimate
    (such a node is kept, as every busy node was before jobs were reported per node)."""
    if info is None or (not info.jobs and not info.workers):
        return 0.0
    if not info.jobs or any(job.name not in runtimes for job in info.jobs):
        return math.inf
    return max(max(runtimes[job.name] - job.seconds, MIN_WALLTIME) for job in info.jobs)


def keep_order(nodes: Sequence[Node], busy: Collection[str], infos: Mapping[str, NodeInfo],
               runtimes: Mapping[str, float], draining: Collection[str] = ()) -> list[Node]:
    """The nodes of one type, the one to keep first (a round keeps the first ``want`` and drains
    the rest). Busy nodes (ids in ``busy``) come before idle ones; among busy nodes, those whose
    jobs are expected to end last (:func:`expected_end`, from the batch system's ``infos`` by
    node address): a node is paid for until its last job ends, so a shrinking cluster drains the
    nodes that will be free soonest and keeps the one whose jobs end last. Among idle nodes,
    ready ones before booting ones. Ties: a node not draining before a draining one (no churn),
    then the oldest first. Pure: no I/O, no clock."""
    def rank(node: Node) -> tuple[int, float, int, int, float]:
        drains = 1 if node.node_id in draining else 0
        if node.node_id in busy:
            return 0, -expected_end(infos.get(node.name), runtimes), 0, drains, node.launched_at
        return 1, 0.0, 0 if node.state is NodeState.READY else 1, drains, node.launched_at

    return sorted(nodes, key=rank)


def room_soon(info: NodeInfo | None, runtimes: Mapping[str, float], within: float) -> float:
    """The share of a node free now or expected to be free within ``within`` seconds (its jobs
    expected to end by then, see :func:`expected_end`): the lesser of its cores' and its
    memory's. A node the batch system does not report has none; one whose jobs it cannot
    name, only what is free now."""
    if info is None or info.coresTotal <= 0 or info.memoryTotal <= 0:
        return 0.0
    cores, memory = info.coresTotal - info.requestedCores, info.memoryTotal - info.requestedMemory
    for job in info.jobs:
        # A job already past its kind's expected runtime is not counted: nothing says when it
        # ends, and counting it left a queued job waiting for it, round after round, while a
        # node being drained had room for it.
        if job.name in runtimes and 0 < runtimes[job.name] - job.seconds <= within:
            cores, memory = cores + job.cores, memory + job.memory
    return max(0.0, min(cores / info.coresTotal, memory / info.memoryTotal))


def kept_for_waiting(kept: Sequence[Node], candidates: Sequence[Node], busy: Collection[str],
                     infos: Mapping[str, NodeInfo], runtimes: Mapping[str, float], need: float,
                     within: float) -> list[Node]:
    """Of the busy nodes a round would drain (``candidates``, in :func:`keep_order`), those kept
    because jobs wait for their type (``need``: the waiting jobs' shares of a node): the first
    ones, until the room free now or within ``within`` seconds on the nodes kept holds them all.
    The waiting jobs then start within about a round, on the nodes whose jobs end last (adding
    to the tail of a node paid for anyway), while the nodes whose jobs end soonest drain and go:
    keeping every busy node while anything waits spread the last queued jobs over every node,
    each paid until its own late job ends. A node whose jobs the batch system does not report
    offers only its free room, so without per-node job reports every busy node is kept."""
    room = sum(room_soon(infos.get(n.name), runtimes, within) for n in kept)
    out = []
    for node in candidates:
        if room >= need - 1e-9:
            break
        if node.node_id in busy:
            out.append(node)
            room += room_soon(infos.get(node.name), runtimes, within)
    return out


@dataclass
class RoundReport:
    plan: Plan
    launched: dict[str, int] = field(default_factory=dict)
    draining: list[str] = field(default_factory=list)
    terminated: list[str] = field(default_factory=list)


class ClusterScaler(Scaler):
    def __init__(self, provisioner: Provisioner, batch: ScalableBatchSystem | None, params: ScalerParams,
                 history: RuntimeHistory | None = None, journal: Journal | None = None) -> None:
        self.provisioner = provisioner
        self.batch = batch
        self.params = params
        self.node_types = provisioner.node_types()
        self.history = history or RuntimeHistory()
        self.journal = journal
        if journal is not None:
            provisioner.before_launch = lambda type_name, ids: journal("launching", {"node_type": type_name, "nodes": ids})
        self.target: dict[str, int] = {}
        self.draining: set[str] = set()  # node ids
        #: Preemptible nodes per type the last round asked for and did not get (the market was
        #: short): what --preemptibleCompensation replaces. A preempted node is not in it: the
        #: round that sees it gone launches another.
        self.shortfall: dict[str, int] = {}
        self._any_running = False
        self._queued: dict[Shape, int] = {}
        self._kept: dict[str, str] = {}  # node id -> type name: the nodes the last round kept
        self._infos: dict[str, NodeInfo] = {}  # the batch system's nodes by address, this round
        self._runtimes: dict[str, float] = {}  # expected runtime per job name, this round

    def job_finished(self, name: str, seconds: float) -> None:
        self.history.record(name, seconds)

    # ---- one round ------------------------------------------------------------------------------
    def tick(self, work: Sequence[WorkItem]) -> RoundReport:
        live = self.provisioner.nodes()
        self._any_running = any(w.running_for is not None for w in work)
        self._queued = {}
        for w in work:
            if w.running_for is None:
                self._queued[w.request] = self._queued.get(w.request, 0) + 1
        runtime = self._estimator(work)
        self._infos = self.batch.getNodes() if self.batch is not None else {}
        names = {w.name for w in work} | {j.name for i in self._infos.values() for j in i.jobs}
        self._runtimes = {name: runtime(name) for name in names}
        # a service runs until the workflow stops it: its node is the last to drain
        self._runtimes.update((w.name, math.inf) for w in work if w.service)
        params = replace(self.params, targetTime=self._horizon(work))
        result = plan(self.node_types, self._plan_jobs(work), params, self.target, self.shortfall)
        report = RoundReport(result)
        self.target = dict(result.counts)
        ids = {n.node_id for n in live}
        lost = [t for i, t in self._kept.items() if i not in ids]  # preempted or failed since
        self._kept = {}
        for node_type in self.node_types:
            self._resize(node_type, [n for n in live if n.node_type == node_type.name], report,
                         lost.count(node_type.name))
        self._finish_draining(live, report)
        return report

    def _plan_jobs(self, work: Sequence[WorkItem]) -> list[PlanJob]:
        """The work as the planner sees it: each job with the runtime it is expected to need.

        A job's kind (its name) with ended jobs: their mean (Toil's estimate); a running job:
        what is left of it. A kind none of whose jobs has ended yet: twice the age of its oldest
        running job, or of any running job (with nothing else known, a job that has run e
        seconds is taken to be as likely to end before 2e as after); with nothing running yet,
        one scaler round (the next round knows more). So the scaler buys for what it has seen,
        not for every job taking the whole targetTime, which bought every node --maxNodes
        allows for a workload of short jobs (Toil assumes one second).
        """
        jobs = []
        for item in work:
            runtime = self._runtimes[item.name]
            if item.service:  # as Toil: a service holds its room past the horizon
                runtime = self.params.targetTime
            elif item.running_for is not None:  # what is left of it, as far as we know
                runtime = max(runtime - item.running_for, MIN_WALLTIME)
            r = item.request
            jobs.append(PlanJob(item.name, Shape(runtime, r.memory, r.cores, r.disk, r.preemptible)))
        return jobs

    def _horizon(self, work: Sequence[WorkItem]) -> float:
        """The seconds the planner packs the work into. ``targetTime`` by default, from each round
        (Toil's meaning: the queued work should take that long from now). With ``deadline``,
        ``targetTime`` runs from when each job was issued: what is left of it for the job that
        has waited longest, so that a plan made with runtimes learnt late (or too short at
        first: the jobs that end first are the short ones) catches up instead of sliding with
        every round; never less than the longest queued job's expected runtime (the queue cannot
        end sooner; less would only buy a slot per job)."""
        queued = [w for w in work if w.running_for is None and not w.service]
        if not self.params.deadline or not queued:
            return self.params.targetTime
        left = self.params.targetTime - max(w.issued_for for w in queued)
        longest = max(self._runtimes[w.name] for w in queued)
        return max(left, min(longest, self.params.targetTime))

    def _estimator(self, work: Sequence[WorkItem]) -> Callable[[str], float]:
        """The expected runtime of a job of a name (see :meth:`_plan_jobs`)."""
        ages: dict[str, float] = {}
        for item in work:
            if item.running_for is not None and not item.service:
                ages[item.name] = max(ages.get(item.name, 0.0), item.running_for)
        oldest = max(ages.values(), default=0.0)

        def runtime(name: str) -> float:
            return self.history.estimate(name, max(2.0 * ages.get(name, oldest), self.params.scaleInterval))

        return runtime

    def _resize(self, node_type: NodeType, nodes: list[Node], report: RoundReport, lost: int) -> None:
        """Keep the ``want`` most useful nodes (busy first, then ready, then those not draining,
        then the oldest), drain the others; launch what is missing."""
        want = self.target[node_type.name]
        waiting = [(r, n) for r, n in self._queued.items() if self._belongs(r, node_type)]
        if lost and waiting:
            # Nodes lost to preemption while jobs wait for their type are replaced (up to the
            # room those jobs fill now), as a busy node is kept while they wait: otherwise the
            # plan, made afresh for a shrinking queue each round, lets the cluster decay.
            active = sum(1 for n in nodes if n.node_id not in self.draining)
            fill = math.ceil(sum(n * share(r, node_type.shape) for r, n in waiting) - 1e-9)
            floor = min(active + min(lost, fill), self.params.bounds(self.node_types.index(node_type))[1])
            if floor > want:
                report.plan.why[node_type.name] = f"{floor - active} of {lost} lost node(s) replaced"
                want = self.target[node_type.name] = floor
        busy = {n.node_id for n in nodes if self._in_use(n)}
        ranked = keep_order(nodes, busy, self._infos, self._runtimes, self.draining)
        # While jobs wait for the type, busy nodes the plan would drain are kept (or taken back
        # from draining) as far as their room, free now or within a round, is needed to start
        # them: those whose jobs end last first (see kept_for_waiting).
        keep = ranked[:want]
        if waiting:
            need = sum(n * share(r, node_type.shape) for r, n in waiting)
            keep = keep + kept_for_waiting(keep, ranked[want:], busy, self._infos, self._runtimes, need,
                                           self.params.scaleInterval)
        kept_ids = {n.node_id for n in keep}
        for node in keep:
            if node.node_id in self.draining:  # wanted again: take it back before buying
                self.draining.discard(node.node_id)
                if self.batch is not None:
                    self.batch.unignoreNode(node.name)
        for node in ranked[want:]:
            if node.node_id not in kept_ids and node.node_id not in self.draining:
                self.draining.add(node.node_id)
                report.draining.append(node.node_id)
                if self.batch is not None:
                    self.batch.ignoreNode(node.name)
        launched = self._launch(node_type, want - len(nodes), report) if want > len(nodes) else []
        if node_type.preemptible:
            self.shortfall[node_type.name] = max(0, want - len(nodes) - len(launched))
        kept = [n.node_id for n in nodes if n.node_id not in self.draining] + launched
        self._kept.update((node_id, node_type.name) for node_id in kept)

    def _belongs(self, request: Shape, node_type: NodeType) -> bool:
        """Would the planner put a job of ``request`` on a node of this type? A preemptible job
        goes to a non-preemptible node only when no preemptible type can take it."""
        if not request.fits_in(node_type.shape):
            return False
        return (node_type.preemptible or not request.preemptible
                or not any(t.preemptible and request.fits_in(t.shape) for t in self.node_types))

    def _in_use(self, node: Node) -> bool:
        if node.state is NodeState.BOOTING:
            return False
        if self.batch is None:  # no per-node view: a node may be in use while any job runs
            return self._any_running
        return self.batch.nodeInUse(node.name)

    def _launch(self, node_type: NodeType, count: int, report: RoundReport) -> list[str]:
        if self.journal is not None:
            self.journal("launch", {"node_type": node_type.name, "count": count})
        ids = self.provisioner.add_nodes(node_type, count)
        if self.journal is not None and ids:
            self.journal("launched", {"node_type": node_type.name, "nodes": ids})
        report.launched[node_type.name] = len(ids)
        if ids:
            logger.info("launched %d %s node(s)%s", len(ids), node_type.name,
                        f" of {count} asked for" if len(ids) < count else "")
        return ids

    def _finish_draining(self, live: list[Node], report: RoundReport) -> None:
        by_id = {n.node_id: n for n in live}
        self.draining &= set(by_id)  # gone by themselves (preempted)
        done = [by_id[i] for i in sorted(self.draining) if not self._in_use(by_id[i])]
        if done:
            self._terminate(done)
            report.terminated.extend(n.node_id for n in done)

    def release_drained(self) -> list[str]:
        """Terminate the draining nodes whose last job has ended, between rounds: the caller
        calls it when jobs end, so that a drained node is not paid for until the next round.
        Plans nothing and launches nothing; returns the ids terminated."""
        if not self.draining:
            return []
        report = RoundReport(Plan({}, {}))
        self._finish_draining(self.provisioner.nodes(), report)
        return report.terminated

    def _terminate(self, nodes: list[Node]) -> None:
        self.provisioner.terminate_nodes([n.node_id for n in nodes])
        for node in nodes:
            self.draining.discard(node.node_id)
        if self.journal is not None:
            self.journal("terminate", {"nodes": [n.node_id for n in nodes]})
        logger.info("terminated %d drained node(s): %s", len(nodes), ", ".join(n.name for n in nodes))

    def live_nodes(self) -> list[Node]:
        return self.provisioner.nodes()

    def shutdown(self) -> list[str]:
        """Terminate every node of the run (its end, failure or Ctrl-C); returns their ids."""
        nodes = self.provisioner.nodes()
        if nodes:
            self._terminate(nodes)
        return [n.node_id for n in nodes]
