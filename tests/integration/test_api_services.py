"""Services end to end: a real TCP server started by Job.Service, used by the successors."""

from __future__ import annotations

import argparse
import os
import socket
import threading
import time
from pathlib import Path

import pytest

from flow.core.common import Flow
from flow.core.job import Job
from tests.integration._util import append_line, read_lines

SMALL = {"cores": 0.1, "memory": "50M"}


class UpperCaseServer(Job.Service):
    """Answers each line it receives with the line in upper case and the server's pid."""

    def __init__(self, events_log: str) -> None:
        super().__init__(cores=0.1, memory="50M")
        self.events_log = events_log

    def start(self, job: Job) -> int:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self._sock.settimeout(0.1)
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()
        port = self._sock.getsockname()[1]
        append_line(self.events_log, f"service-started {time.time()!r} {os.getpid()} {port}")
        return port

    def _serve(self) -> None:
        while not self._stopping.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(10)
                data = b""
                while not data.endswith(b"\n"):
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                conn.sendall(data.strip().upper() + f" from {os.getpid()}\n".encode())

    def stop(self, job: Job) -> None:
        self._stopping.set()
        self._thread.join(timeout=10)
        self._sock.close()
        append_line(self.events_log, f"service-stopped {time.time()!r} {os.getpid()} {int(self._thread.is_alive())}")

    def check(self) -> bool:
        return self._thread.is_alive()


def talk(port: int, events_log: str, text: str) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(text.encode() + b"\n")
        reply = b""
        while not reply.endswith(b"\n"):
            chunk = conn.recv(4096)
            if not chunk:
                break
            reply += chunk
    time.sleep(0.2)
    append_line(events_log, f"client-done {time.time()!r} {os.getpid()} {text}")
    return reply.decode().strip()


def service_root(job: Job, events_log: str) -> dict:
    port = job.addService(UpperCaseServer(events_log))
    replies = [job.addChildFn(talk, port, events_log, f"hello {i}", **SMALL).rv() for i in range(3)]
    follow = job.addFollowOnFn(talk, port, events_log, "follow-on", **SMALL).rv()
    return {"port": port, "replies": replies, "follow_on": follow}


def test_service_serves_children_and_stops_after(options: argparse.Namespace, tmp_path: Path) -> None:
    events_log = str(tmp_path / "events.log")
    with Flow(options) as flow:
        result = flow.start(Job.wrapJobFn(service_root, events_log, **SMALL))
    events = [line.split(" ", 3) for line in read_lines(events_log)]
    kinds = [e[0] for e in events]
    assert kinds.count("service-started") == 1 and kinds.count("service-stopped") == 1, events
    started = next(e for e in events if e[0] == "service-started")
    stopped = next(e for e in events if e[0] == "service-stopped")
    clients = [e for e in events if e[0] == "client-done"]
    server_pid, port = int(started[2]), int(started[3])
    # the addService promise resolved to the port start() returned
    assert result["port"] == port
    # each child and the follow-on talked to the real server in the service's process
    assert result["replies"] == [f"HELLO {i} from {server_pid}" for i in range(3)]
    assert result["follow_on"] == f"FOLLOW-ON from {server_pid}"
    assert len(clients) == 4 and all(int(c[2]) != server_pid for c in clients)
    # the service stopped (its thread ended) after every user of it had finished
    assert stopped[3] == "0" and int(stopped[2]) == server_pid
    assert float(stopped[1]) >= max(float(c[1]) for c in clients)
    assert float(started[1]) <= min(float(c[1]) for c in clients)
    # and the port is closed now
    probe = socket.socket()
    try:
        assert probe.connect_ex(("127.0.0.1", port)) != 0
    finally:
        probe.close()


class Recorder(Job.Service):
    """Records when its start() begins and ends and when stop() runs; start may sleep or fail."""

    def __init__(self, name: str, events_log: str, start_seconds: float = 0.0, fail: bool = False,
                 cores: float = 0.1) -> None:
        super().__init__(cores=cores, memory="50M")
        self.name, self.events_log = name, events_log
        self.start_seconds, self.fail = start_seconds, fail

    def start(self, job: Job) -> str:
        append_line(self.events_log, f"{self.name}-start-begin {time.time()!r}")
        time.sleep(self.start_seconds)
        if self.fail:
            raise RuntimeError(f"service {self.name} cannot start: marker-b1e4")
        append_line(self.events_log, f"{self.name}-started {time.time()!r}")
        return self.name

    def stop(self, job: Job) -> None:
        append_line(self.events_log, f"{self.name}-stopped {time.time()!r}")


def record_event(events_log: str, name: str, value: object = None) -> object:
    append_line(events_log, f"{name} {time.time()!r}")
    return value


def nested_services_root(job: Job, events_log: str) -> list:
    parent = Recorder("parent", events_log, start_seconds=0.5)
    child = Recorder("child", events_log)
    parent_value = job.addService(parent)
    child_value = job.addService(child, parentService=parent)
    job.addChildFn(record_event, events_log, "user", **SMALL)
    return [parent_value, child_value]


def failing_service_root(job: Job, events_log: str) -> None:
    job.addService(Recorder("broken", events_log, fail=True))
    job.addChildFn(record_event, events_log, "user-of-broken", **SMALL)
    job.addFollowOnFn(record_event, events_log, "follow-on-of-broken", **SMALL)


def greedy_service_root(job: Job, events_log: str) -> None:
    job.addService(Recorder("greedy", events_log, cores=2))
    job.addChildFn(record_event, events_log, "starved", cores=1, memory="50M")


def _times(events_log: str) -> dict[str, float]:
    return {name: float(stamp) for name, stamp in (line.split() for line in read_lines(events_log))}


def test_nested_services_start_parent_first(options: argparse.Namespace, tmp_path: Path) -> None:
    """A service added with parentService starts after its parent has started, stops before it."""
    events_log = str(tmp_path / "events.log")
    with Flow(options) as flow:
        assert flow.start(Job.wrapJobFn(nested_services_root, events_log, **SMALL)) == ["parent", "child"]
    t = _times(events_log)
    assert t["child-start-begin"] >= t["parent-started"], t
    assert t["user"] >= max(t["parent-started"], t["child-started"]), t
    assert t["child-stopped"] <= t["parent-stopped"], t


def test_service_that_fails_to_start(options: argparse.Namespace, tmp_path: Path) -> None:
    from flow.core.exceptions import FailedJobsException

    options.retryCount = 0
    events_log = str(tmp_path / "events.log")
    with pytest.raises(FailedJobsException) as info:
        with Flow(options) as flow:
            flow.start(Job.wrapJobFn(failing_service_root, events_log, **SMALL))
    assert "marker-b1e4" in str(info.value)
    assert any(f.name == "Recorder" for f in info.value.failed), info.value.failed
    names = set(_times(events_log))
    assert "broken-start-begin" in names
    assert "user-of-broken" not in names and "follow-on-of-broken" not in names


def test_services_holding_every_core_deadlock(options: argparse.Namespace, tmp_path: Path) -> None:
    """A service that takes all cores starves its job's children: reported as a deadlock."""
    from flow.core.exceptions import JobGraphDeadlockException

    options.maxCores = 2
    options.deadlockWait = 1.0
    options.rescueJobsFrequency = 0.2
    events_log = str(tmp_path / "events.log")
    with pytest.raises(JobGraphDeadlockException, match="deadlock"):
        with Flow(options) as flow:
            flow.start(Job.wrapJobFn(greedy_service_root, events_log, **SMALL))
    names = set(_times(events_log))
    assert "greedy-started" in names and "starved" not in names
