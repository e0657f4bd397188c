"""The cluster scaler: each round, plan the cluster for the work in hand and make it so.

Growing: launch the missing nodes (journalled first, see ``journal``). Shrinking: only by
draining, and a busy node is not drained while a queued job could run on it (its free room
would stay idle while the job waits: shrinking then saves no node time). A node to remove is first ignored by the batch system (no new job goes there), and
terminated once nothing runs on it; idle nodes are chosen first, then booting ones, then the
least useful (a node running a job is kept in preference to an idle one). A node that runs a job
is never terminated by a round. The scaler takes its clock
from its caller (``tick(jobs, now)``), so it runs the same in the leader and in virtual time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from flow.batchsystems.scalable import ScalableBatchSystem
from flow.provisioners.contract import Node, NodeState, Provisioner, Scaler, WorkItem
from flow.provisioners.planner import MIN_WALLTIME, Plan, PlanJob, ScalerParams, plan
from flow.provisioners.shape import NodeType, Shape

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
        """The name's mean; else all jobs' mean; else ``default`` (the scaler uses targetTime:
        a job nobody has seen finish is assumed to need its own slot for the whole horizon)."""
        total, n = self.totals.get(name, self.overall)
        return total / n if n else default


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
        self._any_running = False
        self._queued: set[Shape] = set()

    def job_finished(self, name: str, seconds: float) -> None:
        self.history.record(name, seconds)

    # ---- one round ------------------------------------------------------------------------------
    def tick(self, work: Sequence[WorkItem]) -> RoundReport:
        live = self.provisioner.nodes()
        self._any_running = any(w.running_for is not None for w in work)
        self._queued = {w.request for w in work if w.running_for is None}
        deficits = {t.name: max(0, self.target.get(t.name, 0) - self._count(live, t.name))
                    for t in self.node_types if t.preemptible}
        result = plan(self.node_types, self._plan_jobs(work), self.params, self.target, deficits)
        report = RoundReport(result)
        self.target = dict(result.counts)
        for node_type in self.node_types:
            self._resize(node_type, [n for n in live if n.node_type == node_type.name], report)
        self._finish_draining(live, report)
        return report

    def _plan_jobs(self, work: Sequence[WorkItem]) -> list[PlanJob]:
        jobs = []
        for item in work:
            runtime = self.history.estimate(item.name, self.params.targetTime)
            if item.service:  # as Toil: a service holds its room past the horizon
                runtime = self.params.targetTime
            elif item.running_for is not None:  # what is left of it, as far as we know
                runtime = max(runtime - item.running_for, MIN_WALLTIME)
            r = item.request
            jobs.append(PlanJob(item.name, Shape(runtime, r.memory, r.cores, r.disk, r.preemptible)))
        return jobs

    def _count(self, nodes: Iterable[Node], type_name: str) -> int:
        return sum(1 for n in nodes if n.node_type == type_name and n.node_id not in self.draining)

    def _resize(self, node_type: NodeType, nodes: list[Node], report: RoundReport) -> None:
        """Keep the ``want`` most useful nodes (busy first, then ready, then those not draining,
        then the oldest), drain the others; launch what is missing."""
        want = self.target[node_type.name]
        ranked = sorted(nodes, key=self._keep_rank)
        for node in ranked[:want]:
            if node.node_id in self.draining:  # wanted again: take it back before buying
                self.draining.discard(node.node_id)
                if self.batch is not None:
                    self.batch.unignoreNode(node.name)
        # A busy node stays undrained while a queued job could use it: draining it would leave
        # its free room idle while that job waits, saving no node time.
        busy_is_useful = any(r.fits_in(node_type.shape) for r in self._queued)
        for node in ranked[want:]:
            if busy_is_useful and node.node_id not in self.draining and self._in_use(node):
                continue
            if node.node_id not in self.draining:
                self.draining.add(node.node_id)
                report.draining.append(node.node_id)
                if self.batch is not None:
                    self.batch.ignoreNode(node.name)
        if want > len(nodes):
            self._launch(node_type, want - len(nodes), report)

    def _keep_rank(self, node: Node) -> tuple[int, int, int, float]:
        return (0 if self._in_use(node) else 1, 0 if node.state is NodeState.READY else 1,
                1 if node.node_id in self.draining else 0, node.launched_at)

    def _in_use(self, node: Node) -> bool:
        if node.state is NodeState.BOOTING:
            return False
        if self.batch is None:  # no per-node view: a node may be in use while any job runs
            return self._any_running
        return self.batch.nodeInUse(node.name)

    def _launch(self, node_type: NodeType, count: int, report: RoundReport) -> None:
        if self.journal is not None:
            self.journal("launch", {"node_type": node_type.name, "count": count})
        ids = self.provisioner.add_nodes(node_type, count)
        if self.journal is not None and ids:
            self.journal("launched", {"node_type": node_type.name, "nodes": ids})
        report.launched[node_type.name] = len(ids)
        if ids:
            logger.info("launched %d %s node(s)%s", len(ids), node_type.name,
                        f" of {count} asked for" if len(ids) < count else "")

    def _finish_draining(self, live: list[Node], report: RoundReport) -> None:
        by_id = {n.node_id: n for n in live}
        self.draining &= set(by_id)  # gone by themselves (preempted)
        done = [by_id[i] for i in sorted(self.draining) if not self._in_use(by_id[i])]
        if done:
            self._terminate(done)
            report.terminated.extend(n.node_id for n in done)

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
