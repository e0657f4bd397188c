"""The local batch system: a pool of pre-started worker processes on this machine.

Instead of a fresh interpreter per job, each job is sent to an idle long-lived worker
(:mod:`flow.batchsystems._pool_worker`) over a pipe and its exit code comes back the same way, so
the per-job overhead is a pickle and two small pipe writes. Each worker leads its own session, so
killing a job (or shutting down) kills the worker's process group: the job and everything it
started. Workers also die with the leader (``PR_SET_PDEATHSIG``).

Scheduling: jobs run when their cores, memory and disk fit into what is free; queued jobs start
first-fit in FIFO order whenever something frees up. The pool starts with one worker and grows when
a job that fits has found no idle worker for :data:`GROW_AFTER` seconds, with at most
:data:`MAX_STARTING` start-ups in flight: an interpreter start costs tens of milliseconds of CPU,
so short jobs are drained by the workers there are, while long jobs still get a worker each.
Idle workers are kept for reuse; a worker that dies is replaced lazily.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import selectors
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import cast

from flow.batchsystems._pool_worker import Reply, decode_frames, encode, forked_main, write_all
from flow.batchsystems.abstract import (
    BatchConfig,
    BatchJob,
    BatchSystem,
    BatchSystemError,
    ExitReason,
    ImpossibleRequestError,
    JobExit,
    request_problem,
)
from flow.batchsystems.call import flush_std_streams

#: "fork" (default): workers are forked from the leader when first needed, so they start with
#: whatever the leader has imported and loaded (a front-end's parsed documents); the leader falls
#: back to "spawn" while it runs threads. "spawn": fresh interpreters (FLOW_WORKER_PRELOAD warms
#: them up), the first one started at once.
START_METHOD_VARIABLE = "FLOW_POOL_START"
#: Worker start-ups allowed in flight at once.
MAX_STARTING = 2
#: Seconds a fitting job waits for an idle worker before the pool grows.
GROW_AFTER = 0.02
#: A worker that dies this many times in a row before saying hello means start-up is broken.
MAX_START_FAILURES = 3
#: Seconds between SIGTERM and SIGKILL at shutdown.
SHUTDOWN_GRACE = 1.0
_EPSILON = 1e-9
_READ_SIZE = 1 << 16

#: (cores, memory, disk): jobs with equal requests queue together.
Shape = tuple[float, int, int]


#: Held back while a worker starts (see _held_signals).
_HELD_SIGNALS = frozenset({signal.SIGINT, signal.SIGTERM})


@contextlib.contextmanager
def _held_signals() -> Iterator[None]:
    """Ctrl-C and SIGTERM wait until a new worker is started and recorded. Arriving during
    ``os.fork``, their Python handler ran inside fork's own callbacks (logging's lock release),
    which print the KeyboardInterrupt as "Exception ignored" and drop it: the run went on as
    if nothing had been pressed. Arriving between the fork and the record, the worker would
    not be shut down with the others."""
    held = signal.pthread_sigmask(signal.SIG_BLOCK, _HELD_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)  # one that came is handled now


class _Worker:
    """The leader's handle on one pool worker process (forked, or started with ``popen``)."""

    def __init__(self, pid: int, fd_in: int, fd_out: int, popen: subprocess.Popen[bytes] | None = None) -> None:
        self.pid = pid
        self.fd_in = fd_in  # requests to the worker
        self.fd_out = fd_out  # replies from the worker
        self.popen = popen
        self.returncode: int | None = None
        os.set_blocking(self.fd_out, False)
        self.buffer = bytearray()
        self.ready = False
        self.batch_id: int | None = None

    @classmethod
    def fork(cls, environment: dict[str, str], close: Iterable[int]) -> _Worker:
        """Fork a worker from this process: it starts with what the leader has loaded."""
        request_r, request_w = os.pipe()
        reply_r, reply_w = os.pipe()
        flush_std_streams()  # else the child would write our buffers too
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child; it never returns
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _HELD_SIGNALS)  # held by _held_signals
            forked_main(request_r, reply_w, os.getppid(), environment, (request_w, reply_r, *close))
        os.close(request_r)
        os.close(reply_w)
        return cls(pid, request_w, reply_r)

    @classmethod
    def spawn(cls, environment: dict[str, str]) -> _Worker:
        """Start a fresh interpreter as a worker (where forking is not safe)."""
        popen = subprocess.Popen(
            [sys.executable, "-m", "flow.batchsystems._pool_worker", str(os.getpid())],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env={**os.environ, **environment},
            start_new_session=True, bufsize=0,
        )
        assert popen.stdin is not None and popen.stdout is not None
        return cls(popen.pid, popen.stdin.fileno(), popen.stdout.fileno(), popen)

    def read(self) -> list[Reply] | None:
        """The complete replies available now; None at EOF (the worker is gone)."""
        try:
            data = os.read(self.fd_out, _READ_SIZE)
        except BlockingIOError:
            return []
        except OSError:
            return None
        if not data:
            return None
        self.buffer += data
        return cast("list[Reply]", decode_frames(self.buffer))

    def signal_group(self, signum: int) -> None:
        """Signal the worker's session. Safe until reaped: an unreaped worker keeps its pid."""
        if self.returncode is not None:
            return
        try:
            os.killpg(self.pid, signum)
        except ProcessLookupError:  # a just-forked worker may not lead its session yet
            try:
                os.kill(self.pid, signum)
            except (ProcessLookupError, PermissionError):
                pass
        except PermissionError:
            pass

    def reap(self) -> int:
        """Kill whatever is left of the worker's session, wait for the worker, close its pipes;
        return its exit status (negative: killed by that signal)."""
        if self.returncode is not None:
            return self.returncode
        self.signal_group(signal.SIGKILL)
        if self.popen is not None:
            self.returncode = self.popen.wait()
            for pipe in (self.popen.stdin, self.popen.stdout):
                if pipe is not None:
                    pipe.close()
        else:
            _, status = os.waitpid(self.pid, 0)
            self.returncode = os.waitstatus_to_exitcode(status)
            for fd in (self.fd_in, self.fd_out):
                os.close(fd)
        return self.returncode


