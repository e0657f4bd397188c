"""The step log of a job that runs many steps (flow.core.steplog): whole entries only."""

from __future__ import annotations

from pathlib import Path

from flow.core.steplog import StepLog
from flow.jobstores.file import FileJobStore


def test_entries_round_trip_and_a_cut_short_entry_is_skipped(tmp_path: Path) -> None:
    store = FileJobStore.create(str(tmp_path / "js"))
    log = StepLog(store, "batch-x")
    assert log.finished() == {}
    tricky = b"\n#step 7 3 00000000\nabc"  # a payload that looks like an entry itself
    log.add(0, b"zero")
    log.add(1, tricky)
    # A writer killed mid-entry: the header of step 2 and part of its payload.
    store.append_shared("batch-x", b"\n#step 2 100 1234abcd\npart")
    log.add(3, b"")
    log.add(0, b"zero again")  # recorded twice (a re-run): the last one counts
    assert log.finished() == {0: b"zero again", 1: tricky, 3: b""}


def test_a_damaged_payload_is_not_taken(tmp_path: Path) -> None:
    store = FileJobStore.create(str(tmp_path / "js"))
    StepLog(store, "b").add(5, b"payload")
    path = tmp_path / "js" / "shared" / "b"
    path.write_bytes(path.read_bytes().replace(b"payload", b"paYload"))
    assert StepLog(store, "b").finished() == {}
