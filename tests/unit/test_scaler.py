"""The cluster scaler on the simulated cluster, in virtual time (each test takes milliseconds)."""

from __future__ import annotations

import math

import pytest

from flow.batchsystems.scalable import NodeInfo, RunningJob
from flow.provisioners.contract import Node, NodeState, ProvisionerConfig, WorkItem
from flow.provisioners.planner import MIN_WALLTIME, ScalerParams, UnplaceableJobError
from flow.provisioners.scaler import ClusterScaler, expected_end, keep_order
from flow.provisioners.scenarios import (
    SEEDS,
    Scenario,
    preemptible_mix,
    short_max_nodes,
    three_sizes,
)
from flow.provisioners.shape import Shape, parse_node_types
from flow.provisioners.simulated import CATEGORIES, SimJob, SimulatedCluster, run_on, simulate

G = 1024**3


def job(name: str, seconds: float, cores: float = 1, memory: int = G, preemptible: bool = False,
        after: tuple[int, ...] = ()) -> SimJob:
    return SimJob(name, Shape(0.0, memory, cores, G, preemptible), seconds, after)


@pytest.mark.parametrize("make", SEEDS, ids=lambda m: m.__name__)
def test_seed_scenarios_finish_within_bounds_and_drain_before_removal(make: object) -> None:
    scenario: Scenario = make()  # type: ignore[operator]
    result = scenario.run()
    print(f"{scenario.name}: peak {result.peak_by_type}, node-seconds "
          f"{ {k: round(v) for k, v in result.node_seconds.items()} }, cost {scenario.cost(result):.0f} "
          f"vs ideal {scenario.lower_bound():.0f}")
    assert result.jobs_done == result.jobs_total
    for i, t in enumerate(scenario.node_types):
        assert result.peak_by_type[t.name] <= scenario.params.bounds(i)[1]
    assert result.busy_terminations == 0
    assert result.undrained_terminations == 0


def test_small_and_medium_used_large_never() -> None:
    result = three_sizes().run()
    assert result.peak_by_type["large"] == 0
    assert result.peak_by_type["small"] > 0 and result.peak_by_type["medium"] > 0


def test_a_short_max_nodes_list_caps_every_type() -> None:
    scenario = short_max_nodes()
    assert scenario.params.maxNodes == (3, 3, 3)
    assert max(scenario.run().peak_by_type.values()) == 3


def test_preemptible_nodes_vanish_and_their_jobs_run_again() -> None:
    result = preemptible_mix().run()
    assert result.preempted > 0 and result.jobs_done == 200


def test_a_busy_node_is_never_terminated_while_the_cluster_shrinks() -> None:
    types = parse_node_types("n:4/16G")
    jobs = [job("long", 5000)] + [job("short", 100) for _ in range(60)]
    params = ScalerParams(targetTime=600, betaInertia=0.0, maxNodes=(10,), scaleInterval=60)
    cluster = SimulatedCluster(ProvisionerConfig("t", tuple(types)), boot_delay=30)
    result = run_on(cluster, ClusterScaler(cluster, cluster, params), jobs)
    assert result.jobs_done == 61 and result.peak_nodes > 1
    assert result.busy_terminations == 0 and result.undrained_terminations == 0
    # the cluster shrank to the long job's node long before it ended
    ends = sorted(n.ended_at or 0.0 for n in cluster._nodes.values())
    assert ends[-2] < 2000 < 5000 <= ends[-1]


def test_nodes_never_exceed_max_nodes() -> None:
    types = parse_node_types("a:2/8G,b:4/16G")
    jobs = [job("x", 600) for _ in range(100)] + [job("w", 600, cores=4) for _ in range(30)]
    result = simulate(jobs, types, ScalerParams(targetTime=600, maxNodes=(4, 2)))
    assert result.jobs_done == 130 and result.peak_by_type == {"a": 4, "b": 2}


def test_min_nodes_are_kept_until_the_end() -> None:
    types = parse_node_types("a:2/8G")
    result = simulate([job("x", 60)], types, ScalerParams(targetTime=600, minNodes=(3,), maxNodes=(5,)))
    assert result.jobs_done == 1 and result.peak_nodes == 3


