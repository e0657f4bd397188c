"""The adapter's second half: running one tool invocation with cwltool (its runtime context,
process monitor, path mapping and output checks). With :mod:`flow.cwl.adapter` it is the only
code that imports cwltool; it was split off only to keep each module readable.
"""

from __future__ import annotations

import functools
import logging
import os
import urllib.parse
from collections.abc import Iterable
from typing import Any, cast

from flow.cwl.adapter import (
    CWLToolError,
    CWLUnsupportedError,
    RunSettings,
    short_message,
    shortname,
)
from flow.cwl.values import (
    outside_roots,
    resolve_in_roots,
    sharing_lists,
    tool_roots,
    walk_files,
)

logger = logging.getLogger("flow.cwl")


# ---- running one invocation -----------------------------------------------------------------
def run_process(process: Any, inputs: dict[str, Any], work_dir: str, settings: RunSettings,
                prefix: str = "", tmpdir: str | None = None, outdir: str | None = None,
                roots: tuple[str, ...] | None = None) -> dict[str, Any]:
    """Run one CommandLineTool/ExpressionTool invocation with cwltool in ``work_dir``, whose
    entries for it all start with ``prefix`` (the invocations of a batch share one directory:
    a directory made per invocation costs more than the tool on a busy ext4); ``tmpdir``,
    ``outdir``: empty directories for the tool's $TMPDIR and output directory (else cwltool
    makes them); ``roots``: what :func:`flow.cwl.values.tool_roots` gives for those, if known."""
    from cwltool.errors import UnsupportedRequirement, WorkflowException

    _quick_process_monitor()
    ctx = _runtime_context(process, work_dir, settings, prefix)
    if tmpdir is not None:
        ctx.tmpdir = tmpdir
    if outdir is not None:
        ctx.create_outdir = _first_given(outdir, ctx.create_outdir)
    refused: list[str] = []
    if settings.container is not None:
        dirs = [work_dir] + [os.path.dirname(p) for p in (settings.tmpdir_prefix, settings.tmp_outdir_prefix) if p]
        ctx.path_mapper, ctx.make_fs_access = _contained_output_checks(
            tuple({os.path.abspath(r) for r in dirs} | {os.path.realpath(r) for r in dirs}))
    else:
        ctx.path_mapper, ctx.make_fs_access = _host_output_checks(
            roots or tool_roots(work_dir, (settings.tmpdir_prefix, settings.tmp_outdir_prefix), prefix, tmpdir, outdir),
            refused,
            os.path.join(work_dir, f"{prefix}inputs"))
    ended = _CommandEnd()
    cwl_logger = logging.getLogger("cwltool")
    cwl_logger.addFilter(ended)
    executor = _executor()()
    try:
        outputs, status = executor.execute(process, sharing_lists(inputs), ctx, logger=cwl_logger)
        if ctx.move_outputs == "leave" and outputs is not None:
            outputs = _settle_outputs(outputs, executor.output_dirs, ctx)
    except UnsupportedRequirement as exc:
        raise CWLUnsupportedError(str(exc)) from None
    except WorkflowException as exc:
        _check_refused(process, refused)
        raise CWLToolError(f"{process.tool.get('id')}: {short_message(exc)}") from None
    finally:
        cwl_logger.removeFilter(ended)
    _check_refused(process, refused)
    if status != "success" or outputs is None:
        how = f"its command {ended.how}, status {status}" if ended.how else f"status {status}"
        raise CWLToolError(f"{process.tool.get('id')} failed: {how}")
    return cast(dict[str, Any], outputs)


def _first_given(path: str, make: Any) -> Any:
    """cwltool's create_outdir giving ``path`` the first time (when cwltool's executor makes
    the job's output directory), then new ones as before (a job script's directory)."""
    given = [path]

    def create_outdir() -> str:
        return given.pop() if given else str(make())

    return create_outdir


@functools.cache
def _executor() -> Any:
    """cwltool's executor for one invocation, without cwltool's MutationManager for a tool
    that updates no input in place. The manager guards in-place updates against concurrent
    readers across a workflow's steps; for one invocation (its inputs private copies, a new
    manager each time) it only records each input as read, a deep copy and a walk of every
    input File (seconds for a gather of thousands), and marks each output with a generation
    number that no later step of flow checks."""
    from cwltool.executors import SingleJobExecutor

    class Executor(SingleJobExecutor):
        def run_jobs(self, process: Any, job_order_object: Any, logger: Any, runtime_context: Any) -> None:
            if process.get_requirement("InplaceUpdateRequirement")[0] is None:
                runtime_context.mutation_manager = None
            super().run_jobs(process, job_order_object, logger, runtime_context)

    return Executor


