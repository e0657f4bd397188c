"""One leader per job store: who holds a store's leader lock, and taking it.

The lock's text is ``"<host> <pid> <process start time>"``, like the ``leader`` record. A lock
whose holder is a dead process on this host (the leader was killed) is taken over; one held from
another host cannot be checked from here, so taking it needs ``--force``.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import psutil

from flow.core import records
from flow.jobstores.abstract import JobStore, JobStoreLockedError


@dataclass
class Leader:
    host: str | None
    pid: int | None
    alive: bool | None  # None: on another host, flow cannot check
    started: float | None = None

    def describe(self) -> str:
        if self.pid is None:
            return "no leader recorded"
        if self.alive is None:
            return f"leader pid {self.pid} on host {self.host}: cannot be checked from here"
        return f"leader pid {self.pid} on this host: {'alive' if self.alive else 'not running'}"


def process_alive(pid: int, started: float | None = None) -> bool:
    """Is ``pid`` running (not a zombie) and, when ``started`` is known, the same process
    that was recorded (a pid reused after the leader died is not the leader)?"""
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        return started is None or abs(process.create_time() - started) < 1.0
    except psutil.Error:
        return False


def parse_leader(text: str | None) -> Leader:
    """A leader from a lock's or ``leader`` record's text; ``alive`` checked on this host only."""
    host, pid_text, started_text, *_ = [*(text or "").split(), "", "", ""]
    if not pid_text.isdigit():
        return Leader(host or None, None, None)
    pid = int(pid_text)
    try:
        started: float | None = float(started_text)
    except ValueError:
        started = None
    if host != os.uname().nodename:
        return Leader(host, pid, None, started)
    return Leader(host, pid, process_alive(pid, started), started)


def read_leader(store: JobStore) -> Leader:
    """Who leads the run: the lock's holder, else the last leader recorded."""
    holder = store.lock_holder()
    return parse_leader(holder if holder is not None else records.load_text(store, records.LEADER))


def identity() -> str:
    """This process as a lock holder."""
    return f"{os.uname().nodename} {os.getpid()} {psutil.Process().create_time()}"


def take(store: JobStore, force: bool = False) -> str:
    """Take ``store``'s leader lock for this process; returns the owner text to release it with.

    JobStoreLockedError, in one paragraph, when a live (or unverifiable) leader holds it."""
    owner = identity()
    store.acquire_lock(owner, lambda holder: force or parse_leader(holder).alive is False)
    return owner


def locked_message(exc: JobStoreLockedError, actor: str = "this one") -> str:
    """The paragraph for a second leader, naming the holder and what to do."""
    leader = parse_leader(exc.holder)
    if leader.pid is None:
        who = f"an unreadable lock ({exc.holder!r})"
    else:
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(leader.started)) if leader.started else "?"
        who = f"the leader pid {leader.pid} on host {leader.host}, running since {since}"
    check = (
        "it is alive" if leader.alive else
        "flow cannot check a process on another host from here" if leader.pid is not None else
        "flow cannot tell whose it is"
    )
    return (
        f"The job store {exc.locator} is in use by {who} ({check}). Two leaders on one job store "
        f"would run its jobs twice and delete each other's files, so {actor} stops here and "
        f"changed nothing. Wait for that run to end, or stop it with 'flow kill {exc.locator}'; "
        "if that leader is certainly gone (its machine crashed), take the store over with --force."
    )
