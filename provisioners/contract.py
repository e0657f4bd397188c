"""The provisioner contract: buy, list and give back machines for one run.

A provisioner launches nodes of the node types it offers, tagged with the run's id, lists them
with their state, and terminates them. It does not run jobs: the batch system does, and a
:class:`~flow.batchsystems.scalable.ScalableBatchSystem` tells the scaler how busy each node is,
by its address (``Node.address``).

Durability: the core records the provisioner's name and the run id in the job store before
the first launch, and every launch is tagged with the run id, so that after a kill -9 of the
leader ``flow clean`` and ``--restart`` find what it left with :meth:`Provisioner.cleanup_run`
(the same pattern as a batch system's ``cancel_run``); the ids of each launch are recorded as
soon as it returns, and passed to ``cleanup_run`` too.

A site provisioner (:mod:`flow.provisioners.slurm`, elastic Slurm) maps these methods to the
site's commands: ``add_nodes`` creates nodes of a type (with its features) and returns their
names, ``nodes`` reads their state (booting until the scheduler reports them up),
``terminate_nodes`` drains, deletes and powers them down; the batch system's ``ignoreNode``
drains a node (``scontrol update nodename=X state=DRAIN``) before the scaler terminates it, and
``nodeInUse`` says whether jobs still run there.
"""

from __future__ import annotations

import abc
import enum
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

from flow.provisioners.shape import NodeType, Shape


class ProvisionerError(Exception):
    """The provisioner failed (a site command, the cloud's API, its state)."""


class NodeState(enum.Enum):
    BOOTING = "booting"  # launched, cannot run jobs yet
    READY = "ready"  # running jobs can be placed on it
    GONE = "gone"  # terminated, preempted or failed


@dataclass(frozen=True)
class Node:
    node_id: str  # the provisioner's id (what terminate_nodes takes)
    node_type: str  # a NodeType.name
    state: NodeState
    preemptible: bool
    launched_at: float  # seconds, on the provisioner's clock
    address: str = ""  # how the batch system names it (defaults to node_id)

    @property
    def name(self) -> str:
        return self.address or self.node_id


@dataclass(frozen=True)
class ProvisionerConfig:
    run_id: str  # the run's stable id (the same across --restart); every node is tagged with it
    node_types: tuple[NodeType, ...]
    extra: Mapping[str, object] = field(default_factory=dict)  # plugin options by name


@dataclass(frozen=True)
class WorkItem:
    """A job the leader has issued: its name (runtimes are learnt per name), its request
    (``wallTime`` unused), once it runs for how long it has been running, and whether it is a
    service."""

    name: str
    request: Shape
    running_for: float | None = None
    service: bool = False  # runs until the workflow stops it: holds its room throughout
    issued_for: float = 0.0  # seconds since the leader issued it (queued or running)


@dataclass(frozen=True)
class RecordedJob:
    """A job of a workload to replay: its request (``wallTime`` unused), its runtime, and the
    indexes of the jobs it runs after. A job asking for nothing that takes no time is a
    barrier: it ends as soon as it may start, on no node."""

    name: str
    request: Shape
    runtime: float
    after: tuple[int, ...] = ()

    @property
    def is_barrier(self) -> bool:
        r = self.request
        return self.runtime == 0 and r.cores == 0 and r.memory == 0 and r.disk == 0


class Scaler(abc.ABC):
    """What the core drives: a scaler round, completions, the end of the run."""

    @abc.abstractmethod
    def tick(self, work: Sequence[WorkItem]) -> object:
        """One round: plan for ``work`` (every issued job), launch, drain, terminate."""

    @abc.abstractmethod
    def job_finished(self, name: str, seconds: float) -> None:
        """A job of this name ran for ``seconds`` (the runtime history the planner uses)."""

    def release_drained(self) -> list[str]:
        """Between rounds, when jobs have ended: terminate the drained nodes nothing runs on
        any more (so they are not paid for until the next round); returns their ids."""
        return []

    @abc.abstractmethod
    def live_nodes(self) -> list[Node]:
        """The run's nodes now (for the core's record of node-hours)."""

    @abc.abstractmethod
    def shutdown(self) -> list[str]:
        """Terminate every node of the run; returns their ids."""


class Provisioner(abc.ABC):
    """About six methods; implementations are found through ``flow.provisioners.registry``."""

    name: ClassVar[str] = ""

    #: The batch systems (by name) this provisioner's nodes serve; empty: any.
    batch_systems: ClassVar[tuple[str, ...]] = ()

    def __init__(self, config: ProvisionerConfig) -> None:
        self.config = config
        #: Set by the scaler: a provisioner that names its nodes before it starts them calls it
        #: with (node type name, node ids) first, so that the job store holds them before they
        #: exist (a kill -9 of the leader mid-launch then leaves nothing ``flow clean`` misses).
        self.before_launch: Callable[[str, list[str]], None] | None = None

    def node_types(self) -> list[NodeType]:
        """The node types this provisioner offers for the run (by default, those configured)."""
        return list(self.config.node_types)

    @abc.abstractmethod
    def add_nodes(self, node_type: NodeType, count: int) -> list[str]:
        """Launch ``count`` nodes of ``node_type`` tagged with the run id; return their ids. May
        launch fewer (e.g. no preemptible capacity); raises ProvisionerError when it fails."""

    @abc.abstractmethod
    def nodes(self) -> list[Node]:
        """This run's nodes that are not gone, with their state."""

    @abc.abstractmethod
    def terminate_nodes(self, node_ids: Iterable[str]) -> None:
        """Terminate these nodes (unknown or gone ids are ignored). The scaler calls this only
        for drained, idle nodes, and at the end of the run for all of them."""

    def close(self) -> None:
        """Release what the provisioner holds (not the nodes: the core terminates those first)."""
        return None

    @classmethod
    def settings(cls, options: Mapping[str, object]) -> dict[str, str]:
        """What of the run's options (and environment) this provisioner needs to find the run's
        nodes again; the core records it with the run and gives it back as ``config.extra`` (to
        ``cleanup_run`` as well). The default: nothing."""
        return {}

    @classmethod
    @abc.abstractmethod
    def cleanup_run(cls, run_id: str, config: ProvisionerConfig, recorded: Sequence[str] = ()) -> list[str]:
        """Terminate every node of run ``run_id`` that a leader which is gone left; return their
        ids. For ``flow clean`` and ``--restart``. ``recorded``: the ids the job store holds for
        the run and not as terminated (each launch's ids are written as soon as it returns); a
        provisioner that cannot tag its nodes finds them by these."""


class ScalerConfigError(ValueError):
    """Autoscaling options that cannot work (one line, naming the option)."""
