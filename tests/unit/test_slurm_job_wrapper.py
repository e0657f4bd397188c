"""The pieces of the HPC base that need no scheduler: the job script, the job wrapper
(flow.batchsystems.job_wrapper) that runs inside a Slurm job (run here as the real process it is), and the counted command runner."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flow.batchsystems import hpc
from flow.batchsystems.hpc import (
    CommandError,
    command_calls,
    job_script,
    reset_command_calls,
    run_command,
)
from flow.batchsystems.job_wrapper import TIME_LIMIT_EXIT, job_command
from tests.contract import payloads

REPO_ROOT = Path(__file__).resolve().parents[2]


def run_wrapper(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "flow.batchsystems.job_wrapper", *args], env=env, capture_output=True,
        text=True, timeout=timeout, start_new_session=True,
    )


def gone(pids: list[int], timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive = []
        for pid in pids:
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except FileNotFoundError:
                continue
            if "zombie" not in status:
                alive.append(pid)
        if not alive:
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize(
    ("function", "args", "code"),
    [("succeed", (), 0), ("exit_with", ("3",), 3), ("raise_error", (), 1)],
)
def test_wrapper_passes_the_exit_code_through(function: str, args: tuple[str, ...], code: int) -> None:
    done = run_wrapper("--", payloads.ref(function), *args)
    assert done.returncode == code, done.stderr


def test_wrapper_kills_what_the_call_left_behind(tmp_path: Path) -> None:
    pid_file = tmp_path / "pids"
    done = run_wrapper("--", payloads.ref("spawn_sleepers"), str(pid_file), "2", "0")
    assert done.returncode == 0, done.stderr
    assert gone([int(p) for p in pid_file.read_text().split()])


def test_wrapper_enforces_the_time_limit(tmp_path: Path) -> None:
    pid_file, marker = tmp_path / "pids", tmp_path / "job.timeout"
    done = run_wrapper("--time-limit=0.5", f"--marker={marker}", "--",
                       payloads.ref("spawn_sleepers"), str(pid_file), "1", "600")
    assert done.returncode == TIME_LIMIT_EXIT  # long before the payload's 600 s (run_wrapper's timeout)
    assert "exceeded its time limit of 0.5 s" in done.stderr
    assert marker.read_text().strip() == "0.5"
    assert gone([int(p) for p in pid_file.read_text().split()])


def test_wrapper_within_its_limit_leaves_no_marker(tmp_path: Path) -> None:
    marker = tmp_path / "job.timeout"
    done = run_wrapper("--time-limit=30", f"--marker={marker}", "--", payloads.ref("exit_with"), "124")
    assert done.returncode == 124 and not marker.exists()  # the call's own 124 is not a timeout


def test_wrapper_usage_errors() -> None:
    assert run_wrapper("--bogus", "--", "m:f").returncode == 2
    assert run_wrapper("--").returncode == 2


def test_job_script_sets_the_environment_and_execs(tmp_path: Path) -> None:
    out = tmp_path / "seen"
    command = job_command(sys.executable, payloads.ref("write_environment"), ("ODD", str(out)), None, None)
    environment = {"PYTHONPATH": str(REPO_ROOT), "ODD": "it's $HOME; `x` \"y\"\nz"}
    script = job_script(command, environment, "a\njob title")
    assert script.startswith("#!/bin/sh\n# flow job: a job title\n")
    assert script.splitlines()[-1].startswith("exec ")
    script_path = tmp_path / "job.sh"
    script_path.write_text(script)
    done = subprocess.run(["sh", str(script_path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert out.read_text() == environment["ODD"]
    with pytest.raises(ValueError, match="not valid"):
        job_script(command, {"A-B": "x"}, "job")


def test_job_command_options() -> None:
    assert job_command("py", "m:f", ("a",), None, "/m") == ["py", "-m", "flow.batchsystems.job_wrapper", "--", "m:f", "a"]
    assert job_command("py", "m:f", (), 1.5, "/m")[3:6] == ["--time-limit=1.5", "--marker=/m", "--"]


def test_run_command_counts_and_reports() -> None:
    reset_command_calls()
    done = run_command(["sh", "-c", "echo out; echo err >&2; exit 3"])
    assert (done.returncode, done.stdout, done.stderr, done.ok) == (3, "out\n", "err\n", False)
    assert done.words == "err"
    assert run_command(["cat"], input="piped").stdout == "piped"
    with pytest.raises(CommandError, match="not installed"):
        run_command(["flow-no-such-command"])
    with pytest.raises(CommandError, match="no answer within 0.2 s"):
        run_command(["sleep", "5"], timeout=0.2)
    assert command_calls() == {"sh": 1, "cat": 1, "flow-no-such-command": 1, "sleep": 1}
    reset_command_calls()
    assert hpc.command_calls() == {}