def _settle_outputs(outputs: Any, output_dirs: Iterable[str], ctx: Any) -> Any:
    """The outputs of a run with cwltool's move_outputs "leave": plain files the tool wrote in
    its output directory stay there (the file store copies them from there, which is what
    cwltool's move to a final directory comes to), "contents" dropped as that move drops it.
    Anything else (a Directory, a File or Directory literal the tool returned, a symlink, a
    file elsewhere) is moved the way cwltool's executor moves it."""
    from cwltool.process import relocateOutputs

    dirs = tuple({d.rstrip(os.sep) + os.sep for d in output_dirs} | {os.path.realpath(d) + os.sep for d in output_dirs})
    found = list(walk_files(outputs))
    if all(_plain_output(obj, dirs) for obj in found):
        for obj in found:
            obj.pop("contents", None)
        return outputs
    os.makedirs(ctx.outdir, exist_ok=True)
    return relocateOutputs(outputs, ctx.outdir, set(output_dirs), "move", ctx.make_fs_access(""),
                           ctx.compute_checksum, path_mapper=ctx.path_mapper)


def _plain_output(obj: dict[str, Any], dirs: tuple[str, ...]) -> bool:
    location = str(obj.get("location", ""))
    if obj.get("class") != "File" or not location.startswith("file://"):
        return False
    path = urllib.parse.unquote(urllib.parse.urlparse(location).path)
    return path.startswith(dirs) and not os.path.islink(path)


#: The start of the name of the output directory cwltool makes for a tool in its job's directory.
OUTDIR_NAME = "outtmp"


def _runtime_context(process: Any, work_dir: str, settings: RunSettings, prefix: str) -> Any:
    from cwltool.context import RuntimeContext

    ctx = RuntimeContext()
    ctx.basedir = work_dir
    ctx.tmpdir_prefix = settings.tmpdir_prefix or os.path.join(work_dir, f"{prefix}tmp")
    ctx.tmp_outdir_prefix = settings.tmp_outdir_prefix or os.path.join(work_dir, f"{prefix}{OUTDIR_NAME}")
    ctx.stagedir = os.path.join(work_dir, f"{prefix}stage")
    ctx.use_container = settings.container is not None
    ctx.podman = settings.container == "podman"
    ctx.singularity = settings.container == "singularity"
    # cwltool's own directories lie inside work_dir, which the file store removes in the
    # background when the job ends; only those under a user's prefix are cwltool's to remove.
    ctx.rm_tmpdir = settings.tmpdir_prefix is not None or settings.tmp_outdir_prefix is not None
    if settings.tmp_outdir_prefix is None:
        # The outputs stay where the tool made them (inside work_dir) and go to the file store
        # from there: moving them to a final directory first costs a directory and a rename
        # per invocation. Under a user's prefix cwltool removes that directory: moved first.
        ctx.outdir = os.path.join(work_dir, f"{prefix}out")
        ctx.move_outputs = "leave"
    else:
        ctx.outdir = os.path.join(work_dir, f"{prefix}out")
        os.makedirs(ctx.outdir, exist_ok=True)
        ctx.move_outputs = "move"
    ctx.debug = settings.debug
    ctx.strict_memory_limit = settings.strict_memory_limit
    ctx.eval_timeout = settings.eval_timeout
    ctx.preserve_environment = list(settings.preserve_environment)
    ctx.preserve_entire_environment = settings.preserve_entire_environment
    ctx.secret_store = secret_store()
    ctx.name = _job_name(process)
    return ctx


#: How long a tool runs before cwltool's memory monitor starts (its first sample is a second
#: after that): shorter tools start no monitor thread at all.
MONITOR_AFTER = 1.0


