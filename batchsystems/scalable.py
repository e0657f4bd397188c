"""The scalable extension of a batch system: what a cluster scaler needs to know about nodes.

A batch system that runs jobs on nodes it can name (a cluster) implements
:class:`ScalableBatchSystem` as well as :class:`~flow.batchsystems.abstract.BatchSystem`, with
Toil's method names. The scaler reads ``getNodes`` to see how busy each node is, and removes a
node only after ``ignoreNode`` (no new job is placed there: the node drains) and once
``nodeInUse`` is False. Batch systems never import ``flow.provisioners``: node types and
provisioners are the scaler's business, node addresses are the common language.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass


@dataclass(frozen=True)
class RunningJob:
    """A job running on a node: its name as issued (``BatchJob.name``: the scaler learns
    runtimes per name), the seconds it has run so far, and its request (what its end frees)."""

    name: str
    seconds: float
    cores: float = 0.0
    memory: int = 0  # bytes


@dataclass(frozen=True)
class NodeInfo:
    """One node as the batch system sees it (Toil's ``NodeInfo``, plus the jobs running there:
    the scaler drains first the nodes whose jobs are expected to end soonest)."""

    coresUsed: float  # cores busy now (measured where the batch system can, else requested)
    memoryUsed: int  # bytes in use now
    coresTotal: float
    memoryTotal: int
    requestedCores: float  # sum of the requests of the jobs running there
    requestedMemory: int
    workers: int  # jobs running there
    #: The jobs running there, where the batch system knows them (empty: it cannot tell).
    jobs: tuple[RunningJob, ...] = ()


class ScalableBatchSystem(abc.ABC):
    """Mix-in for batch systems whose nodes a cluster scaler may add and remove."""

    @abc.abstractmethod
    def getNodes(self, preemptible: bool | None = None) -> dict[str, NodeInfo]:
        """Nodes by address (all, or only the preemptible or non-preemptible ones)."""

    @abc.abstractmethod
    def nodeInUse(self, nodeAddress: str) -> bool:
        """Does any job run on this node now?"""

    @abc.abstractmethod
    def ignoreNode(self, nodeAddress: str) -> None:
        """Place no new job on this node (it drains); jobs running there carry on."""

    @abc.abstractmethod
    def unignoreNode(self, nodeAddress: str) -> None:
        """Place jobs on this node again."""