@dataclass
class _Running:
    job: BatchJob
    worker: _Worker
    started: float  # time.monotonic() at dispatch
    deadline: float | None  # time.monotonic() at which the time limit runs out


def _died_message(returncode: int) -> str:
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = "unknown"
        return f"worker process died (signal {-returncode}, {name})"
    return f"worker process died (exit code {returncode})"


class SingleMachineBatchSystem(BatchSystem):
    """Runs worker calls in a pool of local worker processes (see the module docstring)."""

    name = "single_machine"
    title = "single-machine"

    def __init__(self, config: BatchConfig) -> None:
        super().__init__(config)
        self._selector = selectors.DefaultSelector()
        self._queued: dict[int, BatchJob] = {}  # FIFO by batch id
        self._shapes: dict[Shape, deque[int]] = {}  # the queued ids by request, each FIFO
        self._running: dict[int, _Running] = {}
        self._workers: set[_Worker] = set()
        self._idle: list[_Worker] = []  # ready and idle; the most recently used last
        self._starting = 0
        self._start_failures = 0
        self._starved_since: float | None = None  # when a fitting job last found no worker
        self._core_workers = max(1, math.ceil(config.max_cores))
        self._free_cores = float(config.max_cores)
        self._free_memory = int(config.max_memory)
        self._free_disk = int(config.max_disk)
        self._start_method = os.environ.get(START_METHOD_VARIABLE, "fork")
        if self._start_method not in ("fork", "spawn"):
            raise BatchSystemError(f"{START_METHOD_VARIABLE} must be 'fork' or 'spawn', not {self._start_method!r}")
        if self._start_method == "spawn":
            self._start_worker()  # its start-up (and preloading) overlaps the leader's

    # -- the contract ------------------------------------------------------------------------

    def check_fits(self, job: BatchJob) -> None:
        problem = request_problem(job, *self.job_limits(), "available")
        if problem is None and job.accelerators > 0:
            problem = (
                f"asks for {job.accelerators} accelerator(s) but the single-machine batch system"
                " has none"
            )
        if problem is not None:
            raise ImpossibleRequestError(job.name, problem)

    def issue(self, job: BatchJob) -> int:
        scale = self.config.extra.get("scale")  # Toil's --scale: cores times this
        if isinstance(scale, (int, float)) and scale != 1.0:
            job = dataclasses.replace(job, cores=job.cores * scale)
        batch_id = self._new_batch_id(job)
        self._queued[batch_id] = job
        self._shapes.setdefault(self._shape(job), deque()).append(batch_id)
        self._dispatch()
        return batch_id

    def kill(self, batch_ids: Iterable[int]) -> None:
        self._check_open()
        victims: list[_Worker] = []
        for batch_id in batch_ids:
            if self._queued.pop(batch_id, None) is not None:
                continue  # its entry in self._shapes is skipped when it comes up
            running = self._running.pop(batch_id, None)
            if running is not None:
                self._release(running.job)
                running.worker.signal_group(signal.SIGKILL)
                victims.append(running.worker)
        for worker in victims:
            worker.batch_id = None
            self._discard(worker)
        if victims:
            self._dispatch()

    def wait(self, timeout: float) -> list[JobExit]:
        self._check_open()
        deadline = time.monotonic() + max(0.0, timeout)
        while True:
            exits = self._poll(deadline)
            self._dispatch()
            if exits or time.monotonic() >= deadline:
                return exits

    def running(self) -> dict[int, float]:
        now = time.monotonic()
        return {batch_id: now - run.started for batch_id, run in self._running.items()}

    def shutdown(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._queued.clear()
        self._shapes.clear()
        self._running.clear()
        self._idle.clear()
        workers = list(self._workers)
        for worker in workers:
            worker.signal_group(signal.SIGTERM)
        self._await_eof(workers, time.monotonic() + SHUTDOWN_GRACE)
        for worker in workers:
            worker.signal_group(signal.SIGKILL)
        for worker in workers:
            self._discard(worker)
        self._selector.close()

    # -- scheduling --------------------------------------------------------------------------

    @staticmethod
    def _shape(job: BatchJob) -> Shape:
        return (float(job.cores), int(job.memory), int(job.disk))

    def _next_fitting(self, cores: float, memory: int, disk: int) -> int | None:
        """Pop the oldest queued job whose requests fit into the given free resources."""
        best: deque[int] | None = None
        empty: list[Shape] = []
        for shape, ids in self._shapes.items():
            while ids and ids[0] not in self._queued:
                ids.popleft()  # killed while queued
            if not ids:
                empty.append(shape)
            elif (
                shape[0] <= cores + _EPSILON
                and shape[1] <= memory
                and shape[2] <= disk
                and (best is None or ids[0] < best[0])
            ):
                best = ids
        for shape in empty:
            del self._shapes[shape]
        return None if best is None else best.popleft()

    def _dispatch(self) -> None:
        """Start queued jobs that fit on idle workers, first fit in FIFO order; start workers
        for jobs that fit but find no idle worker."""
        if self._closed or not self._queued:
            return
        cores, memory, disk = self._free_cores, self._free_memory, self._free_disk
        waiting: list[int] = []
        while len(waiting) < MAX_STARTING:
            batch_id = self._next_fitting(cores, memory, disk)
            if batch_id is None:
                break
            job = self._queued[batch_id]
            started = False
            while self._idle and not started:
                started = self._start_job(self._idle.pop(), batch_id, job)
            if not started:
                waiting.append(batch_id)  # fits, but (for now) no worker to run it
            cores -= job.cores
            memory -= job.memory
            disk -= job.disk
        for batch_id in reversed(waiting):  # back to the front of their queues
            shape = self._shape(self._queued[batch_id])
            self._shapes.setdefault(shape, deque()).appendleft(batch_id)
        self._grow(len(waiting))

    def _grow(self, starved: int) -> None:
        """Start workers for ``starved`` fitting jobs once they have waited GROW_AFTER."""
        if not starved:
            self._starved_since = None
            return
        now = time.monotonic()
        if self._starved_since is None:
            self._starved_since = now
        if self._workers and now - self._starved_since < GROW_AFTER:
            return
        if len(self._workers) >= self._core_workers and any(
            now - run.started < GROW_AFTER for run in self._running.values()
        ):
            return  # jobs are short: more workers than cores would only compete for CPU
        self._starved_since = now
        for _ in range(min(starved, MAX_STARTING) - self._starting):
            self._start_worker()

    def _start_job(self, worker: _Worker, batch_id: int, job: BatchJob) -> bool:
        """Send ``job`` to an idle worker; False if the worker turned out to be dead."""
        request = (batch_id, job.call.function, tuple(job.call.args), dict(job.environment))
        try:
            write_all(worker.fd_in, encode(request))
        except OSError:  # BrokenPipeError: it died while idle; its EOF is not read yet
            self._discard(worker)
            return False
        del self._queued[batch_id]
        now = time.monotonic()
        deadline = None if job.time_limit is None else now + job.time_limit
        self._running[batch_id] = _Running(job, worker, now, deadline)
        worker.batch_id = batch_id
        self._free_cores -= job.cores
        self._free_memory -= job.memory
        self._free_disk -= job.disk
        return True

    def _release(self, job: BatchJob) -> None:
        if not self._running:  # avoid drift from fractional cores
            self._free_cores = float(self.config.max_cores)
            self._free_memory = int(self.config.max_memory)
            self._free_disk = int(self.config.max_disk)
        else:
            self._free_cores += job.cores
            self._free_memory += job.memory
            self._free_disk += job.disk

    # -- workers -----------------------------------------------------------------------------

    def _start_worker(self) -> None:
        environment = dict(self.config.environment)
        with _held_signals():
            if self._start_method == "fork" and threading.active_count() == 1:
                others = [fd for w in self._workers for fd in (w.fd_in, w.fd_out)]
                worker = _Worker.fork(environment, [*others, self._selector.fileno()])
            else:  # forking a process with threads could copy a lock some thread holds
                worker = _Worker.spawn(environment)
            self._workers.add(worker)
            self._starting += 1
            self._selector.register(worker.fd_out, selectors.EVENT_READ, worker)

    def _discard(self, worker: _Worker) -> int:
        """Forget ``worker``, kill its session and reap it; return its exit status."""
        if worker not in self._workers:
            return worker.returncode if worker.returncode is not None else 0
        self._workers.discard(worker)
        if not worker.ready:
            self._starting -= 1
        elif worker in self._idle:
            self._idle.remove(worker)
        if not self._closed:
            self._selector.unregister(worker.fd_out)
        return worker.reap()

    def _poll(self, deadline: float) -> list[JobExit]:
        """Wait for replies until ``deadline`` (or the next time limit); handle what came."""
        now = time.monotonic()
        limits = [run.deadline for run in self._running.values() if run.deadline is not None]
        grow = [] if self._starved_since is None else [self._starved_since + GROW_AFTER]
        until = min([deadline, *limits, *grow])
        exits: list[JobExit] = []
        for key, _ in self._selector.select(max(0.0, until - now)):
            exits.extend(self._on_readable(key.data))
        if limits:
            exits.extend(self._enforce_time_limits(time.monotonic()))
        return exits

    def _on_readable(self, worker: _Worker) -> list[JobExit]:
        if worker not in self._workers:
            return []  # discarded earlier in this round
        replies = worker.read()
        if replies is None:
            return self._on_worker_death(worker)
        exits: list[JobExit] = []
        for kind, number, code in replies:
            if kind == "hello":
                worker.ready = True
                self._starting -= 1
                self._start_failures = 0
                self._idle.append(worker)
            elif kind == "done":
                run = self._running.pop(number)
                worker.batch_id = None
                self._idle.append(worker)
                self._release(run.job)
                wall_time = time.monotonic() - run.started
                message = f"exit code {code}" if code else ""
                exits.append(JobExit(number, code, ExitReason.FINISHED, wall_time, message))
        return exits

    def _on_worker_death(self, worker: _Worker) -> list[JobExit]:
        batch_id = worker.batch_id
        was_ready = worker.ready
        returncode = self._discard(worker)
        if not was_ready:
            self._start_failures += 1
            if self._start_failures >= MAX_START_FAILURES:
                raise BatchSystemError(
                    f"pool worker processes keep dying before they are ready"
                    f" ({_died_message(returncode)}); see their stderr"
                )
        if batch_id is None:
            return []
        run = self._running.pop(batch_id)
        self._release(run.job)
        wall_time = time.monotonic() - run.started
        return [
            JobExit(batch_id, returncode, ExitReason.FAILED, wall_time, _died_message(returncode))
        ]

    def _enforce_time_limits(self, now: float) -> list[JobExit]:
        expired = [
            (batch_id, run)
            for batch_id, run in self._running.items()
            if run.deadline is not None and run.deadline <= now
        ]
        exits: list[JobExit] = []
        for batch_id, run in expired:
            del self._running[batch_id]
            self._release(run.job)
            run.worker.batch_id = None
            returncode = self._discard(run.worker)
            limit = run.job.time_limit
            message = f"killed after its time limit of {limit:g} s"
            exits.append(
                JobExit(batch_id, returncode, ExitReason.TIMEOUT, now - run.started, message)
            )
        return exits

    def _await_eof(self, workers: list[_Worker], deadline: float) -> None:
        """Read and drop replies until every one of ``workers`` closed its pipe, or ``deadline``."""
        open_workers = {worker for worker in workers if worker in self._workers}
        while open_workers:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            for key, _ in self._selector.select(remaining):
                worker = key.data
                if worker in open_workers and worker.read() is None:
                    open_workers.discard(worker)
                    self._selector.unregister(worker.fd_out)
