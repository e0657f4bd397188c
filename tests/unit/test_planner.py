"""The pure planner and the node-type syntax: fixed inputs, exact node counts."""

from __future__ import annotations

import pytest

from flow.provisioners.planner import (
    PlanJob,
    ScalerParams,
    UnplaceableJobError,
    pack,
    plan,
    planned_runtime,
)
from flow.provisioners.shape import (
    NodeTypeError,
    Shape,
    parse_counts,
    parse_node_type,
    parse_node_types,
)

G = 1024**3


def jobs(n: int, seconds: float, cores: float, memory: int, name: str = "job", preemptible: bool = False) -> list[PlanJob]:
    return [PlanJob(name, Shape(seconds, memory, cores, G, preemptible))] * n


def params(**kw: object) -> ScalerParams:
    base: dict[str, object] = {"targetTime": 3600.0, "betaInertia": 0.0}
    return ScalerParams(**(base | kw))  # type: ignore[arg-type]


def test_node_type_syntax() -> None:
    t = parse_node_type("m5.large:2/8G/100G:preemptible:cost=0.3")
    assert (t.name, t.shape.cores, t.shape.memory, t.shape.disk, t.preemptible, t.cost) == (
        "m5.large", 2.0, 8 * G, 100 * G, True, 0.3)
    assert parse_node_type("small:2/8G").cost == 4.0  # cores + GiB/4
    assert [t.name for t in parse_node_types("a:1/1G, b:2/2G")] == ["a", "b"]


@pytest.mark.parametrize("text, words", [
    ("small", "CORES/MEMORY"), ("small:2/8X", "'8X' is not a size"), (":2/8G", "name"),
    ("small:0/8G", "more than zero"), ("small:2/8G:spot", "unknown flag 'spot'"),
    ("small:2/8G:cost=cheap", "cost 'cheap'"),
])
def test_bad_node_types_get_one_line(text: str, words: str) -> None:
    with pytest.raises(NodeTypeError, match=words) as info:
        parse_node_type(text)
    assert "\n" not in str(info.value) and repr(text) in str(info.value)


def test_counts_lists_shorter_than_the_types_are_expanded() -> None:
    assert parse_counts("2", 3, "--maxNodes") == [2, 2, 2]
    assert parse_counts("1,5", 3, "--maxNodes") == [1, 5, 5]
    with pytest.raises(NodeTypeError, match="3 counts for 2"):
        parse_counts("1,2,3", 2, "--maxNodes")
    with pytest.raises(NodeTypeError, match="duplicate|twice"):
        parse_node_types("a:1/1G,a:2/2G")


def test_jobs_share_a_node_over_the_target_time() -> None:
    types = parse_node_types("n:4/16G")
    assert pack(types, jobs(10, 600, 1, G), params()) == {"n": 1}  # 4 at a time, 6 rounds
    assert pack(types, jobs(10, 600, 1, G), params(targetTime=600)) == {"n": 3}  # 4 per node
    assert pack(types, jobs(25, 600, 1, G), params()) == {"n": 2}  # 24 per node


def test_a_slot_runs_the_nearest_whole_number_of_jobs_in_the_target_time() -> None:
    # 608 s in 1800 s: 2.96 jobs a slot, packed as 3 of 600 s (not 2 of 900 s: 13 nodes for 100)
    assert (planned_runtime(608, 1800), planned_runtime(800, 1800), planned_runtime(1300, 1800)) == (600, 900, 1800)
    assert pack(parse_node_types("n:4/16G"), jobs(100, 608, 1, G), params(targetTime=1800)) == {"n": 9}


def test_time_slices_take_a_big_then_small_jobs() -> None:
    types = parse_node_types("n:4/16G")
    work = jobs(1, 1800, 4, G, "big") + jobs(4, 1800, 1, G, "small")
    assert pack(types, work, params()) == {"n": 1}  # big from 0, the four small from 1800
    assert pack(types, work + jobs(1, 1800, 1, G), params()) == {"n": 2}


def test_jobs_longer_than_the_target_time_hold_a_slot_throughout() -> None:
    assert pack(parse_node_types("n:4/16G"), jobs(8, 7200, 1, G), params()) == {"n": 2}


