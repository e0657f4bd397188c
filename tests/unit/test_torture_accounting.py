"""The torture suite's bookkeeping (tests/torture.py), on hand-written run logs: which re-runs a
kill explains, which it does not, and where the kill moments fall."""

from __future__ import annotations

import random
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from torture import Moment, Round, RunLog, Tally, TortureError, moments
from torture_workloads import python_workload


def _log(path: Path, *lines: str) -> RunLog:
    with open(path, "a") as handle:
        handle.write("".join(f"{line}\n" for line in lines))
    log = RunLog(str(path))
    log.update()
    return log


def test_in_flight_is_each_workers_last_job_and_every_unfinished_one(tmp_path: Path) -> None:
    log = _log(tmp_path / "runs.log",
               "S 1 100", "E 1 100", "S 2 100", "E 2 100",  # worker 100: 2 may not be stored yet
               "S 3 200",  # worker 200: 3 running
               "S 4 300", "E 4 300", "S 5 300")  # worker 300: 5 running, 4 stored
    assert log.in_flight(0) == {"2", "3", "5"}
    assert log.in_flight(4) == {"3", "5"}  # only what the run after event 4 started
    assert log.running_sessions(0) == ["200", "300"]
    assert log.ended == {"1", "2", "4"}


def test_partial_line_waits_for_its_end_and_garbage_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "runs.log"
    path.write_text("S 1 100\nE 1")
    log = RunLog(str(path))
    log.update()
    assert log.events == [("S", "1", "100")]
    with open(path, "a") as handle:
        handle.write(" 100\nbogus\n")
    with pytest.raises(TortureError, match="garbled line"):
        log.update()


def _round(tmp_path: Path, lines: list[str], allowed: list[str]) -> Round:
    round_ = Round(python_workload(3, 0.0), str(tmp_path / "scratch"), random.Random(1), Tally("python"))
    round_.log = _log(tmp_path / "runs.log", *lines)
    round_.allowed.update(allowed)
    return round_


def test_re_runs_beyond_the_jobs_in_flight_are_counted(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    once = ["S root 1", "E root 1", "S 0 1", "E 0 1", "S 1 2", "E 1 2", "S 2 1", "E 2 1",
            "S gather 1", "E gather 1"]
    assert _round(tmp_path / "a", once, []).extra_runs() == 0
    again = [*once, "S 0 5", "E 0 5", "S 1 5", "E 1 5", "S 1 6", "E 1 6"]
    # A kill explained one more run of job 1 only: job 0 once too often, job 1 once too often.
    assert _round(tmp_path / "b", again, ["1"]).extra_runs() == 2
    assert "0 ran 2 times, 1 ran 3 times" in capsys.readouterr().err
    with pytest.raises(TortureError, match="does not have: 7"):
        _round(tmp_path / "c", [*once, "S 7 1"], []).extra_runs()


def test_moments_cover_start_up_jobs_and_the_end(tmp_path: Path) -> None:
    # An undisturbed run: the first job ends at 1 s, the third (last) at 3 s, the run at 5 s.
    timeline = [(0.0, 0), (0.5, 0), (1.0, 1), (2.0, 2), (3.0, 3), (4.0, 3), (5.0, 3)]
    drawn = moments(timeline, 5.0, 200, random.Random(3))
    assert [m.ended for m in drawn] == sorted(m.ended for m in drawn)  # in the run's order
    assert any(m.ended == -1 for m in drawn)  # before the first job ended: from the start
    assert any(m.ended == 3 and m.offset > 1.0 for m in drawn)  # after the last job
    assert all(m.offset >= 0 for m in drawn)
    assert moments(timeline, 5.0, 1, random.Random(3)) == moments(timeline, 5.0, 1, random.Random(3))
    assert Moment(2, 0.5) in moments([(0.0, 0), (1.0, 1), (2.0, 2)], 2.5, 1, _Fixed(2.5))


class _Fixed(random.Random):
    """A Random whose uniform() always returns one value."""

    def __init__(self, value: float) -> None:
        super().__init__(0)
        self.value = value

    def uniform(self, a: float, b: float) -> float:
        return self.value
