"""How the local pool starts its workers: forked from the leader (with what it has loaded), or
fresh interpreters when asked to or while the leader runs threads."""

from __future__ import annotations

import os
import signal
import sys
import threading
import types
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from flow.batchsystems import BatchConfig, BatchJob, BatchSystemError, WorkerCall, make_batch_system
from flow.batchsystems.abstract import BatchSystem
from tests.contract import payloads
from tests.contract.test_batchsystem import _pythonpath, run_one

MARKER = "flow_test_loaded_by_the_leader"


@pytest.fixture
def marker() -> Iterator[str]:
    """A module that only this (leader) process has imported."""
    sys.modules[MARKER] = types.ModuleType(MARKER)
    yield MARKER
    del sys.modules[MARKER]


def pool(tmp_path: Path) -> BatchSystem:
    config = BatchConfig(max_cores=2, max_memory=2**30, max_disk=2**30, work_dir=str(tmp_path),
                         environment={"PYTHONPATH": _pythonpath()})
    return make_batch_system("single_machine", config)


def sees_marker(system: BatchSystem, marker: str) -> bool:
    call = WorkerCall(payloads.ref("module_loaded"), (marker,))
    code = run_one(system, BatchJob("probe", "probe", call, cores=1, memory=2**20, disk=2**20)).exit_code
    assert code in (0, 3)
    return code == 3


def test_workers_are_forked_with_what_the_leader_loaded(tmp_path: Path, marker: str) -> None:
    system = pool(tmp_path)
    try:
        assert sees_marker(system, marker)
    finally:
        system.shutdown()


def test_spawn_start_method_gives_fresh_interpreters(
    tmp_path: Path, marker: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLOW_POOL_START", "spawn")
    system = pool(tmp_path)
    try:
        assert not sees_marker(system, marker)
    finally:
        system.shutdown()


def test_a_leader_with_threads_is_not_forked(tmp_path: Path, marker: str) -> None:
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait)
    thread.start()
    system = pool(tmp_path)
    try:
        assert not sees_marker(system, marker)
    finally:
        system.shutdown()
        stop.set()
        thread.join()


def test_unknown_start_method_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOW_POOL_START", "vfork")
    with pytest.raises(BatchSystemError, match="FLOW_POOL_START"):
        pool(tmp_path)


#: Set by a test to send this process a SIGINT from inside os.fork (see _interrupt_in_fork).
_INTERRUPT_AT_FORK: list[bool] = []


def _interrupt_in_fork() -> None:
    """A Ctrl-C that arrives while the leader forks a worker: sent from fork's own callbacks,
    where a KeyboardInterrupt raised is printed as ignored and dropped."""
    if _INTERRUPT_AT_FORK:
        _INTERRUPT_AT_FORK.clear()
        os.kill(os.getpid(), signal.SIGINT)


os.register_at_fork(after_in_parent=_interrupt_in_fork)  # once per process; inert until asked


def test_a_ctrl_c_while_a_worker_is_forked_is_not_lost(tmp_path: Path) -> None:
    if threading.active_count() != 1:
        pytest.skip("the pool forks workers only from a leader without threads")
    before = {child.pid for child in psutil.Process().children(recursive=True)}
    system = pool(tmp_path)
    try:
        _INTERRUPT_AT_FORK.append(True)
        with pytest.raises(KeyboardInterrupt):
            run_one(system, BatchJob("probe", "probe", WorkerCall(payloads.ref("succeed"), ()),
                                     cores=1, memory=2**20, disk=2**20))
        assert not _INTERRUPT_AT_FORK  # the worker was forked, with the signal in between
    finally:
        _INTERRUPT_AT_FORK.clear()
        system.shutdown()
    # The worker forked then was recorded, so the shutdown ended it with the others.
    assert [pid for pid in _live_children() if pid not in before] == []


def _live_children() -> list[int]:
    live = []
    for child in psutil.Process().children(recursive=True):
        try:
            if child.status() != psutil.STATUS_ZOMBIE:
                live.append(child.pid)
        except psutil.NoSuchProcess:
            pass
    return live
