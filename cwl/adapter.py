"""The module that talks to cwltool (with :mod:`flow.cwl.adapter_run`, which runs one tool
invocation): loading, validation, inputs, workflow plumbing.

Everything CWL-specific that cwltool already does (schema-salad loading and validation, input
objects, command lines, expressions, staging, output collection, containers) is done by cwltool
through its public API here. flow's job classes (:mod:`flow.cwl.jobs`) only schedule.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import gc
import io
import logging
import os
import pickle
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.parse
from collections.abc import MutableMapping
from dataclasses import dataclass, field
from typing import Any, cast

from flow.core.exceptions import FlowError
from flow.cwl.values import (
    plain,
)

logger = logging.getLogger("flow.cwl")

#: Exit status for a document that needs something flow does not support (cwltool's).
UNSUPPORTED_EXIT = 33


class CWLError(FlowError):
    """An invalid document or input object, reported in one paragraph (exit 1)."""


class CWLToolError(FlowError):
    """One tool invocation failed: its command's exit code, or its outputs could not be
    collected; cwltool's log above it says which."""


class CWLUnsupportedError(FlowError):
    """The document needs a feature this run cannot provide (exit 33)."""

    exit_code = UNSUPPORTED_EXIT


@dataclass(frozen=True)
class RunSettings:
    """How tools run; picklable, so that every worker runs them the same way."""

    container: str | None = None  # "docker", "podman", "singularity" or None (on the host)
    strict: bool = True
    relax_path_checks: bool = False
    tmpdir_prefix: str | None = None
    tmp_outdir_prefix: str | None = None
    debug: bool = False
    enable_dev: bool = False
    preserve_environment: tuple[str, ...] = ()
    preserve_entire_environment: bool = False
    eval_timeout: float = 60.0
    strict_memory_limit: bool = False
    #: The most cores one job may have on the run's batch system (None: a cluster's scheduler
    #: judges); a tool asking for more gets this many, as cwltool gives it the machine's cores.
    max_cores: float | None = field(default=None, compare=False)


@dataclass(frozen=True)
class ToolRef:
    """Where a process lives: its document, and the step ids leading to an embedded tool."""

    uri: str
    steps: tuple[str, ...] = ()


# ---- command line -----------------------------------------------------------------------------
def cwltool_parser() -> argparse.ArgumentParser:
    """cwltool's own argument parser (its option definitions, for flow-cwl to reuse)."""
    from cwltool.argparser import arg_parser

    return arg_parser()


def cwltool_main(argv: list[str]) -> int:
    """cwltool itself, for the options that only print something about a document."""
    from cwltool.main import main as cwltool_main_function

    return int(cwltool_main_function(argv))


def versions() -> str:
    """flow's, cwltool's and miniwdl's versions, one a line."""
    from importlib.metadata import PackageNotFoundError, version

    lines = []
    for label, dist in (("flow", "flow"), ("cwltool", "cwltool"), ("miniwdl", "miniwdl")):
        try:
            lines.append(f"{label} {version(dist)}")
        except PackageNotFoundError:
            lines.append(f"{label} (not installed)")
    return "\n".join(lines)


# ---- loading ---------------------------------------------------------------------------------
def _loading_context(settings: RunSettings) -> Any:
    from cwltool.context import LoadingContext
    from cwltool.workflow import default_make_tool

    ctx = LoadingContext()
    ctx.construct_tool_object = default_make_tool
    ctx.strict = settings.strict
    ctx.relax_path_checks = settings.relax_path_checks
    ctx.enable_dev = settings.enable_dev
    ctx.do_update = True
    return ctx


#: The CWL versions whose schemas cwltool parses (v1.0's always, for File and Directory).
SCHEMA_VERSIONS = ("v1.0", "v1.1", "v1.2")


def _schema_cache_path() -> str:
    from importlib.metadata import version

    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    tag = f"cwltool-{version('cwltool')}-salad-{version('schema-salad')}-py{sys.version_info[0]}{sys.version_info[1]}"
    return os.path.join(base, "flow", f"cwl-schemas-{tag}.pickle")


