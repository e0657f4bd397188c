"""Torture suite: kill -9 the leader at random moments of a workflow, restart it, check the answer.

    python tests/torture.py --kills 20 --seed 1                # python, cwl and wdl in turn
    python tests/torture.py --kills 3 --seed 7 --only cwl
    python tests/torture.py --kills 20 --workdir /tmp/t --keep  # keep the scratch for a look

For each front-end (a 1,000-job workflow on flow's Python API, a CWL scatter run with
``flow-cwl --no-container``, a WDL scatter run with ``flow-wdl --container none``; see
tests/torture_workloads.py) it:

1. runs the workflow once undisturbed, timing when its jobs end;
2. draws ``--kills`` moments uniformly over that run's length (seeded) and replays them: each is
   "when N jobs have ended, plus S seconds" as in the undisturbed run (before the first job or
   after the last one: S seconds after the start or after the last job), so kills land in
   start-up, among the jobs, and in end-of-run work alike. At each, the leader process gets
   SIGKILL (its pool workers die with it), the suite waits until every process of the run is
   gone, then starts the same command with ``--restart``; the next kill hits the restarted run;
   after the last one the run must finish with exit code 0 and the answer. A kill before the
   first job of a new run waits for that first job (before it the workflow is not stored and
   cannot be resumed);
3. in every third run of a leader also SIGKILLs one pool worker that is running a job (the
   run must then retry the job);
4. prints one line: ``<front-end>: N/N resumed, answers correct, extra re-runs R``, or what
   went wrong. "resumed": kills after which ``--restart`` carried on. "answers correct": the
   final output equals the known answer and every job finished. R: runs of a job beyond its
   first that no kill explains. A kill explains one more run of each job in flight at that
   moment: per worker process (each job's marker names its worker's session), the last job it
   started; for a killed worker, its job. Such a job's end marker may be written while its
   completion is not yet stored, so "started and not ended" alone would be too strict.

A run that goes wrong (a restart that fails, a wrong answer) is reported and the remaining
kills go to a fresh run, so that one line tells all that went wrong. A kill that comes too late
is not counted, and the remaining kills are drawn again for a fresh run: when the run had
finished, or had exported its answer and removed its whole job store (the answer is still
checked; a store removed only in part must resume like any other). Exit code 0 only when every
line reads N/N, correct and 0. Linux only (/proc, PR_SET_CHILD_SUBREAPER).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torture_procs as procs
from torture_workloads import Run, Workload, cwl_workload, python_workload, read_text, wdl_workload

#: Seconds between looks at the run log and the leader.
POLL = 0.02
#: Seconds the processes of a killed leader get to end (the machine may be loaded).
GONE_DEADLINE = 120.0
#: Runs that may go wrong before a front-end's torture stops.
MAX_PROBLEMS = 5


class TortureError(Exception):
    """Something the suite checks went wrong: the message says what, for the report line."""


@dataclass(frozen=True)
class Moment:
    """When to kill: once ``ended`` distinct jobs have ended, ``offset`` seconds later; with
    ``ended`` -1, ``offset`` seconds after the leader started."""

    ended: int
    offset: float


class RunLog:
    """The markers jobs append to ``runs.log``, read incrementally."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._pos = 0
        self._partial = b""
        self.events: list[tuple[str, str, str]] = []  # (S or E, job, session)
        self.ended: set[str] = set()

    def update(self) -> None:
        try:
            with open(self.path, "rb") as handle:
                handle.seek(self._pos)
                data = handle.read()
        except FileNotFoundError:
            return
        self._pos += len(data)
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()
        for line in lines:
            parts = line.decode(errors="replace").split()
            if len(parts) != 3 or parts[0] not in ("S", "E"):
                raise TortureError(f"garbled line in {self.path}: {line!r}")
            self.events.append((parts[0], parts[1], parts[2]))
            if parts[0] == "E":
                self.ended.add(parts[1])

    def in_flight(self, since: int) -> set[str]:
        """Jobs a kill may cut short, from the events since index ``since``: for each worker
        session, the last job it started, and every job started and not ended."""
        last: dict[str, str] = {}
        open_jobs: Counter[str] = Counter()
        for kind, job, session in self.events[since:]:
            if kind == "S":
                last[session] = job
                open_jobs[job] += 1
            elif open_jobs[job] > 0:
                open_jobs[job] -= 1
        return set(last.values()) | {job for job, count in open_jobs.items() if count > 0}

    def running_sessions(self, since: int) -> list[str]:
        """Sessions whose last marker since ``since`` is a start (their worker runs a job)."""
        state: dict[str, str] = {}
        for kind, _job, session in self.events[since:]:
            state[session] = kind
        return sorted(session for session, kind in state.items() if kind == "S")


