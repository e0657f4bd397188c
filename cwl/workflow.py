"""CWL workflows as core jobs.

A :class:`CWLWorkflow` job (internal, hidden) unrolls its steps when it runs: one
:class:`CWLStep` per step, a child of the workflow when it reads only workflow inputs, else a
follow-on of every step it reads from (so it runs once, after all of them). Values flow as
promises. A step job evaluates its inputs with cwltool's semantics (linkMerge, pickValue,
defaults, valueFrom, when), scatters them, and adds one tool job (or sub-workflow) per element;
it returns its outputs as promises of those jobs' values, arranged as the scatter method says.
A :class:`CWLWorkflowOutputs` follow-on assembles the workflow's outputs.
"""

from __future__ import annotations

from typing import Any

from flow.core.filestore import FileStore
from flow.core.job import Job
from flow.cwl import adapter, staging
from flow.cwl.jobs import CWLJob

CONTENTS_LIMIT = 64 * 1024


class CWLInternalJob(Job):
    """A front-end job that only schedules: hidden from the progress bar and the default log."""

    hidden = True

    def __init__(self, ref: adapter.ToolRef, settings: adapter.RunSettings, name: str) -> None:
        super().__init__(cores=0.1, memory="100M", disk="10M", displayName=name)
        self.ref = ref
        self.settings = settings

    def process(self) -> Any:
        return adapter.resolve(self.ref, self.settings)


def make_job(ref: adapter.ToolRef, inputs: Any, settings: adapter.RunSettings, process: Any = None) -> Job:
    """The job that runs ``ref``: a tool invocation or a (sub-)workflow."""
    process = process if process is not None else adapter.resolve(ref, settings)
    kind = adapter.process_class(process)
    if kind == "Workflow":
        return CWLWorkflow(ref, inputs, settings)
    if kind in ("CommandLineTool", "ExpressionTool"):
        return CWLJob(ref, inputs, settings, process)
    raise adapter.CWLUnsupportedError(f"{kind} processes cannot run")


class CWLWorkflow(CWLInternalJob):
    def __init__(self, ref: adapter.ToolRef, inputs: Any, settings: adapter.RunSettings) -> None:
        super().__init__(ref, settings, "CWLWorkflow")
        self.inputs = inputs

    def run(self, fileStore: FileStore) -> Any:
        workflow = self.process()
        available: dict[str, Any] = adapter.workflow_input_values(workflow, self.inputs)
        jobs: dict[str, Job] = {}
        for step in _in_order(workflow.steps, available):
            sources = {s: available[s] for s in adapter.step_sources(step) if s in available}
            job = CWLStep(self.ref, step.id, sources, self.settings)
            producers = {_producer(workflow, s) for s in sources} - {None}
            if producers:
                for producer in sorted(p for p in producers if p is not None):
                    jobs[producer].addFollowOn(job)
            else:
                self.addChild(job)
            jobs[step.id] = job
            for out in step.tool["outputs"]:
                available[out["id"]] = job.rv(adapter.shortname(out["id"]))
        sources = {s: available[s] for s in adapter.output_sources(workflow) if s in available}
        outputs = CWLWorkflowOutputs(self.ref, sources, self.settings)
        self.addFollowOn(outputs)
        return outputs.rv()


def _producer(workflow: Any, source: str) -> str | None:
    for step in workflow.steps:
        if any(out["id"] == source for out in step.tool["outputs"]):
            return str(step.id)
    return None


def _in_order(steps: list[Any], available: dict[str, Any]) -> list[Any]:
    """Steps so that every step comes after the steps whose outputs it reads."""
    outputs = {out["id"]: step.id for step in steps for out in step.tool["outputs"]}
    done: set[str] = set()
    ordered: list[Any] = []
    pending = list(steps)
    while pending:
        ready = [s for s in pending if all(outputs.get(src) in done or src not in outputs
                                           for src in adapter.step_sources(s))]
        if not ready:
            raise RuntimeError("the workflow's steps depend on each other in a cycle")
        for step in ready:
            done.add(step.id)
            ordered.append(step)
            pending.remove(step)
    return ordered


