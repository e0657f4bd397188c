"""Data safety of the job store under misuse and faults (issue: "nothing stored changes or
vanishes"): one leader per store, nothing deleted that cannot be read, damaged stores named,
faults in the leader's own writes, bad locators and options. Real workflow scripts, real
processes, real (tmpfs) file systems where a fault needs one."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

SCRIPT = textwrap.dedent('''
    import os
    import sys
    import time

    from flow.core.common import Flow
    from flow.core.job import Job


    def record(log, text):
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            os.write(fd, (text + "\\n").encode())
        finally:
            os.close(fd)


    def leaf(job, i, log, gate, file_id, size):
        record(log, f"start {i}")
        while gate and not os.path.exists(gate):
            time.sleep(0.02)
        extra = 0
        if file_id:
            with open(job.fileStore.readGlobalFile(file_id)) as handle:
                extra = len(handle.read())
        if size:
            path = job.fileStore.getLocalTempFile()
            with open(path, "wb") as handle:
                handle.write(os.urandom(size))
            job.fileStore.writeGlobalFile(path)
        if os.environ.get("KILL_LEAF") == str(i):
            os.kill(os.getpid(), 9)
        record(log, f"end {i}")
        return i * i + extra


    def total(values):
        return sum(values)


    def fan(job, n, log, gate, with_file, size):
        file_id = None
        if with_file:
            path = job.fileStore.getLocalTempFile()
            with open(path, "w") as handle:
                handle.write("abc")
            file_id = job.fileStore.writeGlobalFile(path)
        values = [job.addChildJobFn(leaf, i, log, gate, file_id, size, cores=0.5, memory="20M").rv()
                  for i in range(n)]
        return job.addFollowOnFn(total, values, cores=0.1, memory="20M").rv()


    if __name__ == "__main__":
        parser = Job.Runner.getDefaultArgumentParser()
        parser.add_argument("--n", type=int, default=6)
        parser.add_argument("--log", required=True)
        parser.add_argument("--gate", default="")
        parser.add_argument("--withFile", action="store_true")
        parser.add_argument("--size", type=int, default=0)
        options = parser.parse_args()
        with Flow(options) as flow:
            if options.restart:
                result = flow.restart()
            else:
                result = flow.start(Job.wrapJobFn(fan, options.n, options.log, options.gate,
                                                  options.withFile, options.size, cores=0.1, memory="20M"))
        print("RESULT", result)
''')

N = 6
ANSWER = sum(i * i for i in range(N))
#: Lock files change hands at every start; everything else must stay byte for byte.
LOCK_FILES = ("leader.lock", "leader.lock.mutex")


class Run:
    """One workflow's paths and commands, in ``tmp_path``."""

    def __init__(self, tmp_path: Path, store: Path | None = None, work: Path | None = None) -> None:
        self.tmp = tmp_path
        self.script = tmp_path / "wf.py"
        self.script.write_text(SCRIPT)
        self.store = store or tmp_path / "js"
        self.log = tmp_path / "runs.log"
        self.gate = tmp_path / "gate"
        self.work = work or tmp_path / "work"

    def args(self, *extra: str) -> list[str]:
        return [sys.executable, str(self.script), str(self.store), "--log", str(self.log),
                "--gate", str(self.gate), "--n", str(N), "--maxCores", "2", "--noProgress",
                "--clean", "never", "--workDir", str(self.work), *extra]

    def run(self, *extra: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.args(*extra), capture_output=True, text=True, timeout=180,
                              env={**os.environ, **(env or {})})

    @contextmanager
    def background(self, *extra: str) -> Iterator[subprocess.Popen[str]]:
        proc = subprocess.Popen(self.args(*extra), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, start_new_session=True)
        try:
            yield proc
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate(timeout=60)

    def lines(self) -> list[str]:
        return self.log.read_text().splitlines() if self.log.exists() else []

    def wait_started(self, proc: subprocess.Popen[str], count: int = 1) -> None:
        wait_for(lambda: sum(1 for line in self.lines() if line.startswith("start")) >= count,
                 f"{count} job(s) started", proc)

    def kill_midway(self, *extra: str) -> None:
        """Start the workflow, let jobs begin and block at the gate, then kill -9 its group."""
        with self.background(*extra) as proc:
            self.wait_started(proc, 2)
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=60)

    def snapshot(self) -> list[tuple[str, bytes | None]]:
        return sorted(
            (str(p.relative_to(self.store)), p.read_bytes() if p.is_file() else None)
            for p in self.store.rglob("*") if p.name not in LOCK_FILES
        )


def wait_for(condition: Callable[[], bool], what: str, proc: subprocess.Popen[str] | None = None,
             timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if proc is not None and proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"the workflow exited ({proc.returncode}) before {what}:\n{err}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def flow_cmd(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "flow.core.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=120)


