"""The ``flow`` command: look at, clean up and stop the workflow in a job store.

``flow status JOBSTORE``, ``flow stats JOBSTORE``, ``flow clean JOBSTORE``, ``flow kill JOBSTORE``.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import pickletools
import signal
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from flow.batchsystems.abstract import BatchConfig, BatchSystemError
from flow.batchsystems.registry import batch_system_class
from flow.core import leaderlock, records
from flow.core.autoscale import node_usage, terminate_leftover_nodes
from flow.core.description import JobDescription, JobState
from flow.core.exceptions import FlowError
from flow.core.jobinfo import print_job
from flow.core.leaderlock import Leader, read_leader
from flow.core.logs import report
from flow.core.plan import add_plan_arguments, cmd_plan
from flow.core.records import BATCH_SYSTEM, KILL, ROOT, STATUS, UNREADABLE
from flow.core.resources import format_size, machine_cores, machine_disk, machine_memory
from flow.jobstores.abstract import (
    CorruptJobStoreError,
    DamagedRecordError,
    JobStore,
    JobStoreDeletingError,
    JobStoreError,
    JobStoreLockedError,
    NoSuchJobError,
    NoSuchJobStoreError,
)
from flow.jobstores.registry import job_store_class, open_job_store

LOG_LINES = 20
STATES = ("done", "failed", "pending")


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
    #: What is damaged or missing in the store, one sentence each.
    problems: list[str] = field(default_factory=list)


# ---- reading the store ---------------------------------------------------------------------------
_shared_text = records.load_text


def _descriptions(store: JobStore, root: str, problems: list[str]) -> Iterator[JobDescription]:
    """Every readable job reachable from the root; what is missing or damaged goes to ``problems``."""
    seen: set[str] = set()
    stack = [(root, "the root job")]
    while stack:
        job_id, whose = stack.pop()
        if job_id in seen:
            continue
        seen.add(job_id)
        try:
            desc = records.load_description(store, job_id)
        except NoSuchJobError:
            # A successor's record is written before its predecessor names it, and a finished
            # job's successors may be gone once done (deleted): missing only matters if pending.
            continue
        except DamagedRecordError as exc:
            problems.append(f"{exc.item} ({whose}) {exc.problem}.")
            continue
        yield desc
        stack.extend((s, f"a successor of {desc.label}") for s in [*desc.services, *desc.children, *desc.follow_ons])


def _check_store(store: JobStore, root: str | None, problems: list[str]) -> None:
    """The records every restart needs, read as a restart reads them."""
    try:
        records.load_config(store)
    except DamagedRecordError as exc:
        problems.append(f"{exc.item} {exc.problem}.")
    if root is None and next(iter(store.list_jobs()), None) is not None:
        problems.append(f"there are job records but no root record (shared record {ROOT!r}).")


def _missing_files(store: JobStore, desc: JobDescription) -> list[str]:
    """Stored files that a pending job's body names but the store no longer has."""
    raw = desc.body if desc.body is not None else _quiet(lambda: store.read_body(desc.job_id))
    return sorted(set(_missing(store, raw or b"")))


def _quiet(read: Callable[[], bytes]) -> bytes | None:
    try:
        return read()
    except JobStoreError:
        return None


def _missing(store: JobStore, raw: bytes) -> Iterator[str]:
    """Missing files named among a pickle's strings, found without running the pickle (it may
    name the user's classes, which need not import here)."""
    try:
        for op, arg, _ in pickletools.genops(raw):
            if isinstance(arg, str) and op.name.endswith("UNICODE"):
                yield from store.missing_files_in(arg)
    except (ValueError, EOFError):  # a damaged body: reported when the job runs
        return


def read_status(store: JobStore) -> Status:
    result = Status(store.locator, _shared_text(store, STATUS) or "not started", read_leader(store))
    root = _shared_text(store, ROOT)
    _check_store(store, root, result.problems)
    for desc in _descriptions(store, root, result.problems) if root else ():
        if desc.state is not JobState.RAN:
            result.problems.extend(f"the stored file {f} that job {desc.label} ({desc.job_id}) reads is missing."
                                   for f in _missing_files(store, desc))
        log = None if desc.state is JobState.RAN else store.read_log(desc.job_id)
        state = "done" if desc.state is JobState.RAN else "pending" if log is None else "failed"
        (result.internal if desc.hidden else result.counts)[state] += 1
        if log is not None:
            for_good = desc.retries_left == 0 or result.status == "failed"
            tail = log.decode(errors="replace").rstrip().splitlines()[-LOG_LINES:]
            result.failed.append(FailedJob(desc.job_id, desc.label, for_good, desc.hidden, tail))
    return result


