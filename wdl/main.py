"""``flow-wdl workflow.wdl inputs.json``: run a WDL workflow on flow, print its outputs as JSON."""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import logging
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import uuid
from typing import TYPE_CHECKING, Any, NoReturn

from flow.batchsystems import WORKER_PRELOAD_VARIABLE
from flow.core.common import Flow
from flow.core.exceptions import FailedJobsException, FlowError
from flow.core.logs import USER_ERRORS
from flow.core.options import add_flow_options

if TYPE_CHECKING:
    from flow.wdl.task import RunSettings

logger = logging.getLogger("flow.wdl")
CONTAINER_CHOICES = ("auto", "none", "podman", "singularity", "docker")


class _Parser(argparse.ArgumentParser):
    """A usage error in one line (argparse prints the whole usage first)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} ({self.prog} --help lists the options)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="flow-wdl", description=__doc__,
                     epilog="flow-wdl check FILE: check a document (miniwdl check)")
    parser.add_argument("--version", action="version", version=versions())
    parser.add_argument("wdl", help="the WDL document (a workflow, or a single task)")
    parser.add_argument("inputs", nargs="*", default=[],
                        help="the inputs: a JSON file, inline JSON, and/or name=value pairs "
                        "(miniwdl's form; repeat a name for an array)")
    wdl = parser.add_argument_group("WDL options")
    wdl.add_argument("-i", "--input", "--inputs", dest="input_file", default=None,
                     help="the inputs: a JSON file, inline JSON, or - (standard input)")
    wdl.add_argument("-o", "--outputDirectory", "--output-directory", dest="output_directory",
                     default=None, help="where output files go (default: a new wdl-out-* folder here)")
    wdl.add_argument("-m", "--outputFile", "--output-file", dest="output_file", default=None,
                     help="also write the outputs JSON to this file")
    wdl.add_argument("--task", default=None, metavar="NAME",
                     help="run this task of the document (needed when it has no workflow and "
                     "several tasks; runs the task even when it has a workflow)")
    wdl.add_argument("--empty", action="append", default=[], metavar="NAME",
                     help="set an input to an empty array or string (as miniwdl)")
    wdl.add_argument("--none", action="append", default=[], metavar="NAME",
                     help="set an optional input to None (as miniwdl)")
    wdl.add_argument("--container", choices=CONTAINER_CHOICES, default="auto",
                     help="where tasks that name an image run: auto (podman, docker or singularity "
                     "when one works, else the host), none (always the host), or that engine")
    add_flow_options(parser, jobstore_as_flag=True)
    parser.set_defaults(retryCount=0)  # WDL tasks retry as their maxRetries says
    return parser


def build_check_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="flow-wdl check",
                     description="Check a WDL document and show its outline with lint warnings "
                     "(miniwdl check).")
    parser.add_argument("wdl", help="the WDL document")
    parser.add_argument("--strict", action="store_true",
                        help="exit 2 if there are lint warnings (besides syntax and type errors)")
    parser.add_argument("--suppress", default=None, metavar="Warning1,Warning2",
                        help="warnings not to show, e.g. StringCoercion,NonemptyCoercion")
    return parser


def versions() -> str:
    """flow's version, and those of the cwltool and miniwdl it runs on."""
    found = []
    for name, package in (("flow", "flow"), ("cwltool", "cwltool"), ("miniwdl", "miniwdl")):
        try:
            found.append(f"{name} {importlib.metadata.version(package)}")
        except importlib.metadata.PackageNotFoundError:
            found.append(f"{name} (not installed)")
    return ", ".join(found)


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


def split_inputs(args: argparse.Namespace) -> tuple[list[str], list[str]]:
    """The inputs given: JSON sources (files, inline JSON, -) and miniwdl's name=value pairs (a
    lone value after "name=" belongs to it, as in miniwdl)."""
    sources = [args.input_file] if args.input_file else []
    pairs: list[str] = []
    for item in args.inputs:
        if pairs and pairs[-1].endswith("=") and pairs[-1].count("=") == 1:
            pairs.append(item)
        elif item.lstrip().startswith("{") or item == "-" or os.path.exists(item) or "=" not in item:
            sources.append(item)
        else:
            pairs.append(item)
    return sources, pairs


