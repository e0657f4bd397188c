"""``--provisioner slurm`` on the real elastic Slurm of ``../shared/slurm`` (dynamic nodes).

The launch and terminate commands are the test bed's ``add-local-node`` and ``remove-local-node``
(a real slurmd per node, in its own network namespace). Each test checks what Slurm itself says
(``scontrol``, ``sacct -c`` NodeList) and removes every node it created, even when it fails. Every
test skips, saying why, unless the local cluster runs in elastic mode (as root).
"""

from __future__ import annotations

import json
import os
import pickle
import re
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from flow.core import records
from flow.jobstores.registry import open_job_store
from tests.contract.test_batchsystem import ELASTIC_NODES, LOCAL_SLURM, require_slurm
from tests.integration.test_slurm import write_cwl_workflow

ADD, REMOVE = LOCAL_SLURM / "add-local-node", LOCAL_SLURM / "remove-local-node"
OUR_NODE = re.compile(r"^f[a-p]{8}\d{1,2}$")  # flow.provisioners.slurm's node names

FAN = textwrap.dedent('''
    import os, sys, time
    from flow.core.job import Job

    def elastic_leaf(job, i, seconds):
        time.sleep(seconds)
        return i * i

    def elastic_total(job, values):
        return sum(values)

    def elastic_fan(job, n, seconds):
        kids = [job.addChildJobFn(elastic_leaf, i, seconds, cores=1, memory="100M") for i in range(n)]
        return job.addFollowOnJobFn(elastic_total, [k.rv() for k in kids], cores=1, memory="100M").rv()

    def elastic_gated(job, marks, gate):
        """Marks each attempt with its node, then waits for the gate (a lost attempt never ends)."""
        attempt = len(os.listdir(marks)) + 1
        with open(os.path.join(marks, str(attempt)), "w") as handle:
            handle.write(os.environ.get("SLURMD_NODENAME", "?"))
        deadline = time.time() + 120
        while not os.path.exists(gate) and time.time() < deadline:
            time.sleep(0.1)
        return attempt

    if __name__ == "__main__":
        parser = Job.Runner.getDefaultArgumentParser()
        parser.add_argument("--jobs", type=int, default=60)
        parser.add_argument("--seconds", type=float, default=0.5)
        parser.add_argument("--marks")
        parser.add_argument("--gate")
        options = parser.parse_args()
        if options.restart:
            from flow.core.common import Flow
            with Flow(options) as flow:
                print("ANSWER", flow.restart())
        else:
            if options.marks:
                root = Job.wrapJobFn(elastic_gated, options.marks, options.gate, cores=1, memory="100M")
            else:
                root = Job.wrapJobFn(elastic_fan, options.jobs, options.seconds, cores=1, memory="100M")
            print("ANSWER", Job.Runner.startFlow(root, options))
''')


def elastic_options(node_types: str = "small:1/1G", max_nodes: str = "3") -> list[str]:
    return [
        "--batchSystem", "slurm", "--slurmPartition", "elastic", "--provisioner", "slurm",
        "--nodeTypes", node_types, "--minNodes", "0", "--maxNodes", max_nodes,
        "--scaleInterval", "1", "--targetTime", "5",
        "--nodeLaunchCommand", f"{ADD} {{name}} {{cores}} {{memory_mb}} {{features}}",
        "--nodeTerminateCommand", f"{REMOVE} {{name}}", "--nodeRegisterTimeout", "60",
    ]


def slurm_nodes() -> dict[str, str]:
    """Node name -> its whole ``scontrol show nodes -o`` line."""
    out = subprocess.run(["scontrol", "show", "nodes", "-o"], capture_output=True, text=True, timeout=60).stdout
    return {m.group(1): line for line in out.splitlines() if (m := re.match(r"NodeName=(\S+)", line))}


def namespaces() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=60).stdout
    return {line.split()[0] for line in out.splitlines() if line.startswith("slurm-")}


@pytest.fixture(autouse=True)
def elastic_cluster() -> Iterator[None]:
    """Skips unless the cluster has the elastic partition; afterwards removes every node (and
    node namespace) the test created, whatever happened."""
    require_slurm()
    if os.geteuid() != 0:
        pytest.skip("elastic Slurm nodes are started as root (add-local-node)")
    # Again for each test (about 0.3 s when nothing changes): a test session of a checkout that
    # still starts the cluster in plain mode switches it back.
    env = {**os.environ, "LOCAL_SLURM_ELASTIC": os.environ.get("LOCAL_SLURM_ELASTIC", ELASTIC_NODES)}
    subprocess.run([str(LOCAL_SLURM / "start-local-slurm")], capture_output=True, timeout=900, env=env)
    if "PartitionName=elastic" not in subprocess.run(["scontrol", "show", "partition", "elastic"],
                                                     capture_output=True, text=True, timeout=60).stdout:
        pytest.skip("the local Slurm cluster has no elastic partition (LOCAL_SLURM_ELASTIC=N start-local-slurm)")
    nodes_before, spaces_before = set(slurm_nodes()), namespaces()
    yield
    leftovers = {n for n in slurm_nodes() if OUR_NODE.match(n)} - nodes_before
    leftovers |= {s.removeprefix("slurm-") for s in namespaces() - spaces_before}
    for name in sorted(leftovers):
        subprocess.run([str(REMOVE), name], capture_output=True, timeout=120)