# ---- flow status ---------------------------------------------------------------------------------
def _print_problems(st: Status) -> None:
    if st.problems:
        print(f"\nThe job store is damaged ({len(st.problems)} problem(s)); --restart will refuse "
              "or fail where it reads these:", file=sys.stderr)
        for problem in st.problems:
            print(f"  - {problem}", file=sys.stderr)


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
        _print_problems(st)
    if st.problems:
        return 3
    return 2 if args.failIfNotComplete and st.status != "succeeded" else 0


# ---- flow stats ------------------------------------------------------------------------------------
def _records(store: JobStore) -> list[dict[str, Any]]:
    out = []
    for raw in store.read_stats():
        try:
            record = pickle.loads(raw)
        except UNREADABLE as exc:
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
    nodes = node_usage(store, records)  # None unless the run used --provisioner
    if args.json:
        print(json.dumps({"job_store": store.locator, "recorded": bool(records), "kinds": shown,
                          "total": total, "internal_not_shown": hidden, "nodes": nodes}, indent=2))
    elif not records:
        print(f"No statistics in {store.locator}: the run did not use --stats.")
    else:
        _table(shown, total)
        if any(r["hidden"] for r in shown):
            print("* internal jobs (encapsulation, front-ends)")
        if hidden:
            print(f"({hidden} internal job run(s) not shown; --all shows them)")
    if nodes is not None and not args.json:
        _print_nodes(nodes)
    return 0


def _print_nodes(nodes: dict[str, Any]) -> None:
    print(f"\nNodes of the run: {nodes['nodes']} launched, at most {nodes['peak_nodes']} at once")
    print(f"{'node type':<16} {'node-hours':>11}")
    for name, hours in sorted(nodes["node_hours"].items()):
        print(f"{name:<16} {hours:>11.3f}")
    if nodes["idle_fraction"] is not None:
        print(f"idle: {nodes['idle_fraction']:.0%} of the nodes' core-hours ran no job")


# ---- flow clean / flow kill ----------------------------------------------------------------------
def _cancel_leftovers(store: JobStore) -> str:
    """Cancel what the run's gone leader left on its batch system (a cluster's queue); says
    what it did, as a sentence to add to the command's report."""
    system, run = _shared_text(store, BATCH_SYSTEM), records.load_config(store)
    if not system or run is None:
        return ""
    work_dir = tempfile.gettempdir()
    config = BatchConfig(max_cores=machine_cores(), max_memory=machine_memory(),
                         max_disk=machine_disk(work_dir), work_dir=work_dir)
    try:
        cancelled = batch_system_class(system).cancel_run(run.workflow_id, config)
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
    except JobStoreDeletingError:  # an earlier deletion was interrupted: finish it
        job_store_class(args.jobStore)(args.jobStore).destroy()
        print(f"Finished deleting the job store {args.jobStore}.")
        return 0
    try:  # held while deleting, so that no leader starts on the store meanwhile
        leaderlock.take(store, force=args.force)
    except JobStoreLockedError as exc:
        message = leaderlock.locked_message(exc, actor="'flow clean'")
        print(f"flow: error: {message}", file=sys.stderr)
        return 1
    unreadable = _clean_problem(store)
    if unreadable and not args.force:
        print(f"flow: error: refusing to delete the job store {store.locator}: {unreadable} "
              "flow deletes only what it can read; look at it with 'flow status', or delete it "
              "anyway with 'flow clean --force'.", file=sys.stderr)
        return 1
    status = None if unreadable else _shared_text(store, STATUS)
    cancelled = _cancel_leftovers(store) if status == "running" else ""
    cancelled += terminate_leftover_nodes(store)  # a provisioner's nodes (none without --provisioner)
    store.destroy()
    print(f"Deleted the job store {store.locator}.{cancelled}")
    return 0


def _clean_problem(store: JobStore) -> str | None:
    """Why the store cannot be read as a whole (damaged or partial), or None."""
    try:
        root = records.load_root(store)
        _shared_text(store, STATUS)
    except DamagedRecordError as exc:
        return f"{exc.item} {exc.problem}."
    problems: list[str] = []
    _check_store(store, root, problems)
    return " ".join(problems) or None


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
        cancelled = _cancel_leftovers(store) + terminate_leftover_nodes(store)
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
    clean.add_argument("--force", action="store_true",
                       help="delete it even if a leader on another host may be running it, or it is damaged")
    add("kill", cmd_kill, "stop a running workflow and its jobs")
    add_plan_arguments(add("plan", cmd_plan, "predict a run's makespan and node-hours on a cluster of given node types"))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (JobStoreError, OSError, FlowError) as exc:  # a missing, foreign, damaged or unreadable store
        return report(exc)


if __name__ == "__main__":
    sys.exit(main())
