"""The one module that talks to miniwdl: loading, inputs, expressions, the standard library.

Everything WDL-specific (parsing, imports, type checking, expression evaluation, the standard
library, JSON conversion) is done by miniwdl through its public API (``WDL.load``, ``WDL.Tree``,
``WDL.Expr``, ``WDL.Env``, ``WDL.Value``, ``WDL.StdLib.Base`` and its documented file hooks,
``WDL.values_from_json``/``values_to_json``). The rest of flow's WDL front-end sees plain data:
:class:`NodeInfo` records of the workflow graph, dicts of values (opaque ``WDL.Value`` objects
without references into the syntax tree, so that they pickle small), and file paths as strings.
"""

from __future__ import annotations

import contextlib
import functools
import glob
import io
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import WDL
import WDL.CLI

from flow.core.exceptions import FlowError
from flow.wdl import doccache
from flow.wdl.taskdirs import TaskDirs

doccache.enable_parser_cache()

#: Values by (possibly dotted) name, e.g. {"x": Int 1, "call.out": File ...}.
Values = dict[str, Any]


class WDLError(FlowError):
    """An invalid document, input or expression: reported in one paragraph (exit 1)."""


class FileAccess(Protocol):
    """How workflow-level expressions reach files: the file store, through URIs."""

    def fetch(self, uri: str) -> str:
        """A local path holding the file ``uri`` names."""
        ...

    def store(self, path: str) -> str:
        """Store the local file ``path`` (made by a write_* function); its URI."""
        ...

    def scratch(self) -> str:
        """A local directory for write_* functions."""
        ...


# ---- errors ----------------------------------------------------------------------------------
def _where(pos: Any) -> str:
    return f"{pos.uri}:{pos.line}:{pos.column}" if pos is not None else ""


def describe(exc: BaseException) -> str:
    """miniwdl's error as ``file:line:col: message`` lines."""
    if isinstance(exc, WDL.Error.MultipleValidationErrors):
        return "\n".join(describe(e) for e in exc.exceptions)
    pos = getattr(exc, "pos", None)
    message = str(exc) or type(exc).__name__
    if isinstance(exc, WDL.Error.ImportError) and exc.__cause__ is not None:
        message += f": {describe(exc.__cause__)}"
    return f"{_where(pos)}: {message}" if pos is not None else message


#: What miniwdl raises for a bad value or failing expression at run time.
EVAL_ERRORS: tuple[type[BaseException], ...] = (
    WDL.Error.RuntimeError, WDL.Error.ValidationError, ValueError, TypeError, KeyError,
    IndexError, ZeroDivisionError, OverflowError, OSError, AssertionError,
)


def eval_error(what: str, exc: BaseException) -> WDLError:
    return WDLError(f"{what}: {describe(exc)}")


# ---- documents -------------------------------------------------------------------------------
@functools.lru_cache(maxsize=16)
def load(uri: str) -> Any:
    """Parse, import and type-check a document (cached per process, and on disk: see
    :mod:`flow.wdl.doccache`, as building miniwdl's parser costs more than running a small
    workflow)."""
    cached = doccache.read(uri, WDL.__file__ or "")
    if cached is not None:
        _check_string_coercions(cached)
        return cached
    with _reading(uri):
        doc = WDL.load(uri, path=[])
    _check_string_coercions(doc)
    doccache.write(uri, WDL.__file__ or "", doc, _sources(doc))
    return doc


_COMPOUND = (WDL.Type.Array, WDL.Type.Map, WDL.Type.Pair, WDL.Type.StructInstance, WDL.Type.Object)


