"""Node and job shapes (Toil's ``Shape``) and the ``--nodeTypes`` syntax.

A node type is written ``NAME:CORES/MEMORY[/DISK][:preemptible][:cost=PRICE]``, e.g.
``small:2/8G/100G``, ``big:16/64G:preemptible:cost=1.2``. Several are separated by commas (as
Toil's ``--nodeTypes``): ``small:2/8G,big:16/64G``. Sizes are human sizes (``8G`` = 8 GiB, as
everywhere in flow); a node type without a disk is not limited by disk. ``cost`` is a relative
price per node-hour; without one a type costs ``cores + memory in GiB / 4`` (clouds price a core
with about 4 GiB alike), so the planner's "cheapest type that fits" is the smallest one.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from flow.core.resources import parse_size

GiB = 1024**3
#: The disk of a node type that names none: no limit.
UNLIMITED_DISK = 2**62


class NodeTypeError(ValueError):
    """A malformed ``--nodeTypes`` entry (or ``--minNodes``/``--maxNodes`` list)."""


@dataclass(frozen=True, order=True)
class Shape:
    """Resources over time, with Toil's field names: a job's request and expected runtime, or
    a node's capacity over the planning horizon (``wallTime``, seconds)."""

    wallTime: float
    memory: int
    cores: float
    disk: int
    preemptible: bool = False

    def fits_in(self, other: Shape) -> bool:
        """Could a job of this shape ever run on a node of shape ``other``?"""
        return (self.cores <= other.cores and self.memory <= other.memory and self.disk <= other.disk
                and (self.preemptible or not other.preemptible))

    def describe(self) -> str:
        disk = "" if self.disk >= UNLIMITED_DISK else f", {_size(self.disk)} disk"
        kind = ", preemptible" if self.preemptible else ""
        return f"{self.cores:g} cores, {_size(self.memory)} memory{disk}{kind}"


def share(request: Shape, node: Shape) -> float:
    """The fraction of a node of shape ``node`` a job of ``request`` takes: its cores or its
    memory, whichever is the larger part (the ideal packing's measure of a job)."""
    return max(request.cores / node.cores, request.memory / node.memory)


@dataclass(frozen=True)
class NodeType:
    """A kind of machine the provisioner can buy."""

    name: str
    shape: Shape  # wallTime unused (0): the planner's horizon is --targetTime
    cost: float

    @property
    def preemptible(self) -> bool:
        return self.shape.preemptible

    def describe(self) -> str:
        return f"{self.name} ({self.shape.describe()}, cost {self.cost:g}/h)"


_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
SYNTAX = "NAME:CORES/MEMORY[/DISK][:preemptible][:cost=PRICE], e.g. small:2/8G/100G"


def _size(n: int) -> str:
    for unit, factor in (("T", 1024**4), ("G", GiB), ("M", 1024**2), ("K", 1024)):
        if n >= factor:
            return f"{n / factor:g}{unit}"
    return f"{n}B"


def default_cost(cores: float, memory: int) -> float:
    return cores + memory / GiB / 4


def parse_node_type(text: str) -> NodeType:
    """One node type; NodeTypeError (one line, naming the entry) if it is malformed."""
    name, _, rest = text.strip().partition(":")
    resources, *flags = rest.split(":") if rest else [""]

    def bad(why: str) -> NodeTypeError:
        return NodeTypeError(f"node type {text.strip()!r}: {why}; write {SYNTAX}")

    if not _NAME.match(name):
        raise bad("it needs a name of letters, digits, '.', '_' or '-'")
    parts = resources.split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise bad("it needs CORES/MEMORY or CORES/MEMORY/DISK after the name")
    try:
        cores = float(parts[0])
        memory = parse_size(parts[1], "memory")
        disk = parse_size(parts[2], "disk") if len(parts) == 3 else UNLIMITED_DISK
    except ValueError as exc:
        raise bad(str(exc)) from None
    if not (math.isfinite(cores) and cores > 0) or not memory or not disk:
        raise bad("cores, memory and disk must be more than zero")
    preemptible, cost = False, None
    for flag in flags:
        key, eq, value = flag.partition("=")
        if flag == "preemptible":
            preemptible = True
        elif key == "cost" and eq:
            try:
                cost = float(value)
            except ValueError:
                raise bad(f"cost {value!r} is not a number") from None
            if not (math.isfinite(cost) and cost >= 0):
                raise bad("cost must be zero or more")
        else:
            raise bad(f"unknown flag {flag!r}")
    shape = Shape(0.0, int(memory), cores, int(disk), preemptible)
    return NodeType(name, shape, default_cost(cores, int(memory)) if cost is None else cost)


def parse_node_types(text: str) -> list[NodeType]:
    """A comma-separated ``--nodeTypes`` list; names must be distinct."""
    types = [parse_node_type(part) for part in text.split(",") if part.strip()]
    if not types:
        raise NodeTypeError(f"--nodeTypes {text!r} names no node type; write {SYNTAX}")
    names = [t.name for t in types]
    for name in names:
        if names.count(name) > 1:
            raise NodeTypeError(f"--nodeTypes names the node type {name!r} twice")
    return types


def parse_counts(text: str | Sequence[int], n_types: int, what: str) -> list[int]:
    """``--minNodes``/``--maxNodes``: a comma-separated list, one count per node type in order;
    a shorter list is expanded with its last count (so ``--maxNodes 10`` caps every type)."""
    if isinstance(text, str):
        try:
            counts = [int(part) for part in text.split(",")]
        except ValueError:
            raise NodeTypeError(f"{what} {text!r} is not a comma-separated list of node counts") from None
    else:
        counts = list(text)
    if not counts or any(c < 0 for c in counts):
        raise NodeTypeError(f"{what} {text!r} must list counts of zero or more")
    if len(counts) > n_types:
        raise NodeTypeError(f"{what} {text!r} lists {len(counts)} counts for {n_types} node type(s)")
    return counts + [counts[-1]] * (n_types - len(counts))
