"""The long-lived worker process of the single-machine batch system.

Forked from the leader (:func:`forked_main`: it starts with everything the leader has imported
and loaded, such as a front-end's parsed documents), or, where forking is not safe, started as
``python -m flow.batchsystems._pool_worker [leader_pid]``; either way it leads its own session and
talks to the leader over its original stdin/stdout with length-prefixed pickles:

* worker -> leader, once ready: ``("hello", pid, 0)``
* leader -> worker, per job: ``(batch_id, "package.module:function", args, environment)``
* worker -> leader, per job: ``("done", batch_id, exit_code)``

The protocol pipes are moved to private, close-on-exec descriptors at start-up; fd 0 becomes
/dev/null and fd 1 a copy of fd 2, so whatever a job prints cannot corrupt the protocol. Forked
children of a job lose the protocol descriptors too. The worker exits on EOF on its request pipe,
gets SIGTERM when the leader dies (``PR_SET_PDEATHSIG``), and on SIGTERM kills its whole process
group (its session), i.e. itself and every process its jobs started.

The framing helpers here are shared with the leader (:mod:`flow.batchsystems.single_machine`).
"""

from __future__ import annotations

import gc
import io
import logging
import os
import pickle
import signal
import struct
import sys
import traceback
from collections.abc import Iterable, Mapping
from types import FrameType
from typing import NoReturn

from flow.batchsystems.call import flush_std_streams

HEADER = struct.Struct("!I")
_READ_SIZE = 1 << 16
PR_SET_PDEATHSIG = 1

#: (batch_id, function, args, environment)
Request = tuple[int, str, tuple[str, ...], dict[str, str]]
#: ("hello", pid, 0) or ("done", batch_id, exit_code)
Reply = tuple[str, int, int]


def encode(message: object) -> bytes:
    """One frame: a 4-byte big-endian length, then the pickle."""
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return HEADER.pack(len(data)) + data


def decode_frames(buffer: bytearray) -> list[object]:
    """Remove and return the complete frames at the start of ``buffer``."""
    messages: list[object] = []
    start = 0
    while len(buffer) - start >= HEADER.size:
        (size,) = HEADER.unpack_from(buffer, start)
        end = start + HEADER.size + size
        if len(buffer) < end:
            break
        messages.append(pickle.loads(buffer[start + HEADER.size : end]))
        start = end
    if start:
        del buffer[:start]
    return messages


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


class _Protocol:
    """The worker's end of the protocol, on private copies of the original fds 0 and 1."""

    def __init__(self) -> None:
        self.fd_in = os.dup(0)  # os.dup makes non-inheritable (close-on-exec) copies
        self.fd_out = os.dup(1)
        self._buffer = bytearray()
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        try:
            os.dup2(2, 1)
        except OSError:  # no stderr: send job output to /dev/null rather than the protocol
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, 1)
            os.close(null)

    def detach(self) -> None:
        """In a forked child of a job: let go of the protocol so only the worker holds it, and
        of the worker's SIGTERM handler (``Pool.terminate()`` must not kill the whole session)."""
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        for fd in (self.fd_in, self.fd_out):
            try:
                os.close(fd)
            except OSError:
                pass
        self.fd_in = self.fd_out = -1

    def _read_exact(self, size: int) -> bytes | None:
        while len(self._buffer) < size:
            chunk = os.read(self.fd_in, max(_READ_SIZE, size - len(self._buffer)))
            if not chunk:
                return None
            self._buffer += chunk
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data

    def receive(self) -> Request | None:
        """The next request, or None at EOF (the leader is gone or done with us)."""
        header = self._read_exact(HEADER.size)
        if header is None:
            return None
        (size,) = HEADER.unpack(header)
        data = self._read_exact(size)
        if data is None:
            return None
        request: Request = pickle.loads(data)
        return request

    def send(self, reply: Reply) -> None:
        write_all(self.fd_out, encode(reply))


def _kill_session(signum: int, frame: FrameType | None) -> None:
    """SIGTERM: kill the worker's whole process group (it leads its own session)."""
    os.killpg(0, signal.SIGKILL)


def _die_with_parent(leader_pid: int | None) -> None:
    """Ask Linux for SIGTERM when the leader dies; exit now if it already has."""
    if sys.platform.startswith("linux"):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if leader_pid is not None and os.getppid() != leader_pid:
        os._exit(0)  # the leader died before prctl took effect


def _apply_environment(environment: Mapping[str, str]) -> dict[str, str | None]:
    saved: dict[str, str | None] = {}
    for key, value in environment.items():
        saved[key] = os.environ.get(key)
        os.environ[key] = value
    return saved


