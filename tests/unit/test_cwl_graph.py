"""How a CWL workflow unrolls into core jobs, without running any (the graph CWLWorkflow builds)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

pytest.importorskip("cwltool")

from flow.core.job import Job
from flow.cwl import adapter
from flow.cwl.workflow import CWLGather, CWLScatter, CWLStep, CWLWorkflow, CWLWorkflowOutputs
from tests.integration.test_cwl import ECHO_TOOL, SCATTER_WF, WC_TOOL


def _by_name(jobs: list[Job]) -> dict[str, Job]:
    return {job.displayName: job for job in jobs}


def test_scatter_steps_become_a_scatter_and_a_gather_that_readers_follow(tmp_path: Path) -> None:
    for name, text in (("echo.cwl", ECHO_TOOL), ("wc.cwl", WC_TOOL), ("wf.cwl", SCATTER_WF)):
        (tmp_path / name).write_text(textwrap.dedent(text))
    workflow = CWLWorkflow(adapter.ToolRef(str(tmp_path / "wf.cwl")), {"messages": ["a", "b"], "skip": False},
                           adapter.RunSettings())
    workflow.run(None)  # type: ignore[arg-type]  # unrolling reads no files

    (say,) = workflow._children
    assert isinstance(say, CWLScatter) and say.displayName == "CWLScatter say" and say.hidden
    (say_gather,) = say._follow_ons
    assert isinstance(say_gather, CWLGather) and say_gather.hidden
    # 'count' and 'maybe' read say/out: they follow its gather, never run beside it
    followers = _by_name(say_gather._follow_ons)
    assert set(followers) == {"CWLScatter count", "CWLStep maybe"}
    count, maybe = followers["CWLScatter count"], followers["CWLStep maybe"]
    assert isinstance(count, CWLScatter) and type(maybe) is CWLStep
    (count_gather,) = count._follow_ons
    assert isinstance(count_gather, CWLGather) and count_gather._follow_ons == []
    (outputs,) = workflow._follow_ons
    assert isinstance(outputs, CWLWorkflowOutputs) and outputs.hidden
