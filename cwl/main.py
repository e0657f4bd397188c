"""``flow-cwl workflow.cwl inputs.yml``: run a CWL document on flow, print its outputs as JSON."""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import logging
import os
import shlex
import sys
from typing import Any, NoReturn

from flow.batchsystems import WORKER_PRELOAD_VARIABLE
from flow.core.common import Flow
from flow.core.exceptions import FailedJobsException
from flow.core.logs import USER_ERRORS, report
from flow.core.options import add_flow_options
from flow.cwl import adapter, provenance, secrets, staging
from flow.cwl.jobs import PROVENANCE_VARIABLE
from flow.cwl.workflow import make_job
from flow.jobstores.abstract import JobStoreError
from flow.jobstores.registry import open_job_store

#: cwltool's options (by dest) that flow-cwl takes from cwltool's own parser, with cwltool's meaning.
CWLTOOL_OPTIONS = frozenset({
    "basedir", "outdir", "relax_path_checks", "strict", "enable_dev", "quiet", "debug", "validate",
    "version", "tool_help", "preserve_environment", "preserve_entire_environment", "tmpdir_prefix",
    "tmp_outdir_prefix", "podman", "singularity", "use_container", "eval_timeout",
    "strict_memory_limit", "parallel", "timestamps", "move_outputs", "verbose", "no_warnings",
    "enable_color", "provenance", "user_provenance", "host_provenance", "orcid", "cwl_full_name",
})
#: cwltool's options that only print something about the document: cwltool answers them itself.
CWLTOOL_PRINTS = frozenset({
    "print_rdf", "print_dot", "print_pre", "print_deps", "print_input_deps", "pack",
    "print_supported_versions", "print_subgraph", "print_targets", "make_template",
    "rdf_serializer", "relative_deps",
})
#: Why flow-cwl refuses some of cwltool's other options (the rest get a general reason).
REFUSED = {
    "cachedir": "flow has no call cache yet; --cachedir will map onto it once it exists",
    "target": "running part of a workflow is not supported yet (run the whole workflow)",
    "single_step": "running one step of a workflow is not supported yet",
    "single_process": "running one process of a workflow is not supported yet",
    "on_error": "flow runs every job that does not depend on a failed one, then stops",
    "log_dir": "each job's output is kept in the job store; see 'flow status' and --logFile",
    "rm_tmpdir": "each job's directories are removed by flow when the job ends",
    "default_container": "not supported yet: give tools a DockerRequirement",
    "overrides": "not supported yet: put the requirements in the document",
    "parallel_max": "use --maxCores (flow runs as many jobs at once as the cores allow)",
    "write_summary": "the output object is printed on stdout",
    "mpi_config_file": "MPIRequirement is not supported",
}
#: flow-cwl's defaults where they differ from cwltool's (cwltool's directories go under each job's own).
DEFAULTS = {"tmpdir_prefix": None, "tmp_outdir_prefix": None}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        """One line, not a usage dump."""
        self.exit(2, f"{self.prog}: error: {message} ('{self.prog} --help' lists the options)\n")