def test_successors_run_after_their_predecessors() -> None:
    types = parse_node_types("a:2/8G")
    jobs = [job("first", 100), job("second", 100, after=(0,)), job("third", 100, after=(1,))]
    result = simulate(jobs, types, ScalerParams(targetTime=600, scaleInterval=10), boot_delay=0)
    assert result.jobs_done == 3 and result.makespan == pytest.approx(300)


def test_lost_preemptible_capacity_is_compensated() -> None:
    types = parse_node_types("od:4/16G,spot:4/16G:preemptible:cost=2")
    jobs = [job("p", 300, preemptible=True) for _ in range(40)]
    helped = simulate(jobs, types, ScalerParams(targetTime=900, preemptibleCompensation=1.0), spot_capacity=0)
    assert helped.jobs_done == 40 and helped.peak_by_type["spot"] == 0 and helped.peak_by_type["od"] > 0
    unhelped = simulate(jobs, types, ScalerParams(targetTime=900), spot_capacity=0)
    assert unhelped.jobs_done == 0  # nothing to run on: the preemptible market is empty


def test_a_job_too_big_for_every_type_fails_clearly() -> None:
    with pytest.raises(UnplaceableJobError, match="job 'giant' asks for 64 cores"):
        simulate([job("ok", 60), job("giant", 60, cores=64)], parse_node_types("a:2/8G"), ScalerParams())


def test_a_service_holds_its_room_for_the_whole_horizon() -> None:
    types = parse_node_types("n:1/4G")
    cluster = SimulatedCluster(ProvisionerConfig("t", tuple(types)), boot_delay=0)
    scaler = ClusterScaler(cluster, cluster, ScalerParams(targetTime=3600, betaInertia=0.0))
    scaler.job_finished("db", 10.0)  # a short history must not make it look short
    request = Shape(0.0, G, 1, G)
    work = [WorkItem("db", request, 5.0, service=True), WorkItem("db", request, None, service=True)]
    assert scaler.tick(work).plan.counts == {"n": 2}
    assert scaler.tick([WorkItem("db", request, 5.0), WorkItem("db", request)]).plan.counts == {"n": 1}


# ---- what the scaler buys and releases (fixed inputs, exact node counts) -------------------------

def _cluster(types: str, spot_capacity: int | None = None) -> SimulatedCluster:
    return SimulatedCluster(ProvisionerConfig("t", tuple(parse_node_types(types))), boot_delay=0,
                            spot_capacity=spot_capacity)


def _busy(cluster: SimulatedCluster, type_name: str, count: int, each: int = 1, name: str = "a",
          ages: tuple[float, ...] = ()) -> list[str]:
    """``count`` nodes of the type, each running ``each`` one-core jobs of ``name``, the jobs of
    the i-th node started ``ages[i]`` seconds ago (0 by default)."""
    node_type = next(t for t in cluster.config.node_types if t.name == type_name)
    ids = cluster.add_nodes(node_type, count)
    for i, node_id in enumerate(ids):
        node = cluster._nodes[node_id]
        for j in range(each):
            node.jobs[len(cluster._nodes) * 100 + i * each + j] = (name, cluster.now - (ages[i] if ages else 0.0), 1.0, G)
            node.cores -= 1.0
            node.memory -= G
    return ids


REQUEST = Shape(0.0, G, 1, G)
SPOT = Shape(0.0, G, 1, G, True)
MIX = "od:4/16G,spot:4/16G:preemptible:cost=2"


def test_jobs_nobody_saw_end_are_planned_from_what_runs() -> None:
    cluster = _cluster("n:4/16G")
    scaler = ClusterScaler(cluster, cluster, ScalerParams(targetTime=1800, betaInertia=0.0, maxNodes=(50,)))
    # nothing known: one scaler round each (100 x 60 s on 4 cores over 1800 s), not 25 nodes
    assert scaler.tick([WorkItem("a", REQUEST)] * 100).plan.counts == {"n": 1}
    # 4 have run 300 s: each is expected to take 600 s, 12 to a node over 1800 s
    work = [WorkItem("a", REQUEST, 300.0)] * 4 + [WorkItem("a", REQUEST)] * 96
    assert scaler.tick(work).plan.counts == {"n": 9}
    scaler.job_finished("a", 1800.0)  # once one has ended, the kind's mean
    assert scaler.tick([WorkItem("a", REQUEST)] * 8).plan.counts == {"n": 2}


