"""The base of batch systems that hand jobs to an HPC scheduler (Slurm; later PBS, LSF, ...).

A scheduler plugin (see :mod:`flow.batchsystems.slurm`) only builds command lines and parses their
output; this module does the bookkeeping, and every external command goes through
:func:`run_command`, which counts the calls per command name (:func:`command_calls`).

Each issued job is one scheduler job whose script exports the job's environment and ``exec`` s
the job wrapper of :mod:`flow.batchsystems.job_wrapper` (what runs on the compute node). A job
that hits the wrapper's precise time limit exits with :data:`TIME_LIMIT_EXIT` after writing a
marker file next to its output, which the leader reports as TIMEOUT; a scheduler's own TIMEOUT is
reported as TIMEOUT too.

Polling never floods the controller: one status call (chunked by :attr:`HPCBatchSystem.chunk_size`
ids) per poll interval for all the jobs in flight, the interval growing from
``poll_interval[0]`` to ``poll_interval[1]`` while nothing changes. A finished job's exit code
comes from that status call when the scheduler gives it there, else from one detail call per
failed job (at most :attr:`HPCBatchSystem.max_detail_calls` per poll), and jobs the scheduler has
forgotten are looked up in its accounting history, one call per chunk.
"""

from __future__ import annotations

import abc
import enum
import logging
import os
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from flow.batchsystems.abstract import (
    BatchConfig,
    BatchJob,
    BatchSystem,
    BatchSystemError,
    ExitReason,
    ImpossibleRequestError,
    JobExit,
    SubmissionError,
    describe_bytes,
    request_problem,
)
from flow.batchsystems.job_wrapper import TIME_LIMIT_EXIT, job_command

__all__ = ["TIME_LIMIT_EXIT", "job_command"]  # the wrapper's, re-exported for the plugins

logger = logging.getLogger(__name__)

#: Seconds an external command may take before it counts as failed.
COMMAND_TIMEOUT = 120.0
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


# ---- external commands ---------------------------------------------------------------------


@dataclass(frozen=True)
class CompletedCommand:
    """What one external command did."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    @property
    def words(self) -> str:
        """The command's own words about what happened (stderr, else stdout), on one line."""
        text = self.stderr.strip() or self.stdout.strip()
        return " / ".join(line.strip() for line in text.splitlines() if line.strip())


class CommandError(BatchSystemError):
    """An external scheduler command failed; ``detail`` is its words."""

    def __init__(self, argv: Sequence[str], detail: str, returncode: int | None = None) -> None:
        shown = shlex.join(argv)
        if len(shown) > 200:
            shown = shown[:200] + "..."
        status = "" if returncode is None else f" (exit status {returncode})"
        super().__init__(f"{shown} failed{status}: {detail}")
        self.argv = tuple(argv)
        self.detail = detail
        self.returncode = returncode


_calls: Counter[str] = Counter()
_polls = [0]  # poll rounds of all HPC batch systems in this process
_calls_lock = threading.Lock()


