"""The ``flow`` command: look at, clean up and stop the workflow in a job store.

``flow status JOBSTORE``, ``flow stats JOBSTORE``, ``flow clean JOBSTORE``, ``flow kill JOBSTORE``.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import signal
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import psutil

from flow.batchsystems.abstract import BatchConfig, BatchSystemError
from flow.batchsystems.registry import batch_system_class
from flow.core.description import JobDescription, JobState
from flow.core.jobinfo import print_job
from flow.core.logs import report
from flow.core.records import BATCH_SYSTEM, CONFIG, KILL, LEADER, ROOT, STATUS
from flow.core.resources import format_size, machine_cores, machine_disk, machine_memory
from flow.jobstores.abstract import (
    CorruptJobStoreError,
    JobStore,
    JobStoreError,
    NoSuchJobError,
    NoSuchJobStoreError,
)
from flow.jobstores.registry import open_job_store

LOG_LINES = 20
STATES = ("done", "failed", "pending")
#: Whatever unpickling a damaged record may raise.
_UNREADABLE = (pickle.UnpicklingError, EOFError, TypeError, ValueError, AttributeError, ImportError, IndexError)


@dataclass
class Leader:
    host: str | None
    pid: int | None
    alive: bool | None  # None: on another host, flow cannot check

    def describe(self) -> str:
        if self.pid is None:
            return "no leader recorded"
        if self.alive is None:
            return f"leader pid {self.pid} on host {self.host}: cannot be checked from here"
        return f"leader pid {self.pid} on this host: {'alive' if self.alive else 'not running'}"


@dataclass
class FailedJob:
    job_id: str
    label: str
    for_good: bool
    hidden: bool
    log_tail: list[str]


@dataclass
class Status:
    job_store: str
    status: str
    leader: Leader
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STATES, 0))
    internal: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STATES, 0))
    failed: list[FailedJob] = field(default_factory=list)


# ---- reading the store ---------------------------------------------------------------------------
def _shared_text(store: JobStore, name: str) -> str | None:
    raw = store.read_shared(name)
    if raw is None:
        return None
    try:
        return raw.decode().strip()
    except UnicodeDecodeError:
        raise CorruptJobStoreError(store.locator, f"the shared record {name!r} is not text.") from None


def _process_alive(pid: int, started: float | None = None) -> bool:
    """Is ``pid`` running (not a zombie) and, when ``started`` is known, the same process
    that was recorded (a pid reused after the leader died is not the leader)?"""
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        return started is None or abs(process.create_time() - started) < 1.0
    except psutil.Error:
        return False


def read_leader(store: JobStore) -> Leader:
    """Who leads the run; ``alive`` only when the leader runs on this host (None otherwise)."""
    host, pid_text, started_text, *_ = [*(_shared_text(store, LEADER) or "").split(), "", "", ""]
    if not pid_text.isdigit():
        return Leader(host or None, None, None)
    pid = int(pid_text)
    if host != os.uname().nodename:
        return Leader(host, pid, None)
    try:
        started: float | None = float(started_text)
    except ValueError:
        started = None
    return Leader(host, pid, _process_alive(pid, started))


def _descriptions(store: JobStore, root: str) -> Iterator[JobDescription]:
    """Every job reachable from the root (ids without a description are skipped)."""
    seen: set[str] = set()
    stack = [root]
    while stack:
        job_id = stack.pop()
        if job_id in seen:
            continue
        seen.add(job_id)
        try:
            desc = JobDescription.loads(store.read_job(job_id))
        except NoSuchJobError:
            continue
        except _UNREADABLE as exc:
            raise CorruptJobStoreError(store.locator, f"the description of job {job_id} is unreadable ({exc}).") from None
        yield desc
        stack.extend([*desc.services, *desc.children, *desc.follow_ons])


def read_status(store: JobStore) -> Status:
    result = Status(store.locator, _shared_text(store, STATUS) or "not started", read_leader(store))
    root = _shared_text(store, ROOT)
    for desc in _descriptions(store, root) if root else ():
        log = None if desc.state is JobState.RAN else store.read_log(desc.job_id)
        state = "done" if desc.state is JobState.RAN else "pending" if log is None else "failed"
        (result.internal if desc.hidden else result.counts)[state] += 1
        if log is not None:
            for_good = desc.retries_left == 0 or result.status == "failed"
            tail = log.decode(errors="replace").rstrip().splitlines()[-LOG_LINES:]
            result.failed.append(FailedJob(desc.job_id, desc.label, for_good, desc.hidden, tail))
    return result


# ---- flow status ---------------------------------------------------------------------------------
def _print_status(st: Status) -> None:
    note = ""
    if st.status == "running" and st.leader.alive is False:
        note = " (but its leader is gone: it crashed or was killed; resume it with --restart)"
    print(f"Workflow in {st.job_store}: {st.status}{note}; {st.leader.describe()}")
    running = "; pending includes running jobs" if st.status == "running" else ""
    print("Jobs: " + ", ".join(f"{st.counts[s]} {s}" for s in STATES) + f" ({sum(st.counts.values())} in all{running})")
    if any(st.internal.values()):
        print("Internal jobs: " + ", ".join(f"{st.internal[s]} {s}" for s in STATES))
    for job in st.failed:
        how = "failed for good" if job.for_good else "failed, will be retried"
        print(f"\nFailed job {job.label} ({job.job_id}){' [internal]' if job.hidden else ''}: {how}")
        if job.log_tail:
            print(f"  last {len(job.log_tail)} lines of its log:")
            print("\n".join("    | " + line for line in job.log_tail))


def cmd_status(args: argparse.Namespace) -> int:
    if args.job:
        return print_job(open_job_store(args.jobStore), args.job)
    st = read_status(open_job_store(args.jobStore))
    if args.json:
        print(json.dumps(asdict(st), indent=2))
    else:
        _print_status(st)
    return 2 if args.failIfNotComplete and st.status != "succeeded" else 0


# ---- flow stats ------------------------------------------------------------------------------------
def _records(store: JobStore) -> list[dict[str, Any]]:
    out = []
    for raw in store.read_stats():
        try:
            record = pickle.loads(raw)
        except _UNREADABLE as exc:
            raise CorruptJobStoreError(store.locator, f"a statistics record is unreadable ({exc}).") from None
        if not isinstance(record, dict) or "kind" not in record:
            raise CorruptJobStoreError(store.locator, "a statistics record is not a flow statistics record.")
        out.append(record)
    return out


def _summary(kind: str, records: list[dict[str, Any]]) -> dict[str, Any]:
    n = len(records)
    wall = sum(float(r.get("wall", 0.0)) for r in records)
    cpu = sum(float(r.get("cpu", 0.0)) for r in records)
    return {
        "kind": kind, "hidden": any(r.get("hidden") for r in records), "count": n,
        "wall_total": wall, "wall_mean": wall / n if n else 0.0, "cpu_total": cpu, "cpu_mean": cpu / n if n else 0.0,
        "memory_max": max((int(r.get("memory", 0)) for r in records), default=0),
    }


def _table(rows: list[dict[str, Any]], total: dict[str, Any]) -> None:
    width = max(len("TOTAL"), len("job kind"), *(len(r["kind"]) + 2 for r in rows))
    print(f"{'job kind':<{width}} {'count':>7} {'wall total':>11} {'wall mean':>10} "
          f"{'cpu total':>10} {'cpu mean':>9} {'max memory':>11}")
    for row in [*rows, total]:
        name = row["kind"] + (" *" if row["hidden"] else "")
        print(f"{name:<{width}} {row['count']:>7} {row['wall_total']:>10.3f}s {row['wall_mean']:>9.3f}s "
              f"{row['cpu_total']:>9.3f}s {row['cpu_mean']:>8.3f}s {format_size(row['memory_max']):>11}")


def cmd_stats(args: argparse.Namespace) -> int:
    store = open_job_store(args.jobStore)
    records = _records(store)
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        by_kind.setdefault(str(record["kind"]), []).append(record)
    rows = sorted((_summary(k, v) for k, v in by_kind.items()), key=lambda r: -r["wall_total"])
    shown = [r for r in rows if args.all or not r["hidden"]]
    kept = {r["kind"] for r in shown}
    total = _summary("TOTAL", [r for r in records if str(r["kind"]) in kept]) | {"hidden": False}
    hidden = sum(r["count"] for r in rows if r not in shown)
    if args.json:
        print(json.dumps({"job_store": store.locator, "recorded": bool(records), "kinds": shown,
                          "total": total, "internal_not_shown": hidden}, indent=2))
    elif not records:
        print(f"No statistics in {store.locator}: the run did not use --stats.")
    else:
        _table(shown, total)
        if any(r["hidden"] for r in shown):
            print("* internal jobs (encapsulation, front-ends)")
        if hidden:
            print(f"({hidden} internal job run(s) not shown; --all shows them)")
    return 0


# ---- flow clean / flow kill ----------------------------------------------------------------------
def _cancel_leftovers(store: JobStore) -> str:
    """Cancel what the run's gone leader left on its batch system (a cluster's queue); says
    what it did, as a sentence to add to the command's report."""
    name, raw_config = store.read_shared(BATCH_SYSTEM), store.read_shared(CONFIG)
    if not name or not raw_config:
        return ""
    system = name.decode()
    work_dir = tempfile.gettempdir()
    config = BatchConfig(max_cores=machine_cores(), max_memory=machine_memory(),
                         max_disk=machine_disk(work_dir), work_dir=work_dir)
    try:
        cancelled = batch_system_class(system).cancel_run(pickle.loads(raw_config).workflow_id, config)
    except (KeyError, BatchSystemError) as exc:
        return f" Could not cancel the jobs it may have left on {system}: {exc}."
    if not cancelled:
        return ""
    shown = ", ".join(cancelled[:10]) + (", ..." if len(cancelled) > 10 else "")
    return f" Cancelled the {len(cancelled)} job(s) it had left on {system}: {shown}."