def _check_string_coercions(doc: Any) -> None:
    """Refuse an Array, Map, Pair, struct or object where a String is expected (a declaration,
    a call input, an array literal's item). WDL 1.0 and 1.1 coerce only primitive values to
    String; miniwdl accepts these with a StringCoercion lint warning and uses the value's JSON,
    an answer the spec does not give (the conformance test array_coerce expects a failure)."""
    bad: list[tuple[str, int, int, str]] = []

    def wanted(expected: Any, expr: Any, what: str) -> None:
        if isinstance(expected, WDL.Type.String) and isinstance(expr.type, _COMPOUND):
            bad.append((expr.pos.uri, expr.pos.line, expr.pos.column,
                        f"{_where(expr.pos)}: {what} is a String, but the value is {expr.type}"))

    def visit(expr: Any) -> None:
        stack = [expr] if expr is not None else []
        while stack:
            e = stack.pop()
            if isinstance(e, WDL.Expr.Array) and isinstance(e.type, WDL.Type.Array):
                for item in e.items:
                    wanted(e.type.item_type, item, "the array's item type")
            stack.extend(c for c in e.children if isinstance(c, WDL.Expr.Base))

    for node in _all_nodes(doc):
        if isinstance(node, WDL.Tree.Decl) and node.expr is not None:
            wanted(node.type, node.expr, f"{node.name}'s type")
            visit(node.expr)
        elif isinstance(node, WDL.Tree.Call):
            callee = node.callee.available_inputs
            for name, expr in node.inputs.items():
                if name in callee:
                    wanted(callee[name].type, expr, f"input {name} of call {node.name}")
                visit(expr)
        elif isinstance(node, WDL.Tree.WorkflowSection):
            visit(node.expr)
        elif isinstance(node, WDL.Tree.Task):
            visit(node.command)
            for expr in node.runtime.values():
                visit(expr)
    if bad:
        raise WDLError("a compound value cannot become a String in WDL (miniwdl turns it into "
                       "JSON text; write_json() says so explicitly):\n"
                       + "\n".join(b[3] for b in sorted(bad)))


def _documents(doc: Any) -> Iterator[Any]:
    """A document and those it imports, each once."""
    stack, seen = [doc], set()
    while stack:
        d = stack.pop()
        if id(d) not in seen:
            seen.add(id(d))
            stack.extend(imp.doc for imp in d.imports if imp.doc is not None)
            yield d


def _all_nodes(doc: Any) -> Iterator[Any]:
    """The tasks, declarations, calls and sections of a document and its imports."""
    for d in _documents(doc):
        for task in d.tasks:
            yield task
            yield from (*(task.inputs or []), *task.postinputs, *task.outputs)
        if d.workflow is not None:
            yield from _nodes(d.workflow).values()


def _sources(doc: Any) -> list[str] | None:
    """The files of a document and its imports (None if one is not a local file)."""
    found: list[str] = []
    stack = [doc]
    while stack:
        d = stack.pop()
        path = d.pos.abspath
        if not os.path.isabs(path):
            return None
        if path not in found:
            found.append(path)
        stack.extend(imp.doc for imp in d.imports if imp.doc is not None)
    return found


@dataclass(frozen=True)
class ExeRef:
    """A task or workflow: its document, and the call node ids leading to it from the document's
    workflow (empty: the document's workflow, or its only task); or the task named ``task``."""

    uri: str
    calls: tuple[str, ...] = ()
    task: str = ""

    def child(self, call_id: str) -> ExeRef:
        return ExeRef(self.uri, (*self.calls, call_id))


def _main_exe(doc: Any, uri: str, task: str) -> Any:
    tasks = ", ".join(str(t.name) for t in doc.tasks)
    if task:
        found = next((t for t in doc.tasks if t.name == task), None)
        if found is None:
            raise WDLError(f"{uri} has no task {task} (its tasks: {tasks or 'none'})")
        return found
    if doc.workflow is not None:
        return doc.workflow
    if len(doc.tasks) == 1:
        return doc.tasks[0]
    if not doc.tasks:
        raise WDLError(f"{uri} has neither a workflow nor a task: nothing to run")
    raise WDLError(f"{uri} has no workflow and {len(doc.tasks)} tasks: name the one to run with "
                   f"--task NAME (its tasks: {tasks})")


@functools.lru_cache(maxsize=256)
def resolve(ref: ExeRef) -> Any:
    exe = _main_exe(load(ref.uri), ref.uri, ref.task)
    for call_id in ref.calls:
        exe = _nodes(exe)[call_id].callee
    return exe


