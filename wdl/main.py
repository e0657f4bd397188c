"""``flow-wdl workflow.wdl inputs.json``: run a WDL workflow on flow, print its outputs as JSON."""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import uuid
from typing import TYPE_CHECKING, Any

from flow.batchsystems import WORKER_PRELOAD_VARIABLE
from flow.core.common import Flow
from flow.core.exceptions import FailedJobsException, FlowError
from flow.core.logs import USER_ERRORS
from flow.core.options import add_flow_options

if TYPE_CHECKING:
    from flow.wdl.task import RunSettings

logger = logging.getLogger("flow.wdl")
CONTAINER_CHOICES = ("auto", "none", "podman", "singularity", "docker")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="flow-wdl", description=__doc__)
    parser.add_argument("wdl", help="the WDL document (a workflow, or a single task)")
    parser.add_argument("inputs", nargs="?", default=None, help="the inputs (a JSON object)")
    wdl = parser.add_argument_group("WDL options")
    wdl.add_argument("-i", "--input", "--inputs", dest="input_file", default=None,
                     help="the inputs (a JSON file), instead of the second argument")
    wdl.add_argument("-o", "--outputDirectory", "--output-directory", dest="output_directory",
                     default=None, help="where output files go (default: a new wdl-out-* folder here)")
    wdl.add_argument("-m", "--outputFile", "--output-file", dest="output_file", default=None,
                     help="also write the outputs JSON to this file")
    wdl.add_argument("--container", choices=CONTAINER_CHOICES, default="auto",
                     help="where tasks that name an image run: auto (podman, docker or singularity "
                     "when one works, else the host), none (always the host), or that engine")
    add_flow_options(parser, jobstore_as_flag=True)
    parser.set_defaults(retryCount=0)  # WDL tasks retry as their maxRetries says
    return parser