def cmd_clean(args: argparse.Namespace) -> int:
    try:
        store = open_job_store(args.jobStore)
    except NoSuchJobStoreError as exc:
        print(f"flow: nothing to clean: {exc}")
        return 0
    status, leader = _shared_text(store, STATUS), read_leader(store)
    maybe_alive = leader.alive or (leader.alive is None and leader.pid is not None)
    if status == "running" and maybe_alive and not args.force:
        print(f"flow: error: the workflow in {store.locator} is running ({leader.describe()}); "
              "refusing to delete its job store. Stop it with 'flow kill' first, or use --force.",
              file=sys.stderr)
        return 1
    cancelled = _cancel_leftovers(store) if status == "running" else ""
    store.destroy()
    print(f"Deleted the job store {store.locator}.{cancelled}")
    return 0


def _terminate(pid: int) -> str:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return f"; the leader (pid {pid}) had already exited"
    except PermissionError:
        return f"; could not signal the leader (pid {pid}): permission denied"
    return f" and sent SIGTERM to the leader (pid {pid})"


def cmd_kill(args: argparse.Namespace) -> int:
    store = open_job_store(args.jobStore)
    status, leader = _shared_text(store, STATUS), read_leader(store)
    if status != "running":
        print(f"The workflow in {store.locator} is not running (status: {status or 'not started'}); nothing to kill.")
        return 0
    if leader.alive is False:
        cancelled = _cancel_leftovers(store)
        print(f"The workflow in {store.locator} is not running: its {leader.describe()} "
              f"(it crashed or was killed).{cancelled} Resume it with --restart or delete it with "
              "'flow clean'.")
        return 0
    store.write_shared(KILL, b"1")
    done = _terminate(leader.pid) if leader.alive and leader.pid is not None else ""
    print(f"Killing the workflow in {store.locator}: wrote its kill flag{done}. "
          "The leader stops within a few seconds and kills its jobs; resume with --restart.")
    return 0