@dataclass
class Leader:
    """One leader process and what it printed."""

    run: Run
    popen: subprocess.Popen[bytes]
    stdout: str
    stderr: str
    #: Killed after it had exported its answer and removed its job store: nothing left to resume.
    over_before_kill: bool = False

    def output(self) -> str:
        with open(self.stdout) as handle:
            return handle.read()

    def error_tail(self, lines: int = 12) -> str:
        with open(self.stderr, errors="replace") as handle:
            tail = handle.read().strip().splitlines()[-lines:]
        return " | ".join(tail) or "(nothing on stderr)"


@dataclass
class Tally:
    """What one front-end's torture came to."""

    name: str
    kills: int = 0
    resumed: int = 0
    worker_kills: int = 0
    late_kills: int = 0
    explained: int = 0  # re-runs of jobs in flight at a kill
    extra: int = 0
    rounds: int = 0
    clean_seconds: float = 0.0
    problems: list[str] = field(default_factory=list)

    def line(self, wanted: int) -> str:
        head = f"{self.name}: {self.resumed}/{wanted} resumed"
        if self.problems:
            return f"{head}, FAILED ({len(self.problems)}): {' || '.join(self.problems)}"
        return f"{head}, answers correct, extra re-runs {self.extra}"

    def ok(self, wanted: int) -> bool:
        return not self.problems and self.resumed == wanted and self.extra == 0


