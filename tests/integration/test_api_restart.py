"""Workflow scripts run as real processes: restart after SIGKILL of the whole process group,
and how a failing workflow ends on the command line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import psutil
import pytest

SCRIPT = textwrap.dedent('''
    """A workflow script as a user writes it: job functions in __main__."""
    import os
    import sys
    import time

    from flow.core.common import Flow
    from flow.core.job import Job


    def record(log, step):
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            os.write(fd, f"{step} {os.getpid()} {time.time()!r}\\n".encode())
        finally:
            os.close(fd)


    def step(job, i, n, acc, log, seconds):
        record(log, i)
        time.sleep(seconds)
        if i + 1 < n:
            return job.addChildJobFn(step, i + 1, n, acc + i, log, seconds, cores=1, memory="50M").rv()
        return acc + i


    def leaf(i, log, seconds):
        record(log, i)
        time.sleep(seconds)
        return i * i


    def total(values):
        return sum(values)


    def fan(job, n, log, seconds):
        values = [job.addChildFn(leaf, i, log, seconds, cores=1, memory="50M").rv() for i in range(n)]
        return job.addFollowOnFn(total, values, cores=0.1, memory="50M").rv()


    def fails(job):
        print("the failing job prints this")
        raise RuntimeError("a job that fails on purpose: marker-2c81")


    def failing_root(job):
        job.addChildJobFn(fails, cores=0.1, memory="50M")


    if __name__ == "__main__":
        parser = Job.Runner.getDefaultArgumentParser()
        parser.add_argument("--mode", choices=["chain", "fan", "fail"], required=True)
        parser.add_argument("--steps", type=int, default=20)
        parser.add_argument("--stepLog", default=os.devnull)
        parser.add_argument("--seconds", type=float, default=0.2)
        options = parser.parse_args()
        if options.mode == "chain":
            root = Job.wrapJobFn(step, 0, options.steps, 0, options.stepLog, options.seconds, cores=1, memory="50M")
        elif options.mode == "fan":
            root = Job.wrapJobFn(fan, options.steps, options.stepLog, options.seconds, cores=0.1, memory="50M")
        else:
            root = Job.wrapJobFn(failing_root, cores=0.1, memory="50M")
        with Flow(options) as flow:
            result = flow.restart() if options.restart else flow.start(root)
        print(f"RESULT {result}")
''')


def write_script(tmp_path: Path) -> Path:
    script = tmp_path / "workflow_script.py"
    script.write_text(SCRIPT)
    return script


def step_lines(log: Path) -> list[tuple[int, int, float]]:
    """Complete ``step pid time`` lines of the step log."""
    if not log.exists():
        return []
    out = []
    for line in log.read_text().splitlines(keepends=True):
        if line.endswith("\n"):
            step, pid, stamp = line.split()
            out.append((int(step), int(pid), float(stamp)))
    return out


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def kill_midway_and_restart(tmp_path: Path, mode: str, steps: int, max_cores: int) -> tuple[list, list, str]:
    """Run the script, SIGKILL its process group once a third of the steps have started, check
    that no worker survives, then rerun with --restart. Returns (first-run lines, all lines,
    the restart's stdout)."""
    script = write_script(tmp_path)
    store, log = tmp_path / "js", tmp_path / "steps.log"
    common = [
        str(store), "--mode", mode, "--steps", str(steps), "--stepLog", str(log),
        "--maxCores", str(max_cores), "--workDir", str(tmp_path / "work"), "--noProgress",
    ]
    first = subprocess.Popen(
        [sys.executable, str(script), *common], start_new_session=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while len(step_lines(log)) < steps // 3:
            assert first.poll() is None, f"the first run ended early: {first.communicate()}"
            assert time.monotonic() < deadline, "the first run made no progress"
            time.sleep(0.01)
        os.killpg(first.pid, signal.SIGKILL)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
        first.communicate(timeout=30)
    assert first.returncode == -signal.SIGKILL
    killed_at = step_lines(log)
    assert len(killed_at) < steps, "the workflow finished before it was killed"
    # the pool workers of the killed leader (each its own session) die with it
    worker_pids = {pid for _, pid, _ in killed_at}
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in worker_pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [pid for pid in worker_pids if alive(pid)], "workers of the killed run survived"
    first_run = step_lines(log)  # no worker is left that could start a step
    assert len(first_run) == len(killed_at), "a step started after its leader was killed"

    second = subprocess.run(
        [sys.executable, str(script), *common, "--restart"],
        capture_output=True, text=True, timeout=120,
    )
    assert second.returncode == 0, second.stderr
    return first_run, step_lines(log), second.stdout


@pytest.mark.slow
def test_chain_restart_after_sigkill(tmp_path: Path) -> None:
    steps = 20
    first_run, all_lines, stdout = kill_midway_and_restart(tmp_path, "chain", steps, max_cores=2)
    assert f"RESULT {sum(range(steps))}" in stdout.splitlines()
    counts = Counter(step for step, _, _ in all_lines)
    assert set(counts) == set(range(steps))
    repeated = sorted(step for step, n in counts.items() if n > 1)
    # only the step that was running when the leader was killed runs again
    assert len(repeated) <= 1, counts
    assert set(repeated) <= {max(step for step, _, _ in first_run)}
    assert all(n <= 2 for n in counts.values()), counts


@pytest.mark.slow
def test_fan_out_restart_after_sigkill(tmp_path: Path) -> None:
    steps, max_cores = 20, 2
    first_run, all_lines, stdout = kill_midway_and_restart(tmp_path, "fan", steps, max_cores=max_cores)
    assert f"RESULT {sum(i * i for i in range(steps))}" in stdout.splitlines()
    counts = Counter(step for step, _, _ in all_lines)
    assert set(counts) == set(range(steps))
    repeated = [step for step, n in counts.items() if n > 1]
    # at most the jobs in flight (at most --maxCores of them) run again, each once more
    assert len(repeated) <= max_cores, counts
    assert set(repeated) <= {step for step, _, _ in first_run}
    assert all(n <= 2 for n in counts.values()), counts


def test_failing_script_reports_one_paragraph(tmp_path: Path) -> None:
    script = write_script(tmp_path)
    proc = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "js"), "--mode", "fail", "--retryCount", "0",
         "--workDir", str(tmp_path / "work"), "--noProgress"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode != 0
    assert "RESULT" not in proc.stdout
    lines = proc.stderr.rstrip().splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("flow: error:")]
    assert len(starts) == 1, proc.stderr
    paragraph = lines[starts[0]:]
    text = "\n".join(paragraph)
    assert "fails" in text and "marker-2c81" in text and "--restart" in text
    # the job's own traceback may be quoted (indented) inside the paragraph; no traceback of
    # flow's own code ends stderr
    assert not any(line.startswith("Traceback") for line in lines), proc.stderr
    assert all(line.startswith((" ", "\t")) for line in paragraph[1:-1]), text
    assert paragraph[-1].startswith("Fix the cause") and "--restart" in paragraph[-1], text
    # the job's log tail is quoted: its print and its traceback
    assert any("the failing job prints this" in line for line in paragraph)
    assert any(line.strip() == "Traceback (most recent call last):" for line in paragraph)