# ---- entry point -------------------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="flow", description="Inspect and manage flow workflows by job store.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, func: Callable[[argparse.Namespace], int], text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=text, description=text)
        p.add_argument("jobStore", metavar="JOBSTORE", help="the job store (a directory such as ./js, or file:./js)")
        p.set_defaults(func=func)
        return p

    status = add("status", cmd_status, "show a workflow's state, job counts and failed jobs with their logs")
    status.add_argument("--failIfNotComplete", action="store_true", help="exit with 2 unless the workflow succeeded")
    status.add_argument("--json", action="store_true", help="print machine-readable JSON")
    status.add_argument("--job", metavar="ID", help="show one job: its state, log and, if it failed, its last events")
    stats = add("stats", cmd_stats, "show time and memory per job kind (of a run with --stats)")
    stats.add_argument("--all", action="store_true", help="include front-ends' internal job kinds (marked *)")
    stats.add_argument("--json", action="store_true", help="print machine-readable JSON")
    clean = add("clean", cmd_clean, "delete the job store")
    clean.add_argument("--force", action="store_true", help="delete it even if its workflow is running")
    add("kill", cmd_kill, "stop a running workflow and its jobs")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (JobStoreError, OSError) as exc:  # a missing, foreign, damaged or unreadable store
        return report(exc)


if __name__ == "__main__":
    sys.exit(main())