def _restore_environment(saved: Mapping[str, str | None]) -> None:
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def serve(protocol: _Protocol) -> int:
    """Answer requests until EOF; return the worker's exit status."""
    from flow.batchsystems.call import Function, call_function, resolve

    cache: dict[str, Function] = {}

    def cached_resolve(spec: str) -> Function:
        function = cache.get(spec)
        if function is None:
            function = cache[spec] = resolve(spec)
        return function

    home = os.getcwd()
    me = os.getpid()
    protocol.send(("hello", me, 0))
    while True:
        request = protocol.receive()
        if request is None:
            return 0
        batch_id, function, args, environment = request
        saved = _apply_environment(environment)
        code = call_function(function, args, cached_resolve) & 0xFF  # as a process exit status
        flush_std_streams()
        if os.getpid() != me:  # a forked child of the job returned into our loop
            os._exit(code)
        _restore_environment(saved)
        try:
            os.chdir(home)
        except OSError:  # our start-up directory is gone; stay where the job left us
            pass
        if signal.getsignal(signal.SIGTERM) is not _kill_session:
            signal.signal(signal.SIGTERM, _kill_session)
        protocol.send(("done", batch_id, code))


#: Comma-separated "module" or "module:function" to import (and call) before the first job,
#: so that a front-end's heavy imports overlap with the leader's own start-up.
PRELOAD_VARIABLE = "FLOW_WORKER_PRELOAD"  # = flow.batchsystems.abstract.WORKER_PRELOAD_VARIABLE


def _preload() -> None:
    from flow.batchsystems.call import resolve

    for spec in filter(None, os.environ.get(PRELOAD_VARIABLE, "").split(",")):
        try:
            if ":" in spec:
                resolve(spec)()
            else:
                __import__(spec)
        except Exception as exc:  # noqa: BLE001 - a failed warm-up only costs time later
            print(f"flow worker: preloading {spec} failed: {exc}", file=sys.stderr)


def main(argv: list[str] | None = None, forked: bool = False) -> int:
    args = sys.argv[1:] if argv is None else argv
    protocol = _Protocol()
    if forked:
        _fresh_std_streams()
    signal.signal(signal.SIGTERM, _kill_session)
    _die_with_parent(int(args[0]) if args else None)
    os.register_at_fork(after_in_child=protocol.detach)
    if not forked:
        _preload()
    try:
        return serve(protocol)
    except BrokenPipeError:  # the leader closed our reply pipe
        return 0


def forked_main(
    fd_in: int, fd_out: int, leader_pid: int, environment: Mapping[str, str], close: Iterable[int]
) -> NoReturn:
    """The life of a worker forked from the leader: the same loop as a started worker, on the
    request pipe ``fd_in`` and reply pipe ``fd_out``. ``close`` are the leader's descriptors this
    process must not hold (other workers' pipes, so that they still see EOF). Never returns: the
    leader's stack below this call, its atexit handlers and buffers are not this process's."""
    code = 1
    try:
        os.setsid()
        gc.freeze()  # never collect (or touch, and so copy) what the leader left in memory
        for fd in close:
            try:
                os.close(fd)
            except OSError:
                pass
        os.dup2(fd_in, 0)
        os.dup2(fd_out, 1)
        os.close(fd_in)
        os.close(fd_out)
        _adopt_environment(environment)
        code = main([str(leader_pid)], forked=True)
    except BaseException:  # noqa: BLE001 - reported on stderr; the leader sees the worker die
        traceback.print_exc()
    finally:
        flush_std_streams()
        os._exit(code)


def _fresh_std_streams() -> None:
    """sys.stdin/stdout/stderr on this process's fds 0, 1 and 2, as a started interpreter has
    them, rather than whatever the leader had put there (a test runner's capture objects)."""
    sys.stdin = open(0, closefd=False)
    if os.environ.get("PYTHONUNBUFFERED") or getattr(sys.__stdout__, "write_through", False):
        sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), write_through=True)
        sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), write_through=True)
    else:
        sys.stdout = open(1, "w", closefd=False)
        sys.stderr = open(2, "w", buffering=1, closefd=False)


def _adopt_environment(environment: Mapping[str, str]) -> None:
    """What a started worker gets at interpreter start: the batch system's environment, its
    PYTHONPATH also on sys.path; and no log file handler of the leader's (--logFile)."""
    os.environ.update(environment)
    for entry in reversed(environment.get("PYTHONPATH", "").split(os.pathsep)):
        if entry and entry not in sys.path:
            sys.path.insert(0, entry)
    for logger in [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]:
        if isinstance(logger, logging.Logger):
            for handler in list(logger.handlers):
                if isinstance(handler, logging.FileHandler):
                    logger.removeHandler(handler)


if __name__ == "__main__":
    sys.exit(main())
