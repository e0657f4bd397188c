"""``flow status JOBSTORE --job ID`` shows a failed job's log and its story in the leader."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from flow.core.cli import main
from flow.core.description import JobDescription
from flow.jobstores.registry import open_job_store

FAILING = textwrap.dedent('''
    from flow.core.job import Job

    def bad():
        raise ValueError("boom from bad")

    if __name__ == "__main__":
        options = Job.Runner.getDefaultArgumentParser().parse_args()
        Job.Runner.startFlow(Job.wrapFn(bad, cores=0.1, memory="10M"), options)
''')


def test_status_of_a_failed_job_tells_its_story(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    script, store = tmp_path / "wf.py", tmp_path / "js"
    script.write_text(FAILING)
    done = subprocess.run(
        [sys.executable, str(script), str(store), "--clean", "never", "--noProgress", "--retryCount", "1"],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode != 0, done.stderr
    js = open_job_store(str(store))
    failed = [JobDescription.loads(js.read_job(j)) for j in js.list_jobs()]
    assert len(failed) == 1
    capsys.readouterr()
    assert main(["status", str(store), "--job", failed[0].job_id]) == 0
    shown = capsys.readouterr().out
    assert "boom from bad" in shown
    assert "its last events in the leader" in shown
    assert shown.count("waiting -> issued") == 2  # the run and its one retry
    assert "failed for good" in shown


def test_status_of_an_unknown_job_is_one_paragraph(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    script, store = tmp_path / "wf.py", tmp_path / "js"
    script.write_text(FAILING)
    subprocess.run([sys.executable, str(script), str(store), "--clean", "never", "--noProgress"],
                   capture_output=True, text=True, timeout=120)
    assert main(["status", str(store), "--job", "nosuchjob"]) != 0
    err = capsys.readouterr().err
    assert "nosuchjob" in err and "Traceback" not in err
