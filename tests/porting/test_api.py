"""Toil's job API beyond the basics, from Toil-style scripts ported by their imports alone."""

from __future__ import annotations

from pathlib import Path

from tests.porting.conftest import PortedRun

MiB = 1024 * 1024


def test_promised_requirements_defaults_in_run_and_accelerator_forms(run_ported: PortedRun, tmp_path: Path) -> None:
    out = run_ported("api_requirements.py", str(tmp_path / "js")).stdout.splitlines()
    assert out[0] == f"exact: cores=1 memory={100 * MiB} disk={3 * MiB}"
    assert out[1] == f"doubled: cores=2 memory={6 * MiB} disk={200 * MiB}"
    assert out[2] == f"defaults: cores=1 memory={100 * MiB} disk={200 * MiB}"
    assert out[3] == ("accelerators [{'count': 1, 'kind': 'gpu', 'api': 'cuda'}, "
                      "{'count': 2, 'kind': 'gpu', 'model': 'a100'}, {'count': 1, 'kind': 'gpu'}]")


def test_file_store_calls(run_ported: PortedRun, tmp_path: Path) -> None:
    done = run_ported("api_files.py", str(tmp_path / "js"), str(tmp_path))
    # sorted content; the cleanup=True file exists in the writer's subtree, not after it
    assert done.stdout.strip() == "'a\\nb\\nc\\n' True shared! False"
    assert "tool said hi" in done.stderr  # log_user_stream reached the leader's log


def test_defer_runs_after_success_and_failure_in_reverse_order(run_ported: PortedRun, tmp_path: Path) -> None:
    for outcome in ("ok", "fail"):
        notes = tmp_path / f"notes-{outcome}"
        done = run_ported("api_defer.py", str(tmp_path / f"js-{outcome}"), str(notes), outcome,
                          check=False)
        assert (done.returncode == 0) == (outcome == "ok"), done.stderr
        assert notes.read_text().splitlines() == ["job body", "second registered", "first registered"]


def test_a_job_passed_as_its_own_memory_is_a_one_paragraph_error(run_ported: PortedRun, tmp_path: Path) -> None:
    done = run_ported("bad_requirement.py", str(tmp_path / "js"), check=False)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert "job Hello: its memory is a job" in done.stderr and "super().__init__(self)" in done.stderr


def test_defer_runs_after_the_worker_was_killed(run_ported: PortedRun, tmp_path: Path) -> None:
    done = run_ported("api_defer_kill.py", str(tmp_path / "js"), str(tmp_path))
    assert done.stdout.strip() == "['cleanup of the killed attempt']"