def is_workflow(exe: Any) -> bool:
    return isinstance(exe, WDL.Tree.Workflow)


def exe_name(ref: ExeRef) -> str:
    return str(resolve(ref).name)


def version(exe: Any) -> str:
    return str(exe.effective_wdl_version)


_NODE_CACHE: dict[int, dict[str, Any]] = {}


def _nodes(workflow: Any) -> dict[str, Any]:
    """Every node of a workflow by id, output declarations included."""
    nodes = _NODE_CACHE.get(id(workflow))
    if nodes is None:
        nodes = {}
        stack = [*(workflow.inputs or []), *workflow.body, *(workflow.outputs or [])]
        while stack:
            node = stack.pop()
            nodes[node.workflow_node_id] = node
            if isinstance(node, WDL.Tree.WorkflowSection):
                stack.extend(node.body)
                stack.extend(node.gathers.values())
        _NODE_CACHE[id(workflow)] = nodes
    return nodes


# ---- inputs and outputs ----------------------------------------------------------------------
def read_inputs(ref: ExeRef, data: dict[str, Any]) -> Values:
    """The run's inputs from a Cromwell-style JSON object, checked against the document."""
    exe = resolve(ref)
    try:
        env = WDL.values_from_json(data, exe.available_inputs, exe.required_inputs, namespace=exe.name)
    except WDL.Error.InputError as exc:
        raise WDLError(f"bad inputs for {exe.name}: {exc}") from None
    except RecursionError:
        raise WDLError(f"the inputs for {exe.name} nest too deeply") from None
    return {b.name: detach(b.value) for b in env}


def command_line_inputs(ref: ExeRef, data: dict[str, Any], pairs: list[str], empty: list[str],
                        none: list[str]) -> dict[str, Any]:
    """The inputs JSON with miniwdl's command-line inputs (``name=value`` pairs, repeated for
    arrays; ``--empty NAME``, ``--none NAME``) over it, as ``miniwdl run`` reads them."""
    exe = resolve(ref)
    if not (pairs or empty or none):
        return data

    def named(key: str) -> str:  # both spellings, "wf.x" and "x", as "wf.x"
        return key if key.startswith((f"{exe.name}.", "#")) else f"{exe.name}.{key}"

    merged = {named(k): v for k, v in data.items()}
    try:
        # miniwdl prints the task's inputs on a bad pair; flow's error names the pair instead
        with contextlib.redirect_stderr(io.StringIO()):
            _, _, given = WDL.CLI.runner_input(
                load(ref.uri), pairs, None, empty, none, task=ref.task or None,
                check_required=False, downloadable=lambda path, directory: True)
    except (WDL.Error.InputError, ValueError) as exc:
        raise WDLError(f"bad command-line inputs for {exe.name}: {exc}") from None
    except RecursionError:
        raise WDLError(f"command-line inputs for {exe.name} nest too deeply") from None
    merged.update({named(k): v for k, v in given.items()})
    return merged


def check_document(uri: str, strict: bool, suppress: str | None) -> None:
    """``miniwdl check``: print the document's outline with lint warnings (exit 2 if ``strict``
    and there are warnings)."""
    with _reading(uri):
        WDL.CLI.check(uri=[uri], strict=strict, suppress=suppress)


