"""A WDL task call as a core job: one visible :class:`WDLTaskJob` per call.

The job localizes its input files from the file store, lets miniwdl evaluate the declarations,
runtime section and command (through :mod:`flow.wdl.adapter`), runs the command with bash in a
working directory of its own (on the host, or in a container when the run uses one), checks the
exit status against ``returnCodes``, evaluates the outputs and stores the output files back.
``runtime`` cpu, memory and disks are the job's requirements; ``maxRetries`` its retries.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from typing import IO, Any

from flow.core.exceptions import ChangedReadFileError, FlowError
from flow.core.filestore import FileStore
from flow.wdl import adapter, files
from flow.wdl.packing import PackedJob, PackedValues
from flow.wdl.shell import BatchShell, ShellError, shares_shell
from flow.wdl.taskdirs import TaskDirs

GB = 1000**3
STDERR_TAIL_LINES = 20

_UNITS = {
    "": 1, "b": 1, "k": 1000, "kb": 1000, "m": 1000**2, "mb": 1000**2, "g": GB, "gb": GB,
    "t": 1000**4, "tb": 1000**4, "ki": 1024, "kib": 1024, "mi": 1024**2, "mib": 1024**2,
    "gi": 1024**3, "gib": 1024**3, "ti": 1024**4, "tib": 1024**4,
}
_SIZE = re.compile(r"^\s*([0-9]+(?:\.[0-9]*)?)\s*([A-Za-z]*)\s*$")


class WDLTaskError(FlowError):
    """A task's command failed (exit status not in returnCodes) or its outputs are wrong."""


@dataclass(frozen=True)
class RunSettings:
    """How tasks run; picklable, so that every worker runs them the same way."""

    container: str | None = None  # "podman", "docker", "singularity", or None: on the host
    #: The most one job may have (None: no cap, a cluster's scheduler judges).
    max_cores: float | None = None
    max_memory: int | None = None
    max_disk: int | None = None
    #: The stored JSON {file URI: host path} of the run's imported input files (None: none).
    origins: str | None = None


