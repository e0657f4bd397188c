"""The ``flow`` command against real workflows run as separate processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from flow.core.cli import main

WORKFLOW = textwrap.dedent('''
    import sys
    from flow.core.job import Job

    def leaf(i):
        print("leaf", i)
        return i

    def total(values):
        return sum(values)

    def bad(x):
        for i in range(30):
            print(f"noise line {i}")
        raise ValueError(f"boom {x}")

    def start(job, n, fail):
        values = [job.addChildFn(leaf, i, cores=0.1, memory="10M").rv() for i in range(n)]
        if fail:
            job.addChildFn(bad, 7, cores=0.1, memory="10M")
        return job.addFollowOnFn(total, values, cores=0.1, memory="10M").rv()

    if __name__ == "__main__":
        parser = Job.Runner.getDefaultArgumentParser()
        parser.add_argument("--leaves", type=int, default=3)
        parser.add_argument("--fail", action="store_true")
        parser.add_argument("--encapsulate", action="store_true")
        options = parser.parse_args()
        root = Job.wrapJobFn(start, options.leaves, options.fail, cores=0.1, memory="10M")
        root = root.encapsulate() if options.encapsulate else root
        print("result", Job.Runner.startFlow(root, options))
''')

SLEEPY = textwrap.dedent('''
    import os, subprocess, time
    from flow.core.job import Job

    def nap(pidfile):
        child = subprocess.Popen(["sleep", "30"])
        with open(pidfile + ".tmp", "w") as handle:
            handle.write(f"{os.getpid()} {child.pid}")
        os.replace(pidfile + ".tmp", pidfile)
        time.sleep(30)

    if __name__ == "__main__":
        parser = Job.Runner.getDefaultArgumentParser()
        parser.add_argument("--pidfile", required=True)
        options = parser.parse_args()
        Job.Runner.startFlow(Job.wrapFn(nap, options.pidfile, cores=0.1, memory="10M"), options)
''')


def run_workflow(tmp_path: Path, *args: str, script: str = WORKFLOW) -> tuple[Path, subprocess.CompletedProcess[str]]:
    path = tmp_path / "workflow.py"
    path.write_text(script)
    store = tmp_path / "js"
    done = subprocess.run(
        [sys.executable, str(path), str(store), "--clean", "never", "--noProgress", *args],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )
    return store, done


def flow(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flow.core.cli", *map(str, args)],
        cwd=cwd, capture_output=True, text=True, timeout=60,
    )


def assert_one_paragraph_error(done: subprocess.CompletedProcess[str]) -> None:
    assert done.returncode == 1
    assert "Traceback" not in done.stderr and "Traceback" not in done.stdout
    assert done.stderr.startswith("flow: error: ")
    assert "\n\n" not in done.stderr.strip()  # one paragraph


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


# ---- help ------------------------------------------------------------------------------------
def test_help_lists_subcommands() -> None:
    done = flow("--help")
    assert done.returncode == 0
    for name in ("status", "stats", "clean", "kill"):
        assert name in done.stdout
        sub = flow(name, "--help")
        assert sub.returncode == 0 and "JOBSTORE" in sub.stdout
    assert "--failIfNotComplete" in flow("status", "--help").stdout
    assert flow().returncode == 2  # a subcommand is required


def test_console_script(tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "flow"
    if not script.exists():
        pytest.skip("the flow console script is not installed next to this Python")
    done = subprocess.run([str(script), "status", str(tmp_path / "nowhere")], capture_output=True, text=True)
    assert_one_paragraph_error(done)
    assert subprocess.run([str(script), "clean", str(tmp_path / "nowhere")], capture_output=True).returncode == 0


# ---- status ------------------------------------------------------------------------------------
def test_status_of_a_succeeded_run(tmp_path: Path) -> None:
    store, run = run_workflow(tmp_path, "--leaves", "3")
    assert run.returncode == 0, run.stderr
    done = flow("status", store, "--failIfNotComplete")
    assert done.returncode == 0, done.stderr
    assert "succeeded" in done.stdout and "not running" in done.stdout
    assert "5 done, 0 failed, 0 pending" in done.stdout  # start, 3 leaves, total
    assert "Failed job" not in done.stdout
    info = json.loads(flow("status", store, "--json").stdout)
    assert info["status"] == "succeeded"
    assert info["leader"]["alive"] is False
    assert info["counts"] == {"done": 5, "failed": 0, "pending": 0}
    assert info["failed"] == []


def test_status_of_a_failed_run(tmp_path: Path) -> None:
    store, run = run_workflow(tmp_path, "--leaves", "2", "--fail")
    assert run.returncode != 0
    done = flow("status", store)
    assert done.returncode == 0, done.stderr
    assert "failed" in done.stdout.splitlines()[0]
    assert "Failed job bad (" in done.stdout and "failed for good" in done.stdout
    assert "ValueError: boom 7" in done.stdout
    assert "noise line 29" in done.stdout and "noise line 0\n" not in done.stdout  # the tail only
    assert "1 failed" in done.stdout and "1 pending" in done.stdout  # total never ran
    info = json.loads(flow("status", store, "--json").stdout)
    [failed] = info["failed"]
    assert failed["label"] == "bad" and failed["for_good"] is True
    assert len(failed["log_tail"]) == 20 and failed["log_tail"][-1] == "ValueError: boom 7"
    assert failed["job_id"] in done.stdout
    strict = flow("status", store, "--failIfNotComplete")
    assert strict.returncode == 2
    assert "Failed job bad" in strict.stdout


# ---- stats -------------------------------------------------------------------------------------
def test_stats_counts_jobs_by_kind(tmp_path: Path) -> None:
    store, run = run_workflow(tmp_path, "--leaves", "4", "--stats")
    assert run.returncode == 0, run.stderr
    done = flow("stats", store)
    assert done.returncode == 0, done.stderr
    rows = {line.split()[0]: line.split() for line in done.stdout.splitlines()[1:]}
    assert rows["leaf"][1] == "4" and rows["start"][1] == "1" and rows["total"][1] == "1"
    assert rows["TOTAL"][1] == "6"
    assert "B" in rows["leaf"][-1]  # a size such as "19.5 MiB"
    info = json.loads(flow("stats", store, "--json").stdout)
    assert {k["kind"]: k["count"] for k in info["kinds"]} == {"leaf": 4, "start": 1, "total": 1}
    assert info["total"]["count"] == 6
    assert all(k["memory_max"] > 0 and k["wall_total"] >= 0 for k in info["kinds"])


def test_internal_jobs_are_counted_apart(tmp_path: Path) -> None:
    store, run = run_workflow(tmp_path, "--leaves", "2", "--stats", "--encapsulate")
    assert run.returncode == 0, run.stderr
    status = json.loads(flow("status", store, "--json").stdout)
    assert status["counts"] == {"done": 4, "failed": 0, "pending": 0}
    assert status["internal"] == {"done": 2, "failed": 0, "pending": 0}  # the wrapper and its follow-on
    assert "Internal jobs: 2 done" in flow("status", store).stdout
    plain = flow("stats", store)
    assert "EncapsulatedJob" not in plain.stdout and "2 internal job run(s) not shown" in plain.stdout
    assert [line.split()[1] for line in plain.stdout.splitlines() if line.startswith("TOTAL")] == ["4"]
    every = flow("stats", store, "--all")
    assert "EncapsulatedJob *" in every.stdout
    kinds = {k["kind"]: k for k in json.loads(flow("stats", store, "--json", "--all").stdout)["kinds"]}
    assert kinds["EncapsulatedJob"]["hidden"] is True and kinds["leaf"]["count"] == 2


def test_stats_without_stats_option(tmp_path: Path) -> None:
    store, run = run_workflow(tmp_path)
    assert run.returncode == 0, run.stderr
    done = flow("stats", store)
    assert done.returncode == 0
    assert "did not use --stats" in done.stdout


# ---- clean ---------------------------------------------------------------------------------------
def test_clean_removes_the_store(tmp_path: Path) -> None:
    store, run = run_workflow(tmp_path)
    assert run.returncode == 0, run.stderr
    assert store.is_dir()
    done = flow("clean", store)
    assert done.returncode == 0, done.stderr
    assert not store.exists()
    again = flow("clean", store)
    assert again.returncode == 0
    assert "nothing to clean" in again.stdout


# ---- kill ------------------------------------------------------------------------------------------
def _wait_running(store: Path, pidfile: Path, leader: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert leader.poll() is None, leader.communicate()
        if pidfile.exists():
            info = json.loads(flow("status", store, "--json").stdout or "{}")
            if info.get("status") == "running" and info["leader"]["alive"]:
                assert info["leader"]["pid"] == leader.pid
                return
        time.sleep(0.2)
    pytest.fail("the workflow did not start running")


def test_kill_stops_a_running_workflow(tmp_path: Path) -> None:
    script, store, pidfile = tmp_path / "sleepy.py", tmp_path / "js", tmp_path / "pids"
    script.write_text(SLEEPY)
    leader = subprocess.Popen(
        [sys.executable, str(script), str(store), "--clean", "never", "--noProgress", "--pidfile", str(pidfile)],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    pids: list[int] = []
    try:
        _wait_running(store, pidfile, leader)
        pids = [int(p) for p in pidfile.read_text().split()]
        refused = flow("clean", store)
        assert refused.returncode == 1 and "running" in refused.stderr and store.is_dir()
        done = flow("kill", store)
        assert done.returncode == 0, done.stderr
        assert "SIGTERM" in done.stdout
        started = time.monotonic()
        leader.wait(timeout=120)
        assert leader.returncode != 0
        while not all(gone(pid) for pid in pids) and time.monotonic() - started < 120:
            time.sleep(0.1)
        assert all(gone(pid) for pid in pids), "the job's processes survived the kill"
        after = flow("status", store, "--json")
        assert json.loads(after.stdout)["status"] != "running"
        assert "not running" in flow("kill", store).stdout
    finally:
        if leader.poll() is None:
            leader.kill()
            leader.wait()
        for pid in pids:
            if not gone(pid):
                os.kill(pid, signal.SIGKILL)


def test_kill_of_a_finished_workflow(tmp_path: Path) -> None:
    store, run = run_workflow(tmp_path)
    assert run.returncode == 0, run.stderr
    done = flow("kill", store)
    assert done.returncode == 0
    assert "not running" in done.stdout and "succeeded" in done.stdout


# ---- errors ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("command", ["status", "stats", "kill"])
def test_missing_store_is_one_paragraph(tmp_path: Path, command: str) -> None:
    done = flow(command, tmp_path / "nowhere")
    assert_one_paragraph_error(done)
    assert "nowhere" in done.stderr


@pytest.mark.parametrize("command", ["status", "stats", "kill", "clean"])
def test_foreign_directory_is_one_paragraph(tmp_path: Path, command: str) -> None:
    (tmp_path / "mine.txt").write_text("not a job store")
    done = flow(command, tmp_path)
    assert_one_paragraph_error(done)
    assert "not a flow job store" in done.stderr
    assert (tmp_path / "mine.txt").exists()


def test_status_names_a_corrupt_job_description(tmp_path: Path) -> None:
    store, run = run_workflow(tmp_path)
    assert run.returncode == 0, run.stderr
    root = (store / "shared" / "root").read_text()
    (store / "jobs" / root[:2] / f"{root}.job").write_bytes(b"garbage")
    done = flow("status", store)
    assert done.returncode == 3
    assert "Traceback" not in done.stderr + done.stdout
    assert f"the record of job {root} (the root job) is unreadable" in done.stderr


def test_main_in_process(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", str(tmp_path / "nowhere")]) == 1
    assert capsys.readouterr().err.startswith("flow: error: ")
    assert main(["clean", str(tmp_path / "nowhere")]) == 0
