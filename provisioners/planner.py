"""The pure planner: how many nodes of each type the work in hand needs.

No I/O and no clock: the same inputs always give the same plan, which is what lets the scaler be
tested in virtual time and ``flow plan`` predict a run.

Method (Toil's time-sliced bin packing, done per group of identical jobs):

1. Jobs with the same shape (requests and expected runtime) form a group; groups are packed
   largest first (runtime times the biggest share of a node they take).
2. Each node is a bin of its type's cores, memory and disk over ``targetTime`` seconds, kept as
   time slices of free capacity. A job takes its requests over ``wallTime`` seconds (rounded,
   see :func:`planned_runtime`) starting
   at the earliest slice where they fit (a job longer than ``targetTime`` holds its requests
   over the whole horizon). Jobs go first into nodes already opened (first fit), then into new
   nodes of the type that is cheapest per job placed (so the smallest type that fits when costs
   scale with size), preemptible types first for preemptible jobs. When that type is at
   ``--maxNodes`` the rest of the group waits (it does not spill to a dearer type).
3. Preemptible nodes the cluster asked for and could not get (``deficits``: the market was short;
   not nodes preempted, which the scaler simply launches again) are covered by
   ``preemptibleCompensation`` times as many nodes of the non-preemptible type of the same shape
   (or the cheapest that is at least as large).
4. ``betaInertia`` damps the change: the count moves from the previous one to
   ``beta * previous + (1 - beta) * estimate``, rounded towards the estimate (so it always moves
   when they differ); then ``--minNodes``/``--maxNodes`` bound it.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from flow.provisioners.shape import NodeType, Shape

EPS = 1e-9
#: Shortest runtime a job is planned with (a job needs a node however short it is).
MIN_WALLTIME = 1.0


class UnplaceableJobError(ValueError):
    """A job asks for more than any node type has."""

    def __init__(self, job_name: str, shape: Shape, node_types: Sequence[NodeType]) -> None:
        offered = "; ".join(t.describe() for t in node_types) or "none"
        super().__init__(f"job {job_name!r} asks for {shape.describe()}, which no node type offers "
                         f"(node types: {offered})")
        self.job_name = job_name
        self.shape = shape


@dataclass(frozen=True)
class ScalerParams:
    """The scaler's parameters, with Toil's option names."""

    targetTime: float = 1800.0  # seconds the queued work may take
    betaInertia: float = 0.1  # 0: follow the estimate; towards 1: change slowly
    preemptibleCompensation: float = 0.0  # 0..1: non-preemptible nodes per missing preemptible one
    minNodes: tuple[int, ...] = ()  # per node type, in order (expanded by the caller)
    maxNodes: tuple[int, ...] = ()
    scaleInterval: float = 60.0  # seconds between scaler rounds (the scaler's, not the planner's)
    #: --targetDeadline: targetTime runs from when each job was issued, not from each round (the
    #: scaler's, see ClusterScaler._horizon; the planner packs over whatever targetTime it gets)
    deadline: bool = False

    def bounds(self, index: int) -> tuple[int, int]:
        low = self.minNodes[index] if index < len(self.minNodes) else 0
        high = self.maxNodes[index] if index < len(self.maxNodes) else 10**9
        return low, high


@dataclass(frozen=True)
class PlanJob:
    """A job to place: its name (for errors) and shape (``wallTime``: expected seconds left)."""

    name: str
    shape: Shape


@dataclass
class Plan:
    counts: dict[str, int]  # nodes to have, per node type
    packed: dict[str, int]  # nodes the packing alone asked for
    why: dict[str, str] = field(default_factory=dict)  # per type, when bounds or inertia changed it


class _Bin:
    """One node over the horizon: slice start times and the free cores, memory, disk of each."""

    __slots__ = ("cores", "disk", "horizon", "memory", "most_cores", "most_memory", "times")

    def __init__(self, shape: Shape, horizon: float) -> None:
        self.horizon = horizon
        self.times = [0.0]
        self.cores, self.memory, self.disk = [shape.cores], [float(shape.memory)], [float(shape.disk)]
        self.most_cores, self.most_memory = shape.cores, float(shape.memory)

    def _split(self, at: float) -> int:
        """Index of the slice starting at ``at`` (made by splitting one)."""
        i = bisect_left(self.times, at - EPS)
        if i < len(self.times) and abs(self.times[i] - at) <= EPS:
            return i
        if at >= self.horizon - EPS:
            return len(self.times)
        self.times.insert(i, at)
        for free in (self.cores, self.memory, self.disk):
            free.insert(i, free[i - 1])
        return i

    def _room(self, i: int, end: float, job: Shape, wanted: int) -> tuple[int, int]:
        """How many copies of ``job`` fit in parallel from slice ``i`` to ``end``; the slice
        index past the window."""
        n, j, times = wanted, i, self.times
        while j < len(times) and times[j] < end - EPS and n > 0:
            for free, need in ((self.cores[j], job.cores), (self.memory[j], job.memory), (self.disk[j], job.disk)):
                if need > 0:
                    n = min(n, int(free / need + EPS))
            j += 1
        return n, j

    def place(self, job: Shape, wanted: int) -> int:
        """Place up to ``wanted`` copies of ``job`` (earliest start first); how many went in."""
        if job.cores > self.most_cores + EPS or job.memory > self.most_memory + EPS:
            return 0
        run = min(max(job.wallTime, MIN_WALLTIME), self.horizon)
        placed, i = 0, 0
        while placed < wanted and i < len(self.times) and self.times[i] + run <= self.horizon + EPS:
            n, _ = self._room(i, self.times[i] + run, job, wanted - placed)
            if n == 0:
                i += 1
                continue
            start, end = self.times[i], self.times[i] + run
            first, last = self._split(start), self._split(end)
            for j in range(first, last):
                self.cores[j] -= n * job.cores
                self.memory[j] -= n * job.memory
                self.disk[j] -= n * job.disk
            placed += n
        self.most_cores, self.most_memory = max(self.cores), max(self.memory)
        return placed


def per_node(node: Shape, job: Shape, horizon: float) -> int:
    """Copies of ``job`` one empty node of shape ``node`` holds over ``horizon``."""
    slots = 10**9
    if job.cores > 0:
        slots = int(node.cores / job.cores + EPS)
    if job.memory > 0:
        slots = min(slots, node.memory // job.memory)
    if job.disk > 0:
        slots = min(slots, node.disk // job.disk)
    run = min(max(job.wallTime, MIN_WALLTIME), horizon)
    return slots * max(1, int(horizon / run + EPS))


def planned_runtime(seconds: float, horizon: float) -> float:
    """The runtime a job is packed with. Within the horizon it is rounded to ``horizon / k`` for
    the nearest whole k (at least 1): a slot of a node runs k of them one after another, the
    last ending at most half a job after the horizon (or the slot idles at most half a job).
    Rounding up to the largest k that fits bought up to half as many nodes again as the work
    needs (jobs of 608 s in 1800 s: 2 to a slot, not 2.96; 13 nodes where 9 do). It also turns a
    queue of slightly different runtimes into a few groups; shorter than horizon/256 it is
    rounded up to a multiple of horizon/4096. Never less than MIN_WALLTIME, never more than the
    horizon."""
    run = min(max(seconds, MIN_WALLTIME), horizon)
    rounds = max(1, int(horizon / run + 0.5))
    if rounds <= 256:
        return horizon / rounds
    step = horizon / 4096
    return max(MIN_WALLTIME, math.ceil(run / step - EPS) * step)


Key = tuple[float, int, float, int, bool]  # planned runtime, memory, cores, disk, preemptible


def _groups(jobs: Sequence[PlanJob], node_types: Sequence[NodeType], horizon: float) -> list[tuple[Shape, int, str]]:
    """(shape with its planned runtime, count, first job's name) per distinct shape, largest
    first. Counted by object first: the jobs of one kind usually share their Shape."""
    per_object: dict[int, int] = {}
    first: dict[int, PlanJob] = {}
    for job in jobs:
        key = id(job.shape)
        per_object[key] = per_object.get(key, 0) + 1
        first.setdefault(key, job)
    counts: dict[Key, int] = {}
    names: dict[Key, str] = {}
    for key, n in per_object.items():
        shape, name = first[key].shape, first[key].name
        group = (planned_runtime(shape.wallTime, horizon), shape.memory, shape.cores, shape.disk, shape.preemptible)
        counts[group] = counts.get(group, 0) + n
        names.setdefault(group, name)
    top_cores = max(t.shape.cores for t in node_types)
    top_memory = max(t.shape.memory for t in node_types)

    def size(group: Key) -> tuple[float, Key]:
        return -group[0] * max(group[2] / top_cores, group[1] / top_memory), group

    return [(Shape(*group), counts[group], names[group]) for group in sorted(counts, key=size)]


def pack(node_types: Sequence[NodeType], jobs: Sequence[PlanJob], params: ScalerParams) -> dict[str, int]:
    """Nodes per type that run ``jobs`` within ``targetTime`` (capped at ``maxNodes``)."""
    horizon = max(params.targetTime, MIN_WALLTIME)
    bins: list[tuple[int, _Bin]] = []
    opened = [0] * len(node_types)
    groups = _groups(jobs, node_types, horizon)
    least_cores = min(g[0].cores for g in groups)
    least_memory = min(g[0].memory for g in groups)
    for shape, count, name in groups:
        eligible = [i for i, t in enumerate(node_types) if shape.fits_in(t.shape)]
        if not eligible:
            raise UnplaceableJobError(name, shape, node_types)
        usable = [i in eligible for i in range(len(node_types))]
        left = count
        for index, node in bins:
            if left == 0:
                break
            if usable[index] and node.most_cores >= shape.cores - EPS and node.most_memory >= shape.memory:
                left -= node.place(shape, left)
        capacity: dict[int, int] = {}
        if all(opened[i] >= params.bounds(i)[1] for i in eligible):
            left = 0  # every type it fits is at --maxNodes: it waits
        while left > 0:
            if not capacity:
                capacity = {i: per_node(node_types[i].shape, shape, horizon) for i in eligible}
            choice = _cheapest(node_types, eligible, opened, capacity, left, shape.preemptible, params)
            if choice is None:
                break  # the type that fits best is at --maxNodes: the rest waits
            node = _Bin(node_types[choice].shape, horizon)
            left -= node.place(shape, left)
            bins.append((choice, node))
            opened[choice] += 1
        # nodes with no room left for any job are not looked at again
        bins = [(i, b) for i, b in bins if b.most_cores >= least_cores - EPS and b.most_memory >= least_memory]
    return {t.name: opened[i] for i, t in enumerate(node_types)}


def _cheapest(node_types: Sequence[NodeType], eligible: list[int], opened: list[int], capacity: Mapping[int, int],
              left: int, preemptible: bool, params: ScalerParams) -> int | None:
    """The type to open a node of: cheapest per job placed, smaller on ties; preemptible types
    first for a preemptible job. None when that type is at --maxNodes: the rest of the jobs wait
    for it rather than go to a dearer type (a cap is a budget, not a hint)."""
    if preemptible and any(node_types[i].preemptible for i in eligible):
        eligible = [i for i in eligible if node_types[i].preemptible]

    def price(i: int) -> tuple[float, float, int]:
        return node_types[i].cost / min(capacity[i], left), node_types[i].cost, i

    best = min(eligible, key=price)
    return best if opened[best] < params.bounds(best)[1] else None


def _stand_in(node_types: Sequence[NodeType], spot: NodeType) -> int | None:
    """The non-preemptible type that replaces missing nodes of preemptible type ``spot``."""
    same = [i for i, t in enumerate(node_types) if not t.preemptible
            and (t.shape.cores, t.shape.memory, t.shape.disk) == (spot.shape.cores, spot.shape.memory, spot.shape.disk)]
    if same:
        return same[0]
    bigger = [i for i, t in enumerate(node_types) if not t.preemptible
              and t.shape.cores >= spot.shape.cores and t.shape.memory >= spot.shape.memory]
    return min(bigger, key=lambda i: (node_types[i].cost, i), default=None)


def _smooth(previous: int, estimate: int, beta: float) -> int:
    value = beta * previous + (1.0 - beta) * estimate
    return math.ceil(value - EPS) if estimate > previous else math.floor(value + EPS)


def plan(node_types: Sequence[NodeType], jobs: Sequence[PlanJob], params: ScalerParams,
         previous: Mapping[str, int] | None = None, deficits: Mapping[str, int] | None = None) -> Plan:
    """Nodes to have per type. ``previous``: the last plan's counts (for inertia); ``deficits``:
    preemptible nodes per type that the last plan asked for and the cluster does not have."""
    if not node_types:
        raise ValueError("the planner needs at least one node type")
    packed = pack(node_types, jobs, params) if jobs else {t.name: 0 for t in node_types}
    estimate = dict(packed)
    why: dict[str, str] = {}
    for spot in node_types:
        missing = (deficits or {}).get(spot.name, 0)
        target = _stand_in(node_types, spot) if spot.preemptible and missing > 0 else None
        if target is not None and params.preemptibleCompensation > 0:
            extra = math.ceil(params.preemptibleCompensation * missing - EPS)
            estimate[node_types[target].name] += extra
            why[node_types[target].name] = f"+{extra} for {missing} missing {spot.name}"
    counts: dict[str, int] = {}
    for i, t in enumerate(node_types):
        before = (previous or {}).get(t.name, 0)
        count = _smooth(before, estimate[t.name], params.betaInertia)
        low, high = params.bounds(i)
        bounded = min(max(count, low), high)
        if count != estimate[t.name]:
            why[t.name] = (why.get(t.name, "") + f" inertia {before}->{count}").strip()
        if bounded != count:
            why[t.name] = (why.get(t.name, "") + f" bounded to [{low}, {high}]").strip()
        counts[t.name] = bounded
    return Plan(counts, packed, why)