def one_paragraph(done: subprocess.CompletedProcess[str], code: int = 1) -> str:
    """The single error paragraph of a run that failed as it should, without a traceback."""
    assert done.returncode == code, (done.returncode, done.stderr)
    assert "Traceback" not in done.stderr + done.stdout, done.stderr
    errors = [line for line in done.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1, done.stderr
    return errors[0]


def result_of(done: subprocess.CompletedProcess[str]) -> int:
    assert done.returncode == 0, done.stderr
    return int(done.stdout.split("RESULT")[-1].split()[0])


def job_record(store: Path, job_id: str) -> Path:
    return store / "jobs" / job_id[:2] / f"{job_id}.job"


# ---- one leader per job store ---------------------------------------------------------------------
def test_second_leader_is_refused_and_no_job_runs_twice(tmp_path: Path) -> None:
    run = Run(tmp_path)
    with run.background() as first:
        run.wait_started(first, 2)
        again = run.run("--restart")
        message = one_paragraph(again)
        assert f"is in use by the leader pid {first.pid} on host {os.uname().nodename}" in message
        assert "it is alive" in message and "changed nothing" in message
        fresh = run.run()
        assert "already holds a workflow" in one_paragraph(fresh)
        run.gate.touch()
        out, err = first.communicate(timeout=180)
    assert first.returncode == 0, err
    assert f"RESULT {ANSWER}" in out
    starts = Counter(line for line in run.lines() if line.startswith("start"))
    assert len(starts) == N and set(starts.values()) == {1}, starts


def test_lock_of_a_dead_leader_is_taken_over_one_of_another_host_needs_force(tmp_path: Path) -> None:
    run = Run(tmp_path)
    run.kill_midway()
    lock = run.store / "leader.lock"
    assert lock.exists()  # the killed leader could not release it
    lock.write_text("elsewhere.example 4242 1700000000.0")
    refused = run.run("--restart")
    message = one_paragraph(refused)
    assert "pid 4242 on host elsewhere.example" in message and "--force" in message
    run.gate.touch()
    assert result_of(run.run("--restart", "--force")) == ANSWER
    assert not lock.exists()  # released at the end


def test_status_shows_the_lock_holder(tmp_path: Path) -> None:
    run = Run(tmp_path)
    with run.background() as proc:
        run.wait_started(proc, 1)
        status = flow_cmd("status", run.store)
        assert f"leader pid {proc.pid} on this host: alive" in status.stdout
        refused = flow_cmd("clean", run.store)
        assert "in use by the leader" in one_paragraph(refused) and run.store.exists()
        run.gate.touch()
        proc.communicate(timeout=180)
    assert proc.returncode == 0


# ---- never delete what cannot be read ----------------------------------------------------------------
def test_restart_without_root_deletes_nothing_then_resumes(tmp_path: Path) -> None:
    run = Run(tmp_path)
    run.kill_midway()
    root = (run.store / "shared" / "root").read_bytes()
    (run.store / "shared" / "root").unlink()
    before = run.snapshot()
    done = run.run("--restart")
    message = one_paragraph(done)
    assert "no root record" in message and "Nothing in it was changed or deleted" in message
    assert run.snapshot() == before
    refused = flow_cmd("clean", run.store)
    assert "refusing to delete" in one_paragraph(refused) and run.snapshot() == before
    (run.store / "shared" / "root").write_bytes(root)
    run.gate.touch()
    assert result_of(run.run("--restart")) == ANSWER


def test_interrupted_cleanup_is_never_taken_for_a_new_store(tmp_path: Path) -> None:
    run = Run(tmp_path)
    run.gate.touch()
    assert result_of(run.run()) == ANSWER
    # End-of-run cleanup killed half-way: a process that dies inside its destroy(), once part
    # of the store is deleted.
    killer = textwrap.dedent(f'''
        import os, shutil
        from flow.jobstores import file
        def remove_trees(paths, *args, **kwargs):
            for path in paths:
                shutil.rmtree(os.path.join(path, "shared"))
            os.kill(os.getpid(), 9)
        file.remove_trees = remove_trees
        file.FileJobStore({str(run.store)!r}).destroy()
    ''')
    subprocess.run([sys.executable, "-c", killer], timeout=60)
    # The store is gone as a whole (what is left is a hidden sibling, deleted by the next look).
    assert not run.store.exists() and list(tmp_path.glob(".js.flow-deleting-*"))
    restarted = run.run("--restart")
    assert "there is no job store" in one_paragraph(restarted)
    assert not list(tmp_path.glob(".js.flow-deleting-*"))


def test_interrupted_deletion_in_place_is_named_and_finished(tmp_path: Path) -> None:
    """Where the store cannot be renamed away (a mount point), its marker is renamed instead."""
    run = Run(tmp_path)
    run.gate.touch()
    assert result_of(run.run()) == ANSWER
    (run.store / "flow-jobstore.json").rename(run.store / "flow-jobstore.deleting")
    shutil.rmtree(run.store / "shared")  # the deletion was cut short here
    assert "was being deleted" in one_paragraph(run.run("--restart"))
    assert "was being deleted" in one_paragraph(run.run())
    cleaned = flow_cmd("clean", run.store)
    assert cleaned.returncode == 0 and not run.store.exists()


# ---- damaged stores ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("damage", ["truncated job", "garbage job", "garbage config"])
def test_damaged_store_restart_names_the_item_and_changes_nothing(tmp_path: Path, damage: str) -> None:
    run = Run(tmp_path)
    run.kill_midway()
    root = (run.store / "shared" / "root").read_text()
    target = run.store / "shared" / "config" if "config" in damage else job_record(run.store, root)
    original = target.read_bytes()
    target.write_bytes(original[: len(original) // 2] if "truncated" in damage else b"\x00garbage\xff")
    before = run.snapshot()
    message = one_paragraph(run.run("--restart"))
    assert ("configuration (shared record 'config')" if "config" in damage else f"the record of job {root}") in message
    assert run.snapshot() == before
    status = flow_cmd("status", run.store)
    assert status.returncode == 3 and "damaged" in status.stderr
    target.write_bytes(original)
    run.gate.touch()
    assert result_of(run.run("--restart")) == ANSWER


def test_status_notices_a_deleted_stored_file(tmp_path: Path) -> None:
    run = Run(tmp_path)
    run.kill_midway("--withFile")
    files = [p for p in (run.store / "files").rglob("*") if p.is_file() and not p.name.startswith(".")]
    assert len(files) == 1
    files[0].unlink()
    status = flow_cmd("status", run.store)
    assert status.returncode == 3, status.stderr
    shard, token = files[0].parts[-2:]  # the store keeps a file at files/<shard>/<token>
    found = re.search(rf"the stored file {shard}/{token}/[^ /]+ that job leaf", status.stderr)
    assert found is not None and "is missing" in status.stderr, status.stderr


# ---- faults of the file systems -------------------------------------------------------------------------
@contextmanager
def tmpfs(path: Path, options: str) -> Iterator[Path]:
    """A real small file system mounted for the test (needs root; skips otherwise)."""
    path.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(directory: Path) -> Path:
    """Fill the file system of ``directory`` to the last byte; returns the filler file."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (1 << 20, 4096, 1):
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError:
                continue
    finally:
        os.close(fd)
    return filler


def test_disk_full_in_the_leaders_writes_then_restart(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "disk", "size=8m") as disk:
        run = Run(tmp_path, store=disk / "js")
        with run.background("--retryCount", "1", "--size", "65536") as proc:
            run.wait_started(proc, 2)
            filler = fill(disk)
            run.gate.touch()
            out, err = proc.communicate(timeout=180)
        done = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
        message = one_paragraph(done)
        assert "No space left on device" in message and "--restart" in message
        filler.unlink()
        assert result_of(run.run("--restart")) == ANSWER


def test_read_only_file_system_and_file_in_the_way(tmp_path: Path) -> None:
    run = Run(tmp_path, store=tmp_path / "afile" / "js")
    (tmp_path / "afile").write_text("mine")
    message = one_paragraph(run.run())
    assert "cannot create a job store at" in message and "Not a directory" in message
    assert (tmp_path / "afile").read_text() == "mine"
    with tmpfs(tmp_path / "ro", "ro,size=1m") as ro:
        message = one_paragraph(Run(tmp_path, store=ro / "js").run())
        assert "cannot create a job store at" in message and "Read-only file system" in message
        message = one_paragraph(Run(tmp_path, work=ro / "work").run())
        assert "--workDir" in message and str(ro / "work") in message


# ---- status and options -------------------------------------------------------------------------------
def test_status_counts_a_job_killed_twice_as_failed_for_good(tmp_path: Path) -> None:
    run = Run(tmp_path)
    run.gate.touch()
    done = run.run("--retryCount", "1", env={"KILL_LEAF": "3"})
    assert done.returncode != 0
    status = flow_cmd("status", run.store)
    assert "1 failed" in status.stdout, status.stdout
    assert "failed for good" in status.stdout


@pytest.mark.parametrize("option", ["--retryCount=-1", "--deadlockWait=-5", "--rescueJobsFrequency=nan"])
def test_negative_counts_are_refused(tmp_path: Path, option: str) -> None:
    done = Run(tmp_path).run(option)
    assert done.returncode == 2 and "must not be negative" in done.stderr
    assert not (tmp_path / "js").exists()


def test_unknown_locator_scheme_is_refused(tmp_path: Path) -> None:
    run = Run(tmp_path, store=Path("aws:us-west-2:bucket"))
    done = subprocess.run(run.args(), capture_output=True, text=True, timeout=120, cwd=tmp_path)
    message = one_paragraph(done)
    assert "no 'aws' job store" in message
    assert not any(tmp_path.glob("aws*"))