class CWLWorkflowOutputs(CWLInternalJob):
    def __init__(self, ref: adapter.ToolRef, sources: dict[str, Any], settings: adapter.RunSettings) -> None:
        super().__init__(ref, settings, "CWLWorkflowOutputs")
        self.sources = sources

    def run(self, fileStore: FileStore) -> Any:
        return adapter.workflow_output_object(self.process(), self.sources)


class CWLStep(CWLInternalJob):
    def __init__(self, ref: adapter.ToolRef, step_id: str, sources: dict[str, Any],
                 settings: adapter.RunSettings) -> None:
        super().__init__(ref, settings, f"CWLStep {adapter.shortname(step_id)}")
        self.step_id = step_id
        self.sources = sources

    def run(self, fileStore: FileStore) -> Any:
        workflow = self.process()
        step = next(s for s in workflow.steps if s.id == self.step_id)
        obj = adapter.step_input_object(workflow, step, self.sources)
        names = [adapter.shortname(o["id"]) for o in step.tool["outputs"]]
        spec = adapter.scatter_spec(step)

        def invoke(io: dict[str, Any]) -> Job | None:
            evaluated = adapter.post_scatter_eval(workflow, step, io, _reader(fileStore), self.settings)
            if evaluated is None:
                return None  # 'when' was false: the step is skipped
            ref = adapter.ToolRef(self.ref.uri, (*self.ref.steps, step.id))
            child = make_job(ref, adapter.tool_inputs(step, evaluated), self.settings, step.embedded_tool)
            self.addChild(child)
            return child

        if spec is None:
            job = invoke(obj)
            return job.rv() if job is not None else dict.fromkeys(names)
        keys, method = spec
        jobs = _map_leaves(scatter(obj, keys, method), invoke)
        return {name: _map_leaves(jobs, lambda j, n=name: None if j is None else j.rv(n)) for name in names}


def scatter(obj: dict[str, Any], keys: list[str], method: str) -> Any:
    """The scattered job inputs, nested or flat as the scatter method says."""
    if method == "dotproduct":
        lengths = {len(obj[k] or []) for k in keys}
        if len(lengths) > 1:
            raise RuntimeError("dotproduct scatter needs input arrays of equal length")
        n = lengths.pop() if lengths else 0
        return [{**obj, **{k: obj[k][i] for k in keys}} for i in range(n)]
    nested = _nested(obj, keys)
    return nested if method == "nested_crossproduct" else _flatten(nested, len(keys))


def _nested(obj: dict[str, Any], keys: list[str]) -> list[Any]:
    first, rest = keys[0], keys[1:]
    out = []
    for value in obj[first] or []:
        element = {**obj, first: value}
        out.append(_nested(element, rest) if rest else element)
    return out


def _flatten(nested: list[Any], depth: int) -> list[Any]:
    if depth <= 1:
        return nested
    return [leaf for item in nested for leaf in _flatten(item, depth - 1)]


def _map_leaves(value: Any, fn: Any) -> Any:
    """Apply ``fn`` to each leaf (a job input dict, a job or None) of nested lists."""
    if isinstance(value, list):
        return [_map_leaves(v, fn) for v in value]
    return fn(value)


def _reader(file_store: FileStore) -> Any:
    def read(file_obj: dict[str, Any]) -> str:
        location = str(file_obj.get("location", ""))
        if not location.startswith(staging.FLOW_FILE):
            path = staging.local_path(location)
            if path is None:
                return ""
            with open(path, "rb") as handle:
                return handle.read(CONTENTS_LIMIT).decode(errors="replace")
        with file_store.readGlobalFileStream(location[len(staging.FLOW_FILE):]) as stream:
            return bytes(stream.read(CONTENTS_LIMIT)).decode(errors="replace")

    return read