def _norm_dict(normalize: Any, items: dict[str, Any]) -> Any:
    from schema_salad.ref_resolver import NormDict

    result = NormDict(normalize)
    for key, value in items.items():
        result[key] = value
    return result


def _reduce_norm_dict(value: Any) -> tuple[Any, ...]:
    return (_norm_dict, (value.normalize, dict(value)))


@functools.cache
def prime_schemas() -> None:
    """Seed cwltool's schema cache from a file, parsing the schemas only on a machine's first run.

    Parsing CWL's schemas (YAML) is most of cwltool's start-up: 0.6-0.9 s in every process that
    loads a document, that is the leader and each worker. cwltool keeps the parsed schemas in
    ``cwltool.process.SCHEMA_CACHE`` for the life of a process; this keeps them, as parsed and
    before any document used them, in a file per cwltool/schema-salad/Python version (about
    1.7 MB, read in 0.05 s). Any problem with the file means parsing as usual.
    """
    import copyreg

    from cwltool import process as cwl_process
    from schema_salad.ref_resolver import NormDict

    copyreg.pickle(NormDict, _reduce_norm_dict)  # its pickle sets items before `normalize`
    path = _schema_cache_path()
    try:
        with open(path, "rb") as stream:
            cached = pickle.load(stream)
    except FileNotFoundError:
        cached = None
    except (OSError, EOFError, pickle.UnpicklingError, AttributeError, ImportError, TypeError, ValueError) as exc:
        logger.debug("ignoring the CWL schema cache %s: %s", path, exc)
        cached = None
    if isinstance(cached, dict) and set(cached) == set(SCHEMA_VERSIONS):
        for schema_version, schemas in cached.items():
            cwl_process.SCHEMA_CACHE.setdefault(schema_version, schemas)
        return
    if any(v in cwl_process.SCHEMA_CACHE for v in SCHEMA_VERSIONS):
        return  # already parsed and possibly used in this process: not a clean copy to keep
    fresh = {v: cwl_process.get_schema(v) for v in SCHEMA_VERSIONS}
    _write_cache(path, pickle.dumps(fresh, protocol=pickle.HIGHEST_PROTOCOL))


def _write_cache(path: str, data: bytes) -> None:
    try:
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        handle, temp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".schemas-")
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
        os.replace(temp, path)
    except OSError as exc:
        logger.debug("cannot write the CWL schema cache %s: %s", path, exc)


def quiet_cwltool(debug: bool) -> None:
    """cwltool's log handler sets its logger to INFO when imported: keep it to warnings, and
    printed once (by that handler, not again by a worker's root handler). cwl_utils logs the
    traceback of an expression that fails to evaluate, then raises it again as cwltool's
    WorkflowException, which flow reports in one paragraph: that record is dropped (kept with
    --debug), and the others are printed once too."""
    import cwl_utils.loghandler  # noqa: F401 - imported for the handler it installs
    import cwltool.loghandler  # noqa: F401 - imported for the handler it installs

    logging.getLogger("cwltool").setLevel(logging.DEBUG if debug else logging.WARNING)
    logging.getLogger("cwltool").propagate = False
    utils = logging.getLogger("cwl_utils")
    utils.propagate = False
    for old in [f for f in utils.filters if isinstance(f, _NoTraceback)]:
        utils.removeFilter(old)  # a worker forked from a leader that called this earlier
    if not debug:
        utils.addFilter(_NoTraceback())


