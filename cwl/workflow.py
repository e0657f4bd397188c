"""CWL workflows as core jobs.

A :class:`CWLWorkflow` job (internal, hidden) unrolls its steps when it runs: one
:class:`CWLStep` per step (a :class:`CWLScatter` for a step that scatters), a child of the
workflow when it reads only workflow inputs, else a follow-on of every step it reads from (so it
runs once, after all of them). Values flow as promises. A step job evaluates its inputs with
cwltool's semantics (linkMerge, pickValue, defaults, valueFrom, when) and adds the tool job (or
sub-workflow) that runs it, returning that job's promised outputs. A scatter step adds one per
element (dotproduct, nested or flat crossproduct, empty); its :class:`CWLGather` follow-on, which
the steps reading its outputs follow, arranges their outputs into arrays. A :class:`CWLWorkflowOutputs`
follow-on assembles the workflow's outputs. The core resolves promises when a job is loaded, so
no job of Toil's ResolveIndirect kind is needed.
"""

from __future__ import annotations

from typing import Any

from flow.core.filestore import FileStore
from flow.core.job import Job
from flow.cwl import adapter, staging
from flow.cwl.jobs import CWLBatch, CWLJob, batch_size, batchable, resources_of

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
            job: Job
            if adapter.scatter_spec(step) is None:
                job = first = CWLStep(self.ref, step.id, sources, self.settings)
            else:  # later steps follow the gather, which follows the scatter's jobs
                first = CWLScatter(self.ref, step.id, sources, self.settings)
                job = CWLGather(self.ref, step.id, output_names(step), first.rv(), self.settings)
                first.addFollowOn(job)
            producers = {_producer(workflow, s) for s in sources} - {None}
            if producers:
                for producer in sorted(p for p in producers if p is not None):
                    jobs[producer].addFollowOn(first)
            else:
                self.addChild(first)
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
            raise adapter.CWLError("the workflow's steps depend on each other in a cycle")
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
    """One workflow step without scatter: its inputs evaluated, then its tool or sub-workflow."""

    kind = "CWLStep"

    def __init__(self, ref: adapter.ToolRef, step_id: str, sources: dict[str, Any],
                 settings: adapter.RunSettings) -> None:
        super().__init__(ref, settings, f"{self.kind} {adapter.shortname(step_id)}")
        self.step_id = step_id
        self.sources = sources

    def run(self, fileStore: FileStore) -> Any:
        workflow, step, obj = self.step_inputs()
        job = self.invoke(workflow, step, obj, fileStore)
        return job.rv() if job is not None else dict.fromkeys(output_names(step))

    def step_inputs(self) -> tuple[Any, Any, dict[str, Any]]:
        """(workflow, step, the step's input object before scatter, valueFrom and when)."""
        workflow = self.process()
        step = next(s for s in workflow.steps if s.id == self.step_id)
        return workflow, step, adapter.step_input_object(workflow, step, self.sources)

    def invoke(self, workflow: Any, step: Any, io: dict[str, Any], fileStore: FileStore) -> Job | None:
        """The child job running the step on ``io`` (None when its 'when' is false)."""
        evaluated = adapter.post_scatter_eval(workflow, step, io, _reader(fileStore), self.settings)
        if evaluated is None:
            return None
        ref = adapter.ToolRef(self.ref.uri, (*self.ref.steps, step.id))
        child = make_job(ref, adapter.tool_inputs(step, evaluated), self.settings, step.embedded_tool)
        self.addChild(child)
        return child


class CWLScatter(CWLStep):
    """A scattered step: one child per element; returns their promised output objects, nested
    as the scatter method says, for the :class:`CWLGather` that follows it."""

    kind = "CWLScatter"

    def run(self, fileStore: FileStore) -> Any:
        workflow, step, obj = self.step_inputs()
        spec = adapter.scatter_spec(step)
        assert spec is not None, "a CWLScatter is made for scattering steps only"
        keys, method = spec
        if batchable(step.embedded_tool):
            return self.batched(workflow, step, scatter(obj, keys, method), fileStore)
        jobs = _map_leaves(scatter(obj, keys, method),
                           lambda io: self.invoke(workflow, step, io, fileStore))
        return _map_leaves(jobs, lambda job: None if job is None else job.rv())

    def batched(self, workflow: Any, step: Any, elements: Any, fileStore: FileStore) -> Any:
        """The scatter's invocations in :class:`CWLBatch` jobs (see :func:`batch_size`): the
        same nesting of promised output objects, each a batch's item."""
        read = _reader(fileStore)
        evaluated = _map_leaves(elements, lambda io: adapter.post_scatter_eval(workflow, step, io, read, self.settings))
        flat: list[dict[str, Any]] = []
        _map_leaves(evaluated, lambda io: None if io is None else flat.append(adapter.tool_inputs(step, io)))
        ref = adapter.ToolRef(self.ref.uri, (*self.ref.steps, step.id))
        process = step.embedded_tool
        size = batch_size(len(flat), float(resources_of(process, flat[0], self.settings)["cores"]) if flat else 1.0,
                          self.settings.max_cores)
        promises: list[Any] = []
        for start in range(0, len(flat), size):
            if size == 1:  # a small scatter: a job per invocation, as without batches
                job: Job = CWLJob(ref, flat[start], self.settings, process)
                promises.append(job.rv())
            else:
                job = CWLBatch(ref, flat[start:start + size], self.settings, process)
                promises.extend(job.rv(i) for i in range(len(flat[start:start + size])))
            self.addChild(job)
        each = iter(promises)
        return _map_leaves(evaluated, lambda io: None if io is None else next(each))


class CWLGather(CWLInternalJob):
    """After a scatter's jobs: their output objects (nested as the scatter method made them)
    become one array per output parameter; a skipped element gives nulls."""

    def __init__(self, ref: adapter.ToolRef, step_id: str, names: list[str], results: Any,
                 settings: adapter.RunSettings) -> None:
        super().__init__(ref, settings, f"CWLGather {adapter.shortname(step_id)}")
        self.names = names
        self.results = results

    def run(self, fileStore: FileStore) -> Any:
        return {name: _map_leaves(self.results, lambda out, n=name: None if out is None else out.get(n))
                for name in self.names}


def output_names(step: Any) -> list[str]:
    return [adapter.shortname(o["id"]) for o in step.tool["outputs"]]


def scatter(obj: dict[str, Any], keys: list[str], method: str) -> Any:
    """The scattered job inputs, nested or flat as the scatter method says."""
    if method == "dotproduct":
        lengths = {len(obj[k] or []) for k in keys}
        if len(lengths) > 1:
            raise adapter.CWLError("dotproduct scatter needs input arrays of equal length")
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