def _load_json(source: str) -> tuple[dict[str, Any], str | None]:
    """One JSON object of inputs, and the folder relative input paths are also searched in."""
    inline = source.lstrip().startswith("{")
    what = "the inline JSON inputs" if inline else "the inputs on standard input" if source == "-" \
        else f"the inputs {source}"
    try:
        if inline or source == "-":
            data = json.loads(source if inline else sys.stdin.read())
        else:
            with open(source) as handle:
                data = json.load(handle)
    except OSError as exc:
        raise WDLInputError(f"cannot read the inputs {source}: {exc.strerror}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise WDLInputError(f"{what} are not valid JSON: {exc}") from None
    except RecursionError:
        raise WDLInputError(f"{what} nest deeper than flow-wdl reads (about "
                            f"{sys.getrecursionlimit()} levels)") from None
    if not isinstance(data, dict):
        raise WDLInputError(f"{what} must be a JSON object, not {type(data).__name__}")
    folder = None if inline or source == "-" else os.path.dirname(os.path.abspath(source))
    return data, folder


def read_input_json(sources: list[str]) -> tuple[dict[str, Any], list[str]]:
    """The inputs of every JSON source (later ones win), and their folders."""
    data: dict[str, Any] = {}
    folders: list[str] = []
    for source in sources:
        more, folder = _load_json(source)
        data.update(more)
        folders += [folder] if folder else []
    return data, folders


def _settings(args: argparse.Namespace, names_images: bool, flow: Flow,
              origins: dict[str, str]) -> RunSettings:
    """The run's task settings. Requests are capped at what one job may have on the batch
    system (the machine here, as miniwdl caps them at the host's; a cluster's scheduler judges
    for itself). The imported files' host paths are stored once, for write_* functions."""
    from flow.wdl.task import RunSettings

    cores, memory, disk = flow.job_limits()
    origins_id = None
    if origins:
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
            json.dump(origins, handle)
        try:
            origins_id = str(flow.importFile(handle.name))
        finally:
            os.unlink(handle.name)
    return RunSettings(container=choose_container(args.container, names_images),
                       max_cores=cores, max_memory=memory, max_disk=disk, origins=origins_id)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Load, check the inputs, run; returns the outputs JSON with files in the output folder."""
    uri = os.path.abspath(args.wdl)
    sources, pairs = split_inputs(args)
    data, inputs_dirs = read_input_json(sources)
    # Workers import the front-end (and miniwdl) while the leader loads the document.
    preload = [os.environ.get(WORKER_PRELOAD_VARIABLE, ""), "flow.core.worker,flow.wdl.workflow"]
    os.environ[WORKER_PRELOAD_VARIABLE] = ",".join(p for p in preload if p)
    with Flow(args) as flow:
        # Imported once the workers are starting, as they import the same meanwhile.
        from flow.wdl import adapter, files
        from flow.wdl.task import WDLTaskJob
        from flow.wdl.workflow import Frame, WDLWorkflowJob

        ref = adapter.ExeRef(uri, task=args.task or "")
        exe = adapter.resolve(ref)
        name = str(exe.name)
        origins: dict[str, str] = {}  # imported files' URIs: their host paths
        if args.restart:
            outputs = flow.restart()
        else:
            data = adapter.command_line_inputs(ref, data, pairs, args.empty, args.none)
            inputs = adapter.read_inputs(ref, data)
            search = list(dict.fromkeys([os.getcwd(), *inputs_dirs, os.path.dirname(uri)]))
            importer = files.Importer(lambda url: str(flow.importFile(url)), search)
            inputs = adapter.map_paths(inputs, importer)
            settings = _settings(args, adapter.document_images(uri), flow, importer.origins)
            root = (WDLWorkflowJob(Frame(ref, settings, "", name), inputs) if adapter.is_workflow(exe)
                    else WDLTaskJob(ref, inputs, name, "", settings))
            outputs = flow.start(root)
            origins = importer.origins
        outdir = args.output_directory or os.path.join(os.getcwd(), f"wdl-out-{uuid.uuid4().hex[:8]}")
        exporter = files.Exporter(flow.jobStore, outdir, flow.deletes_store_on_success())
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
    # it ends where Python's report of the same exception starts (a traceback, or the
    # exception's own line, which repeats the message)
    end = next((i for i in range(start + 1, len(lines)) if _PYTHON_REPORT.match(lines[i])), len(lines))
    return "\n".join(lines[start:end]).removeprefix("flow-wdl: ").rstrip()


_PYTHON_REPORT = re.compile(r"^(Traceback \(most recent|[A-Za-z_][\w.]*(Error|Exception): )")
_FAILED_JOB = re.compile(r"^(job .*? failed: )")
_FAILED_CALL = re.compile(r"^(?:call|workflow) \S+ failed: (.*?)(; last lines of its stderr:|; its stderr is empty)?$")


def error_line(message: str, summary: str) -> str:
    """The leader's one-line report of a failed WDL job, with the task's own reason (its exit
    code, not the worker's)."""
    first = message.splitlines()[0]
    job, call = _FAILED_JOB.match(first), _FAILED_CALL.match(summary.splitlines()[0])
    return f"{job.group(1)}{call.group(1)}" if job and call else first


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
            record.msg = error_line(message, summary) if summary else strip_tracebacks(message)
            record.args = ()
        return True


def resume_command(argv: list[str], store: str) -> str:
    """The command that resumes this run (pasted in this directory): the same arguments with
    --restart, and the job store named if it was a temporary one."""
    words = [a for a in argv if a != "--restart"]
    if not any(a.split("=")[0] in ("--jobStore", "--jobstore") for a in words):
        words += ["--jobStore", os.path.abspath(store)]
    return shlex.join(["flow-wdl", *words, "--restart"])


def failure_report(exc: FailedJobsException, argv: list[str]) -> str:
    parts = []
    for job in exc.failed:
        summary = job_summary(job.log_tail)
        if summary is None:
            tail = strip_tracebacks(job.log_tail).strip().splitlines()[-30:]
            summary = "\n".join([f"job {job.name} failed: {job.reason}", *("    " + ln for ln in tail)])
        parts.append(summary)
    parts.append(f"(the job store {exc.jobStoreLocator} is kept; fix the cause and resume with: "
                 f"{resume_command(argv, exc.jobStoreLocator)})")
    return "\n".join(parts)


def check(argv: list[str]) -> int:
    """``flow-wdl check FILE``."""
    args = build_check_parser().parse_args(argv)
    from flow.wdl import adapter

    try:
        adapter.check_document(args.wdl, args.strict, args.suppress)
    except USER_ERRORS as exc:
        print(f"flow-wdl: error: {exc}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["check"] and not os.path.isfile("check"):
        return check(argv[1:])
    args = build_parser().parse_intermixed_args(argv)
    logging.getLogger("flow.leader").addFilter(_NoTracebacks())
    try:
        outputs = run(args)
    except FailedJobsException as exc:
        print(f"flow-wdl: error: {failure_report(exc, argv)}", file=sys.stderr)
        return 1
    except USER_ERRORS as exc:
        print(f"flow-wdl: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        hint = resume_command(argv, args.jobStore) if args.jobStore else "flow-wdl ... --restart --jobStore DIR"
        print(f"flow-wdl: interrupted; resume with: {hint}", file=sys.stderr)
        return 130
    text = json.dumps(outputs, indent=4, sort_keys=True)
    if args.output_file:
        with open(args.output_file, "w") as handle:
            handle.write(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