class Round:
    """One workflow run from a fresh job store to its end, through any number of kills."""

    def __init__(self, workload: Workload, scratch: str, rng: random.Random, tally: Tally) -> None:
        self.workload = workload
        self.scratch = scratch
        self.rng = rng
        self.tally = tally
        os.makedirs(os.path.join(scratch, "work"))
        self.log = RunLog(os.path.join(scratch, "runs.log"))
        self.allowed: Counter[str] = Counter()  # re-runs explained by kills, per job
        self.segment = 0
        self.timeline: list[tuple[float, int]] = []  # (seconds since start, jobs ended)
        self.after_kill = ""  # what the last kill left, for a report of a failed restart
        self.last_killed: Leader | None = None

    def start(self, restart: bool) -> Leader:
        run = self.workload.command(self.scratch, self.segment, restart)
        base = os.path.join(self.scratch, f"leader-{self.segment}")
        with open(base + ".out", "wb") as out, open(base + ".err", "wb") as err:
            popen = subprocess.Popen(run.argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                     cwd=self.scratch, start_new_session=True)
        return Leader(run, popen, base + ".out", base + ".err")

    def segment_run(self, moment: Moment | None, kill_worker: bool, deadline: float) -> Leader | None:
        """Start (or restart) the leader and watch it: kill it at ``moment`` and return None, or
        return it once it exits by itself."""
        leader = self.start(restart=self.segment > 0)
        since = len(self.log.events)
        began = time.monotonic()
        fire_at = None
        worker_after = self.rng.randint(1, 10) if kill_worker else None  # markers before it
        end = began + deadline
        while True:
            self.log.update()
            now = time.monotonic()
            self.timeline.append((now - began, len(self.log.ended)))
            if leader.popen.poll() is not None:
                return leader
            if now > end:
                raise TortureError(f"run {self.segment} did not end within {deadline:.0f} s "
                                   f"(log {self.scratch})")
            if worker_after is not None and len(self.log.events) - since >= worker_after:
                if self.kill_worker(leader, since):
                    worker_after = None
            if moment is not None and fire_at is None and self.reached(moment):
                fire_at = max(now, began + moment.offset) if moment.ended < 0 else now + moment.offset
            if fire_at is not None and now >= fire_at:
                return self.kill_leader(leader, since)
            time.sleep(POLL)

    def reached(self, moment: Moment) -> bool:
        if moment.ended < 0:  # a fresh run is resumable once its first job has run
            return self.segment > 0 or len(self.log.events) > 0
        return len(self.log.ended) >= moment.ended and (self.segment > 0 or len(self.log.events) > 0)

    def kill_leader(self, leader: Leader, since: int) -> Leader | None:
        """SIGKILL the leader (not its workers: they must die with it), wait until every process
        of the run is gone, note the jobs in flight. None, or the leader if it had exited."""
        if leader.popen.poll() is not None:
            return leader
        os.kill(leader.popen.pid, signal.SIGKILL)
        code = leader.popen.wait()
        procs.wait_all_gone(set(), GONE_DEADLINE, f"processes of the leader killed in run {self.segment}")
        if code != -signal.SIGKILL:  # it exited by itself just before the kill
            return leader
        if not os.path.lexists(leader.run.store) and read_text(leader.run.exported) is not None:
            # The run was over but for printing: a late kill, not counted (the answer is checked).
            leader.over_before_kill = True
            self.tally.late_kills += 1
            return leader
        self.log.update()
        self.allowed.update(self.log.in_flight(since))
        self.after_kill = self.describe_kill(leader, since)
        self.last_killed = leader
        self.tally.kills += 1
        self.segment += 1
        return None

    def describe_kill(self, leader: Leader, since: int) -> str:
        files = sum(len(names) for _, _, names in os.walk(leader.run.store))
        ended = len({job for kind, job, _ in self.log.events[since:] if kind == "E"})
        where = ("after it had exported its answer, in its end-of-run cleanup"
                 if read_text(leader.run.exported) is not None else f"after {ended} jobs ended in it")
        said = [line for line in leader.error_tail(40).split(" | ") if "error" in line.lower()]
        heard = f"; before it, run {self.segment} had said: {said[-1]}" if said else ""
        return f"kill {self.tally.kills + 1} hit run {self.segment} {where}; the job store kept {files} files{heard}"

    def kill_worker(self, leader: Leader, since: int) -> bool:
        """SIGKILL a pool worker that is running a job (chosen at random); False if none is."""
        candidates = []
        for session in self.log.running_sessions(since):
            pid = int(session)
            if procs.parent_of(pid) == leader.popen.pid and procs.session_of(pid) == pid:
                candidates.append(pid)
        if not candidates:
            return False
        pid = self.rng.choice(candidates)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return False
        procs.wait_for(lambda: not procs.alive(pid), GONE_DEADLINE, f"killed worker {pid} to end")
        self.log.update()
        jobs = [job for kind, job, session in self.log.events[since:] if kind == "S" and session == str(pid)]
        self.allowed.update(jobs[-1:])
        self.tally.worker_kills += 1
        return True

    def check(self, leader: Leader) -> int:
        """After the leader exited by itself: its exit code, answer and every job's runs. Returns
        the extra re-runs; TortureError on anything else."""
        code = leader.popen.returncode
        procs.wait_all_gone(set(), GONE_DEADLINE, f"processes of the leader of run {self.segment}")
        self.log.update()
        what = "the first run" if self.segment == 0 else f"--restart after kill {self.tally.kills}"
        if code != 0 and not leader.over_before_kill:
            raise TortureError(f"{what} exited {code}{self.context()}: {leader.error_tail()}")
        answer = (read_text(leader.run.exported) if leader.over_before_kill
                  else self.workload.answer_of(leader.run, leader.output()))
        if answer != self.workload.answer:
            got = "no output" if answer is None else f"{len(answer.splitlines())} lines differing"
            raise TortureError(f"{what}: wrong answer ({got}; expected {len(self.workload.answer.splitlines())} lines)")
        missing = [job for job in self.workload.jobs if job not in self.log.ended]
        if missing:
            raise TortureError(f"{what}: jobs that never finished: {', '.join(missing[:10])}")
        runs = Counter(job for kind, job, _ in self.log.events if kind == "S")
        self.tally.explained += sum(min(n - 1, self.allowed[job]) for job, n in runs.items())
        return self.extra_runs()

    def context(self) -> str:
        """What the kill before a failed restart hit, and how the run had done until then."""
        if self.segment == 0:
            return ""
        text = self.after_kill
        if self.last_killed is not None:
            answer = read_text(self.last_killed.run.exported)
            if answer is not None:
                verdict = "correct" if answer == self.workload.answer else "WRONG"
                text += f"; the answer it had exported was {verdict}, extra re-runs until then {self.extra_runs()}"
        return f" ({text})"

    def extra_runs(self) -> int:
        """Runs of jobs beyond their first that no kill explains (named on stderr)."""
        runs = Counter(job for kind, job, _ in self.log.events if kind == "S")
        unknown = sorted(set(runs) - set(self.workload.jobs))
        if unknown:
            raise TortureError(f"markers of jobs the workflow does not have: {', '.join(unknown[:10])}")
        extra = {job: n - 1 - self.allowed[job] for job, n in runs.items() if n - 1 > self.allowed[job]}
        if extra:
            sample = ", ".join(f"{job} ran {runs[job]} times" for job in sorted(extra)[:10])
            print(f"{self.workload.name}: re-runs no kill explains: {sample}", file=sys.stderr)
        return sum(extra.values())


