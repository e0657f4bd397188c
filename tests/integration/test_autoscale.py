"""The leader's cluster scaler with the directory provisioner: nodes are launched when the run
needs them and terminated when it ends, fails or is interrupted; after a kill -9 of the leader
``flow clean`` and ``--restart`` terminate what it left."""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flow.core import records
from flow.jobstores.registry import open_job_store

GATED = textwrap.dedent('''
    import os, sys, time
    from flow.core.job import Job

    def wait_for(gate, fail):
        deadline = time.time() + 60
        while not os.path.exists(gate) and time.time() < deadline:
            time.sleep(0.05)
        time.sleep(1.2)  # outlives a leader tick, so the scaler sees it running
        if fail:
            raise RuntimeError("this job fails")

    def start(job, gate, fail):
        for i in range(3):
            job.addChildFn(wait_for, gate, fail and i == 0, cores=0.1, memory="10M")

    if __name__ == "__main__":
        parser = Job.Runner.getDefaultArgumentParser()
        parser.add_argument("--gate", required=True)
        parser.add_argument("--fail", action="store_true")
        options = parser.parse_args()
        root = Job.wrapJobFn(start, options.gate, options.fail, cores=0.1, memory="10M")
        if options.restart:
            from flow.core.common import Flow
            with Flow(options) as flow:
                flow.restart()
        else:
            Job.Runner.startFlow(root, options)
''')

SCALING = ["--provisioner", "directory", "--nodeTypes", "small:2/8G,big:8/32G", "--scaleInterval", "0.2",
           "--retryCount", "0", "--clean", "never", "--noProgress", "--stats"]


def _command(tmp_path: Path, *extra: str) -> list[str]:
    script = tmp_path / "gated.py"
    script.write_text(GATED)
    return [sys.executable, str(script), str(tmp_path / "js"), "--gate", str(tmp_path / "gate"), *SCALING, *extra]


def _env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "FLOW_NODE_DIRECTORY": str(tmp_path / "nodes")}


def _nodes(tmp_path: Path) -> list[str]:
    directory = tmp_path / "nodes"
    return sorted(p.name for p in directory.iterdir()) if directory.is_dir() else []


def _recorded_nodes(tmp_path: Path) -> list[dict[str, object]]:
    raw = open_job_store(str(tmp_path / "js")).read_shared(records.NODES)
    return pickle.loads(raw) if raw else []


def _flow(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "flow.core.cli", *args], capture_output=True, text=True,
                          timeout=60, env=env)