def parse_size(value: Any, default_unit: str = "") -> int | None:
    """Bytes of a WDL size: a number (bytes, or ``default_unit``) or text like "4 GB", "512 MiB"."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return int(value * _UNITS[default_unit.lower()])
    match = _SIZE.match(str(value))
    if match is None or match.group(2).lower() not in _UNITS:
        return None
    unit = match.group(2).lower() or default_unit.lower()
    return int(float(match.group(1)) * _UNITS[unit])


def parse_disks(value: Any) -> int | None:
    """Bytes of a ``disks`` value: "local-disk 10 SSD", "10 GB", "/mnt 5 HDD", 10 (GiB), or a list."""
    if isinstance(value, list):
        sizes = [parse_disks(v) for v in value]
        return sum(s for s in sizes if s) or None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return int(value * 1024**3)
    words = str(value).split()
    numbers = [i for i, w in enumerate(words) if re.fullmatch(r"[0-9]+(\.[0-9]*)?", w)]
    if not numbers:
        return parse_size(value, "GB")
    i = numbers[0]
    unit = words[i + 1] if i + 1 < len(words) and words[i + 1].lower() in _UNITS else "GB"
    if unit.upper() in ("SSD", "HDD", "LOCAL"):
        unit = "GB"
    return parse_size(f"{words[i]} {unit}")


def container_image(runtime: dict[str, Any]) -> str | None:
    image = runtime.get("container", runtime.get("docker"))
    if isinstance(image, list):
        image = image[0] if image else None
    return str(image) if image else None


def requirements(runtime: dict[str, Any], settings: RunSettings) -> dict[str, Any]:
    """The job's cores, memory and disk from a task's runtime values (None: the run's default),
    capped at what the run may use, as miniwdl caps them at the host's."""
    cpu = runtime.get("cpu")
    cores: float | None = None
    if isinstance(cpu, (int, float)) and not isinstance(cpu, bool):
        cores = float(cpu)
    elif isinstance(cpu, str):
        try:
            cores = float(cpu)
        except ValueError:
            cores = None
    memory = parse_size(runtime["memory"]) if "memory" in runtime else None
    disk = parse_disks(runtime["disks"]) if "disks" in runtime else None
    return {
        "cores": None if cores is None else max(0.1, _capped(cores, settings.max_cores)),
        "memory": None if memory is None else _capped(memory, settings.max_memory),
        "disk": None if disk is None else _capped(disk, settings.max_disk),
    }


def _capped(amount: Any, limit: Any) -> Any:
    return amount if limit is None else min(amount, limit)


def return_codes(runtime: dict[str, Any]) -> set[int] | None:
    """Accepted exit codes; None accepts any."""
    codes = runtime.get("returnCodes", runtime.get("return_codes", 0))
    if codes == "*":
        return None
    if isinstance(codes, list):
        return {int(c) for c in codes}
    return {int(codes)}


@dataclass(frozen=True)
class Needs:
    """What a call asks of the batch system, from its runtime values known before it runs."""

    cores: float | None
    memory: int | None
    disk: int | None
    retries: int | None  # maxRetries; None: the run's --retryCount


def call_needs(ref: adapter.ExeRef, inputs: adapter.Values, settings: RunSettings) -> Needs:
    runtime = adapter.static_runtime(ref, inputs)
    needs = requirements(runtime, settings)
    retries = runtime.get("maxRetries", runtime.get("max_retries"))
    valid = isinstance(retries, int) and not isinstance(retries, bool) and retries >= 0
    return Needs(needs["cores"], needs["memory"], needs["disk"], retries if valid else None)


class CallJob(PackedJob):
    """A job that runs calls of a task: it asks for what they need, and retries as they say."""

    def __init__(self, needs: Needs, label: str) -> None:
        super().__init__(cores=needs.cores, memory=needs.memory, disk=needs.disk, displayName=label)
        if needs.retries is not None:
            self.description.retries_left = needs.retries


class WDLTaskJob(CallJob):
    """Runs one call of a task; returns its outputs named ``<namespace>.<output>``."""

    def __init__(self, ref: adapter.ExeRef, inputs: adapter.Values, label: str, namespace: str,
                 settings: RunSettings, needs: Needs | None = None) -> None:
        super().__init__(needs or call_needs(ref, inputs, settings), label)
        self.ref = ref
        self.inputs = inputs
        self.label = label
        self.namespace = namespace
        self.settings = settings

    def run(self, fileStore: FileStore) -> Any:
        return run_call(self.ref, self.inputs, self.label, self.namespace, self.settings, fileStore,
                        TaskDirs(fileStore.localTempDir), self.jobStoreID)


def run_call(ref: adapter.ExeRef, inputs: adapter.Values, label: str, namespace: str,
             settings: RunSettings, fileStore: FileStore, dirs: TaskDirs, token: str,
             shell: BatchShell | None = None) -> PackedValues:
    """One call of a task in ``dirs`` (its root exists): its outputs named by ``namespace``.
    ``token`` names the call's output folders (unique in the run). On the host, its command
    runs in ``shell`` if given (a batch's: see flow.wdl.shell), else in a bash of its own."""
    try:
        outputs = _run(ref, inputs, settings, fileStore, dirs, token, shell)
    except (adapter.WDLError, files.WDLFileError, WDLTaskError) as exc:
        print(f"flow-wdl: call {label} failed: {exc}", file=sys.stderr)
        raise
    prefix = f"{namespace}." if namespace else ""
    return PackedValues({prefix + name: value for name, value in outputs.items()})


def _run(ref: adapter.ExeRef, given: adapter.Values, settings: RunSettings, fileStore: FileStore,
         dirs: TaskDirs, token: str, shell: BatchShell | None) -> adapter.Values:
    os.makedirs(dirs.work, exist_ok=True)  # left empty by a batch's previous call
    localizer = files.Localizer(fileStore, dirs.inputs)
    task = adapter.TaskContext(ref, dirs)
    inputs = adapter.map_paths(given, localizer)
    # A File that became a String (coerced, interpolated) names the file here too.
    inputs = adapter.map_strings(inputs, lambda text: files.replace_uris(
        text, lambda uri: localizer(uri, False)))
    localizer.materialize()
    task.bind_inputs(inputs)
    runtime = task.runtime()
    command = task.command()
    write_over(dirs.command, command)
    image = container_image(runtime)
    if shell is not None and not (image and settings.container) and shares_shell(command):
        try:
            code = shell.run(dirs)
        except ShellError as exc:
            raise WDLTaskError(str(exc)) from None
    else:
        code = execute(dirs.command, dirs, image, settings)
    try:
        fileStore.check_read_files(localizer.by_uri.values())
    except ChangedReadFileError as exc:  # miniwdl mounts inputs read-only: the write fails
        raise WDLTaskError(
            f"the command changed its input file {os.path.basename(exc.path)} ({exc.path}); "
            "task inputs are read-only: copy the file and change the copy"
        ) from None
    accepted = return_codes(runtime)
    if accepted is not None and code not in accepted:
        raise WDLTaskError(failure_message(code, accepted, dirs))
    outputs = adapter.map_strings(task.outputs(), localizer.uris_for_paths)
    uploader = files.Uploader(fileStore, localizer, dirs.root, token)
    return adapter.map_paths(outputs, uploader)


def write_over(path: str, text: str) -> None:
    """Write ``text`` to ``path``, over what the file holds (the calls of a batch rewrite one
    command file): truncating a file to nothing frees its blocks, and on a file system mounted
    with online discard that waits milliseconds for the device, where this costs microseconds."""
    data = text.encode(errors="surrogateescape")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.ftruncate(fd, len(data))
    finally:
        os.close(fd)


def execute(command_file: str, dirs: TaskDirs, image: str | None, settings: RunSettings) -> int:
    """Run the command file with bash in the working directory; its exit status (128 + N for
    a signal N, as miniwdl gets it from the shell that runs the command)."""
    argv = container_argv(settings.container, image, dirs, command_file) if image and settings.container \
        else [bash(), command_file]
    with _empty(dirs.stdout) as out, _empty(dirs.stderr) as err:
        try:
            code = subprocess.run(argv, cwd=dirs.work, stdin=subprocess.DEVNULL, stdout=out,
                                  stderr=err, check=False).returncode
        except OSError as exc:
            raise WDLTaskError(f"cannot run {argv[0]}: {exc}") from None
    return 128 - code if code < 0 else code  # killed by signal N: 128 + N, as a shell says


def _empty(path: str) -> IO[bytes]:
    """``path`` open for writing, empty: made, or the empty file a batch's previous call left
    (see flow.wdl.batch). Not opened with O_TRUNC: on ext4 (``auto_da_alloc``) a file cut to
    nothing is written out to the disk when closed, which costs more than the command."""
    handle = open(path, "ab")  # O_APPEND, as miniwdl runs a command: `>> ../stdout.txt`
    if handle.tell():  # not left empty: only a caller other than a batch gets here
        handle.truncate(0)
    return handle


@functools.lru_cache(maxsize=1)
def bash() -> str:
    """bash's path, looked up once per process (as exec would look it up along PATH for every
    call: a failed execve per PATH entry before it)."""
    return shutil.which("bash") or "bash"


def container_argv(engine: str, image: str, dirs: TaskDirs, command_file: str) -> list[str]:
    """The command that runs ``command_file`` in ``image``, the task folder at the same path."""
    root = dirs.root
    if engine == "singularity":
        exe = shutil.which("singularity") or shutil.which("apptainer") or "singularity"
        return [exe, "exec", "--bind", f"{root}:{root}", "--pwd", dirs.work, f"docker://{image}",
                "/bin/bash", command_file]
    return [engine, "run", "--rm", "--network=host", "-v", f"{root}:{root}", "-w", dirs.work,
            "--entrypoint", "/bin/bash", image, command_file]


def failure_message(code: int, accepted: set[int], dirs: TaskDirs) -> str:
    allowed = ", ".join(str(c) for c in sorted(accepted))
    tail = ""
    try:
        with open(dirs.stderr, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - 16384))
            lines = handle.read().decode(errors="replace").splitlines()[-STDERR_TAIL_LINES:]
        tail = "\n".join("    " + line for line in lines)
    except OSError:
        pass
    text = f"exit code {code} (accepted: {allowed})"
    return f"{text}; last lines of its stderr:\n{tail}" if tail.strip() else f"{text}; its stderr is empty"
