"""``flow.lib.docker.apiDockerCall``: run a container from a job, as Toil's does, with whichever
of podman and docker works here (Toil talks to a Docker daemon through its API; flow runs the
engine's command line, so a rootful or rootless podman serves as well)."""

from __future__ import annotations

import functools
import os
import shlex
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from typing import Any

from flow.core.exceptions import FlowError

#: Engines tried in this order; ``FLOW_CONTAINER_ENGINE`` names one to use instead.
ENGINES = ("podman", "docker")
ENGINE_VARIABLE = "FLOW_CONTAINER_ENGINE"
#: Longest time limit that can be enforced (about 24 days); longer ones mean none.
MAX_TIMEOUT = (2**31 - 1) / 1000


class ContainerEngineError(FlowError):
    """No container engine works here, or a container failed."""


class ContainerError(ContainerEngineError):
    """A container exited with a non-zero status (Toil: docker's ``ContainerError``)."""

    def __init__(self, image: str, command: Sequence[str], exit_status: int, stderr: str) -> None:
        tail = stderr.strip().splitlines()[-5:]
        super().__init__(
            f"the container of image {image!r} running {shlex.join(command) or '(its default command)'} "
            f"exited with status {exit_status}" + (": " + " / ".join(tail) if tail else "")
        )
        self.image = image
        self.command = list(command)
        self.exit_status = exit_status
        self.stderr = stderr


@functools.lru_cache(maxsize=1)
def container_engine() -> str:
    """The first engine whose ``info`` succeeds; a ContainerEngineError saying why each failed."""
    wanted = os.environ.get(ENGINE_VARIABLE)
    reasons = []
    for engine in ((wanted,) if wanted else ENGINES):
        path = shutil.which(engine)
        if path is None:
            reasons.append(f"{engine}: not installed")
            continue
        try:
            probe = subprocess.run([path, "info"], stdin=subprocess.DEVNULL, capture_output=True,
                                   text=True, timeout=60, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            reasons.append(f"{engine}: {exc}")
            continue
        if probe.returncode == 0:
            return path
        last = (probe.stderr.strip().splitlines() or [f"exit status {probe.returncode}"])[-1]
        reasons.append(f"{engine}: {last}")
    raise ContainerEngineError(
        "apiDockerCall needs a working container engine, and none works here ("
        + "; ".join(reasons) + "). Install podman or start a Docker daemon, or set "
        f"{ENGINE_VARIABLE} to the engine's command."
    )


def _entry(entrypoint: str | Sequence[str] | None) -> list[str] | None:
    if entrypoint is None:
        return None
    return [entrypoint] if isinstance(entrypoint, str) else [str(part) for part in entrypoint]


def _command(parameters: Sequence[Any] | None, entrypoint: str | Sequence[str] | None) -> tuple[list[str], list[str] | None]:
    """Toil's convention: a list of lists is a pipeline, run by ``bash -c`` with pipefail."""
    params = list(parameters or [])
    if params and isinstance(params[0], (list, tuple)):
        pipeline = " | ".join(shlex.join(str(a) for a in cmd) for cmd in params)
        return ["set -eo pipefail && " + pipeline], _entry(entrypoint) or ["/bin/bash", "-c"]
    return [str(p) for p in params], _entry(entrypoint)


def _run_argv(engine: str, image: str, command: list[str], entry: list[str] | None, *,
              volumes: Mapping[str, Any], working_dir: str, name: str | None, user: str | None,
              environment: Mapping[str, str] | None, remove: bool, detach: bool) -> list[str]:
    argv = [engine, "run", "--workdir", working_dir]
    if remove and not detach:
        argv.append("--rm")
    if detach:
        argv.append("--detach")
    for host, spec in volumes.items():
        bind, mode = (spec.get("bind"), spec.get("mode", "rw")) if isinstance(spec, Mapping) else (spec, "rw")
        argv += ["--volume", f"{os.path.abspath(host)}:{bind}:{mode}"]
    for key, value in (environment or {}).items():
        argv += ["--env", f"{key}={value}"]
    if name:
        argv += ["--name", name]
    if user:
        argv += ["--user", user]
    if entry:
        argv += ["--entrypoint", entry[0]]
        command = entry[1:] + command
    return [*argv, image, *command]


def apiDockerCall(
    job: Any,
    image: str,
    parameters: Sequence[Any] | None = None,
    deferParam: int | None = None,
    volumes: Mapping[str, Any] | None = None,
    working_dir: str | None = None,
    containerName: str | None = None,
    entrypoint: str | Sequence[str] | None = None,
    detach: bool = False,
    log_config: Any = None,
    auto_remove: bool | None = None,
    remove: bool = False,
    user: str | None = None,
    environment: Mapping[str, str] | None = None,
    stdout: bool | None = None,
    stderr: bool = False,
    stream: bool = False,
    demux: bool = False,
    streamfile: str | None = None,
    accelerators: Any = None,
    timeout: float = 365 * 24 * 60 * 60,
    **kwargs: Any,
) -> str:
    """Run ``image`` with ``parameters`` and return what it wrote to stdout (Toil's signature).

    ``working_dir`` (default: the current directory) is mounted at ``/data``, the container's
    working directory, unless ``volumes`` are given (then ``working_dir`` is the container's) ({host: {"bind": path, "mode": "rw"}}).
    ``parameters`` as a list of lists runs the commands as a pipeline. ``stderr=True`` adds the
    container's stderr to what is returned. A failing container raises :class:`ContainerError`.
    With ``detach=True`` the container's id is returned. ``streamfile`` also receives the output.
    """
    engine = container_engine()
    working_dir = os.path.abspath(working_dir or os.getcwd())
    inside = working_dir  # with the caller's volumes, their working directory as given
    if volumes is None:
        volumes, inside = {working_dir: {"bind": "/data", "mode": "rw"}}, "/data"
    command, entry = _command(parameters, entrypoint)
    argv = _run_argv(engine, image, command, entry, volumes=volumes, working_dir=inside,
                     name=containerName, user=user, environment=environment,
                     remove=bool(remove or auto_remove or not containerName), detach=detach)
    # poll() takes milliseconds in a C int: Toil's default (a year) means "no limit".
    limit = timeout if timeout < MAX_TIMEOUT else None
    try:
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=limit, check=False)
    except subprocess.TimeoutExpired:
        raise ContainerEngineError(f"the container of image {image!r} ran longer than {timeout} s") from None
    if done.returncode != 0:
        raise ContainerError(image, command, done.returncode, done.stderr)
    output = done.stdout + (done.stderr if stderr else "")
    if detach:
        return done.stdout.strip()
    if streamfile:
        with open(streamfile, "w") as handle:
            handle.write(output)
    return output