class _NoTraceback(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.exc_info is None


def document_uri(argument: str, debug: bool = False) -> str:
    """The URI of the document a command line names, as cwltool resolves it: a path (relative or
    absolute) or a ``file://``/``http(s)://`` URI, each with or without ``#fragment``, or a name
    under ``$XDG_DATA_HOME/commonwl``."""
    from cwltool.load_tool import resolve_tool_uri
    from cwltool.resolver import tool_resolver
    from schema_salad.exceptions import ValidationException

    quiet_cwltool(debug)
    try:
        uri, _ = resolve_tool_uri(argument, resolver=tool_resolver)
    except ValidationException:
        raise CWLError(f"cannot load {argument}: no such file") from None
    return str(uri)


@functools.lru_cache(maxsize=32)
def load_process(uri: str, settings: RunSettings) -> Any:
    """Load and validate a CWL document (cached per process: workers reuse it)."""
    from cwltool.errors import WorkflowException
    from cwltool.load_tool import load_tool
    from schema_salad.exceptions import ValidationException

    prime_schemas()
    quiet_cwltool(settings.debug)
    try:
        process = load_tool(uri, _loading_context(settings))
        # The schemas and the document live as long as the process: kept out of the cyclic
        # collector's full passes, which otherwise walk them again every few tool runs.
        gc.freeze()
        return process
    except (ValidationException, WorkflowException) as exc:
        fragment = urllib.parse.urldefrag(uri)[1]
        if fragment and "not found in file" in str(exc):
            known = ", ".join(f"#{i}" for i in _process_ids(uri)) or "none"
            raise CWLError(f"{uri}: the document has no process '#{fragment}'; it has: {known}") from None
        raise CWLError(f"{uri} is not a valid CWL document:\n{short_message(exc)}") from None
    except (OSError, ValueError) as exc:
        raise CWLError(f"cannot load {uri}: {exc}") from None
    except StopIteration:  # schema-salad's fetch of an empty document
        raise CWLError(f"{uri} is empty: not a CWL document") from None
    except RecursionError:
        raise CWLError(f"{uri} is nested too deeply to load (maximum recursion depth exceeded)") from None


def _process_ids(uri: str) -> list[str]:
    """The ids of the processes a document holds (a ``$graph``'s entries, or its one process)."""
    from schema_salad.utils import yaml_no_ts

    path = urllib.parse.unquote(urllib.parse.urlparse(urllib.parse.urldefrag(uri)[0]).path)
    try:
        with open(path, encoding="utf-8") as stream:
            document = yaml_no_ts().load(stream)
    except Exception:  # noqa: BLE001 - only for the message; the load error is reported anyway
        return []
    items = document.get("$graph", [document]) if isinstance(document, dict) else []
    ids = [str(item["id"]) for item in items if isinstance(item, dict) and item.get("id")]
    return [i.rsplit("#", 1)[-1].lstrip("#") for i in ids]


WARM_URI_VARIABLE = "FLOW_CWL_WARM_URI"


def warm_up() -> None:
    """Run by a fresh worker before its first job: import cwltool, load the run's document."""
    import cwltool.executors  # noqa: F401 - imported for its cost, ahead of the first job
    from cwltool.errors import WorkflowException
    from schema_salad.exceptions import ValidationException

    uri = os.environ.get(WARM_URI_VARIABLE)
    if uri:
        try:
            load_process(uri, RunSettings())
        except (CWLError, ValidationException, WorkflowException, OSError, ValueError):
            pass  # the leader reports a bad document


def resolve(ref: ToolRef, settings: RunSettings) -> Any:
    """The process a :class:`ToolRef` names."""
    process = load_process(ref.uri, settings)
    for step_id in ref.steps:
        step = next((s for s in process.steps if s.id == step_id), None)
        if step is None:
            raise CWLError(f"{ref.uri}: no step {step_id}")
        process = step.embedded_tool
    return process


def process_class(process: Any) -> str:
    return str(process.tool.get("class"))


def short_message(exc: BaseException) -> str:
    """cwltool's message, cut at 40 lines. A JavaScript expression's failure ends with node's
    stack; its error line (``TypeError: ...``, found in the script's stderr that cwltool
    quotes) is repeated last, where a one-line summary of the message is read from."""
    text = str(exc).strip()
    lines = text.splitlines()
    short = "\n".join(lines[:40]) + ("\n..." if len(lines) > 40 else "")
    quoted = text.split("stderr was:", 1)[1] if "stderr was:" in text else ""
    error = _JS_ERROR.search(quoted)
    return f"{short}\n{error.group(1)}{error.group(2)}" if error else short


#: The error line of node's report in a failed expression's stderr, as cwltool quotes it (each
#: line after the document's "file:line:col: ").
_JS_ERROR = re.compile(r"^(\S+:\d+:\d+: )?\s*((?:[A-Z]\w*)?Error: .*)$", re.MULTILINE)


# ---- input objects ---------------------------------------------------------------------------
def load_inputs(process: Any, job_order: list[str], settings: RunSettings, basedir: str | None = None,
                tool_help: bool = False) -> dict[str, Any]:
    """Read the input object as cwltool's main does: a YAML/JSON file (``-`` for stdin), and/or
    the tool's inputs as options (``--message hi``), parsed by the parser cwltool generates from
    the tool's input schema. Fills defaults, normalises files, validates types."""
    from cwltool.errors import WorkflowException
    from cwltool.main import init_job_order, load_job_order
    from schema_salad.exceptions import ValidationException

    label = job_order[0] if len(job_order) == 1 and not job_order[0].startswith("-") else "on the command line"
    args = argparse.Namespace(job_order=job_order, basedir=basedir, workflow=process.tool["id"], tool_help=tool_help)
    complaint = io.StringIO()
    try:
        with contextlib.redirect_stderr(complaint):
            loaded, input_basedir, loader = load_job_order(args, sys.stdin, None, [], process.tool["id"])
            job_order_object = init_job_order(loaded, args, process, loader, sys.stdout, input_basedir=input_basedir)
    except (ValidationException, WorkflowException) as exc:
        raise CWLError(f"invalid input object {label}:\n{short_message(exc)}") from None
    except SystemExit as exc:
        if tool_help and not exc.code:
            raise
        said = [line.split("error: ", 1)[-1] for line in complaint.getvalue().splitlines() if "error: " in line]
        raise CWLError(f"invalid tool inputs {label}: {'; '.join(said) or 'not a JSON/YAML mapping'} "
                       f"(flow-cwl --tool-help DOCUMENT lists them)") from None
    except StopIteration:
        raise CWLError(f"the input object {label} is empty: give '{{}}' for a process without inputs") from None
    except (OSError, ValueError) as exc:
        raise CWLError(f"cannot read the input object {label}: {exc}") from None
    except RecursionError:
        raise CWLError(f"the input object {label} is nested too deeply to load "
                       "(maximum recursion depth exceeded)") from None
    validate_inputs(process, job_order_object)
    # Plain dicts and lists from here: cwltool deep-copies the input object, and a deep copy of
    # ruamel's commented types grows with the square of an array's length (2,000 strings: 6 s).
    inputs = cast(dict[str, Any], plain(job_order_object))
    _bind_top_level(process, inputs, input_basedir)
    return inputs


def _bind_top_level(process: Any, job_order: MutableMapping[str, Any], basedir: str) -> None:
    """What cwltool does to top-level inputs before running: discover secondaryFiles beside
    input files and load the contents of inputs marked loadContents (in place), so that both
    travel through the file store with the inputs. cwltool's main does this the same way
    (``_init_job`` and ``bind_input``) for --print-deps."""
    from cwltool.context import RuntimeContext
    from cwltool.errors import WorkflowException
    from schema_salad.exceptions import ValidationException

    ctx = RuntimeContext()
    ctx.basedir = basedir
    ctx.toplevel = True
    # _init_job gives a CommandLineTool's builder an output, temporary and staging directory,
    # making each one it is not given (left behind in $TMPDIR: three per run): one directory
    # here serves for all three, and goes when the inputs are bound.
    with tempfile.TemporaryDirectory(prefix="flow-cwl-bind-") as scratch:
        ctx.outdir = ctx.tmpdir = ctx.stagedir = scratch
        try:
            builder = process._init_job(job_order, ctx)
            builder.loadListing = "no_listing"
            builder.bind_input(process.inputs_record_schema, job_order, discover_secondaryFiles=True)
        except (ValidationException, WorkflowException) as exc:
            raise CWLError(f"invalid inputs for {process.tool['id']}:\n{short_message(exc)}") from None


def validate_inputs(process: Any, job_order: MutableMapping[str, Any]) -> None:
    from cwltool.errors import WorkflowException
    from cwltool.process import fill_in_defaults
    from cwltool.stdfsaccess import StdFsAccess
    from cwltool.utils import normalizeFilesDirs
    from schema_salad.exceptions import ValidationException
    from schema_salad.validate import validate_ex

    try:
        fill_in_defaults(process.tool["inputs"], job_order, StdFsAccess(""))
        normalizeFilesDirs(job_order)
        schema = process.names.get_name("input_record_schema", None)
        validate_ex(schema, job_order, strict=False, logger=logging.getLogger("flow.cwl.validation"),
                    vocab=_input_vocab())
    except (ValidationException, WorkflowException) as exc:
        raise CWLError(f"the inputs do not match what {process.tool['id']} expects:\n{short_message(exc)}") from None


def _input_vocab() -> Any:
    from cwltool.process import INPUT_OBJ_VOCAB

    return INPUT_OBJ_VOCAB


def secret_inputs(process: Any) -> list[str]:
    """The top-level inputs the process's ``cwltool:Secrets`` names (cwltool hides only those)."""
    requirement, _ = process.get_requirement("http://commonwl.org/cwltool#Secrets")
    return [shortname(name) for name in (requirement or {}).get("secrets", [])]


def check_requirements(process: Any, settings: RunSettings) -> None:
    """Fail early (exit 33) on a required container when tools run on the host."""
    if settings.container is not None:
        return

    def visit(tool: Any) -> None:
        for req in tool.get("requirements", []):
            if req.get("class") == "DockerRequirement":
                raise CWLUnsupportedError(
                    f"{tool.get('id')} requires a container (DockerRequirement) and no container "
                    "runtime is in use: install podman or singularity, or pass --podman/--singularity"
                )

    process.visit(visit)


#: Where cwltool finds requirements an input object adds (``cwl:requirements``; CWL v1.0 only).
INPUT_REQUIREMENTS = "https://w3id.org/cwl/cwl#requirements"


def wants_container(process: Any, inputs: dict[str, Any] | None = None) -> bool:
    """Whether the process, or a tool it runs, has a DockerRequirement (as a requirement or a
    hint, or from the input object's ``cwl:requirements``): only those run in a container
    under cwltool."""
    given = (inputs or {}).get(INPUT_REQUIREMENTS) or []
    found = [True for e in given if isinstance(e, dict) and e.get("class") == "DockerRequirement"]

    def visit(tool: Any) -> None:
        entries = list(tool.get("requirements", [])) + list(tool.get("hints", []))
        if any(isinstance(e, dict) and e.get("class") == "DockerRequirement" for e in entries):
            found.append(True)

    process.visit(visit)
    return bool(found)


# ---- provenance -------------------------------------------------------------------------------
def cwlprov() -> Any:
    """cwltool's CWLProv writer (``cwltool.cwlprov``) and the few other cwltool pieces that
    :mod:`flow.cwl.provenance` builds a research object with, as one namespace."""
    from types import SimpleNamespace

    from cwltool.cwlprov import provenance_constants, writablebagfile
    from cwltool.cwlprov.ro import ResearchObject
    from cwltool.stdfsaccess import StdFsAccess
    from prov.model import PROV, PROV_LABEL  # type: ignore[import-untyped]

    return SimpleNamespace(ResearchObject=ResearchObject, StdFsAccess=StdFsAccess, bag=writablebagfile,
                           constants=provenance_constants, PROV=PROV, PROV_LABEL=PROV_LABEL)


def packed_document(uri: str, settings: RunSettings) -> tuple[str, Any]:
    """The document packed as ``cwltool --pack`` packs it, and its files (cwltool's prov_deps:
    what cwltool's --provenance copies into snapshot/)."""
    from cwltool.load_tool import fetch_document, resolve_and_validate_document
    from cwltool.main import print_pack, prov_deps

    ctx, workflowobj, uri = fetch_document(uri, _loading_context(settings))
    ctx, uri = resolve_and_validate_document(ctx, workflowobj, uri)
    assert ctx.loader is not None, "cwltool's resolve_and_validate_document sets the loader"
    processobj, _ = ctx.loader.resolve_ref(uri)
    return print_pack(ctx, uri), prov_deps(cast(Any, processobj), ctx.loader, uri)


# ---- values ---------------------------------------------------------------------------------
def detect_container(requested: str | None, no_container: bool) -> str | None:
    """Which container runtime to use: the one asked for, else what works here, else none."""
    if no_container:
        return None
    if requested:
        return requested
    if shutil.which("docker") and os.path.exists("/var/run/docker.sock"):
        return "docker"
    if shutil.which("podman"):
        try:
            ok = subprocess.run(["podman", "info"], capture_output=True, timeout=20).returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            ok = False
        if ok:
            return "podman"
    for exe in ("singularity", "apptainer"):
        if shutil.which(exe):
            return "singularity"
    return None


# ---- workflows: step inputs, valueFrom, when, outputs (cwltool's own semantics) ----------------
def shortname(identifier: str) -> str:
    from cwltool.process import shortname as cwl_shortname

    return str(cwl_shortname(identifier))


def _parameters(workflow: Any) -> dict[str, Any]:
    """Workflow inputs and every step output, by id: what sources can name."""
    params = {p["id"]: p for p in workflow.tool["inputs"]}
    for step in workflow.steps:
        params.update({p["id"]: p for p in step.tool["outputs"]})
    return params


def workflow_input_values(workflow: Any, inputs: dict[str, Any]) -> dict[str, Any]:
    """Inputs by full id, with the workflow's defaults where a value is missing."""
    values: dict[str, Any] = {}
    for param in workflow.tool["inputs"]:
        name = shortname(param["id"])
        if name in inputs:
            values[param["id"]] = inputs[name]
        elif "default" in param:
            values[param["id"]] = plain(param["default"])
        else:
            values[param["id"]] = None
    return values


def _object_from_sources(workflow: Any, params: Any, sources: dict[str, Any], field: str, frag_only: bool) -> dict[str, Any]:
    from cwltool.errors import WorkflowException
    from cwltool.workflow_job import WorkflowStateItem, object_from_state

    known = _parameters(workflow)
    state: dict[str, WorkflowStateItem | None] = {
        src: WorkflowStateItem(known[src], value, "success") for src, value in sources.items() if src in known
    }
    multiple = bool(workflow.get_requirement("MultipleInputFeatureRequirement")[0])
    try:
        obj = object_from_state(state, params, frag_only, multiple, field, incomplete=frag_only)
    except WorkflowException as exc:
        raise CWLError(str(exc)) from None
    if obj is None:
        raise CWLError(f"the sources of {[p['id'] for p in params]} are not all available")
    return plain(obj)


def step_input_object(workflow: Any, step: Any, sources: dict[str, Any]) -> dict[str, Any]:
    """A step's input object (by full input id) from its sources' values: linkMerge,
    pickValue and defaults as cwltool applies them."""
    return _object_from_sources(workflow, step.tool["inputs"], sources, "source", False)


def workflow_output_object(workflow: Any, sources: dict[str, Any]) -> dict[str, Any]:
    """The workflow's output object (by short name) from its outputSources' values."""
    return _object_from_sources(workflow, workflow.tool["outputs"], sources, "outputSource", True)


def post_scatter_eval(
    workflow: Any, step: Any, io: dict[str, Any], read_contents: Any, settings: RunSettings
) -> dict[str, Any] | None:
    """loadContents, then valueFrom, then ``when`` for one (scattered) job input; None = skip."""
    from cwl_utils import expression
    from cwltool.errors import WorkflowException

    engine = settings.container or "docker"
    value_from = {i["id"]: i["valueFrom"] for i in step.tool["inputs"] if "valueFrom" in i}
    if value_from and not workflow.get_requirement("StepInputExpressionRequirement")[0]:
        raise CWLError("the step uses valueFrom but StepInputExpressionRequirement is not declared")
    for param in step.tool["inputs"]:
        if param.get("loadContents") and io.get(param["id"]) is not None:
            value = io[param["id"]]
            for item in value if isinstance(value, list) else [value]:
                if isinstance(item, dict) and item.get("contents") is None:
                    item["contents"] = read_contents(item)
    short = {shortname(k): v for k, v in io.items()}

    def evaluate(text: Any, context: Any = None) -> Any:
        try:
            return expression.do_eval(text, short, workflow.requirements, None, None, {}, context=context,
                                      debug=settings.debug, container_engine=engine)
        except WorkflowException as exc:
            raise CWLError(f"{step.id}: {short_message(exc)}") from None

    evaluated = {k: (evaluate(value_from[k], v) if k in value_from else v) for k, v in io.items()}
    if "when" in step.tool:
        short = {shortname(k): v for k, v in evaluated.items()}
        condition = evaluate(step.tool["when"])
        if condition is False:
            return None
        if condition is not True:
            raise CWLError(f"{step.id}: 'when' must evaluate to true or false, not {condition!r}")
    return plain(evaluated)


def resource_request(process: Any, inputs: dict[str, Any], settings: RunSettings) -> dict[str, float]:
    """The tool's ResourceRequirement (or hint) as numbers: ``cores``, ``ram``, ``tmpdir`` and
    ``outdir`` (MiB) for those it sets, with expressions evaluated on the job's inputs as cwltool
    evaluates them (the minimum, else the maximum). An expression that fails or gives no number
    leaves that resource to the default, with a warning: cwltool reports it when the tool runs."""
    from cwl_utils import expression
    from cwltool.errors import WorkflowException

    requirement, _ = process.get_requirement("ResourceRequirement")
    if not requirement:
        return {}
    request: dict[str, float] = {}
    for resource in ("cores", "ram", "tmpdir", "outdir"):
        for key in (f"{resource}Min", f"{resource}Max"):
            value = requirement.get(key)
            if isinstance(value, str):
                try:
                    value = expression.do_eval(value, inputs, process.requirements, None, None, {},
                                               debug=settings.debug,
                                               container_engine=settings.container or "docker")
                except WorkflowException as exc:
                    logger.warning("%s: cannot evaluate %s: %s", process.tool.get("id"), key, short_message(exc))
                    value = None
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                request[resource] = float(value)
                break
    return request


def tool_inputs(step: Any, io: dict[str, Any]) -> dict[str, Any]:
    """The embedded process's input object from a step's evaluated input object."""
    return {shortname(i["id"]): io.get(i["id"]) for i in step.tool["inputs"] if not i.get("not_connected")}


def _sources(params: Any, field: str) -> list[str]:
    out: list[str] = []
    for param in params:
        source = param.get(field)
        out.extend(source if isinstance(source, list) else [source] if source else [])
    return out


def step_sources(step: Any) -> list[str]:
    """The ids a step's inputs read from (workflow inputs or other steps' outputs)."""
    return _sources(step.tool["inputs"], "source")


def output_sources(workflow: Any) -> list[str]:
    """The ids a workflow's outputs read from."""
    return _sources(workflow.tool["outputs"], "outputSource")


def scatter_spec(step: Any) -> tuple[list[str], str] | None:
    if "scatter" not in step.tool:
        return None
    scatter = step.tool["scatter"]
    keys = list(scatter) if isinstance(scatter, list) else [scatter]
    method = step.tool.get("scatterMethod") or "dotproduct"
    return keys, str(method)
