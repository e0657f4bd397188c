"""Job logs reaching the leader's log (options.logFile), end to end."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from flow.core.common import Flow
from flow.core.job import Job

SMALL = {"cores": 0.1, "memory": "50M"}


def chatty(job, tag):
    job.log(f"job.log says {tag}")
    job.fileStore.log_to_leader(f"log_to_leader warns {tag}", level=logging.WARNING)
    job.fileStore.logToMaster(f"logToMaster says {tag}")
    print(f"plain print {tag} (stays in the worker's log)")
    return tag


def chatty_root(job, tag):
    job.log(f"root says {tag}")
    return job.addChildJobFn(chatty, tag, **SMALL).rv()


def test_job_messages_reach_leader_log(options: argparse.Namespace, tmp_path: Path) -> None:
    options.logFile = str(tmp_path / "leader.log")
    with Flow(options) as flow:
        assert flow.start(Job.wrapJobFn(chatty_root, "tag-91c2", **SMALL)) == "tag-91c2"
    lines = Path(options.logFile).read_text().splitlines()

    def line_with(text: str) -> str:
        found = [line for line in lines if text in line]
        assert found, f"{text!r} not in the leader's log:\n" + "\n".join(lines)
        return found[0]

    assert "chatty_root" in line_with("root says tag-91c2")
    info = line_with("job.log says tag-91c2")
    assert "chatty" in info and "INFO" in info
    warning = line_with("log_to_leader warns tag-91c2")
    assert "WARNING" in warning
    line_with("logToMaster says tag-91c2")
    assert not any("plain print tag-91c2" in line for line in lines)


def test_log_level_filters_job_messages(options: argparse.Namespace, tmp_path: Path) -> None:
    options.logFile = str(tmp_path / "leader.log")
    options.logLevel = "WARNING"
    with Flow(options) as flow:
        flow.start(Job.wrapJobFn(chatty, "tag-5d0e", **SMALL))
    text = Path(options.logFile).read_text()
    assert "log_to_leader warns tag-5d0e" in text
    assert "job.log says tag-5d0e" not in text


def test_log_file_holds_only_its_own_workflow(options: argparse.Namespace, tmp_path: Path) -> None:
    """Two workflows, one after the other in one process, each with its own --logFile."""
    first_log, second_log = tmp_path / "first.log", tmp_path / "second.log"
    options.logFile = str(first_log)
    with Flow(options) as flow:
        flow.start(Job.wrapJobFn(chatty, "first-workflow", **SMALL))
    second = Job.Runner.getDefaultOptions(str(tmp_path / "js2"))
    second.noProgress, second.maxCores, second.workDir = True, 2, options.workDir
    second.logFile = str(second_log)
    with Flow(second) as flow:
        flow.start(Job.wrapJobFn(chatty, "second-workflow", **SMALL))
    assert "job.log says second-workflow" in second_log.read_text()
    assert "first-workflow" not in second_log.read_text()
    assert "job.log says first-workflow" in first_log.read_text()
    assert "second-workflow" not in first_log.read_text()
