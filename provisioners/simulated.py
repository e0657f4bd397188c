"""A simulated cluster in virtual time: a provisioner and a scalable batch system in one.

Time is a number advanced from event to event (a discrete-event clock), never slept: a
simulated day takes milliseconds. Nodes boot after ``boot_delay`` seconds, jobs take their
runtime, preemptible nodes can vanish (each lives an exponentially distributed time of mean
``spot_lifetime`` seconds, drawn from a seeded generator, and takes its running jobs with it:
they are queued again), and the
preemptible market may hold fewer nodes than asked (``spot_capacity``). The scaler drives it
exactly as it drives a real cluster; :func:`simulate` runs a workload to the end and measures
what it cost. Used by the tests, ``flow plan`` and ``benchmarks/autoscale.py``.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from flow.batchsystems.scalable import NodeInfo, RunningJob, ScalableBatchSystem
from flow.provisioners.contract import (
    Node,
    NodeState,
    Provisioner,
    ProvisionerConfig,
    ProvisionerError,
    RecordedJob,
    WorkItem,
)
from flow.provisioners.planner import ScalerParams
from flow.provisioners.scaler import ClusterScaler, RuntimeHistory
from flow.provisioners.shape import NodeType, share

#: A job of a simulated workload (request, runtime, the jobs it waits for).
SimJob = RecordedJob


@dataclass
class _Node:
    node_id: str
    node_type: NodeType
    launched_at: float
    ready_at: float
    ended_at: float | None = None
    cores: float = 0.0  # free
    memory: int = 0
    disk: int = 0
    #: job index -> (name, started at, cores, memory)
    jobs: dict[int, tuple[str, float, float, int]] = field(default_factory=dict)
    share: float = 0.0  # of the node its jobs take (each job: cores or memory, whichever binds)
    ignored: bool = False
    was_drained: bool = False  # ignored when it was terminated


@dataclass
class SimResult:
    makespan: float
    jobs_done: int
    jobs_total: int
    node_seconds: dict[str, float]
    peak_nodes: int
    peak_by_type: dict[str, int]
    idle_fraction: float  # of the node core-seconds paid for, those no job used
    busy_terminations: int  # nodes terminated while running a job (must be 0)
    undrained_terminations: int  # nodes a scaler round terminated without draining (must be 0)
    preempted: int
    rounds: int
    #: Where the node-seconds went, per category and node type (see :data:`CATEGORIES`); the
    #: categories of a type add up to its ``node_seconds``.
    breakdown: dict[str, dict[str, float]] = field(default_factory=dict)
    launched: int = 0  # nodes launched in all


#: The categories of :attr:`SimResult.breakdown`: ``work`` (finished jobs: runtime times the
#: share of the node they took, cores or memory, whichever binds), ``lost`` (the same for runs of
#: jobs that a preempted node took with it: done again elsewhere), ``booting`` (launched, not up
#: yet), ``unused`` (room left free on a node running jobs that takes more), ``empty`` (an up node
#: running nothing and not being drained), ``draining`` (room on a node being drained while its
#: last jobs run: no new job may go there), ``drained`` (a drained node with nothing left to run,
#: not terminated yet).
CATEGORIES = ("work", "lost", "booting", "unused", "empty", "draining", "drained")


class SimulatedCluster(Provisioner, ScalableBatchSystem):
    name = "simulated"

    def __init__(self, config: ProvisionerConfig, boot_delay: float = 60.0, spot_lifetime: float | None = None,
                 spot_capacity: int | None = None, seed: int = 0) -> None:
        super().__init__(config)
        self.now = 0.0
        self.boot_delay = boot_delay
        self.spot_lifetime = spot_lifetime
        self.spot_capacity = spot_capacity
        self.random = random.Random(seed)
        self._nodes: dict[str, _Node] = {}
        self._events: list[tuple[float, int, str, str]] = []  # (time, seq, kind, node or job index)
        self._seq = 0
        self.busy_terminations = self.undrained_terminations = self.preempted = 0
        self.final = False  # set for the run's last termination (not a scaler round)
        #: The preemptible market is short (a launch got fewer nodes than asked, or a node was
        #: preempted since the last launch): preemptible jobs may then use other nodes' room.
        self.spot_short = not any(t.preemptible for t in config.node_types)

    # ---- the provisioner ----------------------------------------------------------------------
    def add_nodes(self, node_type: NodeType, count: int) -> list[str]:
        if node_type not in self.config.node_types:
            raise ProvisionerError(f"node type {node_type.name!r} is not offered")
        if node_type.preemptible and self.spot_capacity is not None:
            live = sum(1 for n in self._live() if n.node_type.preemptible)
            granted = max(0, min(count, self.spot_capacity - live))
            self.spot_short, count = granted < count, granted
        elif node_type.preemptible:
            self.spot_short = False
        ids = []
        for _ in range(count):
            node_id = f"{node_type.name}-{len(self._nodes)}"
            s = node_type.shape
            self._nodes[node_id] = _Node(node_id, node_type, self.now, self.now + self.boot_delay,
                                         cores=s.cores, memory=s.memory, disk=s.disk)
            self.push(self.now + self.boot_delay, "boot", node_id)
            if node_type.preemptible and self.spot_lifetime:
                self.push(self.now + self.random.expovariate(1.0 / self.spot_lifetime), "preempt", node_id)
            ids.append(node_id)
        return ids

    def nodes(self) -> list[Node]:
        return [Node(n.node_id, n.node_type.name, NodeState.READY if self.now >= n.ready_at else NodeState.BOOTING,
                     n.node_type.preemptible, n.launched_at) for n in self._live()]

    def terminate_nodes(self, node_ids: Iterable[str]) -> None:
        for node_id in node_ids:
            node = self._nodes.get(node_id)
            if node is None or node.ended_at is not None:
                continue
            self.busy_terminations += bool(node.jobs)
            self.undrained_terminations += not (node.ignored or self.final)
            node.was_drained = node.ignored
            node.ended_at = self.now

    @classmethod
    def cleanup_run(cls, run_id: str, config: ProvisionerConfig, recorded: Sequence[str] = ()) -> list[str]:
        return []  # its nodes live in this process only

    # ---- the scalable batch system -------------------------------------------------------------
    def getNodes(self, preemptible: bool | None = None) -> dict[str, NodeInfo]:
        out = {}
        for n in self._live():
            if self.now < n.ready_at or (preemptible is not None and n.node_type.preemptible != preemptible):
                continue
            s = n.node_type.shape
            jobs = tuple(RunningJob(name, self.now - started, cores, memory)
                         for name, started, cores, memory in n.jobs.values())
            out[n.node_id] = NodeInfo(s.cores - n.cores, s.memory - n.memory, s.cores, s.memory,
                                      s.cores - n.cores, s.memory - n.memory, len(n.jobs), jobs)
        return out

    def nodeInUse(self, nodeAddress: str) -> bool:
        node = self._nodes.get(nodeAddress)
        return bool(node and node.jobs)

    def ignoreNode(self, nodeAddress: str) -> None:
        self._nodes[nodeAddress].ignored = True

    def unignoreNode(self, nodeAddress: str) -> None:
        self._nodes[nodeAddress].ignored = False

    # ---- the clock -------------------------------------------------------------------------------
    def push(self, when: float, kind: str, what: str) -> None:
        self._seq += 1
        heapq.heappush(self._events, (when, self._seq, kind, what))

    def _live(self) -> list[_Node]:
        return [n for n in self._nodes.values() if n.ended_at is None]

    def ready_nodes(self) -> list[_Node]:
        return [n for n in self._live() if self.now >= n.ready_at and not n.ignored]

    def preempt(self, node_id: str) -> list[int]:
        """A preemptible node vanishes; returns the jobs that were running on it."""
        node = self._nodes[node_id]
        if node.ended_at is not None:
            return []
        node.ended_at = self.now
        node.was_drained = True  # not the scaler's doing
        self.preempted += 1
        self.spot_short = True
        lost, node.jobs, node.share = sorted(node.jobs), {}, 0.0
        return lost

    def node_seconds(self, end: float) -> dict[str, float]:
        out = {t.name: 0.0 for t in self.config.node_types}
        for n in self._nodes.values():
            out[n.node_type.name] += (n.ended_at if n.ended_at is not None else end) - n.launched_at
        return out

    def node_core_seconds(self, end: float) -> float:
        return sum(((n.ended_at if n.ended_at is not None else end) - n.launched_at) * n.node_type.shape.cores
                   for n in self._nodes.values())


def run_on(cluster: SimulatedCluster, scaler: ClusterScaler, jobs: Sequence[SimJob],
           max_time: float = 30 * 24 * 3600.0) -> SimResult:
    """Run ``jobs`` to the end on ``cluster`` with ``scaler`` rounds every scaleInterval."""
    return _Run(cluster, scaler, jobs).go(max_time)


def simulate(jobs: Sequence[SimJob], node_types: Sequence[NodeType], params: ScalerParams,
             history: RuntimeHistory | None = None, boot_delay: float = 60.0, spot_lifetime: float | None = None,
             spot_capacity: int | None = None, seed: int = 0) -> SimResult:
    """Run a workload on a fresh simulated cluster driven by a fresh scaler."""
    config = ProvisionerConfig("simulation", tuple(node_types))
    cluster = SimulatedCluster(config, boot_delay, spot_lifetime, spot_capacity, seed)
    return run_on(cluster, ClusterScaler(cluster, cluster, params, history), jobs)


class _Run:
    """One simulated run: the event loop, job placement and measurements."""

    def __init__(self, cluster: SimulatedCluster, scaler: ClusterScaler, jobs: Sequence[SimJob]) -> None:
        self.c, self.scaler, self.jobs = cluster, scaler, jobs
        self.waiting = [len(j.after) for j in jobs]
        self.then: list[list[int]] = [[] for _ in jobs]
        for i, job in enumerate(jobs):
            for before in job.after:
                self.then[before].append(i)
        self.queue: list[int] = []  # ready, not running
        self.issued = [0.0] * len(jobs)  # when each became ready (a preempted job keeps it)
        self.started: dict[int, tuple[float, str]] = {}
        self.done = 0
        self.core_seconds = 0.0
        self.peak = 0
        self.peak_by_type = {t.name: 0 for t in cluster.config.node_types}
        self.rounds = 0
        self.empty_rounds = 0
        self.clock = 0.0  # up to when node time is accounted for
        self.spent = {c: {t.name: 0.0 for t in cluster.config.node_types} for c in CATEGORIES}

    def go(self, max_time: float) -> SimResult:
        c = self.c
        for i, n in enumerate(self.waiting):
            if n == 0:
                self._ready(i)
        c.push(0.0, "round", "")
        while self.done < len(self.jobs) and c._events:
            when, _, kind, what = heapq.heappop(c._events)
            if when > max_time:
                break
            self._account(when)
            c.now = when
            self._handle(kind, what)
            if kind == "round":
                self.empty_rounds = 0 if c._live() or self.started else self.empty_rounds + 1
                if self.empty_rounds >= 3:
                    break  # stalled: no node to run on, and the scaler buys none
            self._place()
            self._measure()
        end = c.now
        c.final = True
        self.scaler.shutdown()
        paid = c.node_core_seconds(end)
        return SimResult(
            makespan=end, jobs_done=self.done, jobs_total=len(self.jobs), node_seconds=c.node_seconds(end),
            peak_nodes=self.peak, peak_by_type=self.peak_by_type,
            idle_fraction=1.0 - self.core_seconds / paid if paid else 0.0,
            busy_terminations=c.busy_terminations, undrained_terminations=c.undrained_terminations,
            preempted=c.preempted, rounds=self.rounds, breakdown=self.spent, launched=len(c._nodes))

    def _account(self, until: float) -> None:
        """Node time from the last event to ``until`` (nothing changes in between), by category."""
        dt, self.clock = until - self.clock, until
        if dt <= 0:
            return
        for n in self.c._live():
            name = n.node_type.name
            if self.clock - dt < n.ready_at:
                self.spent["booting"][name] += dt
            elif n.ignored and n.jobs:
                self.spent["draining"][name] += (1.0 - n.share) * dt
            elif n.ignored:
                self.spent["drained"][name] += dt
            elif n.jobs:
                self.spent["unused"][name] += (1.0 - n.share) * dt
            else:
                self.spent["empty"][name] += dt

    def _handle(self, kind: str, what: str) -> None:
        c = self.c
        if kind == "round":
            self.rounds += 1
            self.scaler.tick(self._work())
            c.push(c.now + self.scaler.params.scaleInterval, "round", "")
        elif kind == "preempt":
            node_type = c._nodes[what].node_type
            for i in c.preempt(what):
                start, _ = self.started.pop(i)
                self.spent["lost"][node_type.name] += (c.now - start) * share(self.jobs[i].request, node_type.shape)
                self.queue.append(i)
        elif kind == "end":
            index, _, node_id = what.partition(" ")
            self._finish(int(index), node_id)

    def _work(self) -> list[WorkItem]:
        now, jobs, issued = self.c.now, self.jobs, self.issued
        running = [WorkItem(jobs[i].name, jobs[i].request, now - t, issued_for=now - issued[i])
                   for i, (t, _) in self.started.items()]
        return running + [WorkItem(jobs[i].name, jobs[i].request, issued_for=now - issued[i]) for i in self.queue]

    def _finish(self, i: int, node_id: str) -> None:
        if self.started.get(i, (0.0, ""))[1] != node_id:
            return  # the end of an attempt lost with a preempted node
        del self.started[i]
        node, job = self.c._nodes[node_id], self.jobs[i]
        node.jobs.pop(i, None)
        node.cores += job.request.cores
        node.memory += job.request.memory
        node.disk += job.request.disk
        part = share(job.request, node.node_type.shape)
        node.share -= part
        self.spent["work"][node.node_type.name] += job.runtime * part
        self.core_seconds += job.request.cores * job.runtime
        self.scaler.job_finished(job.name, job.runtime)
        if node.ignored and not node.jobs:  # its last job: the leader releases it as it learns
            self.scaler.release_drained()
        self._release(i)

    def _release(self, i: int) -> None:
        """Job ``i`` is over: start what waited only for it (barriers end at once, in a loop)."""
        over = [i]
        while over:
            self.done += 1
            for nxt in self.then[over.pop()]:
                self.waiting[nxt] -= 1
                if self.waiting[nxt] == 0:
                    self.issued[nxt] = self.c.now
                    (over if self.jobs[nxt].is_barrier else self.queue).append(nxt)

    def _ready(self, i: int) -> None:
        if self.jobs[i].is_barrier:
            self._release(i)
        else:
            self.queue.append(i)

    def _place(self) -> None:
        """Each queued job, in queue order (non-preemptible jobs first), on the ready node not
        draining that holds it and is the most allocated (fewest free cores, then memory): the
        best fit of Slurm's select/cons_tres, which packs a node before starting on an emptier
        one (first fit in launch order, as before, left the batch system's choice to the order
        nodes came up in). Preemptible jobs run on preemptible nodes first (as a lower Slurm
        node weight) and, only while the preemptible market is short (what
        --preemptibleCompensation buys non-preemptible nodes for), on the room left on the
        others."""
        nodes = self.c.ready_nodes()
        if not nodes or not self.queue:
            return
        spot_ok = [n for n in nodes if self.c.spot_short or n.node_type.preemptible]
        jobs = self.jobs
        left = []
        for i in [i for i in self.queue if not jobs[i].request.preemptible] + \
                 [i for i in self.queue if jobs[i].request.preemptible]:
            r = jobs[i].request
            fits = [n for n in (spot_ok if r.preemptible else nodes) if n.cores >= r.cores - 1e-9
                    and n.memory >= r.memory and n.disk >= r.disk and (r.preemptible or not n.node_type.preemptible)]
            node = min(fits, key=lambda n: (not n.node_type.preemptible, n.cores, n.memory), default=None)
            if node is None:
                left.append(i)
                continue
            node.cores -= r.cores
            node.memory -= r.memory
            node.disk -= r.disk
            node.share += share(r, node.node_type.shape)
            node.jobs[i] = (jobs[i].name, self.c.now, r.cores, r.memory)
            self.started[i] = (self.c.now, node.node_id)
            self.c.push(self.c.now + jobs[i].runtime, "end", f"{i} {node.node_id}")
        kept = set(left)
        self.queue = [i for i in self.queue if i in kept]  # first come, first served

    def _measure(self) -> None:
        live = self.c._live()
        self.peak = max(self.peak, len(live))
        for t in self.peak_by_type:
            self.peak_by_type[t] = max(self.peak_by_type[t], sum(1 for n in live if n.node_type.name == t))