def _engine_works(engine: str) -> bool:
    exe = shutil.which(engine) or (shutil.which("apptainer") if engine == "singularity" else None)
    if exe is None:
        return False
    probe = [exe, "version"] if engine != "docker" else [exe, "info"]
    try:
        return subprocess.run(probe, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              timeout=30, check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


class WDLInputError(FlowError):
    """The inputs file cannot be read."""


def choose_container(mode: str, names_images: bool) -> str | None:
    """The container engine tasks run in (None: the host), warning when an image is ignored."""
    if not names_images:
        return None
    if mode == "none":
        logger.warning("tasks name container images, but run on the host (--container none)")
        return None
    if mode != "auto":
        return mode
    for engine in ("podman", "docker", "singularity"):
        if _engine_works(engine):
            return engine
    logger.warning("tasks name container images, but no container engine works here: "
                   "they run on the host")
    return None


def read_input_json(args: argparse.Namespace) -> tuple[dict[str, Any], str | None]:
    path = args.input_file or args.inputs
    if path is None:
        return {}, None
    try:
        with open(path) as handle:
            data = json.load(handle)
    except OSError as exc:
        raise WDLInputError(f"cannot read the inputs {path}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise WDLInputError(f"the inputs {path} are not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise WDLInputError(f"the inputs {path} must be a JSON object, not {type(data).__name__}")
    return data, os.path.dirname(os.path.abspath(path))


def _settings(args: argparse.Namespace, names_images: bool, flow: Flow) -> RunSettings:
    """The run's task settings. Requests are capped at what one job may have on the batch
    system (the machine here, as miniwdl caps them at the host's; a cluster's scheduler judges
    for itself)."""
    from flow.wdl.task import RunSettings

    cores, memory, disk = flow.job_limits()
    return RunSettings(container=choose_container(args.container, names_images),
                       max_cores=cores, max_memory=memory, max_disk=disk)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Load, check the inputs, run; returns the outputs JSON with files in the output folder."""
    uri = os.path.abspath(args.wdl)
    data, inputs_dir = read_input_json(args)
    # Workers import the front-end (and miniwdl) while the leader loads the document.
    preload = [os.environ.get(WORKER_PRELOAD_VARIABLE, ""), "flow.core.worker,flow.wdl.workflow"]
    os.environ[WORKER_PRELOAD_VARIABLE] = ",".join(p for p in preload if p)
    with Flow(args) as flow:
        # Imported once the workers are starting, as they import the same meanwhile.
        from flow.wdl import adapter, files
        from flow.wdl.task import WDLTaskJob
        from flow.wdl.workflow import Frame, WDLWorkflowJob

        ref = adapter.ExeRef(uri)
        exe = adapter.resolve(ref)
        name = str(exe.name)
        origins: dict[str, str] = {}  # imported files' URIs: their host paths
        if args.restart:
            outputs = flow.restart()
        else:
            inputs = adapter.read_inputs(ref, data)
            search = list(dict.fromkeys([os.getcwd(), *([inputs_dir] if inputs_dir else []),
                                         os.path.dirname(uri)]))
            importer = files.Importer(lambda url: str(flow.importFile(url)), search)
            inputs = adapter.map_paths(inputs, importer)
            settings = _settings(args, adapter.document_images(uri), flow)
            root = (WDLWorkflowJob(Frame(ref, settings, "", name), inputs) if adapter.is_workflow(exe)
                    else WDLTaskJob(ref, inputs, name, "", settings))
            outputs = flow.start(root)
            origins = importer.origins
        outdir = args.output_directory or os.path.join(os.getcwd(), f"wdl-out-{uuid.uuid4().hex[:8]}")
        exporter = files.Exporter(flow.jobStore, outdir)
        exported = adapter.map_paths(outputs, exporter)
        # A File that became a String is the host path it came from, or its exported copy.
        exported = adapter.map_strings(exported, lambda text: files.replace_uris(
            text, lambda uri: origins.get(uri) or exporter(uri, False)))
        return adapter.to_json(exported, name)


_PREFIX = re.compile(r"^\s*\| ?")


def job_summary(text: str) -> str | None:
    """What a failed WDL job said about its failure (the lines from "flow-wdl: " up to the
    Python traceback), or None."""
    lines = [_PREFIX.sub("", line) for line in text.splitlines()]
    start = next((i for i, line in enumerate(lines) if line.startswith("flow-wdl: ")), None)
    if start is None:
        return None
    end = next((i for i in range(start, len(lines)) if lines[i].startswith("Traceback (most recent")),
               len(lines))
    return "\n".join(lines[start:end]).removeprefix("flow-wdl: ").rstrip()


def strip_tracebacks(text: str) -> str:
    """Python tracebacks out of a log text (the exception's own line stays)."""
    out, skipping = [], False
    for line in text.splitlines():
        content = _PREFIX.sub("", line)
        if content.startswith("Traceback (most recent call last):"):
            skipping = True
        elif skipping and not content[:1].isspace():
            skipping = False
        if not skipping:
            out.append(line)
    return "\n".join(out)


class _NoTracebacks(logging.Filter):
    """The leader's failure reports without Python tracebacks; a WDL job's failure, which the
    final report gives, only as one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING:
            message = record.getMessage()
            summary = job_summary(message)
            record.msg = message.splitlines()[0] if summary else strip_tracebacks(message)
            record.args = ()
        return True


def failure_report(exc: FailedJobsException) -> str:
    parts = []
    for job in exc.failed:
        summary = job_summary(job.log_tail)
        if summary is None:
            tail = strip_tracebacks(job.log_tail).strip().splitlines()[-30:]
            summary = "\n".join([f"job {job.name} failed: {job.reason}", *("    " + ln for ln in tail)])
        parts.append(summary)
    parts.append(f"(job store {exc.jobStoreLocator}: resume with --restart --jobStore "
                 f"{exc.jobStoreLocator})")
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.getLogger("flow.leader").addFilter(_NoTracebacks())
    try:
        outputs = run(args)
    except FailedJobsException as exc:
        print(f"flow-wdl: error: {failure_report(exc)}", file=sys.stderr)
        return 1
    except USER_ERRORS as exc:
        print(f"flow-wdl: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("flow-wdl: interrupted; resume with --restart --jobStore DIR", file=sys.stderr)
        return 130
    text = json.dumps(outputs, indent=4, sort_keys=True)
    if args.output_file:
        with open(args.output_file, "w") as handle:
            handle.write(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
