"""Autoscaling figures: how fast the planner decides, and how close the scaler comes to an ideal
packing on the seed scenarios (in virtual time).

    python benchmarks/autoscale.py

1. The planner with 10,000 queued jobs (50 job kinds, each with its own requests and runtime, as
   a workflow's jobs come in kinds) and 10 node types: the median of several decisions, in ms
   (target: <= 50 ms); the same with every job of a distinct shape, the worst case.
2. Each seed scenario run by the scaler on the simulated cluster: its cost in node-seconds (of
   the cheapest type, when there are several types: cost-weighted) and the ideal packing's lower
   bound (every job's binding resource-seconds on the cheapest type that holds it, no boot and
   no idle time), and how far above it the run is (target: within 15%).
"""

from __future__ import annotations

import dataclasses
import random
import statistics
import time

from flow.provisioners.planner import PlanJob, ScalerParams, plan
from flow.provisioners.scenarios import SEEDS
from flow.provisioners.shape import Shape, parse_node_types

G = 1024**3
TYPES = parse_node_types(",".join(
    f"t{i}:{cores}/{memory}G:cost={cost}" for i, (cores, memory, cost) in enumerate([
        (2, 8, 0.10), (4, 16, 0.19), (8, 32, 0.38), (16, 64, 0.77), (32, 128, 1.5),
        (4, 8, 0.17), (8, 16, 0.34), (16, 32, 0.68), (8, 64, 0.50), (16, 128, 1.0),
    ])))


def _jobs(rng: random.Random, kinds: int, n: int) -> list[PlanJob]:
    shapes = [Shape(rng.choice([30, 60, 300, 600, 1800, 3600]) * rng.uniform(0.5, 1.5), rng.choice([1, 2, 4, 8, 16]) * G,
                    rng.choice([0.5, 1, 2, 4, 8]), rng.choice([1, 10, 50]) * G, rng.random() < 0.3)
              for _ in range(kinds)]
    return [PlanJob(f"kind{i % kinds}", shapes[i % kinds]) for i in range(n)]


def _decide_ms(jobs: list[PlanJob], repeats: int = 7) -> tuple[float, float]:
    """Median wall and CPU milliseconds of one decision (CPU time: what it costs on a machine
    that other processes do not share)."""
    params = ScalerParams(targetTime=1800, maxNodes=(100,) * len(TYPES))
    wall, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        plan(TYPES, jobs, params, previous={t.name: 3 for t in TYPES})
        wall.append((time.perf_counter() - start) * 1000)
        cpu.append((time.process_time() - start_cpu) * 1000)
    return statistics.median(wall), statistics.median(cpu)


def main() -> None:
    rng = random.Random(10)
    wall, cpu = _decide_ms(_jobs(rng, 50, 10_000))
    print(f"planner, 10,000 queued jobs of 50 kinds, 10 node types: {wall:.1f} ms per decision "
          f"({cpu:.1f} ms CPU; target <= 50 ms)")
    wall, cpu = _decide_ms(_jobs(rng, 10_000, 10_000), repeats=3)
    print(f"planner, 10,000 queued jobs all of distinct shapes (worst case), 10 node types: {wall:.1f} ms "
          f"per decision ({cpu:.1f} ms CPU)")
    for target in (1800.0, 3600.0):
        print(f"\nseed scenarios, --targetTime {target:g} (a longer target buys fewer nodes for longer)")
        print(f"{'scenario':<45} {'node-seconds':>12} {'ideal':>9} {'above':>6} {'makespan':>9} {'peak':>5} {'sim ms':>7}")
        for make in SEEDS:
            scenario = make()
            scenario.params = dataclasses.replace(scenario.params, targetTime=target)
            start = time.perf_counter()
            result = scenario.run()
            elapsed = (time.perf_counter() - start) * 1000
            cost, bound = scenario.cost(result), scenario.lower_bound()
            print(f"{scenario.name:<45} {cost:>12.0f} {bound:>9.0f} {cost / bound - 1:>6.0%} "
                  f"{result.makespan:>8.0f}s {result.peak_nodes:>5} {elapsed:>7.0f}")


if __name__ == "__main__":
    main()
