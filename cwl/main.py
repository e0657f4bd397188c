"""``flow-cwl workflow.cwl inputs.yml``: run a CWL document on flow, print its outputs as JSON."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
from typing import Any

from flow.batchsystems import WORKER_PRELOAD_VARIABLE
from flow.core.common import Flow
from flow.core.exceptions import FailedJobsException
from flow.core.logs import USER_ERRORS, report
from flow.core.options import add_flow_options
from flow.cwl import adapter, secrets, staging
from flow.cwl.workflow import make_job
from flow.jobstores.registry import open_job_store


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="flow-cwl", description=__doc__)
    parser.add_argument("workflow", help="the CWL document (CommandLineTool, ExpressionTool or Workflow)")
    parser.add_argument("job_order", nargs="?", default=None, help="the input object (YAML or JSON)")
    cwl = parser.add_argument_group("cwltool options")
    cwl.add_argument("--outdir", default=os.getcwd(), help="where output files go (current directory)")
    cwl.add_argument("--no-container", action="store_true", help="run tools on the host, never in a container")
    cwl.add_argument("--podman", action="store_const", const="podman", dest="container")
    cwl.add_argument("--singularity", action="store_const", const="singularity", dest="container")
    cwl.add_argument("--docker", action="store_const", const="docker", dest="container")
    cwl.add_argument("--tmpdir-prefix", default=None)
    cwl.add_argument("--tmp-outdir-prefix", default=None)
    cwl.add_argument("--relax-path-checks", action="store_true")
    cwl.add_argument("--strict", action="store_true", default=True)
    cwl.add_argument("--non-strict", action="store_false", dest="strict")
    cwl.add_argument("--enable-dev", action="store_true")
    cwl.add_argument("--preserve-environment", action="append", default=[])
    cwl.add_argument("--quiet", action="store_true", help="only warnings and errors")
    cwl.add_argument("--debug", action="store_true")
    cwl.add_argument("--validate", action="store_true", help="only check the document")
    add_flow_options(parser, jobstore_as_flag=True)
    return parser


def _settings(args: argparse.Namespace) -> adapter.RunSettings:
    container = adapter.detect_container(args.container, args.no_container)
    if container is None and not args.no_container:
        logging.getLogger("flow.cwl").warning("no container runtime found: tools run on the host")
    return adapter.RunSettings(
        container=container, strict=args.strict, relax_path_checks=args.relax_path_checks,
        tmpdir_prefix=args.tmpdir_prefix, tmp_outdir_prefix=args.tmp_outdir_prefix,
        debug=args.debug, enable_dev=args.enable_dev,
        preserve_environment=tuple(args.preserve_environment),
    )


class _SecretsFound(Exception):
    """The document has cwltool:Secrets that the text scan missed: run again, loading first."""


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Load, validate, run; returns the output object with files in --outdir."""
    uri = args.workflow if "://" in args.workflow else os.path.abspath(args.workflow)
    # Secrets must be in the environment before the batch system starts its workers; only then
    # is the document loaded before the workers start (otherwise they load it meanwhile).
    try:
        return _run(args, uri, preload=args.restart or _mentions_secrets(uri))
    except _SecretsFound:
        return _run(args, uri, preload=True)


def _mentions_secrets(uri: str) -> bool:
    path = staging.local_path(uri.split("#", 1)[0])
    try:
        with open(path or "", "rb") as stream:
            return b"Secrets" in stream.read()
    except OSError:
        return True  # not a local file: load it first, to be sure


def _load(uri: str, args: argparse.Namespace, settings: adapter.RunSettings) -> tuple[Any, dict[str, Any]]:
    process = adapter.load_process(uri, settings)
    if args.restart and args.job_order is None:
        return process, {}  # the stored jobs hold the inputs; only secrets need them again
    inputs = adapter.plain(adapter.load_inputs(process, args.job_order, settings))
    adapter.check_requirements(process, settings)  # after the inputs, as cwltool does
    return process, inputs


def _hide_secrets(args: argparse.Namespace, process: Any, inputs: dict[str, Any]) -> bytes | None:
    """Replace secret inputs by placeholders and hand the values to the workers (see
    :mod:`flow.cwl.secrets`); returns what the job store keeps, None when there are none."""
    names = adapter.secret_inputs(process)
    if not names:
        return None
    if args.restart:
        stored = open_job_store(args.jobStore).read_shared(secrets.RECORD) if args.jobStore else None
        if stored is not None:
            secrets.expose(secrets.recover(stored, inputs, args.job_order))
        return None
    secrets.expose(secrets.hide(names, inputs))
    return secrets.record(names, inputs)


def _run(args: argparse.Namespace, uri: str, preload: bool) -> dict[str, Any]:
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
        if args.restart:
            outputs = flow.restart()
        else:
            if record is not None:
                flow.jobStore.write_shared(secrets.RECORD, record)
            staging.import_inputs(inputs, lambda url: str(flow.importFile(url)), _writer(flow))
            outputs = flow.start(make_job(ref, inputs, settings, process))
        exported: dict[str, Any] = staging.Exporter(flow.jobStore, args.outdir)(outputs)
        return exported


def _writer(flow: Flow) -> staging.WriteBytes:
    def write(data: bytes, basename: str) -> str:
        with flow.jobStore.write_file_stream(basename=basename) as (stream, file_id):
            stream.write(data)
        return file_id

    return write


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.quiet:
        args.logLevel = "WARNING"
    args.noProgress = args.noProgress or args.quiet
    logging.getLogger("cwltool").setLevel(logging.DEBUG if args.debug else logging.WARNING)
    try:
        if args.validate:
            adapter.load_process(os.path.abspath(args.workflow), _settings(args))
            print(f"{args.workflow} is valid CWL.")
            return 0
        outputs = run(args)
    except adapter.CWLUnsupportedError as exc:
        report(exc)
        return adapter.UNSUPPORTED_EXIT
    except FailedJobsException as exc:
        report(exc)
        print("{}")  # as cwltool: the (empty) output object of a run that failed
        unsupported = any("CWLUnsupportedError" in job.reason for job in exc.failed)
        return adapter.UNSUPPORTED_EXIT if unsupported else 1
    except USER_ERRORS as exc:
        report(exc)
        return 1
    except KeyboardInterrupt:
        print("flow-cwl: interrupted; resume with --restart --jobStore DIR", file=sys.stderr)
        return 130
    print(json.dumps(outputs, indent=4, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