def run_command(
    argv: Sequence[str], input: str | None = None, timeout: float = COMMAND_TIMEOUT
) -> CompletedCommand:
    """Run one external command; every scheduler command goes through here (and is counted).

    A non-zero exit status is returned, not raised; a command that cannot be started or does
    not end within ``timeout`` seconds raises :class:`CommandError`.
    """
    name = os.path.basename(argv[0])
    with _calls_lock:
        _calls[name] += 1
    started = time.monotonic()
    try:
        done = subprocess.run(
            list(argv),
            input=input,
            stdin=subprocess.DEVNULL if input is None else None,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except FileNotFoundError:
        raise CommandError(argv, f"{name} is not installed (not found on PATH)") from None
    except subprocess.TimeoutExpired:
        raise CommandError(argv, f"no answer within {timeout:g} s") from None
    except OSError as exc:
        raise CommandError(argv, str(exc)) from exc
    seconds = time.monotonic() - started
    return CompletedCommand(tuple(argv), done.returncode, done.stdout, done.stderr, seconds)


def command_calls() -> dict[str, int]:
    """How many times each external command ran in this process (by command name)."""
    with _calls_lock:
        return dict(_calls)


def poll_rounds() -> int:
    """How many poll rounds (each one status call per chunk of jobs) ran in this process."""
    with _calls_lock:
        return _polls[0]


def reset_command_calls() -> None:
    """Zero :func:`command_calls` and :func:`poll_rounds`."""
    with _calls_lock:
        _calls.clear()
        _polls[0] = 0


def chunks(items: Sequence[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), max(1, size)):
        yield list(items[start : start + size])


# ---- what a scheduler says about a job -----------------------------------------------------


class Phase(enum.Enum):
    QUEUED = "queued"  # waiting (pending, held, suspended, requeued, ...)
    RUNNING = "running"  # started and not yet over (completing counts as running)
    ENDED = "ended"


@dataclass(frozen=True)
class JobStatus:
    """One job's state, parsed from a scheduler command's output.

    ``reason`` is None for a job that ended by itself (judged by ``exit_code`` / ``signal``) and
    the specific reason otherwise (TIMEOUT, OUT_OF_MEMORY, CANCELLED, ...). ``exit_code`` is None
    when this output does not tell it.
    """

    scheduler_id: str
    phase: Phase
    state: str  # the scheduler's own word, e.g. "FAILED"
    reason: ExitReason | None = None
    exit_code: int | None = None
    signal: int = 0
    elapsed: float | None = None  # seconds it has run (or ran)
    note: str = ""  # the scheduler's reason word, e.g. "NonZeroExitCode"
    node: str = ""  # the node it runs on, where the status command tells (for a cluster scaler)


# ---- the job script -----------------------------------------------------------------------


def job_script(command: Sequence[str], environment: dict[str, str], title: str) -> str:
    """A ``/bin/sh`` batch script that sets ``environment`` and ``exec`` s ``command``."""
    lines = ["#!/bin/sh", f"# flow job: {' '.join(title.split())}"]
    for name, value in environment.items():
        if not _ENV_NAME.match(name):
            raise ValueError(f"environment variable name {name!r} is not valid in a job script")
        lines.append(f"export {name}={shlex.quote(value)}")
    lines.append("exec " + shlex.join(command))
    return "\n".join(lines) + "\n"


# ---- the batch system ----------------------------------------------------------------------


@dataclass
class _Tracked:
    """An issued job that has not been reported yet."""

    job: BatchJob
    scheduler_id: str
    output: Path
    marker: Path | None
    started: float | None = None  # time.monotonic() at which it started running
    misses: int = 0  # polls in a row in which no source knew the job
    told: str = ""  # the stuck note the user was last told about


class HPCBatchSystem(BatchSystem):
    """Issue, poll, kill and account for jobs of an HPC scheduler; subclasses speak its commands.

    Subclasses implement the ``*_command`` builders and ``parse_*`` parsers below, nothing else.
    """

    scheduler: str = "scheduler"  # its name, for messages ("Slurm")
    poll_interval: tuple[float, float] = (1.0, 15.0)  # seconds: first, and at most (backoff)
    backoff: float = 1.5
    chunk_size: int = 500  # job ids per status/history/cancel call
    max_detail_calls: int = 20  # per poll
    lost_after: int = 3  # polls in a row in which nothing knows a job
    #: The scheduler's words for a queued job that will not start as things stand (a held job,
    #: a request no node or partition can meet); the user is told once per job and word.
    stuck_notes: frozenset[str] = frozenset()
    outage_limit: float = 600.0  # seconds of failing status calls before wait() gives up
    kill_timeout: float = 60.0  # seconds kill/shutdown wait for cancelled jobs to be gone
    submit_attempts: int = 3

    def __init__(self, config: BatchConfig) -> None:
        super().__init__(config)
        self.tag = f"flow:{uuid.uuid4().hex[:16]}"  # begin_run replaces it with the run id
        self._jobs: dict[int, _Tracked] = {}
        self._interval = self.poll_interval[0]
        self._next_poll = 0.0
        self._failing_since: float | None = None
        self._unsure_submissions = False
        self._output_dir: Path | None = None
        wait = config.extra.get("statePollingWait")  # Toil's: seconds between state queries
        if isinstance(wait, (int, float)) and wait > 0:
            self.poll_interval = (float(wait), max(float(wait), self.poll_interval[1]))
            self._interval = self.poll_interval[0]
        #: Toil's --batchLogsDir: the scheduler's own job output goes there and is kept.
        logs_dir = config.extra.get("batchLogsDir")
        self._batch_logs_dir = Path(str(logs_dir)).absolute() if logs_dir else None

    # -- what a scheduler plugin supplies ----------------------------------------------------

    @abc.abstractmethod
    def submit_command(self, job: BatchJob, output: str) -> list[str]:
        """The command that submits ``job`` (its script comes on stdin), output to ``output``."""

    @abc.abstractmethod
    def parse_submit(self, done: CompletedCommand, job: BatchJob) -> str:
        """The new job's scheduler id; SubmissionError when the scheduler refused the job."""

    @abc.abstractmethod
    def is_transient(self, done: CompletedCommand) -> bool:
        """Did the command fail for a passing reason (controller busy or unreachable)?"""

    @abc.abstractmethod
    def status_command(self, scheduler_ids: Sequence[str]) -> list[str]:
        """One call giving the state of all these jobs (including recently ended ones)."""

    @abc.abstractmethod
    def parse_status(self, done: CompletedCommand) -> dict[str, JobStatus]:
        """States by scheduler id; jobs the scheduler does not know are left out."""

    @abc.abstractmethod
    def detail_command(self, scheduler_id: str) -> list[str]:
        """One call giving one ended job's exit code."""

    @abc.abstractmethod
    def parse_detail(self, done: CompletedCommand, scheduler_id: str) -> JobStatus | None:
        """The job's state with its exit code; None if the scheduler no longer knows it."""

    @abc.abstractmethod
    def history_command(self, scheduler_ids: Sequence[str]) -> list[str] | None:
        """One call to the accounting history for jobs the scheduler forgot (None: no history)."""

    @abc.abstractmethod
    def parse_history(self, done: CompletedCommand) -> dict[str, JobStatus]:
        """Ended jobs' states by scheduler id."""

    @abc.abstractmethod
    def cancel_command(self, scheduler_ids: Sequence[str]) -> list[str]:
        """One call cancelling all these jobs."""

    @abc.abstractmethod
    def leftovers_command(self) -> list[str]:
        """One call listing this user's queued and running jobs with their tags."""

    @abc.abstractmethod
    def parse_leftovers(self, done: CompletedCommand, tag: str) -> list[str]:
        """Scheduler ids of the listed jobs that carry ``tag``."""

    # -- the contract ------------------------------------------------------------------------

    def check_fits(self, job: BatchJob) -> None:
        problem = request_problem(job, *self.job_limits(), "allowed")
        if problem is not None:
            raise ImpossibleRequestError(job.name, problem)

    def issue(self, job: BatchJob) -> int:
        batch_id = self._new_batch_id(job)
        output, marker = self._paths(batch_id, job)
        try:
            script = job_script(self._job_command(job, marker), self._environment(job), job.name)
        except ValueError as exc:
            raise SubmissionError(job.name, str(exc)) from None
        scheduler_id = self._submit(job, script, str(output))
        self._jobs[batch_id] = _Tracked(job, scheduler_id, output, marker)
        now = time.monotonic()
        self._interval = self.poll_interval[0]
        self._next_poll = min(self._next_poll, now + self._interval) if len(self._jobs) > 1 else (
            now + self._interval
        )
        logger.debug("%s job %s is %s", self.scheduler, scheduler_id, job.name)
        return batch_id

    def kill(self, batch_ids: Iterable[int]) -> None:
        self._check_open()
        victims = [self._jobs.pop(b) for b in set(batch_ids) if b in self._jobs]
        if victims:
            self._cancel_and_await([t.scheduler_id for t in victims])
            for tracked in victims:
                self._forget_files(tracked)

    def wait(self, timeout: float) -> list[JobExit]:
        self._check_open()
        deadline = time.monotonic() + max(0.0, timeout)
        while True:
            now = time.monotonic()
            if self._jobs and now >= self._next_poll:
                exits = self._poll_safely()
                if exits:
                    return exits
                now = time.monotonic()
            if now >= deadline:
                return []
            wake = min(deadline, self._next_poll) if self._jobs else deadline
            time.sleep(max(0.0, wake - now))

    def running(self) -> dict[int, float]:
        now = time.monotonic()
        return {b: now - t.started for b, t in self._jobs.items() if t.started is not None}

    def shutdown(self) -> None:
        if self._closed:
            return
        self._closed = True
        tracked = list(self._jobs.values())
        self._jobs.clear()
        try:
            ids = [t.scheduler_id for t in tracked]
            if self._unsure_submissions:  # a submission may have gone through unseen
                ids += self._leftovers(set(ids))
            if ids:
                self._cancel_and_await(ids)
        except BatchSystemError as exc:
            logger.error("could not cancel %s jobs at shutdown: %s", self.scheduler, exc)
        for job in tracked:
            self._forget_files(job)
        if self._output_dir is not None:
            try:
                self._output_dir.rmdir()  # kept when failed jobs' output is in it
            except OSError:
                pass

    @classmethod
    def cancel_run(cls, run_id: str, config: BatchConfig) -> list[str]:
        system = cls(config)
        try:
            system.tag = f"flow:{run_id}"
            leftovers = system._leftovers(set())
            if leftovers:
                system._cancel_and_await(leftovers)
            return leftovers
        finally:
            system.shutdown()

    def begin_run(self, run_id: str, restart: bool) -> None:
        """Tag this run's jobs with ``run_id``; on restart, cancel what an earlier leader left."""
        self._check_open()
        self.tag = f"flow:{run_id}"
        if not restart:
            return
        leftovers = self._leftovers(set())
        if leftovers:
            logger.warning(
                "cancelling %d %s job(s) left behind by an earlier leader of this run: %s",
                len(leftovers), self.scheduler, ", ".join(leftovers[:20]),
            )
            self._cancel_and_await(leftovers)

    # -- submitting --------------------------------------------------------------------------

    def job_limits(self) -> tuple[float | None, int | None, int | None]:
        """--maxCores/--maxMemory/--maxDisk bound each job when given; otherwise (None in the
        options the core passes as ``extra``) the scheduler alone decides what fits."""
        extra = self.config.extra

        def given(option: str) -> bool:
            return option not in extra or extra[option] is not None

        return (
            float(self.config.max_cores) if given("maxCores") else None,
            int(self.config.max_memory) if given("maxMemory") else None,
            int(self.config.max_disk) if given("maxDisk") else None,
        )

    def _paths(self, batch_id: int, job: BatchJob) -> tuple[Path, Path | None]:
        if self._output_dir is None:
            base = Path(self.config.work_dir or tempfile.gettempdir())
            self._output_dir = base / f"flow-{self.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
            if self._batch_logs_dir is not None:
                self._output_dir = self._batch_logs_dir
            self._output_dir.mkdir(parents=True, exist_ok=True)
        output = self._output_dir / f"job-{batch_id}.out"
        if self._batch_logs_dir is not None:  # shared by runs: names that do not collide
            name = "".join(c if c.isalnum() or c in "._-" else "_" for c in job.name)[:60]
            output = self._output_dir / f"flow-{name}-{self.tag.split(':')[-1]}-{os.getpid()}-{batch_id}.out"
        marker = None if job.time_limit is None else self._output_dir / f"job-{batch_id}.timeout"
        return output, marker

    def _job_command(self, job: BatchJob, marker: Path | None) -> list[str]:
        return job_command(
            sys.executable, job.call.function, job.call.args, job.time_limit,
            None if marker is None else str(marker),
        )

    def _environment(self, job: BatchJob) -> dict[str, str]:
        return {**self.config.environment, **job.environment}

    def _submit(self, job: BatchJob, script: str, output: str) -> str:
        """Submit, retrying passing failures (controller busy) a few times with a pause."""
        argv = self.submit_command(job, output)
        error = ""
        for attempt in range(1, self.submit_attempts + 1):
            try:
                done = run_command(argv, input=script)
            except CommandError as exc:
                if exc.returncode is None and "no answer" in exc.detail:
                    self._unsure_submissions = True  # it may have been queued all the same
                error = exc.detail
            except BaseException:  # Ctrl-C or flow kill during sbatch: it may have been queued
                self._unsure_submissions = True
                raise
            else:
                if done.ok or not self.is_transient(done):
                    return self.parse_submit(done, job)
                error = done.words
            if attempt < self.submit_attempts:
                logger.warning("%s refused %s for now (%s); trying again", self.scheduler,
                               job.name, error)
                time.sleep(attempt)
        raise SubmissionError(
            job.name, f"{self.scheduler} did not take it in {self.submit_attempts} attempts: {error}"
        )

    # -- polling -----------------------------------------------------------------------------

    def _poll_safely(self) -> list[JobExit]:
        """Poll once; failing scheduler commands are retried at later polls, for a while."""
        started = time.monotonic()
        with _calls_lock:
            _polls[0] += 1
        try:
            exits, changed = self._poll()
        except CommandError as exc:
            if self._failing_since is None:
                self._failing_since = started
            failing = started - self._failing_since
            if failing > self.outage_limit:
                raise BatchSystemError(
                    f"{self.scheduler} has not answered for {failing:.0f} s: {exc}"
                ) from exc
            logger.warning("%s did not answer (%s); trying again later", self.scheduler, exc)
            exits, changed = [], False
        else:
            self._failing_since = None
        low, high = self.poll_interval
        self._interval = low if changed else min(high, self._interval * self.backoff)
        self._next_poll = time.monotonic() + self._interval
        return exits

    def _poll(self) -> tuple[list[JobExit], bool]:
        """One round: status of every job in flight, exit codes of the ones that ended."""
        by_id = {t.scheduler_id: b for b, t in self._jobs.items()}
        statuses = self._statuses(list(by_id))
        now = time.monotonic()
        changed = False
        ended: dict[str, JobStatus] = {}
        for scheduler_id, batch_id in by_id.items():
            tracked = self._jobs[batch_id]
            status = statuses.get(scheduler_id)
            if status is not None and status.phase is Phase.RUNNING and tracked.started is None:
                tracked.started = now - (status.elapsed or 0.0)
                changed = True
            elif status is not None and status.phase is Phase.ENDED:
                ended[scheduler_id] = status
            elif status is not None and status.phase is Phase.QUEUED:
                self._tell_if_stuck(tracked, status.note)
        self._complete_details(ended)
        missing = [s for s in by_id if s not in statuses]
        ended.update(self._history(missing))
        exits = [self._report(by_id[s], status) for s, status in ended.items()]
        exits += self._lost([by_id[s] for s in missing if s not in ended])
        return exits, changed or bool(exits)

    def _tell_if_stuck(self, tracked: _Tracked, note: str) -> None:
        word = note.split(",")[0].split("(")[0].strip()
        if word in self.stuck_notes and note != tracked.told:
            tracked.told = note
            logger.warning("%s job %s (%s) is waiting and may never start: %s. Check its request "
                           "and the partition, or cancel the run.", self.scheduler,
                           tracked.scheduler_id, tracked.job.name, note)

    def _statuses(self, scheduler_ids: list[str]) -> dict[str, JobStatus]:
        statuses: dict[str, JobStatus] = {}
        for chunk in chunks(scheduler_ids, self.chunk_size):
            statuses.update(self.parse_status(run_command(self.status_command(chunk))))
        return statuses

    def _complete_details(self, ended: dict[str, JobStatus]) -> None:
        """Fill in exit codes the status call did not give, a bounded number per poll (the
        others wait for the next poll); jobs whose details are gone are asked of the history."""
        unknown = [
            s for s, status in ended.items() if status.reason is None and status.exit_code is None
        ]
        for scheduler_id in unknown[self.max_detail_calls :]:
            del ended[scheduler_id]
        for scheduler_id in unknown[: self.max_detail_calls]:
            detail = self.parse_detail(
                run_command(self.detail_command(scheduler_id)), scheduler_id
            )
            if detail is not None and detail.exit_code is not None:
                ended[scheduler_id] = _merge(ended[scheduler_id], detail)
            else:
                history = self._history([scheduler_id]).get(scheduler_id)
                ended[scheduler_id] = _merge(ended[scheduler_id], history)

    def _history(self, scheduler_ids: list[str]) -> dict[str, JobStatus]:
        """Ended jobs found in the accounting history. A history that cannot be read finds
        nothing (the jobs count as lost after a few polls); it does not stop the polling."""
        found: dict[str, JobStatus] = {}
        for chunk in chunks(scheduler_ids, self.chunk_size):
            argv = self.history_command(chunk)
            if argv is None:
                break
            try:
                found.update(self.parse_history(run_command(argv)))
            except CommandError as exc:
                logger.warning("could not read %s's job history: %s", self.scheduler, exc)
                break
        return {s: status for s, status in found.items() if status.phase is Phase.ENDED}

    def _lost(self, batch_ids: list[int]) -> list[JobExit]:
        exits = []
        for batch_id in batch_ids:
            tracked = self._jobs[batch_id]
            tracked.misses += 1
            if tracked.misses < self.lost_after:
                continue
            del self._jobs[batch_id]
            message = (
                f"{self.scheduler} no longer knows job {tracked.scheduler_id}"
                " (not in its queue nor in its accounting history)"
            )
            exits.append(JobExit(batch_id, 1, ExitReason.LOST, None, message))
        return exits

    # -- reporting ---------------------------------------------------------------------------

    def _report(self, batch_id: int, status: JobStatus) -> JobExit:
        tracked = self._jobs.pop(batch_id)
        if status.elapsed is not None:
            wall_time: float | None = status.elapsed
        elif tracked.started is not None:
            wall_time = time.monotonic() - tracked.started
        else:
            wall_time = None
        reason, code, message = self._judge(tracked, status)
        exit_ = JobExit(batch_id, code, reason, wall_time, message)
        if exit_.succeeded:
            self._forget_files(tracked)
            return exit_
        logger.debug("%s job %s (%s) ended: %s", self.scheduler, tracked.scheduler_id,
                     tracked.job.name, message)
        if _has_content(tracked.output):  # kept for the user
            exit_ = replace(exit_, message=f"{message}; its output is in {tracked.output}")
        return exit_

    def _judge(self, tracked: _Tracked, status: JobStatus) -> tuple[ExitReason, int, str]:
        """How the job ended: (reason, exit code, words)."""
        where = f"{self.scheduler} job {tracked.scheduler_id}"
        job = tracked.job
        note = f", {status.note}" if status.note and status.note not in ("None", status.state) else ""
        if status.reason is not None:
            code = -status.signal if status.signal else (status.exit_code or 1)
            words = f"{where} ended {status.state}{note}" if status.reason is ExitReason.FAILED else (
                f"{where} ended {status.state}"
            )
            if status.reason is ExitReason.TIMEOUT and job.time_limit is not None:
                words += f" (its time limit was {job.time_limit:g} s)"
            elif status.reason is ExitReason.OUT_OF_MEMORY:
                words += f" (it asked for {describe_bytes(job.memory)} of memory)"
            elif status.reason is ExitReason.CANCELLED:
                words += " (not by flow: by a user or an administrator)"
            return status.reason, code, words
        if status.signal:
            return ExitReason.FAILED, -status.signal, (
                f"killed by signal {status.signal} ({_signal_name(status.signal)}) ({where})"
            )
        if status.exit_code is None:
            return ExitReason.FAILED, 1, f"{where} ended {status.state}{note} without an exit code"
        code = status.exit_code
        if code == TIME_LIMIT_EXIT and tracked.marker is not None and tracked.marker.exists():
            limit = job.time_limit or 0.0
            return ExitReason.TIMEOUT, code, f"killed after its time limit of {limit:g} s ({where})"
        return ExitReason.FINISHED, code, f"exit code {code} ({where})" if code else ""

    # -- cancelling --------------------------------------------------------------------------

    def _cancel_and_await(self, scheduler_ids: list[str]) -> None:
        """Cancel these jobs (one call per chunk) and wait until none is queued or running."""
        for chunk in chunks(scheduler_ids, self.chunk_size):
            done = run_command(self.cancel_command(chunk))
            if not done.ok:  # e.g. some had ended already; what matters is checked below
                logger.debug("%s: %s", shlex.join(done.argv[:1]), done.words)
        deadline = time.monotonic() + self.kill_timeout
        pause = 0.1
        remaining = scheduler_ids
        while remaining:
            time.sleep(pause)
            statuses = self._statuses(remaining)
            remaining = [s for s in remaining if s in statuses and statuses[s].phase is not Phase.ENDED]
            if remaining and time.monotonic() > deadline:
                logger.warning("%s jobs %s are still not gone %g s after being cancelled",
                               self.scheduler, ", ".join(remaining[:20]), self.kill_timeout)
                return
            pause = min(2.0, pause * 2)

    def _leftovers(self, exclude: set[str]) -> list[str]:
        """Queued or running jobs carrying this run's tag, except ``exclude``."""
        done = run_command(self.leftovers_command())
        if not done.ok:
            raise CommandError(done.argv, done.words, done.returncode)
        return [s for s in self.parse_leftovers(done, self.tag) if s not in exclude]

    def _forget_files(self, tracked: _Tracked) -> None:
        for path in (tracked.marker,) if self._batch_logs_dir is not None else (tracked.output, tracked.marker):
            if path is not None:
                try:
                    path.unlink()
                except FileNotFoundError:
                    pass
                except OSError as exc:
                    logger.debug("could not remove %s: %s", path, exc)


def _merge(base: JobStatus, more: JobStatus | None) -> JobStatus:
    """``base`` completed with what a later, more detailed look (``more``) tells."""
    if more is None:
        return base
    return replace(
        more,
        elapsed=more.elapsed if more.elapsed is not None else base.elapsed,
        note=more.note or base.note,
    )


def _has_content(path: Path) -> bool:
    try:
        return path.stat().st_size > 0
    except OSError:
        return False


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return "unknown signal"