@contextlib.contextmanager
def _reading(uri: str) -> Iterator[None]:
    """miniwdl's errors in loading ``uri`` as one-paragraph WDLErrors."""
    try:
        yield
    except (WDL.Error.SyntaxError, WDL.Error.ValidationError, WDL.Error.MultipleValidationErrors,
            WDL.Error.ImportError) as exc:
        raise WDLError(f"{uri} is not valid WDL:\n{describe(exc)}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise WDLError(f"cannot read {uri}: {exc}") from None
    except RecursionError:
        raise WDLError(_too_deep(uri)) from None


def _too_deep(uri: str) -> str:
    return (f"{uri} nests expressions deeper than miniwdl can parse (Python's recursion limit, "
            f"{sys.getrecursionlimit()})")


def map_paths(values: Values, fn: Callable[[str, bool], str | None]) -> Values:
    """Rewrite every File/Directory path (``fn(path, is_directory)``; None makes it null)."""
    def rewrite(v: Any) -> str | None:
        return fn(v.value, isinstance(v, WDL.Value.Directory))

    return {name: WDL.Value.rewrite_paths(v, rewrite) for name, v in values.items()}


def paths(values: Iterable[Any]) -> list[str]:
    """The File paths inside values."""
    found: list[str] = []

    def visit(v: Any) -> None:
        if isinstance(v, (WDL.Value.File, WDL.Value.Directory)):
            found.append(v.value)
        for child in v.children:
            visit(child)

    for value in values:
        visit(value)
    return found


def to_json(values: Values, namespace: str) -> dict[str, Any]:
    env = WDL.Env.Bindings()
    for name, v in reversed(list(values.items())):
        env = env.bind(name, v)
    try:
        return dict(WDL.values_to_json(env, namespace))
    except WDL.Error.RuntimeError as exc:
        raise WDLError(f"cannot write the outputs as JSON: {exc}") from None


def map_strings(values: Values, fn: Callable[[str], str]) -> Values:
    """Rewrite every String (``fn(text)``), map keys included."""
    return {name: detach(v, fn) for name, v in values.items()}


def detach(v: Any, text: Callable[[str], str] | None = None) -> Any:
    """A copy of a value without references to the expressions that made it (pickles small),
    its Strings rewritten by ``text`` if given."""
    V = WDL.Value
    if isinstance(v, V.Null):
        return V.Null()
    if isinstance(v, V.Directory):
        return V.Directory(v.value)
    if isinstance(v, V.File):
        return V.File(v.value)
    if isinstance(v, V.String):
        return V.String(v.value if text is None else text(v.value))
    if isinstance(v, V.Boolean):
        return V.Boolean(v.value)
    if isinstance(v, V.Int):
        return V.Int(v.value)
    if isinstance(v, V.Float):
        return V.Float(v.value)
    if isinstance(v, V.Array):
        return V.Array(v.type.item_type, [detach(x, text) for x in v.value])
    if isinstance(v, V.Map):
        return V.Map(v.type.item_type, [(detach(k, text), detach(x, text)) for k, x in v.value])
    if isinstance(v, V.Pair):
        left, right = v.value
        return V.Pair(v.type.left_type, v.type.right_type, (detach(left, text), detach(right, text)))
    if isinstance(v, V.Struct):
        return V.Struct(v.type, {k: detach(x, text) for k, x in v.value.items()}, extra=set(v.extra))
    raise WDLError(f"unexpected WDL value {v!r}")


def _env(values: Values) -> Any:
    env = WDL.Env.Bindings()
    for name, v in values.items():
        env = env.bind(name, v)
    return env


# ---- the workflow graph as plain data --------------------------------------------------------
@dataclass(frozen=True)
class NodeInfo:
    """One workflow node, as the scheduler needs it."""

    id: str
    kind: str  # "decl", "call", "scatter", "if", "gather"
    deps: tuple[str, ...]
    depth: int  # scatter sections around it
    name: str = ""  # declaration or call name
    body: tuple[str, ...] = ()  # sections: the nodes inside
    gathers: tuple[str, ...] = ()  # sections: their gather nodes
    referee: str = ""  # gather: the node gathered
    subworkflow: bool = False  # call of a workflow


@dataclass(frozen=True)
class Graph:
    nodes: dict[str, NodeInfo]
    top: tuple[str, ...]  # inputs, body and outputs of the workflow
    outputs: tuple[str, ...]  # the nodes whose values make the outputs


def _info(node: Any) -> NodeInfo:
    T = WDL.Tree
    deps = tuple(sorted(node.workflow_node_dependencies))
    if isinstance(node, T.Decl):
        return NodeInfo(node.workflow_node_id, "decl", deps, node.scatter_depth, name=node.name)
    if isinstance(node, T.Call):
        return NodeInfo(node.workflow_node_id, "call", deps, node.scatter_depth, name=node.name,
                        subworkflow=isinstance(node.callee, T.Workflow))
    if isinstance(node, T.Gather):
        return NodeInfo(node.workflow_node_id, "gather", deps, node.scatter_depth,
                        referee=node.referee.workflow_node_id)
    kind = "scatter" if isinstance(node, T.Scatter) else "if"
    return NodeInfo(node.workflow_node_id, kind, _section_deps(node), node.scatter_depth,
                    body=tuple(n.workflow_node_id for n in node.body),
                    gathers=tuple(g.workflow_node_id for g in node.gathers.values()))


def _section_deps(section: Any) -> tuple[str, ...]:
    """What a section reads from outside: its expression's and its whole body's dependencies (so
    that once those are known, the body can be unrolled where they are)."""
    inside: set[str] = {section.workflow_node_id}
    deps: set[str] = set(section.workflow_node_dependencies)
    stack = [section]
    while stack:
        node = stack.pop()
        inside.add(node.workflow_node_id)
        deps |= node.workflow_node_dependencies
        if isinstance(node, WDL.Tree.WorkflowSection):
            stack.extend(node.body)
            inside.update(g.workflow_node_id for g in node.gathers.values())
    return tuple(sorted(deps - inside))


@functools.lru_cache(maxsize=64)
def graph(ref: ExeRef) -> Graph:
    workflow = resolve(ref)
    nodes = {node_id: _info(node) for node_id, node in _nodes(workflow).items()}
    top = tuple(n.workflow_node_id for n in (*(workflow.inputs or []), *workflow.body,
                                               *(workflow.outputs or [])))
    if workflow.outputs is not None:
        outputs = tuple(d.workflow_node_id for d in workflow.outputs)
    else:  # no output section: every call's outputs, as miniwdl gives them
        found = []
        for node in workflow.body:
            if isinstance(node, WDL.Tree.Call):
                found.append(node.workflow_node_id)
            elif isinstance(node, WDL.Tree.WorkflowSection):
                found.extend(g.workflow_node_id for g in node.gathers.values()
                             if isinstance(g.final_referee, WDL.Tree.Call))
        outputs = tuple(found)
    return Graph(nodes, top, outputs)


def input_names(ref: ExeRef) -> frozenset[str]:
    return frozenset(b.name for b in resolve(ref).available_inputs)


# ---- workflow-level evaluation ---------------------------------------------------------------
class _WorkflowStdLib(WDL.StdLib.Base):
    """The standard library in workflow expressions: files come from and go to the file store."""

    def __init__(self, wdl_version: str, files: FileAccess) -> None:
        super().__init__(wdl_version, write_dir=files.scratch())
        self._files = files

    def _devirtualize_filename(self, filename: str) -> str:
        return self._files.fetch(filename)

    def _virtualize_filename(self, filename: str) -> str:
        return self._files.store(filename)

    def _resolve_source_relative_path(self, filename: str) -> str:
        return filename


@dataclass
class WorkflowContext:
    """What evaluating a workflow's nodes needs: the workflow, its inputs, a standard library."""

    ref: ExeRef
    inputs: Values
    files: FileAccess

    def __post_init__(self) -> None:
        self.workflow = resolve(self.ref)
        self.stdlib = _WorkflowStdLib(version(self.workflow), self.files)
        defaults = self.workflow.available_inputs
        # a null for an input with a default, but not of optional type, means "use the default"
        self.inputs = {
            k: v for k, v in self.inputs.items()
            if not (isinstance(v, WDL.Value.Null) and k in defaults and defaults[k].expr
                    and not defaults[k].type.optional)
        }

    def node(self, node_id: str) -> Any:
        return _nodes(self.workflow)[node_id]

    def eval_decl(self, node_id: str, env: Values) -> Values:
        decl = self.node(node_id)
        try:
            if decl.name in self.inputs:
                value = self.inputs[decl.name].coerce(decl.type)
            elif decl.expr is not None:
                value = decl.expr.eval(_env(env), stdlib=self.stdlib).coerce(decl.type)
            else:
                value = WDL.Value.Null().coerce(decl.type) if decl.type.optional else _missing(decl)
        except EVAL_ERRORS as exc:
            raise eval_error(f"cannot evaluate {self.workflow.name}.{decl.name}", exc) from None
        return {decl.name: detach(value)}

    def call_inputs(self, node_id: str, env: Values) -> Values:
        call = self.node(node_id)
        callee_inputs = call.callee.available_inputs
        values: Values = {}
        try:
            for name, expr in call.inputs.items():
                values[name] = expr.eval(_env(env), stdlib=self.stdlib)
            prefix = call.name + "."
            for key, v in self.inputs.items():
                if key.startswith(prefix):
                    values[key[len(prefix):]] = v
            for name, v in list(values.items()):
                if name in callee_inputs:
                    decl = callee_inputs[name]
                    values[name] = v.coerce(decl.type.copy(optional=True) if decl.expr else decl.type)
        except EVAL_ERRORS as exc:
            raise eval_error(f"cannot evaluate the inputs of call {call.name}", exc) from None
        return {k: detach(v) for k, v in values.items()}

    def section_items(self, node_id: str, env: Values) -> tuple[str, list[Any]]:
        """A scatter's variable and array, or a conditional's ("", [None]) or ("", [])."""
        section = self.node(node_id)
        try:
            v = section.expr.eval(_env(env), stdlib=self.stdlib)
        except EVAL_ERRORS as exc:
            raise eval_error(f"cannot evaluate the expression of {node_id}", exc) from None
        if isinstance(section, WDL.Tree.Scatter):
            return section.variable, [detach(x) for x in v.value]
        return "", [None] if v.value else []

    def gather(self, node_id: str, parts: list[Values]) -> Values:
        """A gather node's values from the values of the instances it gathers (in order)."""
        gather = self.node(node_id)
        leaf = gather.final_referee
        if isinstance(leaf, WDL.Tree.Decl):
            names = [leaf.name]
        else:
            names = [f"{leaf.name}.{b.name}" for b in leaf.effective_outputs.enter_namespace(leaf.name)]
        out: Values = {}
        for name in names:
            items = [part[name] for part in parts]
            if isinstance(gather.section, WDL.Tree.Scatter):
                item_type = items[0].type if items else WDL.Type.Any()
                out[name] = WDL.Value.Array(item_type, items)
            else:
                out[name] = items[0] if items else WDL.Value.Null()
        return out

    def outputs(self, env: Values) -> Values:
        """The workflow's outputs, from the values of its output nodes."""
        if self.workflow.outputs is not None:
            return {d.name: env[d.name] for d in self.workflow.outputs}
        return dict(env)


def _missing(decl: Any) -> Any:
    raise WDLError(f"{_where(decl.pos)}: {decl.name} has no value (a required input not given)")


# ---- tasks -----------------------------------------------------------------------------------
class _TaskStdLib(WDL.StdLib.Base):
    """The standard library inside a task: files are local paths (the same in a container).

    Building one costs miniwdl a third of a millisecond (dozens of function objects), more than
    evaluating a small task's inputs and command: one per WDL version, phase (inputs, outputs)
    and process is pointed at each call's folders in turn (:func:`_task_stdlib`)."""

    def __init__(self, wdl_version: str, dirs: TaskDirs) -> None:
        super().__init__(wdl_version, write_dir=dirs.writes)
        self._dirs = dirs

    def use(self, dirs: TaskDirs) -> _TaskStdLib:
        self._dirs = dirs
        self._write_dir = dirs.writes
        return self

    def _local(self, filename: str) -> str:
        return filename if os.path.isabs(filename) else os.path.join(self._dirs.work, filename)

    def _devirtualize_filename(self, filename: str) -> str:
        path = self._local(filename)
        if self._dirs.outside(path):  # as miniwdl: a task reads only its own and input files
            raise WDL.Error.InputError(f"{filename} is outside the task's working directory")
        if not os.path.exists(path):
            raise WDL.Error.InputError(f"no such file: {filename}")
        return path

    def _virtualize_filename(self, filename: str) -> str:
        return filename

    def _resolve_source_relative_path(self, filename: str) -> str:
        return self._local(filename)

    def _add_output_functions(self) -> None:
        T, V, F = WDL.Type, WDL.Value, WDL.StdLib.StaticFunction
        self.stdout = F("stdout", [], T.File(), lambda: V.File(self._dirs.stdout))
        self.stderr = F("stderr", [], T.File(), lambda: V.File(self._dirs.stderr))

        def glob_(pattern: Any) -> Any:
            dirs = self._dirs
            pat = str(pattern.value)
            if not pat or pat.startswith("/") or pat.startswith("..") or "/.." in pat:
                raise WDL.Error.InputError(f"glob() pattern must be relative and inside the working directory: {pat!r}")
            found = sorted(p for p in glob.glob(os.path.join(dirs.work, pat)) if os.path.isfile(p))
            return V.Array(T.File(), [V.File(p) for p in found])

        self.glob = F("glob", [T.String()], T.Array(T.File()), glob_)


@dataclass
class TaskContext:
    """One task invocation: inputs (local paths), declarations, runtime, command, outputs."""

    ref: ExeRef
    dirs: TaskDirs

    def __post_init__(self) -> None:
        self.task = resolve(self.ref)
        self.stdlib = _task_stdlib(version(self.task), False).use(self.dirs)
        self.env: Any = WDL.Env.Bindings()

    @property
    def name(self) -> str:
        return str(self.task.name)

    def bind_inputs(self, inputs: Values) -> None:
        """Bind the call's inputs, then evaluate the other declarations in dependency order."""
        available = self.task.available_inputs
        for name, v in inputs.items():
            decl = available.get(name)
            if decl is not None and isinstance(v, WDL.Value.Null) and decl.expr and not decl.type.optional:
                continue  # a null for an input with a default: the default
            self.env = self.env.bind(name, v)
        for decl in _in_dependency_order([d for d in (*(self.task.inputs or []), *self.task.postinputs)
                                          if d.name not in self.env]):
            self.env = self.env.bind(decl.name, self._eval_decl(decl, self.stdlib, outputs=False))

    def _eval_decl(self, decl: Any, stdlib: Any, outputs: bool) -> Any:
        try:
            if decl.expr is None:
                if not decl.type.optional:
                    raise WDLError(f"{_where(decl.pos)}: task {self.name} input {decl.name} has no value")
                return WDL.Value.Null()
            value = decl.expr.eval(self.env, stdlib=stdlib).coerce(decl.type)
            if outputs:
                value = self._check_output_paths(decl, value)
            return value
        except EVAL_ERRORS as exc:
            raise eval_error(f"task {self.name}: cannot evaluate {decl.name}", exc) from None

    def _check_output_paths(self, decl: Any, value: Any) -> Any:
        def local(v: Any) -> str | None:
            if self.dirs.outside(v.value):
                raise WDLError(f"task {self.name}: output {decl.name}: {self.dirs.shown(v.value)} is "
                               "outside the task's working directory (an output must be a file the "
                               "task made in it, or one of its inputs)")
            path = self.stdlib._local(v.value)
            ok = os.path.isdir(path) if isinstance(v, WDL.Value.Directory) else os.path.isfile(path)
            return path if ok else None

        try:
            return WDL.Value.rewrite_paths(value, local).coerce(decl.type)
        except FileNotFoundError:
            raise WDLError(f"task {self.name}: output {decl.name}: a file it names does not exist "
                           f"({', '.join(paths([value]))})") from None

    def runtime(self) -> dict[str, Any]:
        """The runtime section as JSON-like values."""
        out: dict[str, Any] = {}
        for key, expr in self.task.runtime.items():
            try:
                out[key] = expr.eval(self.env, stdlib=self.stdlib).json
            except EVAL_ERRORS as exc:
                raise eval_error(f"task {self.name}: cannot evaluate runtime {key}", exc) from None
        return out

    def command(self) -> str:
        try:
            return str(self.task.command.eval(self.env, self.stdlib, dedent=True).value)
        except EVAL_ERRORS as exc:
            raise eval_error(f"task {self.name}: cannot evaluate the command", exc) from None

    def outputs(self) -> Values:
        """Evaluate the outputs after the command ran (paths local, missing optional files null)."""
        stdlib = _task_stdlib(version(self.task), True).use(self.dirs)  # with stdout() and glob()
        out: Values = {}
        for decl in _in_dependency_order(self.task.outputs):
            value = self._eval_decl(decl, stdlib, outputs=True)
            self.env = self.env.bind(decl.name, value)
            out[decl.name] = detach(value)
        return out


@functools.lru_cache(maxsize=16)
def _task_stdlib(wdl_version: str, outputs: bool) -> _TaskStdLib:
    """This process's task library of a WDL version, for inputs or (``outputs``) outputs: its
    calls run one after the other, each pointing it at its own folders first."""
    stdlib = _TaskStdLib(wdl_version, TaskDirs("/nonexistent"))
    if outputs:
        stdlib._add_output_functions()
    return stdlib


def static_runtime(ref: ExeRef, inputs: Values) -> dict[str, Any]:
    """The runtime values that can be known before the task runs (no file reads): for the job's
    requirements. What needs a file or fails is left out."""
    task = resolve(ref)
    if not task.runtime:
        return {}
    env = _env({k: v for k, v in inputs.items() if not isinstance(v, WDL.Value.Null)})
    stdlib = _no_files_stdlib(version(task))
    for decl in _in_dependency_order([d for d in (*(task.inputs or []), *task.postinputs) if d.name not in env]):
        if decl.expr is None:
            continue
        try:
            env = env.bind(decl.name, decl.expr.eval(env, stdlib=stdlib).coerce(decl.type))
        except EVAL_ERRORS:
            continue
    out: dict[str, Any] = {}
    for key, expr in task.runtime.items():
        try:
            out[key] = expr.eval(env, stdlib=stdlib).json
        except EVAL_ERRORS:
            continue
    return out


@functools.lru_cache(maxsize=8)
def _no_files_stdlib(wdl_version: str) -> Any:
    """One per WDL version and process: it holds no state (miniwdl's cost to build one is a
    third of a millisecond, paid for every task job made)."""
    return _NoFilesStdLib(wdl_version)


class _NoFilesStdLib(WDL.StdLib.Base):
    def __init__(self, wdl_version: str) -> None:
        super().__init__(wdl_version, write_dir="/nonexistent")

    def _devirtualize_filename(self, filename: str) -> str:
        raise WDL.Error.InputError("files are not readable here")

    def _virtualize_filename(self, filename: str) -> str:
        raise WDL.Error.InputError("files are not writable here")


def _in_dependency_order(decls: list[Any]) -> list[Any]:
    """Declarations so that each comes after those its expression names."""
    by_name = {d.name: d for d in decls}
    done: set[str] = set()
    ordered: list[Any] = []

    def names(expr: Any) -> set[str]:
        found: set[str] = set()
        stack = [expr] if expr is not None else []
        while stack:
            e = stack.pop()
            if isinstance(e, WDL.Expr.Ident):
                found.add(e.name.split(".")[0])
            stack.extend(c for c in e.children if isinstance(c, WDL.Expr.Base))
        return found

    deps = {d.name: names(d.expr) & set(by_name) - {d.name} for d in decls}
    pending = list(decls)
    while pending:
        ready = [d for d in pending if deps[d.name] <= done] or pending[:1]
        for decl in ready:
            done.add(decl.name)
            ordered.append(decl)
            pending.remove(decl)
    return ordered


def task_uses_container(ref: ExeRef) -> bool:
    task = resolve(ref)
    return any(key in task.runtime for key in ("docker", "container"))


def document_images(uri: str) -> bool:
    """Whether any task of the document (or its imports) names a container image."""
    return any(("docker" in t.runtime or "container" in t.runtime)
               for d in _documents(load(uri)) for t in d.tasks)