@pytest.mark.parametrize(("deadline", "waited", "nodes"), [
    (False, 900.0, 2),  # Toil's meaning: 1800 s from now, three 600-s jobs a slot, 12 a node
    (True, 0.0, 2),  # nothing has waited yet: the same
    (True, 900.0, 3),  # 900 s left: two a slot (rounded to the nearest whole number), 8 a node
    (True, 1500.0, 6),  # 300 s left, less than a job takes: one a slot
])
def test_with_a_deadline_the_target_time_runs_from_when_jobs_were_issued(deadline: bool, waited: float,
                                                                         nodes: int) -> None:
    cluster = _cluster("n:4/16G")
    params = ScalerParams(targetTime=1800, betaInertia=0.0, maxNodes=(50,), deadline=deadline)
    scaler = ClusterScaler(cluster, cluster, params)
    scaler.job_finished("a", 600.0)
    work = [WorkItem("a", REQUEST, issued_for=waited)] * 20 + [WorkItem("a", REQUEST, issued_for=10.0)] * 4
    assert scaler.tick(work).plan.counts == {"n": nodes}


def test_a_preempted_node_is_replaced_not_compensated() -> None:
    cluster = _cluster(MIX)
    params = ScalerParams(targetTime=1800, betaInertia=0.0, preemptibleCompensation=1.0, maxNodes=(10, 10))
    scaler = ClusterScaler(cluster, cluster, params)
    scaler.job_finished("p", 600.0)
    work = [WorkItem("p", SPOT)] * 24  # 12 to a node
    assert scaler.tick(work).launched == {"spot": 2}
    cluster.preempt(next(n.node_id for n in cluster.nodes()))
    report = scaler.tick(work)
    assert report.launched == {"spot": 1} and report.plan.counts == {"od": 0, "spot": 2}


def test_a_short_preemptible_market_is_compensated() -> None:
    cluster = _cluster(MIX, spot_capacity=1)
    params = ScalerParams(targetTime=1800, betaInertia=0.0, preemptibleCompensation=1.0, maxNodes=(10, 10))
    scaler = ClusterScaler(cluster, cluster, params)
    scaler.job_finished("p", 600.0)
    work = [WorkItem("p", SPOT)] * 24
    assert scaler.tick(work).launched == {"spot": 1}  # of 2 asked for
    report = scaler.tick(work)
    assert report.plan.counts == {"od": 1, "spot": 2} and report.launched == {"od": 1, "spot": 0}  # none to be had


def test_nodes_lost_while_jobs_wait_are_replaced_though_the_plan_shrinks() -> None:
    cluster = _cluster(MIX)
    scaler = ClusterScaler(cluster, cluster, ScalerParams(targetTime=1800, betaInertia=0.0, maxNodes=(10, 10)))
    scaler.job_finished("p", 600.0)
    ids = _busy(cluster, "spot", 3, each=4, name="p", ages=(100.0,) * 3)
    work = [WorkItem("p", SPOT, 100.0)] * 12 + [WorkItem("p", SPOT)] * 5
    first = scaler.tick(work)
    assert first.plan.counts["spot"] == 2 and not first.draining  # busy while jobs wait: kept
    cluster.preempt(ids[0])
    second = scaler.tick(work)
    assert second.launched == {"spot": 1} and "1 of 1 lost node(s) replaced" in second.plan.why["spot"]
    cluster.preempt(ids[1])  # nothing waits any more: not replaced
    assert scaler.tick([WorkItem("p", SPOT, 200.0)] * 8).launched == {}