def test_memory_binds_as_well_as_cores() -> None:
    assert pack(parse_node_types("n:16/16G"), jobs(8, 3600, 1, 4 * G), params()) == {"n": 2}


def test_smallest_type_that_fits_and_never_large() -> None:
    types = parse_node_types("large:16/64G,small:2/8G,medium:4/16G")  # out of order
    counts = pack(types, jobs(100, 600, 1, 4 * G, "s") + jobs(100, 600, 4, 16 * G, "m"), params())
    assert counts == {"large": 0, "small": 8, "medium": 17}
    assert pack(types, jobs(100, 600, 1, 4 * G), params()) == {"large": 0, "small": 9, "medium": 0}


def test_cost_per_job_decides_not_size() -> None:
    # Three-core jobs: a 4-core node holds one at a time, a 16-core node five for 3.6x the price.
    types = parse_node_types("four:4/16G,sixteen:16/64G:cost=14.4")
    assert pack(types, jobs(50, 3600, 3, G), params()) == {"four": 0, "sixteen": 10}


def test_a_job_too_big_for_every_type_is_named() -> None:
    types = parse_node_types("small:2/8G,medium:4/16G")
    with pytest.raises(UnplaceableJobError, match=r"job 'huge' asks for 8 cores, 32G memory") as info:
        plan(types, jobs(3, 60, 1, G) + jobs(1, 60, 8, 32 * G, "huge"), params())
    assert info.value.job_name == "huge" and "small (2 cores" in str(info.value)


def test_max_nodes_caps_without_spilling_to_a_dearer_type() -> None:
    types = parse_node_types("small:2/8G,medium:4/16G")
    work = jobs(40, 3600, 1, G) + jobs(3, 3600, 4, G, "wide")
    assert plan(types, work, params()).counts == {"small": 20, "medium": 3}
    assert plan(types, work, params(maxNodes=(5, 2))).counts == {"small": 5, "medium": 2}
    assert plan(types, work, params(maxNodes=(5, 100))).counts == {"small": 5, "medium": 3}


def test_min_nodes_kept_without_work() -> None:
    types = parse_node_types("small:2/8G,medium:4/16G")
    assert plan(types, [], params(minNodes=(1, 0))).counts == {"small": 1, "medium": 0}


def test_inertia_damps_and_always_moves() -> None:
    types = parse_node_types("n:1/4G")
    half = params(betaInertia=0.5)
    assert plan(types, jobs(20, 3600, 1, G), half, previous={"n": 10}).counts == {"n": 15}
    assert plan(types, [], half, previous={"n": 10}).counts == {"n": 5}
    assert plan(types, [], params(betaInertia=0.9), previous={"n": 1}).counts == {"n": 0}
    assert plan(types, jobs(1, 60, 1, G), params(betaInertia=0.9)).counts == {"n": 1}


def test_inertia_narrows_oscillation_when_the_queue_jitters() -> None:
    types = parse_node_types("n:1/4G")

    def swing(beta: float) -> int:
        counts, previous = [], {"n": 8}
        for size in [10, 6] * 5:
            previous = plan(types, jobs(size, 3600, 1, G), params(betaInertia=beta), previous).counts
            counts.append(previous["n"])
        return max(counts[4:]) - min(counts[4:])

    assert swing(0.0) == 4
    assert swing(0.8) == 1


def test_preemptible_jobs_prefer_preemptible_nodes_and_others_never_use_them() -> None:
    types = parse_node_types("od:4/16G,spot:4/16G:preemptible:cost=2")
    work = jobs(8, 3600, 1, G, "p", preemptible=True) + jobs(8, 3600, 1, G, "np")
    assert pack(types, work, params()) == {"od": 2, "spot": 2}


def test_missing_preemptible_nodes_are_compensated() -> None:
    types = parse_node_types("od:4/16G,spot:4/16G:preemptible:cost=2")
    work = jobs(16, 3600, 1, G, "p", preemptible=True)
    result = plan(types, work, params(preemptibleCompensation=0.5), deficits={"spot": 3})
    assert result.counts == {"od": 2, "spot": 4}
    assert "missing spot" in result.why["od"]
    assert plan(types, work, params(), deficits={"spot": 3}).counts == {"od": 0, "spot": 4}