def _start(tmp_path: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(_command(tmp_path, *extra), cwd=tmp_path, env=_env(tmp_path), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)


def _wait_for_nodes(tmp_path: Path, leader: subprocess.Popen[str]) -> list[str]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert leader.poll() is None, leader.communicate()[0]
        if any(name.endswith(".json") for name in _nodes(tmp_path)):
            return _nodes(tmp_path)
        time.sleep(0.05)
    pytest.fail("the leader launched no node")


def _stop(leader: subprocess.Popen[str]) -> None:
    if leader.poll() is None:
        os.killpg(leader.pid, signal.SIGKILL)
    leader.wait(timeout=30)


def test_nodes_live_while_the_run_needs_them_and_end_with_it(tmp_path: Path) -> None:
    (tmp_path / "gate").touch()
    done = subprocess.run(_command(tmp_path), cwd=tmp_path, env=_env(tmp_path), capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert _nodes(tmp_path) == []
    nodes = _recorded_nodes(tmp_path)
    assert nodes and all(n["ended"] is not None for n in nodes)
    assert {n["type"] for n in nodes} == {"small"}  # 0.1-core jobs: the big type is never bought
    stats = _flow("stats", str(tmp_path / "js"), env=_env(tmp_path))
    assert "node-hours" in stats.stdout and "small" in stats.stdout


@pytest.mark.parametrize("how", ["failure", "interrupt"])
def test_nodes_end_when_the_run_fails_or_is_interrupted(tmp_path: Path, how: str) -> None:
    leader = _start(tmp_path, *(["--fail"] if how == "failure" else []))
    try:
        _wait_for_nodes(tmp_path, leader)
        if how == "failure":
            (tmp_path / "gate").touch()
        else:
            leader.send_signal(signal.SIGINT)
        output = leader.communicate(timeout=60)[0]
        assert leader.returncode != 0, output
        assert _nodes(tmp_path) == [], output
    finally:
        _stop(leader)


@pytest.fixture
def killed_leader(tmp_path: Path) -> Iterator[list[str]]:
    """A run whose leader (and its workers, as on a lost machine) got kill -9 while it had
    nodes; yields the node records it left."""
    leader = _start(tmp_path)
    try:
        _wait_for_nodes(tmp_path, leader)
        os.killpg(leader.pid, signal.SIGKILL)
        leader.wait(timeout=30)
        yield [name for name in _nodes(tmp_path) if name.endswith(".json")]
    finally:
        _stop(leader)


def test_flow_clean_terminates_the_nodes_of_a_killed_leader(tmp_path: Path, killed_leader: list[str]) -> None:
    done = _flow("clean", str(tmp_path / "js"), env=_env(tmp_path))
    assert done.returncode == 0, done.stderr
    assert f"Terminated the {len(killed_leader)} node(s)" in done.stdout
    assert _nodes(tmp_path) == []


def test_restart_terminates_the_nodes_of_a_killed_leader(tmp_path: Path, killed_leader: list[str]) -> None:
    (tmp_path / "gate").touch()
    done = subprocess.run(_command(tmp_path, "--restart"), cwd=tmp_path, env=_env(tmp_path),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert _nodes(tmp_path) == []
    recorded = {str(n["id"]): n for n in _recorded_nodes(tmp_path)}
    assert killed_leader and all(recorded[name.split(".", 1)[1][: -len(".json")]]["ended"] for name in killed_leader)


def test_bad_node_types_are_one_paragraph(tmp_path: Path) -> None:
    done = subprocess.run([*_command(tmp_path)[:5], "--provisioner", "directory", "--nodeTypes", "small:2/8X"],
                          cwd=tmp_path, env=_env(tmp_path), capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.startswith("flow: error: node type 'small:2/8X'")


FANOUT = textwrap.dedent('''
    import time
    from flow.core.job import Job

    def work(i):
        time.sleep(1.0)
        return i

    def total(values):
        return sum(values)

    def start(job, n):
        values = [job.addChildFn(work, i, cores=1, memory="100M").rv() for i in range(n)]
        return job.addFollowOnFn(total, values, cores=0.1, memory="10M").rv()

    if __name__ == "__main__":
        options = Job.Runner.getDefaultArgumentParser().parse_args()
        print(Job.Runner.startFlow(Job.wrapJobFn(start, 8, cores=0.1, memory="10M"), options))
''')


def _plan(store: Path, *args: str) -> dict[str, Any]:
    done = _flow("plan", str(store), "--json", "--targetTime", "1", "--scaleInterval", "1", "--bootDelay", "0",
                 *args, env=dict(os.environ))
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


def test_flow_plan_replays_a_real_run(tmp_path: Path) -> None:
    script = tmp_path / "fanout.py"
    script.write_text(FANOUT)
    store = tmp_path / "js"
    done = subprocess.run([sys.executable, str(script), str(store), "--stats", "--noProgress", "--maxCores", "2"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "28", done.stderr
    one, four = _plan(store, "--nodeTypes", "n:2/4G", "--maxNodes", "1"), _plan(store, "--nodeTypes", "n:2/4G", "--maxNodes", "4")
    assert one["jobs"] == four["jobs"] == 10 and one["jobs_run"] == 10
    assert one["peak_nodes"] == 1 and four["peak_nodes"] > 1
    deadline = _plan(store, "--nodeTypes", "n:2/4G", "--maxNodes", "4", "--targetDeadline")
    assert deadline["jobs_run"] == 10 and deadline["makespan"] <= one["makespan"]
    # eight one-second jobs, two at a time on one node; the follow-on after all of them
    assert 4.0 <= one["makespan"] < 6.0
    assert four["makespan"] < one["makespan"]
    text = _flow("plan", str(store), "--nodeTypes", "n:2/4G", env=dict(os.environ))
    assert "predicted makespan" in text.stdout and "node-hours: n" in text.stdout and "peak nodes: 1" in text.stdout
    too_small = _flow("plan", str(store), "--nodeTypes", "n:0.5/4G", env=dict(os.environ))
    assert too_small.returncode == 1 and too_small.stderr.startswith("flow: error: job 'work' asks for 1 cores")
    assert "Traceback" not in too_small.stderr


# ---- the leader's release of drained nodes between scaler rounds ---------------------------------

class _Issued:
    """What the leader hands Autoscaling.on_tick: the issued jobs, here those a test places on
    the simulated cluster's nodes (job id -> name, seconds running)."""

    def __init__(self) -> None:
        self.running: dict[str, tuple[str, float]] = {}

    def issued_jobs(self) -> list[tuple[str, str, tuple[float, int, int, int, bool], float | None, bool]]:
        return [(job_id, name, (1.0, 2**30, 2**30, 0, False), seconds, False)
                for job_id, (name, seconds) in self.running.items()]


def _wait(condition: Any, what: str) -> None:
    deadline = time.monotonic() + 60
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_the_leader_releases_a_drained_node_when_its_job_ends_not_a_round_later(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """core/autoscale.py's Autoscaling (the leader's side: its rounds and releases on their
    thread, the job store's node record) with the simulated cluster as provisioner and per-node
    view. A round drains the node whose job ends first; when that job ends the leader's next tick
    terminates the node, though the next round is an hour away (--scaleInterval 3600)."""
    from flow.core.autoscale import Autoscaling
    from flow.core.options import default_options
    from flow.jobstores.registry import create_job_store
    from flow.provisioners import registry
    from flow.provisioners.simulated import SimulatedCluster

    monkeypatch.setitem(registry._PROVISIONERS, "simulated", "flow.provisioners.simulated:SimulatedCluster")
    options = default_options(str(tmp_path / "js"))
    options.provisioner, options.nodeTypes, options.maxNodes = "simulated", "n:1/4G", "2"
    options.scaleInterval, options.targetTime, options.betaInertia = 3600.0, 10000.0, 0.0
    store = create_job_store(str(tmp_path / "js"))
    scaling = Autoscaling(store, options, "run", batch=None, restart=False)
    cluster = scaling.scaler.provisioner  # type: ignore[attr-defined]
    assert isinstance(cluster, SimulatedCluster) and scaling.scaler.batch is cluster  # type: ignore[attr-defined]
    try:
        first, second = cluster.add_nodes(cluster.config.node_types[0], 2)
        cluster.now = 200.0  # both up; the first runs a job started 100 s ago, the second one of 10 s
        for node_id, (job, started) in zip((first, second), ((0, 100.0), (1, 190.0)), strict=True):
            cluster._nodes[node_id].jobs[job] = ("align", started, 1.0, 2**30)
            cluster._nodes[node_id].cores = 0.0
        leader = _Issued()
        leader.running = {"A": ("align", 100.0), "B": ("align", 10.0)}
        scaling.on_tick(leader)  # the round: both jobs fit one node over the target: one drains
        _wait(lambda: scaling.scaler.draining == {first}, "the round to drain the first node")  # type: ignore[attr-defined]
        _wait(lambda: not scaling._round.is_alive(), "the round to end")  # type: ignore[union-attr]
        scaling.on_tick(leader)  # no job ended: nothing is released
        assert {n.node_id for n in cluster.nodes()} == {first, second}

        del cluster._nodes[first].jobs[0]  # A ends; B runs on
        cluster._nodes[first].cores = 1.0
        leader.running = {"B": ("align", 20.0)}

        def released() -> bool:
            scaling.on_tick(leader)  # as the leader's loop does, again and again
            return [n.node_id for n in cluster.nodes()] == [second]

        _wait(released, "the drained node's release")
        assert scaling.scaler.draining == set()  # type: ignore[attr-defined]

        def ended() -> dict[str, bool]:
            return {n["id"]: n["ended"] is not None for n in pickle.loads(store.read_shared(records.NODES) or b"")}

        _wait(lambda: ended() == {first: True, second: False}, "the job store to record the release")
        assert cluster.busy_terminations == 0 and cluster.undrained_terminations == 0
    finally:
        scaling.shutdown()
    assert cluster.nodes() == []


# ---- the leader hands the scaler each job's issue time (--targetDeadline) -------------------------

def _sleep(seconds: float) -> None:
    time.sleep(seconds)


def _fan(job: Any, n: int, seconds: float) -> None:
    for _ in range(n):
        job.addChildFn(_sleep, seconds, cores=1, memory="50M")


def test_the_leader_hands_the_scaler_how_long_each_job_has_been_issued(
        options: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--targetDeadline counts --targetTime from when each job was issued, so the real leader
    (local batch system on one core: of three one-core children, two wait in its queue) must
    hand the scaler each job's time since issue, round after round. The directory provisioner;
    the scaler's tick is wrapped to keep what it was given, and runs as ever."""
    from flow.core.job import Job
    from flow.provisioners.contract import WorkItem
    from flow.provisioners.scaler import ClusterScaler

    rounds: list[tuple[bool, list[WorkItem]]] = []
    real_tick = ClusterScaler.tick

    def tick(self: ClusterScaler, work: Any) -> Any:
        rounds.append((self.params.deadline, list(work)))
        return real_tick(self, work)

    monkeypatch.setattr(ClusterScaler, "tick", tick)
    monkeypatch.setenv("FLOW_NODE_DIRECTORY", str(tmp_path / "nodes"))
    options.provisioner, options.nodeTypes, options.maxNodes = "directory", "n:1/4G", "3"
    options.scaleInterval, options.targetDeadline, options.maxCores = 0.1, True, 1
    Job.Runner.startFlow(Job.wrapJobFn(_fan, 3, 1.0, cores=0.1, memory="50M"), options)
    items = [item for _, work in rounds for item in work]
    assert rounds and all(deadline for deadline, _ in rounds)
    # a child that waited in the queue was seen waiting for most of a second
    assert max(i.issued_for for i in items if i.running_for is None) >= 0.5
    # a running job was issued no later than it started
    running = [i for i in items if i.running_for is not None]
    assert running and all(i.issued_for + 0.05 >= (i.running_for or 0.0) for i in running)
    assert _nodes(tmp_path) == []