def test_a_drained_node_is_released_as_soon_as_its_last_job_ends() -> None:
    cluster = _cluster("n:4/16G")
    scaler = ClusterScaler(cluster, cluster, ScalerParams(targetTime=1800, betaInertia=0.0))
    scaler.job_finished("a", 600.0)
    ids = _busy(cluster, "n", 2)
    report = scaler.tick([WorkItem("a", REQUEST, 100.0)] * 2)  # both fit one node: one drains
    assert report.plan.counts == {"n": 1} and report.draining == [ids[1]] and not report.terminated
    assert scaler.release_drained() == []  # still running its job
    cluster._nodes[ids[1]].jobs.clear()
    assert scaler.release_drained() == [ids[1]] and cluster._nodes[ids[1]].ended_at is not None
    assert [n.node_id for n in cluster.nodes()] == [ids[0]]


def test_a_draining_busy_node_is_taken_back_when_jobs_wait_for_it() -> None:
    cluster = _cluster("n:4/16G")
    scaler = ClusterScaler(cluster, cluster, ScalerParams(targetTime=1800, betaInertia=0.0))
    scaler.job_finished("a", 600.0)
    ids = _busy(cluster, "n", 2)
    assert scaler.tick([WorkItem("a", REQUEST, 100.0)] * 2).draining == [ids[1]]
    # two jobs wait: the kept node's three free cores start them, the other keeps draining
    report = scaler.tick([WorkItem("a", REQUEST, 160.0)] * 2 + [WorkItem("a", REQUEST)] * 2)
    assert report.plan.counts == {"n": 1} and scaler.draining == {ids[1]}
    # four wait: more than the kept node can start within a round, so the other is taken back
    report = scaler.tick([WorkItem("a", REQUEST, 160.0)] * 2 + [WorkItem("a", REQUEST)] * 4)
    assert report.plan.counts == {"n": 1} and report.launched == {}
    assert scaler.draining == set() and not cluster._nodes[ids[1]].ignored


def test_busy_non_preemptible_nodes_drain_while_only_preemptible_jobs_wait() -> None:
    cluster = _cluster(MIX)
    scaler = ClusterScaler(cluster, cluster, ScalerParams(targetTime=1800, betaInertia=0.0, maxNodes=(10, 10)))
    scaler.job_finished("p", 600.0)
    ids = _busy(cluster, "od", 2)
    report = scaler.tick([WorkItem("p", SPOT)] * 12)  # for a spot node, not for the od nodes' room
    assert report.launched == {"spot": 1} and sorted(report.draining) == sorted(ids)


# ---- which nodes drain: those whose jobs end soonest (fixed inputs, exact nodes) -----------------

def _node(node_id: str, launched_at: float = 0.0, booting: bool = False) -> Node:
    return Node(node_id, "n", NodeState.BOOTING if booting else NodeState.READY, False, launched_at)


def _info(*jobs: tuple[str, float], cores: float = 4, workers: int | None = None) -> NodeInfo:
    used = float(len(jobs))
    return NodeInfo(used, int(used) * G, cores, 16 * G, used, int(used) * G,
                    len(jobs) if workers is None else workers, tuple(RunningJob(n, a, 1.0, G) for n, a in jobs))


def test_the_nodes_whose_jobs_end_last_are_kept() -> None:
    nodes = [_node("a"), _node("b", 1.0), _node("c", 2.0), _node("d", 3.0), _node("e", 4.0, booting=True)]
    infos = {  # align takes 600 s, sort 100 s: a ends in 500 s, b in 50 s, c in 590 s (its young job)
        "a": _info(("align", 100.0), ("align", 50.0)),
        "b": _info(("sort", 50.0)),
        "c": _info(("align", 400.0), ("align", 10.0), ("sort", 90.0)),
        "d": _info(),
    }
    runtimes = {"align": 600.0, "sort": 100.0}
    order = keep_order(nodes, {"a", "b", "c"}, infos, runtimes)
    assert [n.node_id for n in order] == ["c", "a", "b", "d", "e"]  # then idle, then booting
    assert expected_end(infos["c"], runtimes) == 590.0 and expected_end(infos["d"], runtimes) == 0.0
    # a job past its kind's mean may end any moment; a kind without an estimate, or jobs the batch
    # system cannot name, keep their node as every busy node was kept before
    assert expected_end(_info(("align", 900.0)), runtimes) == MIN_WALLTIME
    assert expected_end(_info(("new", 1.0)), runtimes) == math.inf
    assert expected_end(_info(workers=1), runtimes) == math.inf
    # ties: a node already draining goes before one that is not, then the younger one
    tied = keep_order(nodes[:2], {"a", "b"}, {"a": _info(("sort", 0.0)), "b": _info(("sort", 0.0))}, runtimes,
                      draining={"a"})
    assert [n.node_id for n in tied] == ["b", "a"]