@functools.cache
def _quick_process_monitor() -> None:
    """cwltool starts a thread per tool run to sample its memory use once a second, and waits
    for that thread to start: on a busy machine that wait is most of a short tool's cost. A tool
    that ends within MONITOR_AFTER seconds is simply waited for (cwltool's first sample would
    have come after a second anyway); a longer one gets cwltool's monitor and its "Max memory
    used" line as before."""
    import select

    from cwltool.job import JobBase

    original = JobBase.process_monitor

    def process_monitor(self: Any, sproc: Any) -> None:
        # A pidfd turns readable when the process ends: waited for with a timeout, without
        # the polling sleeps of Popen.wait(timeout) (0.5 ms, 1 ms, 2 ms, ...).
        try:
            pidfd = os.pidfd_open(sproc.pid)
        except (AttributeError, OSError):  # no pidfd here, or the process is reaped already
            original(self, sproc)
            return
        try:
            poller = select.poll()
            poller.register(pidfd, select.POLLIN)
            ended = bool(poller.poll(int(MONITOR_AFTER * 1000)))
        finally:
            os.close(pidfd)
        if ended:
            sproc.wait()
        else:
            original(self, sproc)

    JobBase.process_monitor = process_monitor  # type: ignore[method-assign]


#: Invocations of each job name in this process, for :func:`_job_name`.
_JOB_NAMES: dict[str, int] = {}


def _job_name(process: Any) -> str:
    """The name cwltool gives the job ("echo.cwl", then "echo.cwl_2", ...), counted here: its
    own uniquename tries every earlier number first, quadratic in a worker's invocations."""
    stem = shortname(str(process.tool.get("id", "job")))
    count = _JOB_NAMES[stem] = _JOB_NAMES.get(stem, 0) + 1
    return stem if count == 1 else f"{stem}_{count}"


class _CommandEnd(logging.Filter):
    """Notes how the tool's command ended from cwltool's own report of it (cwltool keeps the
    exit status to itself), so that a failure names the command's real exit status."""

    def __init__(self) -> None:
        super().__init__()
        self.how = ""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args if isinstance(record.args, tuple) else ()
        if record.msg == "[job %s] exited with status: %d" and len(args) == 2:
            self.how = f"exited with status {args[1]}"
        elif record.msg == "[job %s] was terminated by signal: %s" and len(args) == 2:
            self.how = f"was killed by signal {args[1]}"
        return True


def _check_refused(process: Any, globs: list[str]) -> None:
    """Fail naming the outputs whose glob matched something outside the tool's directories."""
    if not globs:
        return
    names = []
    for pattern in dict.fromkeys(globs):
        ports = [shortname(port["id"]) for port in process.tool["outputs"]
                 if pattern in _as_list((port.get("outputBinding") or {}).get("glob"))]
        names.append(f"output {', '.join(repr(p) for p in ports)} (glob {pattern!r})" if ports else f"glob {pattern!r}")
    raise CWLToolError(f"{process.tool.get('id')}: {'; '.join(names)} matched a path outside the "
                       "tool's directories: refused (see 'Path safety' in the README)")


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [] if value is None else [value]


def _outside_message(path: str, real: str) -> str:
    return (f"{path} resolves to {real}, outside the tool's directories: flow does not collect an "
            "output from elsewhere on the host (see 'Path safety' in the README)")


def _recording_path_mapper(in_place_under: str | None = None) -> tuple[Any, list[Any]]:
    """cwltool's PathMapper class, recording the instances that staged the tool's inputs (not
    the one relocateOutputs makes for the outputs, with an empty base directory: the tool's own
    ones have the run's). With ``in_place_under`` (a tool on the host), the top-level input
    Files that flow already copied there under their own basenames are given to the tool
    where they are, not linked again into a directory each: cwltool's staging made a directory
    and a symlink per input file (a gather of 2,000 files: 4,000 new inodes, seconds on a busy
    ext4). Only when no input has secondaryFiles (a secondary file may be another input,
    staged beside its primary under another name) and none is writable."""
    from cwltool.pathmapper import MapperEnt, PathMapper

    mappers: list[PathMapper] = []

    class RecordingPathMapper(PathMapper):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            if (args[1] if len(args) > 1 else kwargs.get("basedir")) != "":
                mappers.append(self)

        def setup(self, referenced_files: Any, basedir: str) -> None:
            in_place = ([_in_place_input(fob, in_place_under) for fob in referenced_files]
                        if in_place_under is not None and self.separateDirs else [])
            if not in_place or any(fob.get("secondaryFiles") or fob.get("writable") for fob in referenced_files):
                super().setup(referenced_files, basedir)
                return
            super().setup([fob for fob, path in zip(referenced_files, in_place, strict=True) if path is None], basedir)
            for fob, path in zip(referenced_files, in_place, strict=True):
                if path is not None and fob["location"] not in self._pathmap:
                    self._pathmap[fob["location"]] = MapperEnt(path, path, "File", False)

    return RecordingPathMapper, mappers


