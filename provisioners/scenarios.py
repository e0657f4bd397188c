"""The seed scenarios of the cluster scaler (Toil's cluster-scaler test cases, in virtual time),
shared by the tests and ``benchmarks/autoscale.py``."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from flow.provisioners.planner import ScalerParams
from flow.provisioners.scaler import RuntimeHistory
from flow.provisioners.shape import NodeType, Shape, parse_counts, parse_node_types, share
from flow.provisioners.simulated import CATEGORIES, SimJob, SimResult, simulate

G = 1024**3


@dataclass
class Scenario:
    name: str
    node_types: list[NodeType]
    jobs: list[SimJob]
    params: ScalerParams
    history: RuntimeHistory = field(default_factory=RuntimeHistory)
    boot_delay: float = 60.0
    spot_lifetime: float | None = None
    spot_capacity: int | None = None

    def run(self) -> SimResult:
        history = RuntimeHistory(dict(self.history.totals), self.history.overall)
        return simulate(self.jobs, self.node_types, self.params, history, self.boot_delay,
                        self.spot_lifetime, self.spot_capacity)

    def one_runtime_per_kind(self) -> Scenario:
        """The same scenario with every job of a kind (a name) taking the kind's mean runtime, as
        Toil's own scaler tests run their jobs (one ``secondsPerJob`` for all): the same work and
        the same :meth:`lower_bound`, without the spread of runtimes within a kind, which leaves
        each node a tail (its last jobs end at different times, and no scaler that learns a
        job's runtime only when it ends can line them up)."""
        totals: dict[str, list[float]] = {}
        for job in self.jobs:
            totals.setdefault(job.name, []).append(job.runtime)
        means = {name: sum(times) / len(times) for name, times in totals.items()}
        return replace(self, name=f"{self.name} (one runtime per kind)",
                       jobs=[replace(job, runtime=means[job.name]) for job in self.jobs])

    def lower_bound(self) -> float:
        """The ideal packing's cost, in the unit of :meth:`cost`: on each node type, the total
        core-seconds of the jobs it runs divided by its cores, or their memory-seconds divided
        by its memory, whichever binds, times its cost; each job on the usable type (it fits;
        a non-preemptible job never on a preemptible type) that holds it cheapest. No boot, no
        idle room, no work lost to preemption (shown apart, see :meth:`costs`). With one node
        type it is node-seconds: the jobs' core-seconds over the node's cores (or memory)."""
        seconds: dict[str, list[float]] = {t.name: [0.0, 0.0] for t in self.node_types}
        for job in self.jobs:
            r = job.request
            usable = [t for t in self.node_types if r.fits_in(t.shape)]
            best = min(usable, key=lambda t: t.cost * share(r, t.shape))
            seconds[best.name][0] += r.cores * job.runtime
            seconds[best.name][1] += r.memory * job.runtime
        total = sum(t.cost * max(seconds[t.name][0] / t.shape.cores, seconds[t.name][1] / t.shape.memory)
                    for t in self.node_types)
        return total / self.unit()

    def costs(self, result: SimResult) -> dict[str, float]:
        """Where the run's cost went, in the unit of :meth:`cost`, by the simulator's categories
        (:data:`~flow.provisioners.simulated.CATEGORIES`); ``work`` is split into ``ideal`` (the
        lower bound) and ``premium`` (jobs run on a dearer type than the cheapest that holds
        them, or packed worse than the bound counts them). They add up to :meth:`cost`."""
        weights = {t.name: t.cost / self.unit() for t in self.node_types}
        out = {c: sum(weights[t] * s for t, s in result.breakdown[c].items()) for c in CATEGORIES}
        bound = self.lower_bound()
        return {"ideal": bound, "premium": out.pop("work") - bound, **out}

    def cost(self, result: SimResult) -> float:
        """What ``result`` paid, in the same unit as :meth:`lower_bound`."""
        return sum(t.cost * result.node_seconds[t.name] for t in self.node_types) / self.unit()

    def unit(self) -> float:
        """Costs are shown as node-seconds of the cheapest type (node-seconds with one type)."""
        return min(t.cost for t in self.node_types) or 1.0


def _params(types: Sequence[NodeType], max_nodes: str, **kw: float) -> ScalerParams:
    return ScalerParams(targetTime=kw.get("targetTime", 3600.0), betaInertia=kw.get("betaInertia", 0.1),
                        preemptibleCompensation=kw.get("preemptibleCompensation", 0.0),
                        maxNodes=tuple(parse_counts(max_nodes, len(types), "--maxNodes")), scaleInterval=60.0)


def _jobs(rng: random.Random, n: int, name: str, cores: float, memory: int, preemptible: bool = False,
          runtime: tuple[float, float] = (300.0, 900.0)) -> list[SimJob]:
    return [SimJob(name, Shape(0.0, memory, cores, G, preemptible), rng.uniform(*runtime)) for _ in range(n)]


def with_history(seed: int = 1) -> Scenario:
    """100 jobs on one node type, the scaler knowing 1,000 completed jobs' runtimes."""
    rng = random.Random(seed)
    types = parse_node_types("n:4/16G")
    history = RuntimeHistory()
    for _ in range(1000):
        history.record("align", rng.uniform(300.0, 900.0))
    return Scenario("100 jobs, 1,000-job history", types, _jobs(rng, 100, "align", 1, 2 * G),
                    _params(types, "10", targetTime=1800), history)


def preemptible_mix(seed: int = 2) -> Scenario:
    """100 preemptible and 100 non-preemptible jobs; preemptible nodes live half an hour on average."""
    rng = random.Random(seed)
    types = parse_node_types("od:4/16G,spot:4/16G:preemptible:cost=2")
    jobs = _jobs(rng, 100, "spotjob", 1, 2 * G, preemptible=True) + _jobs(rng, 100, "odjob", 1, 2 * G)
    rng.shuffle(jobs)
    return Scenario("100 preemptible + 100 non-preemptible", types, jobs,
                    _params(types, "20", targetTime=1800, preemptibleCompensation=0.5), spot_lifetime=1800.0)


def three_sizes(seed: int = 3) -> Scenario:
    """small, medium and large types given out of order; 100 small- and 100 medium-shaped jobs."""
    rng = random.Random(seed)
    types = parse_node_types("large:16/64G,small:2/8G,medium:4/16G")
    jobs = _jobs(rng, 100, "small", 1, 4 * G) + _jobs(rng, 100, "medium", 4, 16 * G)
    rng.shuffle(jobs)
    return Scenario("small/medium/large, small and medium jobs", types, jobs, _params(types, "20", targetTime=1800))


def short_max_nodes(seed: int = 4) -> Scenario:
    """--maxNodes 3 for three node types: each is capped at 3."""
    rng = random.Random(seed)
    types = parse_node_types("small:2/8G,medium:4/16G,large:8/32G")
    jobs = _jobs(rng, 60, "small", 1, 4 * G) + _jobs(rng, 40, "big", 8, 32 * G)
    return Scenario("maxNodes shorter than nodeTypes", types, jobs, _params(types, "3", targetTime=1800))


#: The seed scenarios; each takes the seed of its random generator (its default: the figures in
#: the tests and benchmarks/autoscale.py). Jobs' runtimes spread uniformly over 300-900 s.
SEEDS: list[Callable[..., Scenario]] = [with_history, preemptible_mix, three_sizes, short_max_nodes]