def start(tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    script = tmp_path / "fan.py"
    script.write_text(FAN)
    command = [sys.executable, str(script), str(tmp_path / "js"), "--noProgress", "--clean", "never",
               "--workDir", str(tmp_path / "work"), *args]
    # Run from tmp_path: Slurm records it as the jobs' WorkDir, which tells this run's jobs apart.
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)


def finish(process: subprocess.Popen[str], timeout: float = 240) -> str:
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
        raise AssertionError(f"the run did not end in {timeout:g} s: {err[-3000:]}") from None
    assert process.returncode == 0, err[-3000:]
    return out + err


def flow(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "flow.core.cli", *args], capture_output=True, text=True,
                          timeout=240)


def wait_until(condition: Callable[[], Any], what: str, timeout: float = 120) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


def run_prefix(store_path: Path) -> str:
    """The node-name prefix of the run in this job store (f + eight letters of its id)."""
    config = records.load_config(open_job_store(str(store_path)))
    assert config is not None
    from flow.provisioners.slurm import node_prefix
    return node_prefix(config.workflow_id)


def recorded_nodes(store_path: Path) -> list[dict[str, Any]]:
    raw = open_job_store(str(store_path)).read_shared(records.NODES)
    return pickle.loads(raw) if raw else []


def peak(nodes: list[dict[str, Any]]) -> int:
    events = sorted([(n["launched"], 1) for n in nodes] + [(n["ended"] or time.time(), -1) for n in nodes])
    best = current = 0
    for _, step in events:
        current += step
        best = max(best, current)
    return best


def live_nodes_of(prefix: str) -> list[str]:
    return sorted(n for n in slurm_nodes() if n.startswith(prefix)) + sorted(
        s for s in namespaces() if s.startswith("slurm-" + prefix))


def jobs_by_node(work_dir: Path) -> dict[str, str]:
    """Slurm job id -> NodeList of the ended jobs submitted from ``work_dir`` (sacct -c: the
    job-completion log)."""
    out = subprocess.run(["sacct", "-c", "--noheader", "--parsable2", "-S", "now-1hour",
                          "--format=JobID,WorkDir,NodeList"], capture_output=True, text=True, timeout=60).stdout
    found = {}
    for line in out.splitlines():
        fields = line.split("|")
        if len(fields) >= 3 and fields[1] == str(work_dir):
            found[fields[0]] = fields[2]
    return found


def test_fan_out_grows_from_zero_and_shrinks_to_zero(tmp_path: Path) -> None:
    done = finish(start(tmp_path, "--jobs", "60", "--stats", *elastic_options()))
    assert f"ANSWER {sum(i * i for i in range(60))}" in done, done[-2000:]
    prefix = run_prefix(tmp_path / "js")
    nodes = recorded_nodes(tmp_path / "js")
    assert nodes and all(n["id"].startswith(prefix) and n["ended"] is not None for n in nodes), nodes
    assert 2 <= peak(nodes) <= 3, nodes
    # no node released and bought again: the root's children are issued before the scaler looks,
    # so the root's node is not seen idle with nothing queued (it was: 4 launches for a peak of 3)
    assert len(nodes) == peak(nodes), nodes
    assert live_nodes_of(prefix) == []  # none left in Slurm, no machine left running
    ran = wait_until(lambda: (j := jobs_by_node(tmp_path)) and len(j) >= 62 and j,
                     "the run's 62 jobs in Slurm's job-completion log")
    used = set(ran.values())
    assert used <= {n["id"] for n in nodes}, (used, nodes)  # every job ran on a node of the run
    assert len(used) >= 2, used
    stats = flow("stats", str(tmp_path / "js"))
    assert stats.returncode == 0, stats.stderr
    assert "node-hours" in stats.stdout and "small" in stats.stdout, stats.stdout


def test_the_large_type_is_never_launched_for_one_cpu_jobs(tmp_path: Path) -> None:
    done = finish(start(tmp_path, "--jobs", "8", *elastic_options("large:2/2G,small:1/1G", "2")))
    assert f"ANSWER {sum(i * i for i in range(8))}" in done, done[-2000:]
    nodes = recorded_nodes(tmp_path / "js")
    assert nodes and {n["type"] for n in nodes} == {"small"}, nodes
    assert live_nodes_of(run_prefix(tmp_path / "js")) == []