def clean_run(workload: Workload, scratch: str, rng: random.Random, tally: Tally) -> tuple[list[tuple[float, int]], float]:
    """Run undisturbed; its timeline (seconds, jobs ended) and its length in seconds."""
    round_ = Round(workload, scratch, rng, tally)
    began = time.monotonic()
    leader = round_.segment_run(None, False, 3600.0)
    assert leader is not None
    length = time.monotonic() - began
    tally.clean_seconds = length
    tally.extra += round_.check(leader)
    return round_.timeline, length


def moments(timeline: list[tuple[float, int]], length: float, count: int, rng: random.Random) -> list[Moment]:
    """``count`` kill moments drawn uniformly over the undisturbed run, in order."""
    first_job = next((t for t, ended in timeline if ended > 0), length)
    out = []
    for at in sorted(rng.uniform(0.0, length) for _ in range(count)):
        ended = max((e for t, e in timeline if t <= at), default=0)
        if ended == 0 and at < first_job:
            out.append(Moment(-1, at))
        else:
            reached = next(t for t, e in timeline if e >= ended)
            out.append(Moment(ended, at - reached))
    return out


def one_round(round_: Round, clean: tuple[list[tuple[float, int]], float], kills: int) -> None:
    """A fresh run, killed at the remaining kills' moments and restarted after each, to its end."""
    timeline, length = clean
    rng, tally = round_.rng, round_.tally
    plan = moments(timeline, length, kills - tally.kills, rng)
    leader = None
    for index in range(len(plan) + 1):
        moment = plan[index] if index < len(plan) else None
        leader = round_.segment_run(moment, round_.segment % 3 == 1, max(600.0, 20 * length))
        if leader is not None:
            break
        tally.resumed += 1  # counted back below if the restart fails
    assert leader is not None
    try:
        tally.extra += round_.check(leader)
    except TortureError:
        tally.resumed -= 1 if round_.segment > 0 else 0
        raise