def test_a_round_drains_the_node_whose_jobs_end_soonest() -> None:
    cluster = _cluster("n:4/16G")
    scaler = ClusterScaler(cluster, cluster, ScalerParams(targetTime=1800, betaInertia=0.0))
    scaler.job_finished("a", 600.0)
    ids = _busy(cluster, "n", 3, ages=(500.0, 100.0, 300.0))  # their jobs end in 100, 500, 300 s
    report = scaler.tick([WorkItem("a", REQUEST, 500.0), WorkItem("a", REQUEST, 100.0), WorkItem("a", REQUEST, 300.0)])
    assert report.plan.counts == {"n": 1} and sorted(report.draining) == sorted([ids[0], ids[2]])
    assert scaler.draining == {ids[0], ids[2]}  # the node whose job ends last is kept


def test_while_jobs_wait_the_nodes_whose_jobs_end_last_start_them() -> None:
    cluster = _cluster("n:4/16G")
    scaler = ClusterScaler(cluster, cluster, ScalerParams(targetTime=1800, betaInertia=0.0))
    scaler.job_finished("a", 600.0)
    # three full nodes; the jobs of the first end in 30 s, of the second in 550 s, of the third in 20 s
    ids = _busy(cluster, "n", 3, each=4, ages=(570.0, 50.0, 580.0))
    running = [WorkItem("a", REQUEST, age) for age in (570.0, 50.0, 580.0) for _ in range(4)]
    report = scaler.tick(running + [WorkItem("a", REQUEST)] * 3)
    # the plan keeps the second, which frees nothing within a round; the three waiting jobs take
    # the room the first frees (its jobs end after the third's): the third drains
    assert report.plan.counts == {"n": 1} and report.draining == [ids[2]]
    assert scaler.draining == {ids[2]}


def test_a_job_past_its_kinds_runtime_frees_no_room_a_waiting_job_can_count_on() -> None:
    """Three of the first node's jobs have run longer than their kind's mean: nothing says when
    they end. The waiting job must not be left to wait for them while the second node, which
    the plan would drain, has room for it now (in a simulated run such a job waited 19 rounds)."""
    cluster = _cluster("n:4/16G")
    scaler = ClusterScaler(cluster, cluster, ScalerParams(targetTime=1800, betaInertia=0.0))
    scaler.job_finished("a", 600.0)
    first, second = _busy(cluster, "n", 2, each=3, ages=(700.0, 200.0))
    late = cluster._nodes[first]
    late.jobs[999] = ("a", cluster.now - 100.0, 1.0, G)  # its last job: ends in about 500 s
    late.cores -= 1.0
    late.memory -= G
    for index in [i for i in cluster._nodes[second].jobs][1:]:  # the second keeps one job
        del cluster._nodes[second].jobs[index]
        cluster._nodes[second].cores += 1.0
        cluster._nodes[second].memory += G
    running = [WorkItem("a", REQUEST, 700.0)] * 3 + [WorkItem("a", REQUEST, 100.0), WorkItem("a", REQUEST, 200.0)]
    report = scaler.tick(running + [WorkItem("a", REQUEST)])
    assert report.plan.counts == {"n": 1}  # the first is kept: its jobs end last
    assert report.draining == [] and not cluster._nodes[second].ignored
    # once it runs there, nothing waits: the first node, whose jobs now end first, drains
    cluster._nodes[second].jobs[1000] = ("a", cluster.now, 1.0, G)
    report = scaler.tick(running + [WorkItem("a", REQUEST, 0.0)])
    assert report.draining == [first]