def kill_when_nodes_run(process: subprocess.Popen[str], store: Path) -> str:
    """kill -9 the leader once a node of its run runs a job; the run's prefix."""

    def prefix() -> str | None:
        try:
            return run_prefix(store)
        except Exception:  # noqa: BLE001 - the store is not written yet
            return None

    found: str = wait_until(prefix, "the run's configuration")
    wait_until(lambda: any(k.startswith(found) and "CPUAlloc=1 " in line for k, line in slurm_nodes().items()),
               "a node of the run running a job")
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    return found


def test_kill_9_then_restart_resumes_and_ends_with_no_node(tmp_path: Path) -> None:
    process = start(tmp_path, "--jobs", "6", "--seconds", "3", *elastic_options())
    try:
        prefix = kill_when_nodes_run(process, tmp_path / "js")
        assert live_nodes_of(prefix), "the killed leader left no node to clean up"
    finally:
        process.kill()
        process.wait()
    done = finish(start(tmp_path, "--restart", *elastic_options()))
    assert f"ANSWER {sum(i * i for i in range(6))}" in done, done[-2000:]
    assert live_nodes_of(prefix) == []


@pytest.mark.parametrize("command", ["clean", "kill"])
def test_kill_9_then_flow_clean_or_kill_removes_every_node(tmp_path: Path, command: str) -> None:
    process = start(tmp_path, "--jobs", "6", "--seconds", "30", *elastic_options())
    try:
        prefix = kill_when_nodes_run(process, tmp_path / "js")
    finally:
        process.kill()
        process.wait()
    left = live_nodes_of(prefix)
    assert left, "the killed leader left no node to clean up"
    done = flow(command, str(tmp_path / "js"))
    assert done.returncode == 0, done.stderr
    assert "Terminated the" in done.stdout, done.stdout
    assert live_nodes_of(prefix) == []


def test_a_node_lost_mid_job_is_replaced_and_the_job_retried(tmp_path: Path) -> None:
    marks, gate = tmp_path / "marks", tmp_path / "gate"
    marks.mkdir()
    process = start(tmp_path, "--marks", str(marks), "--gate", str(gate), "--retryCount", "0",
                    *elastic_options(max_nodes="1"))
    try:
        first = wait_until(lambda: (marks / "1").exists() and (marks / "1").read_text(), "the job's first attempt")
        # The machine dies: every process on it (slurmd and the job), then it leaves Slurm.
        pids = subprocess.run(["ip", "netns", "pids", f"slurm-{first}"], capture_output=True, text=True).stdout
        for pid in pids.split():
            os.kill(int(pid), signal.SIGKILL)
        subprocess.run([str(REMOVE), first], check=True, timeout=120)
        second = wait_until(lambda: (marks / "2").exists() and (marks / "2").read_text(), "a second attempt")
        gate.write_text("go")
        done = finish(process)
    finally:
        process.kill()
        process.wait()
    assert second != first and OUR_NODE.match(second), (first, second)
    assert "ANSWER 2" in done, done[-2000:]
    assert live_nodes_of(run_prefix(tmp_path / "js")) == []


def test_flow_cwl_with_the_slurm_provisioner(tmp_path: Path) -> None:
    pytest.importorskip("cwltool")
    write_cwl_workflow(tmp_path)
    command = [sys.executable, "-m", "flow.cwl.main", "--no-container", "--noProgress", "--clean", "never",
               "--jobStore", str(tmp_path / "js"), "--workDir", str(tmp_path / "work"), *elastic_options(),
               "wf.cwl", "job.json"]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout) == {"counts": [1, 2, 3]}
    nodes = recorded_nodes(tmp_path / "js")
    assert nodes, "no node was launched"
    assert live_nodes_of(run_prefix(tmp_path / "js")) == []


def test_a_node_that_never_registers_is_terminated_and_the_run_goes_on(tmp_path: Path) -> None:
    """The first launch "succeeds" without starting anything; later ones start real nodes."""
    mark = tmp_path / "first-launch"
    launch = ("sh -c 'if [ ! -e \"$0\" ]; then echo \"$1\" > \"$0\"; exit 0; fi; exec \"$5\" \"$1\" \"$2\" \"$3\" \"$4\"' "
              f"{mark} {{name}} {{cores}} {{memory_mb}} {{features}} {ADD}")
    options = elastic_options(max_nodes="1")
    options[options.index("--nodeLaunchCommand") + 1] = launch
    options[options.index("--nodeRegisterTimeout") + 1] = "3"
    done = finish(start(tmp_path, "--jobs", "2", "--logLevel", "INFO", *options))
    assert f"ANSWER {0 + 1}" in done, done[-2000:]
    phantom = mark.read_text().strip()
    assert re.search(rf"node {phantom} was launched \d+ s ago and never registered with Slurm", done), done[-3000:]
    nodes = recorded_nodes(tmp_path / "js")
    assert phantom in {n["id"] for n in nodes} and len(nodes) >= 2, nodes
    assert live_nodes_of(run_prefix(tmp_path / "js")) == []