def torture(workload: Workload, kills: int, rng: random.Random, base: str) -> Tally:
    """Kill, restart and check one front-end's workflow until ``kills`` kills have landed. A run
    that goes wrong is reported and the remaining kills go to a fresh run (up to
    :data:`MAX_PROBLEMS`); processes that outlive their leader or a hung run stop it."""
    tally = Tally(workload.name)
    try:
        clean = clean_run(workload, os.path.join(base, "clean"), rng, tally)
        empty = 0
        while tally.kills < kills and len(tally.problems) < MAX_PROBLEMS:
            tally.rounds += 1
            before = tally.kills
            scratch = os.path.join(base, f"round-{tally.rounds}")
            round_ = Round(workload, scratch, rng, tally)
            try:
                one_round(round_, clean, kills)
            except TortureError as exc:
                tally.problems.append(f"{exc} [{scratch}]")
            empty = empty + 1 if tally.kills == before else 0
            if empty and round_.timeline:  # it ran undisturbed, faster than the first (warm caches)
                clean = (round_.timeline, round_.timeline[-1][0])
            if empty >= 3:
                raise TortureError("three fresh runs in a row finished before their first kill")
    except (TortureError, procs.ProcessError) as exc:
        tally.problems.append(str(exc))
    finally:
        procs.kill_everything(set())
    return tally


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=20, help="leader kills per front-end (20)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: drawn and printed)")
    parser.add_argument("--only", choices=["python", "cwl", "wdl"], action="append",
                        help="torture only this front-end (repeatable)")
    parser.add_argument("--python-jobs", type=int, default=1000, help="children of the Python workflow (1000)")
    parser.add_argument("--cwl-jobs", type=int, default=100, help="scattered CWL steps (100)")
    parser.add_argument("--wdl-jobs", type=int, default=100, help="scattered WDL calls (100)")
    parser.add_argument("--pause", type=float, default=0.05, help="seconds each scattered job sleeps (0.05)")
    parser.add_argument("--workdir", default=None, help="where the scratch directories go ($TMPDIR)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch even when all went well")
    args = parser.parse_args(argv)
    if args.kills < 1 or min(args.python_jobs, args.cwl_jobs, args.wdl_jobs) < 1 or args.pause < 0:
        parser.error("--kills and the job counts must be at least 1, --pause not negative")
    return args


def _terminated(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    procs.become_subreaper()
    signal.signal(signal.SIGTERM, _terminated)  # so that the finally blocks end every process
    workloads = {"python": python_workload(args.python_jobs, args.pause / 5),
                 "cwl": cwl_workload(args.cwl_jobs, args.pause),
                 "wdl": wdl_workload(args.wdl_jobs, args.pause)}
    base = tempfile.mkdtemp(prefix="flow-torture-", dir=args.workdir)
    print(f"torture: seed {seed}, {args.kills} kills per front-end, scratch {base}", file=sys.stderr)
    ok = True
    try:
        for name, workload in workloads.items():
            if args.only and name not in args.only:
                continue
            tally = torture(workload, args.kills, random.Random(f"{seed}-{name}"), os.path.join(base, name))
            print(f"{name}: {tally.kills} leader kills in {tally.rounds} run(s), {tally.worker_kills} "
                  f"worker kills, {tally.late_kills} kills after the run had removed its job "
                  f"store (not counted); {tally.explained} re-runs of jobs in flight at a kill",
                  file=sys.stderr)
            print(f"{name}: undisturbed run {tally.clean_seconds:.1f} s", file=sys.stderr)
            print(tally.line(args.kills), flush=True)
            ok = ok and tally.ok(args.kills)
    finally:
        procs.kill_everything(set())
        if ok and not args.keep:
            shutil.rmtree(base, ignore_errors=True)
        else:
            print(f"torture: scratch kept in {base} (reproduce with --seed {seed})", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