# ---- where the node time went, and the bound it is measured against ------------------------------

@pytest.mark.parametrize("make", SEEDS, ids=lambda m: m.__name__)
def test_the_breakdown_adds_up_to_what_was_paid(make: object) -> None:
    scenario: Scenario = make()  # type: ignore[operator]
    result = scenario.run()
    for t in scenario.node_types:
        spent = sum(result.breakdown[c][t.name] for c in CATEGORIES)
        assert spent == pytest.approx(result.node_seconds[t.name], rel=1e-9, abs=1e-6)
    costs = scenario.costs(result)
    assert sum(costs.values()) == pytest.approx(scenario.cost(result))
    assert costs["premium"] >= -1e-6 and costs["drained"] == 0  # drained nodes go as their jobs end
    # a regression guard: the figures benchmarks/autoscale.py prints are 4% to 16.5% above the
    # ideal plus the work preemption lost (they were up to 51% above the ideal)
    assert scenario.cost(result) <= 1.2 * (costs["ideal"] + costs["lost"])


@pytest.mark.parametrize("make", SEEDS, ids=lambda m: m.__name__)
def test_with_one_runtime_per_kind_the_seed_scenarios_cost_within_15_percent_of_the_ideal(make: object) -> None:
    """The issue's figure, on the seed scenarios run as Toil's own scaler tests run their jobs
    (each job of a kind takes the same time): the same work and the same bound, no tails."""
    spread: Scenario = make()  # type: ignore[operator]
    scenario = spread.one_runtime_per_kind()
    assert len({job.runtime for job in scenario.jobs}) == len({job.name for job in scenario.jobs})
    assert scenario.lower_bound() == pytest.approx(spread.lower_bound())
    result = scenario.run()
    assert result.jobs_done == result.jobs_total and result.busy_terminations == 0
    assert scenario.cost(result) <= 1.15 * scenario.lower_bound()


def test_the_bound_takes_the_resource_that_binds_on_each_usable_type() -> None:
    types = parse_node_types("n:4/16G")
    jobs = [job("cpu", 100, cores=1, memory=G), job("mem", 100, cores=0.5, memory=8 * G)]
    # cores: 150 core-seconds / 4 = 37.5; memory: 900 GiB-seconds / 16 = 56.25: memory binds
    assert Scenario("t", types, jobs, ScalerParams()).lower_bound() == pytest.approx(56.25)
    mix = parse_node_types(MIX)  # od costs 8, spot 2: the unit is a spot node-second
    on_demand = Scenario("t", mix, [job("od", 100)], ScalerParams())
    assert on_demand.lower_bound() == pytest.approx(8 * 25 / 2)  # never on a preemptible node
    spot = Scenario("t", mix, [job("p", 100, preemptible=True)], ScalerParams())
    assert spot.lower_bound() == pytest.approx(25)


def test_the_simulated_batch_system_places_a_job_on_the_most_allocated_node_that_holds_it() -> None:
    """Best fit, as Slurm's select/cons_tres: not the first node launched, not the emptiest."""
    from flow.provisioners.simulated import _Run

    cluster = _cluster("n:4/16G")
    empty, one, three = _busy(cluster, "n", 1) + _busy(cluster, "n", 1, each=1) + _busy(cluster, "n", 1, each=3)
    cluster._nodes[empty].jobs.clear()
    cluster._nodes[empty].cores, cluster._nodes[empty].memory = 4.0, 16 * G
    scaler = ClusterScaler(cluster, cluster, ScalerParams(targetTime=1800, betaInertia=0.0))
    run = _Run(cluster, scaler, [job("a", 100), job("b", 100, cores=2), job("c", 100)])
    run.queue = [0, 1, 2]
    run._place()
    # a: the node with one core left; b (2 cores): the node with 3 free; c: that one's last 1
    assert run.started[0][1] == three and run.started[1][1] == one and run.started[2][1] == one
    assert not cluster._nodes[empty].jobs