class _Refused(argparse.Action):
    """One of cwltool's options that cannot apply to flow-cwl: refused in one line."""

    def __init__(self, like: argparse.Action, reason: str) -> None:
        super().__init__(like.option_strings, dest=f"refused_{like.dest}", nargs=like.nargs,
                         default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        self.reason = reason

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        parser.exit(2, f"{parser.prog}: error: {option_string} is not supported: {self.reason}\n")


def build_parser() -> argparse.ArgumentParser:
    """cwltool's own argument definitions (cwltool.argparser.arg_parser), those that apply kept
    with cwltool's meaning, the others refused; then flow's options."""
    # No abbreviations: a tool input such as --n after the document is the tool's, not --no-container.
    parser = _Parser(prog="flow-cwl", description=__doc__, allow_abbrev=False)
    cwl = parser.add_argument_group("cwltool options (cwltool's meaning)")
    for action in adapter.cwltool_parser()._actions:
        if not action.option_strings or action.dest == "help":
            continue  # flow-cwl's own help, workflow and job_order below
        if action.dest in CWLTOOL_OPTIONS or action.dest in CWLTOOL_PRINTS:
            kept = copy.copy(action)
            kept.default = DEFAULTS.get(action.dest, action.default)
            cwl._add_action(kept)
        else:
            reason = REFUSED.get(action.dest, "a cwltool option flow-cwl has no use for")
            parser._add_action(_Refused(action, reason))
    cwl.add_argument("--docker", action="store_true", help="run containers with docker (the default engine)")
    parser.add_argument("workflow", nargs="?", default=None, help="the CWL document (path or URI, with or without #id)")
    parser.add_argument("job_order", nargs=argparse.REMAINDER,
                        help="the input object (YAML or JSON), and/or the tool's inputs as options")
    add_flow_options(parser, jobstore_as_flag=True)
    # cwltool never runs a failed tool again: a retry would repeat its side effects and double a
    # failing run's time. A lost job (a dead node or worker) is re-issued whatever this says.
    parser.set_defaults(retryCount=0)
    return parser


def _settings(args: argparse.Namespace, process: Any = None,
              inputs: dict[str, Any] | None = None) -> adapter.RunSettings:
    """The run's settings. Without --docker/--podman/--singularity/--no-container, the container
    runtime is looked for (``podman info`` takes half a second) only for a ``process`` with a
    DockerRequirement, as a requirement or a hint, in it or a tool it runs: cwltool runs every
    other tool on the host whatever its runtime, and no process means loading only."""
    requested = "podman" if args.podman else "singularity" if args.singularity else "docker" if args.docker else None
    container = None
    if requested or (process is not None and adapter.wants_container(process, inputs)):
        container = adapter.detect_container(requested, not args.use_container)
        if container is None and args.use_container:
            logging.getLogger("flow.cwl").warning("no container runtime found: tools run on the host")
    return adapter.RunSettings(
        container=container, strict=args.strict, relax_path_checks=args.relax_path_checks,
        tmpdir_prefix=args.tmpdir_prefix, tmp_outdir_prefix=args.tmp_outdir_prefix,
        debug=args.debug, enable_dev=args.enable_dev,
        preserve_environment=tuple(args.preserve_environment),
        preserve_entire_environment=args.preserve_entire_environment,
        eval_timeout=float(args.eval_timeout), strict_memory_limit=args.strict_memory_limit,
    )


class _SecretsFound(Exception):
    """The document has cwltool:Secrets that the text scan missed: run again, loading first."""


def run(args: argparse.Namespace, argv: list[str] | None = None) -> dict[str, Any]:
    """Load, validate, run; returns the output object with files in --outdir."""
    uri = adapter.document_uri(args.workflow)
    recorder = None
    if args.provenance:  # before the run, as cwltool: the workflow run starts now
        earlier = provenance.replaceable(args.jobStore, args.provenance) if args.restart else None
        recorder = provenance.Recorder(args.provenance, argv or [], args.orcid, args.cwl_full_name,
                                       args.user_provenance, args.host_provenance, args.tmpdir_prefix, earlier)
        os.environ[PROVENANCE_VARIABLE] = "1"  # before the workers start (see PROVENANCE_VARIABLE)
    # Secrets must be in the environment before the batch system starts its workers; only then
    # is the document loaded before the workers start (otherwise they load it meanwhile).
    try:
        # An option of flow-cwl's own after the document is checked against the tool's inputs
        # before any job store is made (see _check_misplaced): load first then too.
        own = set(getattr(args, "own_options", ()))
        misplaced = any(a.split("=", 1)[0] in own for a in args.job_order)
        try:
            return _run(args, uri, preload=args.restart or misplaced or _mentions_secrets(uri), recorder=recorder)
        except _SecretsFound:
            return _run(args, uri, preload=True, recorder=recorder)
    finally:
        if recorder is not None:
            recorder.discard()  # the temporary copy, if the run ended before writing it
            os.environ.pop(PROVENANCE_VARIABLE, None)


def _mentions_secrets(uri: str) -> bool:
    path = staging.local_path(uri.split("#", 1)[0])
    try:
        with open(path or "", "rb") as stream:
            return b"Secrets" in stream.read()
    except OSError:
        return True  # not a local file: load it first, to be sure


def _load(uri: str, args: argparse.Namespace, settings: adapter.RunSettings) -> tuple[Any, dict[str, Any]]:
    process = adapter.load_process(uri, settings)
    _check_misplaced(args, process)
    if args.restart and not args.job_order:
        return process, {}  # the stored jobs hold the inputs; only secrets need them again
    inputs = adapter.load_inputs(process, args.job_order, settings, args.basedir, args.tool_help)
    return process, inputs


def _check_misplaced(args: argparse.Namespace, process: Any) -> None:
    """An option of flow-cwl's own after the document, where cwltool reads the tool's inputs
    (``wf.cwl job.yml --restart``): refused in one line saying where it goes, unless the tool
    has an input of that name (then it is the tool's, as in cwltool)."""
    inputs = {f"--{adapter.shortname(port['id'])}" for port in process.tool["inputs"]}
    own = set(getattr(args, "own_options", ()))
    misplaced = [a.split("=", 1)[0] for a in args.job_order if a.split("=", 1)[0] in own - inputs]
    if misplaced:
        raise adapter.CWLError(
            f"{', '.join(misplaced)} comes after the document, where flow-cwl (as cwltool) reads the "
            f"tool's inputs, and the tool has no such input: give flow-cwl's options before the "
            f"document, e.g. flow-cwl {' '.join(misplaced)} ... {args.workflow} [INPUTS]"
        )


def _hide_secrets(args: argparse.Namespace, process: Any, inputs: dict[str, Any]) -> bytes | None:
    """Replace secret inputs by placeholders and hand the values to the workers (see
    :mod:`flow.cwl.secrets`); returns what the job store keeps, None when there are none."""
    names = adapter.secret_inputs(process)
    if not names:
        return None
    if args.restart:
        stored = open_job_store(args.jobStore).read_shared(secrets.RECORD) if args.jobStore else None
        if stored is not None:
            secrets.expose(secrets.recover(stored, inputs, " ".join(args.job_order) or None))
        return None
    secrets.expose(secrets.hide(names, inputs))
    return secrets.record(names, inputs)


def _run(args: argparse.Namespace, uri: str, preload: bool,
         recorder: provenance.Recorder | None = None) -> dict[str, Any]:
    settings = _settings(args)
    ref = adapter.ToolRef(uri)
    loaded = _load(uri, args, settings) if preload else None
    record = _hide_secrets(args, *loaded) if loaded else None
    # Workers import cwltool and load the document while the leader does the same.
    os.environ[WORKER_PRELOAD_VARIABLE] = "flow.cwl.adapter:warm_up"
    os.environ[adapter.WARM_URI_VARIABLE] = uri
    with Flow(args) as flow:
        settings = dataclasses.replace(settings, max_cores=flow.job_limits()[0])
        if loaded is None:
            loaded = _load(uri, args, settings)
            if adapter.secret_inputs(loaded[0]):
                raise _SecretsFound()
        process, inputs = loaded
        settings = dataclasses.replace(settings, container=_settings(args, process, inputs).container)
        adapter.check_requirements(process, settings)  # after the inputs, as cwltool does
        try:
            if args.restart:
                if recorder is not None:
                    inputs = _stored_inputs(flow, inputs)
                outputs = flow.restart()
            else:
                if record is not None:
                    flow.jobStore.write_shared(secrets.RECORD, record)
                staging.import_inputs(inputs, lambda url: str(flow.importFile(url)), _writer(flow))
                flow.jobStore.write_shared(provenance.INPUTS_RECORD, json.dumps(inputs).encode())
                outputs = flow.start(make_job(ref, inputs, settings, process))
        except FailedJobsException:
            if recorder is not None:  # as cwltool's, the research object of a failed run
                _write_research_object(recorder, flow, uri, settings, process, inputs, None)
            raise
        exported: dict[str, Any] = staging.Exporter(flow.jobStore, args.outdir, flow.deletes_store_on_success())(outputs)
        if recorder is not None:
            _write_research_object(recorder, flow, uri, settings, process, inputs, outputs)
        return exported


def _stored_inputs(flow: Flow, given: dict[str, Any]) -> dict[str, Any]:
    """The input object of a run being restarted: as the first attempt stored it (files in the
    job store), else as given again."""
    stored = flow.jobStore.read_shared(provenance.INPUTS_RECORD)
    return dict(json.loads(stored)) if stored is not None and not given else given


def _write_research_object(recorder: provenance.Recorder, flow: Flow, uri: str, settings: adapter.RunSettings,
                           process: Any, inputs: dict[str, Any], outputs: dict[str, Any] | None) -> None:
    """Write it; a failure to is one paragraph (after a failed run, a warning: the run's own
    failure is what gets reported)."""
    try:
        where = recorder.finish(flow.jobStore, uri, settings, process, inputs, outputs)
    except (OSError, ValueError, JobStoreError, adapter.CWLError) as exc:
        problem = str(exc) if isinstance(exc, adapter.CWLError) else (
            f"cannot write the research object {recorder.target} (--provenance): {exc}")
        if outputs is None:
            logging.getLogger("flow.cwl").warning("%s", problem)
            return
        raise adapter.CWLError(problem) from None
    logging.getLogger("flow.cwl").info("[provenance] Research Object saved to %s", where)


def _writer(flow: Flow) -> staging.WriteBytes:
    def write(data: bytes, basename: str) -> str:
        with flow.jobStore.write_file_stream(basename=basename) as (stream, file_id):
            stream.write(data)
        return file_id

    return write


def _report_failed(exc: FailedJobsException, argv: list[str]) -> None:
    """Each failed tool once (its output was logged when it failed), and a resume command that
    works when pasted: the same command line with ``--restart --jobStore STORE``."""
    lines = [f"flow: error: {len(exc.failed)} job(s) failed (their output is above):"]
    lines += [f"  - {job.name}: {job.reason}" for job in exc.failed]
    if os.path.isdir(exc.jobStoreLocator):
        lines.append(f"Fix the cause, then resume: {resume_command(argv, exc.jobStoreLocator)}")
    print("\n".join(lines), file=sys.stderr)


def resume_command(argv: list[str], job_store: str) -> str:
    """``flow-cwl ARGS`` with ``--restart --jobStore job_store`` and any earlier --jobStore out."""
    kept: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--jobStore":
            skip = True
        elif not arg.startswith("--jobStore=") and arg != "--restart":
            kept.append(arg)
    return shlex.join(["flow-cwl", "--restart", "--jobStore", os.path.abspath(job_store), *kept])


def _cwltool_argv(args: argparse.Namespace) -> list[str] | None:
    """cwltool's command line for a run that only prints (--pack, --print-deps, ...), else None."""
    given = [a for a in cwltool_actions() if a.dest in CWLTOOL_PRINTS | {"debug", "quiet", "basedir",
             "relax_path_checks", "enable_dev", "strict"} and getattr(args, a.dest) != a.default]
    if not any(a.dest in CWLTOOL_PRINTS - {"rdf_serializer", "relative_deps"} for a in given):
        return None
    argv: list[str] = []
    for action in given:
        if action.nargs == 0 and (action.const is True) == bool(getattr(args, action.dest)):
            argv.append(action.option_strings[-1])
        elif action.nargs != 0:
            argv += [action.option_strings[-1], str(getattr(args, action.dest))]
    return argv + ([args.workflow] if args.workflow else []) + list(args.job_order)


def cwltool_actions() -> list[argparse.Action]:
    return [a for a in adapter.cwltool_parser()._actions if a.option_strings]


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    args.own_options = sorted(parser._option_string_actions)
    if args.version:
        print(adapter.versions())
        return 0
    printing = _cwltool_argv(args)
    if printing is not None:
        return adapter.cwltool_main(printing)
    if args.workflow is None:
        parser.error("the CWL document to run is missing")
    if args.move_outputs == "leave":
        parser.exit(2, "flow-cwl: error: --leave-outputs is not supported: outputs leave the job store for --outdir\n")
    if args.quiet:
        args.logLevel = "WARNING"
    elif args.no_warnings:
        args.logLevel = "ERROR"
    elif args.verbose:
        args.logLevel = "INFO"
    args.noProgress = args.noProgress or args.quiet
    logging.getLogger("cwltool").setLevel(logging.DEBUG if args.debug else logging.WARNING)
    try:
        if args.validate:
            uri = adapter.document_uri(args.workflow)
            adapter.load_process(uri, _settings(args))
            print(f"{uri} is valid CWL.")
            return 0
        outputs = run(args, argv)
    except adapter.CWLUnsupportedError as exc:
        report(exc)
        return adapter.UNSUPPORTED_EXIT
    except FailedJobsException as exc:
        _report_failed(exc, argv)
        print("{}")  # as cwltool: the (empty) output object of a run that failed
        unsupported = any("CWLUnsupportedError" in job.reason for job in exc.failed)
        return adapter.UNSUPPORTED_EXIT if unsupported else 1
    except USER_ERRORS as exc:
        report(exc)
        return 1
    except KeyboardInterrupt:
        where = args.jobStore if args.jobStore and os.path.isdir(args.jobStore) else None
        hint = f"; resume: {resume_command(argv, where)}" if where else ""
        print(f"flow-cwl: interrupted{hint}", file=sys.stderr)
        return 130
    print(json.dumps(outputs, indent=4, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
