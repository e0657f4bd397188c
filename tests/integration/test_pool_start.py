"""How the local pool starts its workers: forked from the leader (with what it has loaded), or
fresh interpreters when asked to or while the leader runs threads."""

from __future__ import annotations

import sys
import threading
import types
from collections.abc import Iterator
from pathlib import Path

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
