"""Slurm's nodes as a cluster scaler sees them, and the Slurm batch system's scalable side.

One ``scontrol show nodes -o`` call (through :func:`flow.batchsystems.hpc.run_command`, like
every Slurm command) gives every node's CPUs and memory, total and allocated, its state and
features: :func:`read_nodes`. :class:`ScalableSlurm` is the base of the Slurm batch system: it
implements :class:`~flow.batchsystems.scalable.ScalableBatchSystem` with it (``ignoreNode``
drains a node with ``scontrol update NodeName=X State=DRAIN``, ``unignoreNode`` resumes it).

When a run is autoscaled by the ``slurm`` provisioner (option ``provisioner == "slurm"``), its
nodes carry the feature :func:`run_feature` and every job is submitted with
``--constraint=<that feature>``, so that Slurm places the run's jobs only on the run's own nodes
(the scaler's picture and Slurm's placement agree; two runs never share nodes). Slurm refuses
such a job while no node of the run exists yet (``Invalid feature specification``; with
``EnforcePartLimits``, ``More processors requested than permitted`` on an empty partition): the
job is then kept back by flow (it counts as queued, for the leader and the scaler) and submitted
again at each poll until Slurm takes it, for at most :attr:`ScalableSlurm.defer_limit` seconds.
A job whose node failed or was removed (``NODE_FAIL``) is reported LOST, and the leader issues
it again without counting a retry.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, field, replace

from flow.batchsystems.abstract import BatchConfig, BatchJob, ExitReason, JobExit, SubmissionError
from flow.batchsystems.hpc import (
    CommandError,
    CompletedCommand,
    HPCBatchSystem,
    JobStatus,
    Phase,
    run_command,
)
from flow.batchsystems.scalable import NodeInfo, RunningJob, ScalableBatchSystem

logger = logging.getLogger(__name__)

MiB = 1024**2
#: sbatch's words for a job that no node of the run can take yet (none has registered).
NO_NODE_YET = (
    "invalid feature specification",
    "more processors requested than permitted",
    "requested node configuration is not available",
    "memory specification can not be satisfied",
    "node count specification invalid",
)
_FIELD = re.compile(r"(?:^|\s)(NodeName|CPUAlloc|CPUTot|RealMemory|AllocMem|State|AvailableFeatures)=(\S*)")
#: State flags of a node that cannot run jobs any more (its machine is gone or failing).
DOWN_FLAGS = frozenset({"DOWN", "FAIL", "NOT_RESPONDING", "POWERED_DOWN", "POWERING_DOWN", "INVAL"})


def run_letters(run_id: str) -> str:
    """Eight lower-case letters naming a run (from the first eight hex digits of its id, each
    0-f as a-p): node names and features allow letters where a run id has digits."""
    digits = re.sub(r"[^0-9a-f]", "", run_id.lower())[:8].ljust(8, "0")
    return "".join(chr(ord("a") + int(c, 16)) for c in digits)


def run_feature(run_id: str) -> str:
    """The Slurm node feature of the run's nodes, and its jobs' constraint."""
    return "flow" + run_letters(run_id)


@dataclass(frozen=True)
class SlurmNode:
    """One node as ``scontrol show nodes -o`` shows it (memory in MiB)."""

    name: str
    state: frozenset[str]  # IDLE, ALLOCATED, MIXED, DRAIN, DOWN, DYNAMIC_NORM, ...
    cpus: int
    cpus_used: int
    memory_mb: int
    memory_used_mb: int
    features: tuple[str, ...] = field(default=())

    @property
    def down(self) -> bool:
        return bool(self.state & DOWN_FLAGS)

    @property
    def drained(self) -> bool:
        return bool(self.state & {"DRAIN", "DRAINED", "DRAINING"})

    @property
    def busy(self) -> bool:
        """Does a job hold part of it (running, or completing)?"""
        return self.cpus_used > 0 or self.memory_used_mb > 0 or bool(
            self.state & {"ALLOCATED", "MIXED", "COMPLETING"})


def nodes_command() -> list[str]:
    return ["scontrol", "show", "nodes", "-o"]


def parse_nodes(done: CompletedCommand) -> dict[str, SlurmNode]:
    """Nodes by name from ``scontrol show nodes -o`` (one line per node)."""
    if not done.ok:
        if "no nodes in the system" in done.words.lower():
            return {}
        raise CommandError(done.argv, done.words, done.returncode)
    nodes = {}
    for line in done.stdout.splitlines():
        fields = dict(_FIELD.findall(line))
        name = fields.get("NodeName")
        if not name:
            continue
        features = fields.get("AvailableFeatures", "")
        nodes[name] = SlurmNode(
            name, frozenset(w.upper().rstrip("*~#!%$@^-") for w in fields.get("State", "").split("+") if w),
            _number(fields.get("CPUTot")), _number(fields.get("CPUAlloc")),
            _number(fields.get("RealMemory")), _number(fields.get("AllocMem")),
            tuple(f for f in features.split(",") if f and features != "(null)"),
        )
    return nodes


def _number(text: str | None) -> int:
    return int(text) if text and text.isdigit() else 0


def read_nodes() -> dict[str, SlurmNode]:
    """Every node Slurm knows, by name: one ``scontrol`` call. Raises CommandError."""
    return parse_nodes(run_command(nodes_command()))


def set_state_command(name: str, state: str, reason: str = "") -> list[str]:
    """``scontrol update NodeName=X State=DRAIN|RESUME|DOWN [Reason=...]``."""
    argv = ["scontrol", "update", f"NodeName={name}", f"State={state}"]
    return argv + ([f"Reason={reason}"] if reason else [])


def delete_command(name: str) -> list[str]:
    return ["scontrol", "delete", f"NodeName={name}"]


@dataclass
class _Deferred:
    """A job Slurm would not take yet: submitted again at each poll."""

    script: str
    output: str
    shape: tuple[float, int]  # (cores, memory): jobs of a refused shape wait for the next poll
    since: float
    words: str


class ScalableSlurm(HPCBatchSystem, ScalableBatchSystem):
    """The scalable side of the Slurm batch system (see the module docstring)."""

    node_cache_age = 1.0  # seconds nodeInUse may reuse the last scontrol answer
    defer_limit = 1800.0  # seconds a job may wait for a node of the run before it fails

    def __init__(self, config: BatchConfig) -> None:
        super().__init__(config)
        self.elastic_feature: str | None = None  # set by begin_run for a run of the slurm provisioner
        self._nodes: tuple[float, dict[str, SlurmNode]] = (0.0, {})
        self._deferred: dict[str, _Deferred] = {}  # placeholder scheduler id -> job
        #: scheduler id -> node, of the jobs the last status poll saw running (squeue's %N):
        #: replaced whole at each poll, read by getNodes on the scaler's thread.
        self._job_nodes: dict[str, str] = {}
        self._deferrals = 0

    # -- ScalableBatchSystem -----------------------------------------------------------------

    def getNodes(self, preemptible: bool | None = None) -> dict[str, NodeInfo]:
        if preemptible:
            return {}  # Slurm has no preemptible nodes of its own
        nodes = read_nodes()
        self._nodes = (time.monotonic(), nodes)
        jobs = self.jobs_by_node()
        # scontrol does not count jobs per node: ``workers`` is the run's jobs there (from the
        # last status poll), at least 1 for a node that runs any.
        return {n.name: NodeInfo(float(n.cpus_used), n.memory_used_mb * MiB, float(n.cpus), n.memory_mb * MiB,
                                 float(n.cpus_used), n.memory_used_mb * MiB,
                                 max(len(jobs.get(n.name, ())), 1 if n.busy else 0), tuple(jobs.get(n.name, ())))
                for n in nodes.values()}

    def jobs_by_node(self) -> dict[str, list[RunningJob]]:
        """The run's running jobs per node, as the last status poll saw them (no command)."""
        where, now = self._job_nodes, time.monotonic()
        out: dict[str, list[RunningJob]] = {}
        for tracked in list(self._jobs.values()):  # a copy: the leader's thread polls meanwhile
            node = where.get(tracked.scheduler_id)
            if node and tracked.started is not None:
                job = tracked.job
                out.setdefault(node, []).append(RunningJob(job.name, now - tracked.started, float(job.cores), job.memory))
        return out

    def nodeInUse(self, nodeAddress: str) -> bool:
        taken, nodes = self._nodes
        if time.monotonic() - taken > self.node_cache_age:
            self.getNodes()
            nodes = self._nodes[1]
        node = nodes.get(nodeAddress)
        return node is not None and node.busy

    def ignoreNode(self, nodeAddress: str) -> None:
        self._set_state(nodeAddress, "DRAIN", "flow: the cluster scaler is removing it")

    def unignoreNode(self, nodeAddress: str) -> None:
        self._set_state(nodeAddress, "RESUME")

    def _set_state(self, name: str, state: str, reason: str = "") -> None:
        done = run_command(set_state_command(name, state, reason))
        if not done.ok and "invalid node name" not in done.words.lower():
            raise CommandError(done.argv, done.words, done.returncode)

    # -- the run's constraint and deferred submission ------------------------------------------

    def begin_run(self, run_id: str, restart: bool) -> None:
        super().begin_run(run_id, restart)
        if str(self.config.extra.get("provisioner") or "").lower() == "slurm":
            self.elastic_feature = run_feature(run_id)

    def elastic_args(self) -> list[str]:
        """sbatch arguments placing the job on the run's own nodes (none when not autoscaled)."""
        return [f"--constraint={self.elastic_feature}"] if self.elastic_feature else []

    def _submit(self, job: BatchJob, script: str, output: str) -> str:
        if self.elastic_feature is None:
            return super()._submit(job, script, output)
        shape = (float(job.cores), int(job.memory))
        waiting = next((d for d in self._deferred.values() if d.shape == shape), None)
        if waiting is None:  # else one of its shape was refused: it waits too, in order
            try:
                return super()._submit(job, script, output)
            except SubmissionError as exc:
                if not any(words in exc.detail.lower() for words in NO_NODE_YET):
                    raise
                words = exc.detail
        else:
            words = waiting.words
        self._deferrals += 1
        placeholder = f"deferred-{self._deferrals}"
        self._deferred[placeholder] = _Deferred(script, output, shape, time.monotonic(), words)
        return placeholder

    def _poll(self) -> tuple[list[JobExit], bool]:
        submitted = self._submit_deferred() if self._deferred else False
        exits, changed = super()._poll()
        exits += self._expire_deferred()
        # While jobs wait for nodes, poll at the shortest interval: a node may come any time.
        return exits, changed or submitted or bool(self._deferred)

    def _submit_deferred(self) -> bool:
        refused: set[tuple[float, int]] = set()
        by_scheduler_id = {t.scheduler_id: t for t in self._jobs.values()}
        submitted = False
        for placeholder, deferred in list(self._deferred.items()):
            tracked = by_scheduler_id.get(placeholder)
            if tracked is None:
                del self._deferred[placeholder]
                continue
            if deferred.shape in refused:
                continue
            try:
                tracked.scheduler_id = HPCBatchSystem._submit(self, tracked.job, deferred.script, deferred.output)
            except SubmissionError as exc:
                if not any(words in exc.detail.lower() for words in NO_NODE_YET):
                    tracked.scheduler_id = placeholder
                    deferred.words = exc.detail
                    deferred.since = float("-inf")  # refused for good: fails now
                    continue
                refused.add(deferred.shape)
                deferred.words = exc.detail
                continue
            del self._deferred[placeholder]
            submitted = True
            logger.debug("%s took the deferred job %s as %s", self.scheduler, tracked.job.name,
                         tracked.scheduler_id)
        return submitted

    def _expire_deferred(self) -> list[JobExit]:
        now = time.monotonic()
        exits = []
        for batch_id, tracked in list(self._jobs.items()):
            deferred = self._deferred.get(tracked.scheduler_id)
            if deferred is None or now - deferred.since <= self.defer_limit:
                continue
            del self._deferred[tracked.scheduler_id]
            del self._jobs[batch_id]
            waited = "" if deferred.since == float("-inf") else f" for {now - deferred.since:.0f} s"
            exits.append(JobExit(batch_id, 1, ExitReason.FAILED, None,
                                 f"{self.scheduler} refused the job{waited}: {deferred.words}"))
        return exits

    def _statuses(self, scheduler_ids: list[str]) -> dict[str, JobStatus]:
        real = [s for s in scheduler_ids if s not in self._deferred]
        statuses = super()._statuses(real) if real else {}
        tracked, asked = {t.scheduler_id for t in self._jobs.values()}, set(real)
        where = {s: node for s, node in self._job_nodes.items() if s in tracked and s not in asked}
        where.update((s, status.node) for s, status in statuses.items()
                     if status.node and status.phase is Phase.RUNNING)
        self._job_nodes = where
        for s in scheduler_ids:
            if s in self._deferred:
                statuses[s] = JobStatus(s, Phase.QUEUED, "DEFERRED", note="waiting for a node of the run")
        return statuses

    def _cancel_and_await(self, scheduler_ids: list[str]) -> None:
        real = [s for s in scheduler_ids if self._deferred.pop(s, None) is None]
        if real:
            super()._cancel_and_await(real)

    def _report(self, batch_id: int, status: JobStatus) -> JobExit:
        exit_ = super()._report(batch_id, status)
        if self.elastic_feature is not None and exit_.reason is ExitReason.NODE_FAIL:
            # Its node failed or was removed (not the job's fault): the leader issues it again.
            return replace(exit_, reason=ExitReason.LOST, message=f"{exit_.message}: its node was lost")
        return exit_