def _in_place_input(fob: Any, under: str | None) -> str | None:
    """The path of a File input that may be used where flow staged it (see above), else None."""
    location = str(fob.get("location", ""))
    if under is None or fob.get("class") != "File" or not location.startswith("file://") or fob.get("dirname"):
        return None
    path = urllib.parse.unquote(urllib.parse.urlparse(location).path)
    if not path.startswith(under.rstrip(os.sep) + os.sep) or os.path.basename(path) != fob.get("basename"):
        return None
    return path


def _inside(target: str, bases: Iterable[str]) -> bool:
    return any(target == base or target.startswith(base.rstrip(os.sep) + os.sep) for base in bases)


def _host_output_checks(roots: tuple[str, ...], refused: list[str], inputs_dir: str) -> tuple[Any, Any]:
    """cwltool's file access for a tool run on the host: an output that resolves outside the
    tool's directories (a glob through a symlink, ``..``, a symlink to a host file, a
    cwl.output.json location elsewhere) is refused, where cwltool without a container would copy
    the host file into the outputs. flow refuses it as cwltool does for a tool in a container
    (conformance test ``illegal_symlink``): a tool's outputs are what it made, never whatever the
    host holds at a path. What cwltool staged for the tool (inputs, files an InitialWorkDir names
    by location) may be passed through. A glob match is left out and noted in ``refused``
    (cwltool logs any other exception from a glob with a traceback); the run then fails naming
    it. Returns (path mapper class, file access class)."""
    from cwltool.errors import WorkflowException
    from cwltool.stdfsaccess import StdFsAccess, abspath

    mapper_class, mappers = _recording_path_mapper(inputs_dir)

    def outside(path: str) -> str | None:
        real = outside_roots(path, roots)
        staged = (os.path.realpath(entry.resolved) for mapper in mappers for _, entry in mapper.items()
                  if not str(entry.resolved).startswith("_:") and "://" not in str(entry.resolved))
        return None if real is None or _inside(real, staged) else real

    class HostFsAccess(StdFsAccess):
        def glob(self, pattern: str) -> list[str]:
            kept = []
            for uri in super().glob(pattern):
                path = abspath(uri, self.basedir)
                real = outside(path)
                if real is None:
                    kept.append(uri)
                else:
                    refused.append(os.path.relpath(abspath(pattern, self.basedir), self.basedir))
                    logger.error("%s", _outside_message(path, real))
            return kept

        def realpath(self, path: str) -> str:  # what cwltool moves or copies the outputs from
            real, inside = resolve_in_roots(abspath(path, self.basedir), roots)
            if not inside and outside(real) is not None:
                raise WorkflowException(_outside_message(path, real))
            return real if os.path.isabs(path) else super().realpath(path)

    return mapper_class, HostFsAccess


def secret_store() -> Any:
    """cwltool's SecretStore holding the run's secrets (from the leader, see :mod:`flow.cwl.secrets`)."""
    from cwltool.secrets import SecretStore

    from flow.cwl.secrets import worker_secrets

    store = SecretStore()
    store.secrets.update(worker_secrets())
    return store


def _contained_output_checks(roots: tuple[str, ...]) -> tuple[Any, Any]:
    """cwltool's path mapper and file access for a tool that ran in a container, where an
    absolute symlink the tool made names a path inside the container: outputs that are (or lie
    under) a symlink to anything but the job's own directories (``roots``) or a host path
    cwltool mounted (it relinks staged inputs to those) are not retrieved, whatever the host
    holds at that path. Returns (path mapper class, file access class)."""
    from cwltool.stdfsaccess import StdFsAccess
    from schema_salad.ref_resolver import uri_file_path

    mapper_class, mappers = _recording_path_mapper()
    inside = _inside

    def escapes(path: str) -> bool:
        while path not in ("", "/") and path not in roots:
            if os.path.islink(path):
                target = os.path.normpath(os.path.join(os.path.dirname(path), os.readlink(path)))
                mounted = (entry.resolved for mapper in mappers for _, entry in mapper.items())
                if not inside(target, iter(roots)) and not inside(target, mounted):
                    logger.warning("not retrieving %s: a symlink to %s, which is outside the "
                                   "directories the tool's container had", path, os.readlink(path))
                    return True
            path = os.path.dirname(path)
        return False

    class ContainedFsAccess(StdFsAccess):
        def glob(self, pattern: str) -> list[str]:
            return [uri for uri in super().glob(pattern) if not escapes(uri_file_path(uri))]

    return mapper_class, ContainedFsAccess
