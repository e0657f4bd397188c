"""WDL workflows as core jobs.

A :class:`WDLWorkflowJob` (internal, hidden) evaluates its workflow's graph as far as it can when
it runs: declarations, conditions, scatter arrays and gathers whose inputs are known are
evaluated at once (miniwdl evaluates them, through :mod:`flow.wdl.adapter`), scatters and
conditionals are unrolled in place, and each call becomes a child job: a visible
:class:`~flow.wdl.task.WDLTaskJob` for a task, another workflow job for a sub-workflow. Nodes
that need the outputs of calls still running wait in hidden :class:`WDLContinuation` jobs: one
per set of calls waited for, a follow-on of each job it reads from, which does the same again
when it runs. Values flow as promises. A node waits only for what it reads, except that a scatter
or conditional is unrolled once everything its body reads from outside it is known (then its body
needs nothing that another job would have to hand over).

Node instances are named as miniwdl names them: the node id, then one index per scatter around
it ("call-hello-03"), so a node inside a scatter finds the instance it depends on by keeping as
many indices as that node has scatters around it.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

from flow.core.filestore import FileStore
from flow.core.job import Job
from flow.wdl import adapter, files
from flow.wdl.batch import WDLTaskBatch, batch_size
from flow.wdl.packing import PackedJob, PackedValues
from flow.wdl.task import Needs, RunSettings, WDLTaskJob, call_needs

OUTPUTS = "__outputs__"


@dataclass(frozen=True)
class Instance:
    """One node of the graph for one scatter element: what it reads, the scatter variables."""

    id: str
    node: str
    deps: tuple[str, ...]
    scope: tuple[tuple[str, str, Any], ...] = ()  # (index, variable, value) per scatter around it
    width: int = 1  # elements of the innermost scatter around it (how many calls may share a job)

    @property
    def indices(self) -> list[str]:
        return [index for index, _, _ in self.scope]


def instance_id(node_id: str, indices: list[str]) -> str:
    return "-".join([node_id, *indices])


@dataclass(frozen=True)
class Frame:
    """What every job of one workflow invocation shares."""

    ref: adapter.ExeRef
    settings: RunSettings
    namespace: str  # outputs are named "<namespace>.<name>" (a sub-workflow call's name), or bare
    label: str  # "wf", "wf.sub": the prefix of its calls' names in logs


class WDLInternalJob(PackedJob):
    """A front-end job that only evaluates and schedules: hidden from the progress bar and the
    default log. Default requirements, so that a worker can chain into the task it schedules."""

    hidden = True

    def __init__(self, frame: Frame, name: str) -> None:
        super().__init__(displayName=name)
        self.frame = frame

    def run(self, fileStore: FileStore) -> Any:
        try:
            value = self.evaluate(files.StoreFiles(fileStore, self.frame.settings.origins))
        except (adapter.WDLError, files.WDLFileError) as exc:
            print(f"flow-wdl: workflow {self.frame.label} failed: {exc}", file=sys.stderr)
            raise
        return PackedValues(value) if type(value) is dict else value  # else a promise

    def evaluate(self, store: files.StoreFiles) -> Any:
        raise NotImplementedError


class WDLWorkflowJob(WDLInternalJob):
    """Runs a workflow with the given inputs; returns its outputs (named by the frame)."""

    def __init__(self, frame: Frame, inputs: adapter.Values) -> None:
        super().__init__(frame, f"WDLWorkflow {frame.label}")
        self.inputs = inputs

    def evaluate(self, store: files.StoreFiles) -> Any:
        ctx = adapter.WorkflowContext(self.frame.ref, self.inputs, store)
        graph = adapter.graph(self.frame.ref)
        instances = []
        for node_id in graph.top:
            info = graph.nodes[node_id]
            given = info.kind == "decl" and info.name in ctx.inputs  # its default is not evaluated
            instances.append(Instance(node_id, node_id, () if given else info.deps))
        instances.append(Instance(OUTPUTS, OUTPUTS, graph.outputs))
        scheduler = Scheduler(self, ctx, {})
        scheduler.run(instances)
        return scheduler.export([OUTPUTS])[OUTPUTS]


class WDLContinuation(WDLInternalJob):
    """Nodes that waited for calls: runs once those calls (its predecessors) have finished."""

    def __init__(self, frame: Frame, inputs: adapter.Values, roots: frozenset[str]) -> None:
        super().__init__(frame, f"WDLContinuation {frame.label}")
        self.inputs = inputs
        self.roots = roots
        self.members: list[Instance] = []
        self.exports: list[str] = []
        self.given: dict[str, Any] = {}
        self.predecessor_ids: set[str] = set()

    def evaluate(self, store: files.StoreFiles) -> Any:
        ctx = adapter.WorkflowContext(self.frame.ref, self.inputs, store)
        scheduler = Scheduler(self, ctx, self.given)
        scheduler.run(self.members)
        return scheduler.export(self.exports)


class Scheduler:
    """Evaluates node instances in one job: at once when what they read is known, else in a
    continuation job that waits for the calls they read from."""

    def __init__(self, job: WDLInternalJob, ctx: adapter.WorkflowContext, known: dict[str, Any]) -> None:
        self.job = job
        self.frame = job.frame
        self.ctx = ctx
        self.graph = adapter.graph(self.frame.ref)
        self.known: dict[str, adapter.Values] = dict(known)
        self.pending: dict[str, Job] = {}  # instance -> the call job whose value it is
        self.slots: dict[str, int] = {}  # instance -> its item in its batch job's value
        self.batches: dict[tuple[str, tuple[str, ...], Needs], WDLTaskBatch] = {}  # open ones
        self.deferred: dict[str, WDLContinuation] = {}
        self.groups: dict[frozenset[str], WDLContinuation] = {}
        self.new: list[Instance] = []

    def run(self, instances: list[Instance]) -> None:
        queue = list(instances)
        while queue:
            waiting: list[Instance] = []
            for inst in queue:
                state = self._state(inst)
                if state == "wait":
                    waiting.append(inst)
                elif state == "ready":
                    self._visit(inst)
                else:
                    self._defer(inst)
            if waiting and len(waiting) == len(queue) and not self.new:
                raise adapter.WDLError(f"the workflow cannot proceed: {waiting[0].id} waits for nodes that never come")
            queue = waiting + self.new
            self.new = []
        for continuation in self.groups.values():
            self._finalize(continuation)

    def _state(self, inst: Instance) -> str:
        state = "ready"
        for dep in inst.deps:
            if dep in self.known:
                continue
            if dep in self.pending or dep in self.deferred:
                state = "defer"
            else:
                return "wait"
        return state

    def _env(self, inst: Instance) -> adapter.Values:
        env: adapter.Values = {}
        for dep in inst.deps:
            env.update(self.known[dep])
        for _, variable, value in inst.scope:
            env[variable] = value
        return env

    def _visit(self, inst: Instance) -> None:
        if inst.node == OUTPUTS:
            env = self._env(inst)
            prefix = f"{self.frame.namespace}." if self.frame.namespace else ""
            self.known[inst.id] = {prefix + k: v for k, v in self.ctx.outputs(env).items()}
            return
        info = self.graph.nodes[inst.node]
        if info.kind == "decl":
            self.known[inst.id] = self.ctx.eval_decl(inst.node, self._env(inst))
        elif info.kind == "call":
            self.pending[inst.id] = self._call(inst, info)
        elif info.kind == "gather":
            self.known[inst.id] = self.ctx.gather(inst.node, [self.known[d] for d in inst.deps])
        else:
            self._expand(inst, info)
            self.known[inst.id] = {}

    def _call(self, inst: Instance, info: adapter.NodeInfo) -> Job:
        inputs = self.ctx.call_inputs(inst.node, self._env(inst))
        shard = f"[{','.join(str(int(i)) for i in inst.indices)}]" if inst.indices else ""
        label = f"{self.frame.label}.{info.name}{shard}"
        ref = self.frame.ref.child(inst.node)
        job: Job
        if info.subworkflow:
            job = WDLWorkflowJob(Frame(ref, self.frame.settings, info.name, label), inputs)
        else:
            settings = self.frame.settings
            needs = call_needs(ref, inputs, settings)
            size = batch_size(inst.width, needs.cores, settings.max_cores) if inst.width > 1 else 1
            if size > 1:
                return self._batched(inst, ref, inputs, label, needs, size)
            job = WDLTaskJob(ref, inputs, label, info.name, settings, needs)
        self.job.addChild(job)
        return job

    def _batched(self, inst: Instance, ref: adapter.ExeRef, inputs: adapter.Values, label: str,
                 needs: Needs, size: int) -> Job:
        """Add a scattered call to the open batch of its scatter (and needs), or a new one."""
        key = (inst.node, tuple(inst.indices[:-1]), needs)
        batch = self.batches.get(key)
        if batch is None or len(batch.calls) >= size:
            batch = self.batches[key] = WDLTaskBatch(ref, self.graph.nodes[inst.node].name,
                                                     self.frame.settings, needs)
            self.job.addChild(batch)
        self.slots[inst.id] = batch.add(inputs, label)
        return batch

    def _promise(self, inst_id: str) -> Any:
        """The promised value of a call instance (its item, when its job is a batch)."""
        job = self.pending[inst_id]
        return job.rv(self.slots[inst_id]) if inst_id in self.slots else job.rv()

    def _expand(self, inst: Instance, info: adapter.NodeInfo) -> None:
        """Unroll a scatter or conditional: its body once per element (or once if true)."""
        variable, items = self.ctx.section_items(inst.node, self._env(inst))
        if info.kind == "scatter":
            digits = len(str(max(len(items) - 1, 0)))
            scopes = [(*inst.scope, (str(i).zfill(digits), variable, item)) for i, item in enumerate(items)]
            width = len(items)
        else:
            scopes = [inst.scope] * len(items)
            width = inst.width
        for scope in scopes:
            indices = [index for index, _, _ in scope]
            for body_id in info.body:
                body = self.graph.nodes[body_id]
                deps = tuple(self._dep_id(d, indices) for d in body.deps)
                self.new.append(Instance(instance_id(body_id, indices), body_id, deps, scope, width))
        for gather_id in info.gathers:
            referee = self.graph.nodes[gather_id].referee
            parts = tuple(instance_id(referee, [i for i, _, _ in scope]) for scope in scopes)
            self.new.append(Instance(instance_id(gather_id, inst.indices), gather_id, parts, inst.scope,
                                     inst.width))

    def _dep_id(self, dep: str, indices: list[str]) -> str:
        return instance_id(dep, indices[: self.graph.nodes[dep].depth])

    def _defer(self, inst: Instance) -> None:
        """Put ``inst`` in the continuation of the calls it waits for (made on first need)."""
        roots: set[str] = set()
        direct: list[Job] = []
        for dep in inst.deps:
            if dep in self.pending:
                roots.add(self.pending[dep].jobStoreID)
                direct.append(self.pending[dep])
            elif dep in self.deferred:
                roots |= self.deferred[dep].roots
                direct.append(self.deferred[dep])
        key = frozenset(roots)
        group = self.groups.get(key)
        if group is None:
            group = self.groups[key] = WDLContinuation(self.frame, {}, key)
        for producer in direct:
            if producer is not group and producer.jobStoreID not in group.predecessor_ids:
                group.predecessor_ids.add(producer.jobStoreID)
                producer.addFollowOn(group)
        group.members.append(inst)
        group.exports.append(inst.id)
        self.deferred[inst.id] = group
        info = self.graph.nodes.get(inst.node)
        for gather_id in info.gathers if info is not None else ():
            gid = instance_id(gather_id, inst.indices)
            group.exports.append(gid)
            self.deferred[gid] = group

    def _finalize(self, group: WDLContinuation) -> None:
        """Give a continuation what its members read from outside it: values or promises."""
        names: set[str] = set()
        for inst in group.members:
            names |= self._names(inst.node)
            for dep in inst.deps:
                if self.deferred.get(dep) is group:
                    continue
                if dep in self.known:
                    group.given[dep] = self.known[dep]
                elif dep in self.pending:
                    group.given[dep] = self._promise(dep)
                else:
                    group.given[dep] = self.deferred[dep].rv(dep)
        group.inputs = {k: v for k, v in self.ctx.inputs.items() if k.split(".")[0] in names}

    def _names(self, node_id: str) -> set[str]:
        """Names of a node and of the nodes inside it (the inputs that may apply to them)."""
        info = self.graph.nodes.get(node_id)
        if info is None:
            return set()
        names = {info.name} if info.name else set()
        for body_id in info.body:
            names |= self._names(body_id)
        return names

    def export(self, ids: list[str]) -> dict[str, Any]:
        """Values (or promises of them) of instances, for whoever runs after this job."""
        out: dict[str, Any] = {}
        for inst_id in ids:
            if inst_id in self.known:
                out[inst_id] = self.known[inst_id]
            elif inst_id in self.pending:
                out[inst_id] = self._promise(inst_id)
            else:
                out[inst_id] = self.deferred[inst_id].rv(inst_id)
        return out
