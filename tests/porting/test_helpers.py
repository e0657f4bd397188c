"""Toil's helper modules under flow's names: flow.lib.io, flow.lib.misc, flow.lib.docker,
flow.realtimeLogger, used by Toil-style scripts ported by their imports alone."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.porting.conftest import PortedRun, popen_ported


def test_mkdtemp_and_strpath(run_ported: PortedRun, tmp_path: Path) -> None:
    done = run_ported("helpers_io.py", str(tmp_path))
    name, mode = done.stdout.split()
    assert name.endswith("-porting") and mode == "0o711"  # Toil's mode: others may traverse
    assert not list(tmp_path.glob("*helpers_io"))  # the job store was cleaned


def _engine_works() -> bool:
    from flow.lib.docker import ContainerEngineError, container_engine

    try:
        container_engine()
    except ContainerEngineError:
        return False
    return True


@pytest.mark.skipif(not _engine_works(), reason="no working podman or docker here")
def test_api_docker_call_runs_a_pipeline_in_a_container(run_ported: PortedRun, tmp_path: Path) -> None:
    work = tmp_path / "data"
    work.mkdir()
    done = run_ported("docker_call.py", str(tmp_path / "js"), str(work))
    assert done.stdout == "FROM THE HOST\n"


def test_api_docker_call_without_an_engine_says_so(run_ported: PortedRun, tmp_path: Path) -> None:
    work = tmp_path / "data"
    work.mkdir()
    done = run_ported("docker_call.py", str(tmp_path / "js"), str(work), check=False,
                      env={"FLOW_CONTAINER_ENGINE": "no-such-engine"})
    assert done.returncode != 0
    assert "needs a working container engine" in done.stderr
    assert "no-such-engine: not installed" in done.stderr


def test_realtime_logger_reaches_the_leader_while_the_job_runs(tmp_path: Path) -> None:
    release = tmp_path / "release"
    proc = popen_ported("realtime.py", tmp_path, [str(tmp_path / "js"), "--realTimeLogging",
                                                  "--release", str(release)])
    seen = threading.Event()
    lines: list[str] = []

    def watch() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line)
            if "realtime hello from the job" in line:
                seen.set()
                release.touch()  # only now may the job finish

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        assert seen.wait(120), "the message did not reach the leader:\n" + "".join(lines)
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    watcher.join(10)
    assert proc.returncode == 0, "".join(lines)
    assert out.strip() == "released"


def test_realtime_logger_without_the_option_stays_off_the_leader(tmp_path: Path) -> None:
    release = tmp_path / "release"
    release.touch()
    proc = popen_ported("realtime.py", tmp_path, [str(tmp_path / "js"), "--release", str(release)])
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "realtime hello" not in err


def test_helpers_install_under_flow_names_in_a_non_editable_install(tmp_path: Path) -> None:
    """pip install . (not -e) puts the helpers at flow/lib and flow/realtimeLogger."""
    top = Path(__file__).resolve().parents[2]
    target = tmp_path / "site"
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                          "--target", str(target), str(top)], capture_output=True, text=True, timeout=600,
                         check=False)
    assert pip.returncode == 0, pip.stderr
    probe = subprocess.run(
        [sys.executable, "-c", "import flow.lib.io, flow.lib.misc, flow.lib.docker, flow.realtimeLogger as r;"
         "print(flow.lib.io.__file__); print(r.__file__)"],
        capture_output=True, text=True, env={"PYTHONPATH": str(target), "PATH": os.environ["PATH"]},
        cwd=tmp_path, timeout=120, check=False)
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.splitlines() == [str(target / "flow/lib/io.py"),
                                         str(target / "flow/realtimeLogger/__init__.py")]
    shutil.rmtree(target)
    shutil.rmtree(top / "build", ignore_errors=True)  # what the build left in the worktree
