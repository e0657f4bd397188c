"""Contract tests every job store kind must pass.

A kind is described by a ``StoreKind``: how to get a fresh locator, how to plant foreign content or
damage a store's marker there, and how to spot temp-file litter. Add a kind to ``KINDS`` and the
whole generic suite runs against it. Tests that only make sense for the file store are grouped in
``TestFileJobStoreOnly`` at the end (they use ``FileJobStore`` directly).
"""

from __future__ import annotations

import concurrent.futures
import json
import multiprocessing
import os
import re
import shutil
import stat
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from flow.jobstores import (
    CorruptJobStoreError,
    JobStore,
    JobStoreError,
    JobStoreExistsError,
    JobStoreLockedError,
    NoSuchFileError,
    NoSuchJobError,
    NoSuchJobStoreError,
    create_job_store,
    open_job_store,
)
from flow.jobstores.abstract import JobStoreWriteError
from flow.jobstores.file import MARKER, TMP_PREFIX, FileJobStore
from flow.jobstores.registry import job_store_class, split_locator

CORRUPTIONS = ("garbage", "wrong-format", "newer-version", "no-marker", "marker-is-dir")


@dataclass(frozen=True)
class StoreKind:
    name: str
    new_locator: Callable[[Path], str]  # a locator where nothing exists yet
    make_foreign: Callable[[str], None]  # put non-flow content at the locator
    snapshot: Callable[[str], object]  # comparable view of everything at the locator
    damage: Callable[[str, str], None]  # damage an existing store's marker (see CORRUPTIONS)
    litter: Callable[[str], list[str]]  # leftover temp objects in a store
    where: Callable[[str], str]  # what error messages about the locator must mention


# ---- the file store kind -------------------------------------------------------------------------
def _file_root(locator: str) -> Path:
    return Path(split_locator(locator)[1])


def _file_make_foreign(locator: str) -> None:
    root = _file_root(locator)
    (root / "sub").mkdir(parents=True)
    (root / "notes.txt").write_bytes(b"precious")
    (root / "sub" / "data.bin").write_bytes(b"\x00\x01")


def _file_snapshot(locator: str) -> object:
    root = _file_root(locator)
    if not root.exists():
        return None
    return sorted(
        (str(p.relative_to(root)), p.read_bytes() if p.is_file() else None) for p in root.rglob("*")
    )


def _file_damage(locator: str, how: str) -> None:
    marker = _file_root(locator) / MARKER
    if how == "no-marker":
        marker.unlink()
    elif how == "marker-is-dir":
        marker.unlink()
        marker.mkdir()
    elif how == "garbage":
        marker.write_bytes(b"\x00{not json")
    elif how == "wrong-format":
        marker.write_text(json.dumps({"format": "someone-elses-store", "version": 1}))
    elif how == "newer-version":
        marker.write_text(json.dumps({"format": "flow-file-jobstore", "version": 99}))
    else:
        raise AssertionError(how)


def _file_litter(locator: str) -> list[str]:
    root = _file_root(locator)
    return [str(p) for p in root.rglob(f"{TMP_PREFIX}*")]


FILE_KIND = StoreKind(
    name="file",
    new_locator=lambda tmp: str(tmp / "js"),
    make_foreign=_file_make_foreign,
    snapshot=_file_snapshot,
    damage=_file_damage,
    litter=_file_litter,
    where=lambda locator: str(_file_root(locator).resolve()),
)

KINDS = [FILE_KIND]


@pytest.fixture(params=KINDS, ids=lambda k: k.name)
def kind(request: pytest.FixtureRequest) -> StoreKind:
    result: StoreKind = request.param
    return result


@pytest.fixture
def locator(kind: StoreKind, tmp_path: Path) -> str:
    return kind.new_locator(tmp_path)


@pytest.fixture
def store(locator: str) -> Iterator[JobStore]:
    js = create_job_store(locator)
    yield js
    js.destroy()


@pytest.fixture
def local(tmp_path: Path) -> Path:
    d = tmp_path / "local"
    d.mkdir()
    return d


def _put(store: JobStore, local: Path, name: str, data: bytes, link: bool = False) -> str:
    src = local / name
    src.write_bytes(data)
    return store.write_file(str(src), link=link)


# ---- lifecycle -----------------------------------------------------------------------------------
def test_lifecycle(locator: str) -> None:
    cls = job_store_class(locator)
    assert not cls.exists(locator)
    created = create_job_store(locator)
    assert cls.exists(locator)
    created.write_shared("config", b"cfg")
    opened = open_job_store(locator)
    assert opened.read_shared("config") == b"cfg"
    opened.destroy()
    assert not cls.exists(locator)
    opened.destroy()  # idempotent
    created.destroy()
    with pytest.raises(NoSuchJobStoreError):
        open_job_store(locator)
    create_job_store(locator).destroy()  # the locator is reusable


def test_create_over_existing_store(store: JobStore, locator: str) -> None:
    job_id = store.new_job_id()
    store.write_job(job_id, b"keep me")
    with pytest.raises(JobStoreExistsError) as err:
        create_job_store(locator)
    assert err.value.locator == locator
    assert open_job_store(locator).read_job(job_id) == b"keep me"


def test_open_missing(kind: StoreKind, locator: str) -> None:
    with pytest.raises(NoSuchJobStoreError, match=re.escape(kind.where(locator))) as err:
        open_job_store(locator)
    assert err.value.locator == locator
    assert kind.snapshot(locator) is None  # open created nothing


def test_foreign_content_is_never_touched(kind: StoreKind, locator: str) -> None:
    kind.make_foreign(locator)
    before = kind.snapshot(locator)
    assert before
    assert not job_store_class(locator).exists(locator)
    with pytest.raises(CorruptJobStoreError, match=re.escape(kind.where(locator))):
        open_job_store(locator)
    with pytest.raises(CorruptJobStoreError, match=re.escape(kind.where(locator))):
        create_job_store(locator)
    assert kind.snapshot(locator) == before


@pytest.mark.parametrize("how", CORRUPTIONS)
def test_damaged_marker(kind: StoreKind, locator: str, how: str) -> None:
    create_job_store(locator)
    kind.damage(locator, how)
    with pytest.raises(CorruptJobStoreError, match=re.escape(kind.where(locator))) as err:
        open_job_store(locator)
    assert err.value.locator == locator
    if how == "no-marker":  # a half-created (or half-destroyed) store is not a store
        assert not job_store_class(locator).exists(locator)


# ---- jobs ----------------------------------------------------------------------------------------
def test_new_job_ids_are_unique_and_filename_safe(store: JobStore) -> None:
    ids = [store.new_job_id() for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    for job_id in ids[:50]:
        assert re.fullmatch(r"[A-Za-z0-9_-]{1,40}", job_id), job_id


def test_job_write_read_overwrite_delete(store: JobStore) -> None:
    job_id = store.new_job_id()
    assert not store.job_exists(job_id)
    store.write_job(job_id, b"v1")
    assert store.job_exists(job_id)
    assert store.read_job(job_id) == b"v1"
    store.write_job(job_id, b"version two")
    assert store.read_job(job_id) == b"version two"
    store.write_job(job_id, b"")
    assert store.read_job(job_id) == b""
    store.delete_job(job_id)
    assert not store.job_exists(job_id)
    store.delete_job(job_id)  # absent: no error


def test_missing_job_errors(store: JobStore) -> None:
    job_id = store.new_job_id()
    with pytest.raises(NoSuchJobError) as err:
        store.read_job(job_id)
    assert err.value.job_id == job_id
    with pytest.raises(NoSuchJobError):
        store.read_body(job_id)
    assert store.read_result(job_id) is None
    assert store.read_log(job_id) is None


def test_body_result_log_round_trip_and_delete(store: JobStore) -> None:
    job_id = store.new_job_id()
    blob = bytes(range(256)) * 300
    store.write_job(job_id, b"desc")
    store.write_body(job_id, blob)
    store.write_result(job_id, b"\x80result")
    store.write_log(job_id, b"line 1\nline 2\n")
    assert store.read_body(job_id) == blob
    assert store.read_result(job_id) == b"\x80result"
    assert store.read_log(job_id) == b"line 1\nline 2\n"
    store.write_result(job_id, b"r2")
    assert store.read_result(job_id) == b"r2"
    store.delete_job(job_id)
    with pytest.raises(NoSuchJobError):
        store.read_body(job_id)
    assert store.read_result(job_id) is None
    assert store.read_log(job_id) is None


def test_list_jobs(store: JobStore) -> None:
    assert list(store.list_jobs()) == []
    ids = {store.new_job_id() for _ in range(300)}
    for job_id in ids:
        store.write_job(job_id, job_id.encode())
    body_only = store.new_job_id()
    store.write_body(body_only, b"no description")
    listed = list(store.list_jobs())
    assert len(listed) == len(ids)
    assert set(listed) == ids
    gone = sorted(ids)[:100]
    for job_id in gone:
        store.delete_job(job_id)
    assert set(store.list_jobs()) == ids - set(gone)


def test_records_survive_reopen(store: JobStore, locator: str) -> None:
    job_id = store.new_job_id()
    store.write_job(job_id, b"d")
    store.write_result(job_id, b"r")
    again = open_job_store(locator)
    assert list(again.list_jobs()) == [job_id]
    assert again.read_result(job_id) == b"r"


# ---- shared records ------------------------------------------------------------------------------
def test_shared_records(store: JobStore) -> None:
    assert store.read_shared("root_job") is None
    store.write_shared("root_job", b"abc")
    store.write_shared("config.v1", b"{}")
    assert store.read_shared("root_job") == b"abc"
    store.write_shared("root_job", b"xyz")
    assert store.read_shared("root_job") == b"xyz"
    assert store.read_shared("config.v1") == b"{}"
    store.delete_shared("root_job")
    assert store.read_shared("root_job") is None
    store.delete_shared("root_job")  # absent: no error
    assert store.read_shared("config.v1") == b"{}"


def test_shared_append(store: JobStore) -> None:
    store.append_shared("log", b"one\n")
    assert store.read_shared("log") == b"one\n"
    store.append_shared("log", b"two\n")
    store.write_shared("other", b"x")
    assert store.read_shared("log") == b"one\ntwo\n"
    assert store.read_shared("other") == b"x"
    store.delete_shared("log")
    assert store.read_shared("log") is None
    with pytest.raises(ValueError):
        store.append_shared("../escape", b"x")


# ---- files ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("link", [False, True], ids=["copy", "link"])
def test_write_file_and_read_back(store: JobStore, local: Path, link: bool) -> None:
    data = os.urandom(100_000)
    file_id = _put(store, local, "input data.txt", data, link=link)
    assert file_id.endswith("input data.txt")
    assert store.file_exists(file_id)
    assert store.file_size(file_id) == len(data)
    with store.read_file_stream(file_id) as f:
        assert f.read() == data
    second = _put(store, local, "input data.txt", b"other")
    assert second != file_id


def _path(store: FileJobStore, file_id: str) -> Path:
    """Where the file store keeps a file (its layout: see flow.jobstores.file)."""
    path = store._file_path(file_id)
    assert path is not None
    return Path(path)


def _stored(store: JobStore, file_id: str) -> bytes:
    with store.read_file_stream(file_id) as f:
        return f.read()


@pytest.mark.parametrize("change", ["rewrite", "append", "truncate", "replace"])
def test_write_file_copies(store: JobStore, local: Path, change: str) -> None:
    """Whatever happens to the local file afterwards (in place or not) leaves the stored copy."""
    file_id = _put(store, local, "a.txt", b"original")
    path = local / "a.txt"
    if change == "rewrite":
        path.write_bytes(b"changed afterwards")
    elif change == "append":
        with path.open("ab") as f:
            f.write(b" and more")
    elif change == "truncate":
        os.truncate(path, 2)
    else:
        (local / "b.txt").write_bytes(b"other")
        os.replace(local / "b.txt", path)
    assert _stored(store, file_id) == b"original"
    assert store.file_size(file_id) == len(b"original")


def test_move_file_takes_the_file_over(store: JobStore, local: Path) -> None:
    """move_file stores the file under a new id (its base name kept) and the local path is
    gone: nothing written there afterwards reaches the stored file."""
    data = os.urandom(70_000)
    path = local / "out put.txt"
    path.write_bytes(data)
    file_id = store.move_file(str(path))
    assert file_id.endswith("out put.txt") and not path.exists()
    assert _stored(store, file_id) == data and store.file_size(file_id) == len(data)
    path.write_bytes(b"a new file at the old path")
    assert _stored(store, file_id) == data
    copy = local / "copy.txt"
    store.read_file(file_id, str(copy))
    assert copy.read_bytes() == data
    with copy.open("ab") as f:
        f.write(b"changed copy")
    assert _stored(store, file_id) == data
    path.write_bytes(b"same name, second file")
    assert store.move_file(str(path)) != file_id


def test_move_file_of_a_missing_file_fails(store: JobStore, local: Path) -> None:
    with pytest.raises(FileNotFoundError):
        store.move_file(str(local / "missing.txt"))


def test_read_file_is_an_independent_copy(store: JobStore, local: Path) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)  # more than one copy chunk
    file_id = _put(store, local, "src.bin", data)
    dest = local / "dest.bin"
    store.read_file(file_id, str(dest))
    assert dest.read_bytes() == data and not dest.is_symlink()
    with dest.open("r+b") as f:  # in place: what would go through a (hard or symbolic) link
        f.write(b"overwritten")
    with dest.open("ab") as f:
        f.write(b"appended")
    assert _stored(store, file_id) == data
    again = local / "again.bin"
    store.read_file(file_id, str(again))
    assert again.read_bytes() == data


def test_read_file_keeps_modification_time(store: JobStore, local: Path) -> None:
    file_id = _put(store, local, "f.txt", b"x")
    first, second = local / "first", local / "second"
    store.read_file(file_id, str(first))
    stored_mtime = first.stat().st_mtime_ns
    first.write_bytes(b"y")  # a later write stamps the copy with the current time ...
    store.read_file(file_id, str(second))
    assert second.stat().st_mtime_ns == stored_mtime  # ... never a fresh copy


def test_read_file_refuses_an_existing_path(store: JobStore, local: Path) -> None:
    file_id = _put(store, local, "src.bin", b"payload")
    occupied = local / "occupied.bin"
    occupied.write_bytes(b"mine")
    with pytest.raises(FileExistsError):
        store.read_file(file_id, str(occupied))
    assert occupied.read_bytes() == b"mine"


def test_read_copy_is_a_snapshot(store: JobStore, local: Path) -> None:
    file_id = _put(store, local, "f.txt", b"old")
    dest = local / "dest.txt"
    store.read_file(file_id, str(dest))
    (local / "new.txt").write_bytes(b"new content")
    store.update_file(file_id, str(local / "new.txt"))
    assert dest.read_bytes() == b"old"
    assert _stored(store, file_id) == b"new content"
    assert store.file_size(file_id) == len(b"new content")
    (local / "new.txt").write_bytes(b"changed after the update")
    assert _stored(store, file_id) == b"new content"


def test_linked_import_is_still_read_as_copies(store: JobStore, local: Path) -> None:
    """write_file(link=True) (--linkImports) may keep the user's file, never hand it out."""
    file_id = _put(store, local, "input.txt", b"user data", link=True)
    dest = local / "read.txt"
    store.read_file(file_id, str(dest))
    dest.write_bytes(b"a job's change")
    assert (local / "input.txt").read_bytes() == b"user data"
    assert _stored(store, file_id) == b"user data"


def test_move_file_takes_the_file(store: JobStore, local: Path) -> None:
    """move_file: the path is gone, the store holds the bytes, and what is then made at the
    path (a new file under the old name) is not what is stored."""
    data = os.urandom(200_000)
    path = local / "out.bin"
    path.write_bytes(data)
    file_id = store.move_file(str(path), "job")
    assert file_id.endswith("out.bin") and not path.exists()
    path.write_bytes(b"a new file under the old name")
    assert _stored(store, file_id) == data
    dest = local / "read.bin"
    store.read_file(file_id, str(dest))
    dest.write_bytes(b"a job's change to its copy")
    assert _stored(store, file_id) == data


def test_move_file_with_another_name_copies(store: JobStore, local: Path) -> None:
    """A file with a second hard link is copied: writing through that other name later
    leaves the stored file as it was."""
    path, other = local / "out.txt", local / "other-name.txt"
    path.write_bytes(b"original")
    os.link(path, other)
    file_id = store.move_file(str(path), "job")
    assert not path.exists()
    with other.open("r+b") as f:
        f.write(b"CHANGED!")
    assert other.read_bytes() == b"CHANGED!"
    assert _stored(store, file_id) == b"original"


def test_move_file_through_a_symlink_keeps_the_target(store: JobStore, local: Path) -> None:
    target, link = local / "user-file.txt", local / "link.txt"
    target.write_bytes(b"the user's")
    link.symlink_to(target)
    file_id = store.move_file(str(link), "job")
    assert not os.path.lexists(link) and target.read_bytes() == b"the user's"
    target.write_bytes(b"changed")
    assert _stored(store, file_id) == b"the user's"


def test_move_file_of_a_file_open_elsewhere_copies(store: JobStore, local: Path) -> None:
    """A process that still holds the file open (a tool's leftover background writer) may
    write after the move: the store must hold its own copy then."""
    path = local / "out.log"
    path.write_bytes(b"first line\n")
    writer = subprocess.Popen(["sh", "-c", f"exec 3>>'{path}'; read line; echo late >&3"],
                              stdin=subprocess.PIPE, text=True)
    try:
        _wait_for(lambda: _open_by(writer.pid, path))
        file_id = store.move_file(str(path), "job")
        assert not path.exists()
        writer.communicate("go\n", timeout=30)  # it writes through its descriptor now
    finally:
        writer.kill()
        writer.wait()
    assert _stored(store, file_id) == b"first line\n"


def _open_by(pid: int, path: Path) -> bool:
    fds = Path(f"/proc/{pid}/fd")
    return any(os.path.realpath(fd) == str(path) for fd in fds.iterdir()) if fds.exists() else False


def _wait_for(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def test_a_kept_stream_descriptor_cannot_change_the_stored_file(store: JobStore, local: Path) -> None:
    """A job that duplicated the stream's descriptor, or started a process that inherited it,
    may write through it after the stream is closed: the stored file stays as it was then."""
    with store.write_file_stream("job", "dup.txt") as (stream, dup_id):
        stream.write(b"written in the block")
        stream.flush()
        kept = os.dup(stream.fileno())
    os.write(kept, b" and after it")
    os.close(kept)
    assert _stored(store, dup_id) == b"written in the block"
    with store.write_file_stream("job", "child.txt") as (stream, child_id):
        stream.write(b"before")
        stream.flush()
        child = subprocess.Popen(["sh", "-c", "read go; echo after >&3"], stdin=subprocess.PIPE, text=True,
                                 pass_fds=(stream.fileno(),), preexec_fn=_fd_as_3(stream.fileno()))
    try:
        child.communicate("go\n", timeout=30)
    finally:
        child.kill()
        child.wait()
    assert _stored(store, child_id) == b"before"
    with store.write_file_stream("job", "plain.txt") as (stream, plain_id):
        stream.write(b"plain")
    assert _stored(store, plain_id) == b"plain"


def _fd_as_3(fd: int) -> Callable[[], None]:
    def move() -> None:
        os.dup2(fd, 3)
    return move


def test_hand_over_file(store: JobStore, local: Path) -> None:
    data = os.urandom(100_000)
    file_id = _put(store, local, "result.bin", data)
    dest = local / "exported.bin"
    store.hand_over_file(file_id, str(dest))
    assert dest.read_bytes() == data
    copied = local / "copied.bin"
    store.read_file(file_id, str(copied))
    assert stat.S_IMODE(dest.stat().st_mode) == stat.S_IMODE(copied.stat().st_mode)  # not a record's 0600
    occupied = local / "occupied.bin"
    occupied.write_bytes(b"mine")
    with pytest.raises(FileExistsError):
        store.hand_over_file(file_id, str(occupied))
    assert occupied.read_bytes() == b"mine"
    for bad in ("../../etc/passwd", "nonsense"):
        with pytest.raises(NoSuchFileError):
            store.hand_over_file(bad, str(local / "never"))
    assert not (local / "never").exists()


def test_hand_over_never_hands_out_a_linked_import(store: JobStore, local: Path) -> None:
    """A --linkImports file is the user's: handing it over is a copy, or the export and the
    user's input would stay one file after the store is deleted."""
    file_id = _put(store, local, "input.txt", b"user data", link=True)
    dest = local / "exported.txt"
    store.hand_over_file(file_id, str(dest))
    dest.write_bytes(b"the user edits the output")
    assert (local / "input.txt").read_bytes() == b"user data"


def test_missing_file_errors(store: JobStore, local: Path) -> None:
    file_id = _put(store, local, "f.txt", b"x")
    store.delete_file(file_id)
    assert not store.file_exists(file_id)
    store.delete_file(file_id)  # absent: no error
    with pytest.raises(NoSuchFileError) as err:
        store.read_file(file_id, str(local / "out"))
    assert err.value.file_id == file_id
    assert not (local / "out").exists()
    with pytest.raises(NoSuchFileError):
        store.file_size(file_id)
    with pytest.raises(NoSuchFileError), store.read_file_stream(file_id):
        pass
    with pytest.raises(NoSuchFileError):
        store.update_file(file_id, str(local / "f.txt"))


@pytest.mark.parametrize(
    "bad_id", ["", "..", "../../etc/passwd", "/etc/passwd", "ab/../../x", "a/b/c/d", "nonsense"]
)
def test_malformed_file_ids_are_rejected(store: JobStore, local: Path, bad_id: str) -> None:
    assert not store.file_exists(bad_id)
    with pytest.raises(NoSuchFileError) as err:
        store.read_file(bad_id, str(local / "out"))
    assert err.value.file_id == bad_id and repr(bad_id) in str(err.value)
    with pytest.raises(NoSuchFileError):
        store.file_size(bad_id)
    with pytest.raises(NoSuchFileError), store.read_file_stream(bad_id):
        pass
    assert not (local / "out").exists()


def test_write_file_stream(store: JobStore) -> None:
    with store.write_file_stream(basename="out.csv") as (f, file_id):
        f.write(b"a,b\n")
        f.write(b"1,2\n")
        assert not store.file_exists(file_id)  # not visible before the block ends
    assert file_id.endswith("out.csv")
    assert store.file_exists(file_id)
    with store.read_file_stream(file_id) as r:
        assert r.read() == b"a,b\n1,2\n"
    with store.write_file_stream() as (f, anonymous):
        f.write(b"no name")
    assert store.file_size(anonymous) == 7


def test_write_file_stream_exception_leaves_nothing(
    store: JobStore, kind: StoreKind, locator: str
) -> None:
    seen: list[str] = []
    with pytest.raises(RuntimeError, match="boom"):
        with store.write_file_stream(basename="partial.txt") as (f, file_id):
            seen.append(file_id)
            f.write(b"half of it")
            raise RuntimeError("boom")
    assert seen and not store.file_exists(seen[0])
    assert kind.litter(locator) == []


# ---- statistics ----------------------------------------------------------------------------------
def test_stats_round_trip(store: JobStore) -> None:
    assert list(store.read_stats()) == []
    records = [b"", b"one", b"two\n", b"one"]
    for r in records:
        store.append_stats(r)
    assert Counter(store.read_stats()) == Counter(records)


# ---- the leader lock -----------------------------------------------------------------------------
def _never(holder: str) -> bool:
    return False


def test_lock_is_exclusive_until_released(store: JobStore) -> None:
    assert store.lock_holder() is None
    store.acquire_lock("leader-a", _never)
    assert store.lock_holder() == "leader-a"
    store.acquire_lock("leader-a", _never)  # taking it again is a no-op for its holder
    seen: list[str] = []

    def refuse(holder: str) -> bool:
        seen.append(holder)
        return False

    with pytest.raises(JobStoreLockedError) as caught:
        store.acquire_lock("leader-b", refuse)
    assert seen == ["leader-a"] and caught.value.holder == "leader-a"
    assert store.locator in str(caught.value)
    store.release_lock("leader-b")  # not the holder: nothing happens
    assert store.lock_holder() == "leader-a"
    store.release_lock("leader-a")
    assert store.lock_holder() is None
    store.acquire_lock("leader-b", _never)
    assert store.lock_holder() == "leader-b"


def test_lock_is_taken_over_when_the_caller_says_its_holder_is_gone(store: JobStore, locator: str) -> None:
    store.acquire_lock("dead-leader", _never)
    other = open_job_store(locator)
    other.acquire_lock("new-leader", lambda holder: holder == "dead-leader")
    assert store.lock_holder() == "new-leader"
    store.release_lock("dead-leader")  # the old holder's late release must not free the new one's
    assert other.lock_holder() == "new-leader"


def _try_lock(locator: str, owner: str, barrier_path: str) -> bool:
    js = open_job_store(locator)
    while not os.path.exists(barrier_path):  # start together
        pass
    try:
        js.acquire_lock(owner, _never)
    except JobStoreLockedError:
        return False
    return True


def test_lock_concurrent_processes_exactly_one_wins(store: JobStore, locator: str, tmp_path: Path) -> None:
    barrier = tmp_path / "go"
    ctx = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=6, mp_context=ctx) as pool:
        futures = [pool.submit(_try_lock, locator, f"leader-{i}", str(barrier)) for i in range(6)]
        barrier.touch()
        wins = [i for i, fut in enumerate(futures) if fut.result()]
    assert len(wins) == 1
    assert store.lock_holder() == f"leader-{wins[0]}"


def test_destroy_removes_the_lock(store: JobStore, locator: str) -> None:
    store.acquire_lock("leader-a", _never)
    store.destroy()
    assert not job_store_class(locator).exists(locator)
    fresh = create_job_store(locator)
    assert fresh.lock_holder() is None


def _append_stats_worker(locator: str, worker: int, count: int) -> None:
    js = open_job_store(locator)
    for i in range(count):
        js.append_stats(f"{worker}:{i}".encode())


def test_stats_concurrent_processes(store: JobStore, locator: str) -> None:
    ctx = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=4, mp_context=ctx) as pool:
        futures = [pool.submit(_append_stats_worker, locator, w, 50) for w in range(4)]
        for fut in futures:
            fut.result()
    got = list(store.read_stats())
    assert len(got) == 200
    assert set(got) == {f"{w}:{i}".encode() for w in range(4) for i in range(50)}


def test_stats_concurrent_threads(store: JobStore, kind: StoreKind, locator: str) -> None:
    threads = [
        threading.Thread(target=_append_stats_worker, args=(locator, w, 25)) for w in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    got = list(store.read_stats())
    assert sorted(got) == sorted(f"{w}:{i}".encode() for w in range(8) for i in range(25))
    assert kind.litter(locator) == []


# ---- atomicity -----------------------------------------------------------------------------------
def _versions() -> list[bytes]:
    """Distinct values of distinct sizes: a torn or truncated read matches none of them."""
    return [bytes([ord("a") + i]) * (4096 + 37_000 * i) for i in range(6)]


def _hammer(write: Callable[[bytes], None], read: Callable[[], bytes]) -> int:
    """Rewrite 500 times while another thread reads; return how many reads were checked."""
    versions = _versions()
    valid = set(versions)
    write(versions[0])
    stop = threading.Event()
    reads = [0]
    errors: list[str] = []

    def reader() -> None:
        while not stop.is_set():
            try:
                data = read()
            except Exception as e:  # noqa: BLE001 - reported to the main thread
                errors.append(repr(e))
                return
            if data not in valid:
                errors.append(f"torn read: {len(data)} bytes starting {data[:8]!r}")
                return
            reads[0] += 1

    t = threading.Thread(target=reader)
    t.start()
    try:
        for i in range(500):
            write(versions[i % len(versions)])
    finally:
        stop.set()
        t.join()
    assert errors == []
    return reads[0]


def test_job_rewrite_is_atomic(store: JobStore, kind: StoreKind, locator: str) -> None:
    job_id = store.new_job_id()
    reads = _hammer(lambda d: store.write_job(job_id, d), lambda: store.read_job(job_id))
    assert reads > 0
    assert kind.litter(locator) == []


def test_shared_rewrite_is_atomic(store: JobStore, kind: StoreKind, locator: str) -> None:
    def read() -> bytes:
        data = store.read_shared("state")
        assert data is not None
        return data

    assert _hammer(lambda d: store.write_shared("state", d), read) > 0
    assert kind.litter(locator) == []


def test_file_update_is_atomic(store: JobStore, kind: StoreKind, locator: str, local: Path) -> None:
    file_id = _put(store, local, "f.bin", b"")
    src = local / "next.bin"

    def write(data: bytes) -> None:
        src.write_bytes(data)
        store.update_file(file_id, str(src))

    def read() -> bytes:
        with store.read_file_stream(file_id) as f:
            return f.read()

    assert _hammer(write, read) > 0
    assert kind.litter(locator) == []


# ---- file store only -----------------------------------------------------------------------------
class TestFileJobStoreOnly:
    """Behaviour specific to FileJobStore (directories, modes, links, layout)."""

    @staticmethod
    def _mode(path: Path) -> int:
        return stat.S_IMODE(path.stat().st_mode)

    def test_mode_0700_and_nested_parents(self, tmp_path: Path) -> None:
        root = tmp_path / "a" / "b" / "js"
        FileJobStore.create(str(root))
        assert self._mode(root) == 0o700
        assert json.loads((root / MARKER).read_text()) == {
            "format": "flow-file-jobstore",
            "version": 2,
        }

    def test_records_0600_and_directories_0700(self, tmp_path: Path) -> None:
        js = FileJobStore.create(str(tmp_path / "js"))
        job_id = js.new_job_id()
        js.write_job(job_id, b"secret")
        js.write_shared("config", b"x")
        js.append_stats(b"s")
        js.acquire_lock("me", lambda holder: False)
        root = tmp_path / "js"
        records = [p for p in root.rglob("*") if p.is_file()]
        assert len(records) >= 5
        assert {oct(self._mode(p)) for p in records} == {oct(0o600)}
        assert {oct(self._mode(p)) for p in root.rglob("*") if p.is_dir()} == {oct(0o700)}

    def test_write_failures_name_the_item(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        js = FileJobStore.create(str(tmp_path / "js"))

        def full(src: str, dst: str) -> None:
            raise OSError(28, "No space left on device")

        monkeypatch.setattr("flow.jobstores.file.os.replace", full)
        with pytest.raises(JobStoreWriteError, match=r"cannot write shared/status: No space left"):
            js.write_shared("status", b"running")
        with pytest.raises(OSError):  # still an OSError for code that catches those
            js.write_job("abc", b"x")

    def test_unknown_scheme_is_not_a_directory(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.chdir(tmp_path)
        for locator in ("aws:us-west-2:bucket", "google:proj:store"):
            with pytest.raises(JobStoreError, match="no '(aws|google)' job store"):
                create_job_store(locator)
        assert list(tmp_path.iterdir()) == []
        assert isinstance(create_job_store("./aws:x"), FileJobStore)  # spelled as a path: a path

    def test_create_in_existing_empty_dir(self, tmp_path: Path) -> None:
        root = tmp_path / "empty"
        root.mkdir(mode=0o755)
        with pytest.raises(NoSuchJobStoreError, match="empty directory"):
            FileJobStore.open(str(root))
        FileJobStore.create(str(root))
        assert self._mode(root) == 0o700
        assert FileJobStore.exists(str(root))

    def test_locator_spellings(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.chdir(tmp_path)
        created = create_job_store("file:./js")
        assert isinstance(created, FileJobStore)
        created.write_shared("x", b"1")
        for loc in ("js", "./js", "file:js", f"file://{tmp_path}/js", str(tmp_path / "js")):
            opened = open_job_store(loc)
            assert isinstance(opened, FileJobStore)
            assert opened.root == str(tmp_path / "js")
            assert opened.read_shared("x") == b"1"

    def test_regular_file_at_locator(self, tmp_path: Path) -> None:
        path = tmp_path / "afile"
        path.write_bytes(b"data")
        with pytest.raises(CorruptJobStoreError, match=re.escape(str(path))):
            FileJobStore.open(str(path))
        with pytest.raises(CorruptJobStoreError):
            FileJobStore.create(str(path))
        with pytest.raises(CorruptJobStoreError):
            FileJobStore(str(path)).destroy()
        assert path.read_bytes() == b"data"

    def test_destroy_refuses_foreign_dir(self, tmp_path: Path) -> None:
        locator = str(tmp_path / "js")
        _file_make_foreign(locator)
        before = _file_snapshot(locator)
        with pytest.raises(CorruptJobStoreError, match="refusing"):
            FileJobStore(locator).destroy()
        assert _file_snapshot(locator) == before

    def test_interrupted_create_is_detected(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        locator = str(tmp_path / "js")

        def crash(self: FileJobStore) -> None:
            raise KeyboardInterrupt

        monkeypatch.setattr(FileJobStore, "_write_marker", crash)
        with pytest.raises(KeyboardInterrupt):
            FileJobStore.create(locator)
        monkeypatch.undo()
        assert not FileJobStore.exists(locator)
        with pytest.raises(CorruptJobStoreError, match="interrupted"):
            FileJobStore.open(locator)
        with pytest.raises(CorruptJobStoreError):
            FileJobStore.create(locator)

    def test_failed_write_keeps_old_value_and_no_temp(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        locator = str(tmp_path / "js")
        js = FileJobStore.create(locator)
        job_id = js.new_job_id()
        js.write_job(job_id, b"old")

        def failing_replace(src: str, dst: str) -> None:
            raise OSError(28, "No space left on device")

        monkeypatch.setattr("flow.jobstores.file.os.replace", failing_replace)
        with pytest.raises(OSError, match="No space"):
            js.write_job(job_id, b"new")
        monkeypatch.undo()
        assert js.read_job(job_id) == b"old"
        assert _file_litter(locator) == []

    def test_sharded_layout(self, tmp_path: Path) -> None:
        root = tmp_path / "js"
        js = FileJobStore.create(str(root))
        job_id = js.new_job_id()
        js.write_job(job_id, b"d")
        js.write_body(job_id, b"b")
        assert (root / "jobs" / job_id[:2] / f"{job_id}.job").read_bytes() == b"d"
        assert (root / "jobs" / job_id[:2] / f"{job_id}.body").read_bytes() == b"b"
        js.append_stats(b"s")
        assert [p.parent.parent.name for p in root.glob("stats/*/*.rec")] == ["stats"]
        js.write_shared("cfg", b"c")
        assert (root / "shared" / "cfg").read_bytes() == b"c"
        with js.write_file_stream(basename="f.txt") as (f, file_id):
            f.write(b"x")
        _, tok, base = file_id.split("/")
        assert (root / "files" / tok[0] / f"{tok}.{base}").read_bytes() == b"x"  # no directory of its own
        assert [p.name for p in (root / "files" / tok[0]).iterdir()] == [f"{tok}.{base}"]
        assert list(js.missing_files_in(f"{file_id}")) == list(js.missing_files_in(f"{file_id}/more")) == []
        os.unlink(root / "files" / tok[0] / f"{tok}.{base}")
        assert list(js.missing_files_in(f"x {file_id}/y")) == [file_id]

    def test_long_names_and_version_1_stores_keep_a_directory_per_file(self, tmp_path: Path) -> None:
        """A base name too long to follow the token in one name, and every file of a store made
        by a flow before format version 2, is files/<shard>/<token>/<basename>; each is read,
        found in a text, and deleted with its directory."""
        root = tmp_path / "js"
        (tmp_path / ("n" * 250)).write_bytes(b"long")
        (tmp_path / "short.txt").write_bytes(b"short")
        js = FileJobStore.create(str(root))
        long_id = js.write_file(str(tmp_path / ("n" * 250)))
        marker = json.loads((root / MARKER).read_text())
        (root / MARKER).write_text(json.dumps({**marker, "version": 1}))
        old = FileJobStore.open(str(root))
        old_id = old.write_file(str(tmp_path / "short.txt"))
        for store, file_id, data in ((js, long_id, b"long"), (old, old_id, b"short")):
            assert (root / "files" / file_id).read_bytes() == data
            assert store.file_exists(file_id) and list(store.missing_files_in(f"x {file_id}/more")) == []
            store.delete_file(file_id)
            assert not (root / "files" / file_id).parent.exists()
            assert list(store.missing_files_in(file_id)) == [file_id]
        assert old.version == 1 and FileJobStore.open(str(root)).version == 1

    def test_no_stored_file_shares_an_inode(self, tmp_path: Path) -> None:
        """Only --linkImports (write_file(link=True)) keeps the user's inode; reads never do."""
        root = tmp_path / "js"
        js = FileJobStore.create(str(root))
        src = tmp_path / "big.bin"
        src.write_bytes(b"z" * 5000)
        copied = js.write_file(str(src))
        linked = js.write_file(str(src), link=True)
        assert _path(js, copied).stat().st_ino != src.stat().st_ino
        assert _path(js, copied).stat().st_nlink == 1
        assert _path(js, linked).stat().st_ino == src.stat().st_ino
        for file_id in (copied, linked):
            dest = tmp_path / f"read-{file_id.split('/')[1]}"
            js.read_file(file_id, str(dest))
            assert dest.stat().st_ino not in (src.stat().st_ino, _path(js, file_id).stat().st_ino)
            assert dest.read_bytes() == b"z" * 5000

    def test_pseudo_files_are_copied_with_their_content(self, tmp_path: Path) -> None:
        """procfs files report size 0 and copy_file_range copies nothing from them."""
        js = FileJobStore.create(str(tmp_path / "js"))
        file_id = js.write_file("/proc/self/mountinfo")
        assert b" / " in _stored(js, file_id)

    def test_traversal(self, tmp_path: Path) -> None:
        js = FileJobStore.create(str(tmp_path / "js"))
        (tmp_path / "f.txt").write_bytes(b"abc")
        # These ids point at files that exist, outside files/: they must not be reachable.
        for bad in (f"../{MARKER}", f"ab/../../{MARKER}", str(tmp_path / "f.txt")):
            assert not js.file_exists(bad)
            with pytest.raises(NoSuchFileError):
                js.read_file(bad, str(tmp_path / "stolen"))
            with pytest.raises(NoSuchFileError):
                js.delete_file(bad)
            with pytest.raises(NoSuchFileError):
                js.update_file(bad, str(tmp_path / "f.txt"))
        assert not (tmp_path / "stolen").exists()
        assert (tmp_path / "js" / MARKER).exists() and (tmp_path / "f.txt").read_bytes() == b"abc"

    def test_failed_stream_leaves_no_directory(self, tmp_path: Path) -> None:
        root = tmp_path / "js"
        js = FileJobStore.create(str(root))
        with pytest.raises(ValueError, match="bad"):
            with js.write_file_stream(basename="x") as (f, file_id):
                f.write(b"1")
                raise ValueError("bad")
        assert not _path(js, file_id).exists()
        assert list((root / "files").glob("*/*")) == []

    def test_invalid_names_and_ids(self, tmp_path: Path) -> None:
        js = FileJobStore.create(str(tmp_path / "js"))
        for name in ("", ".", "..", "../evil", "a/b", ".hidden", "sp ace"):
            with pytest.raises(ValueError):
                js.write_shared(name, b"x")
            with pytest.raises(ValueError):
                js.read_shared(name)
        for job_id in ("", "../x", "a/b", "a.b"):
            with pytest.raises(ValueError):
                js.write_job(job_id, b"x")
            with pytest.raises(NoSuchJobError):
                js.read_job(job_id)
            assert not js.job_exists(job_id)
        with pytest.raises(ValueError), js.write_file_stream(basename="a/b"):
            pass
        assert not (tmp_path / "evil").exists()

    def test_fsync_flag(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        locator = str(tmp_path / "js")
        FileJobStore.create(locator)
        calls: list[int] = []
        real_fsync = os.fsync

        def counting_fsync(fd: int) -> None:
            calls.append(fd)
            real_fsync(fd)

        monkeypatch.setattr("flow.jobstores.file.os.fsync", counting_fsync)
        plain = FileJobStore.open(locator)
        plain.write_job("abc", b"x")
        assert calls == []
        durable = FileJobStore(locator, fsync=True)
        durable.write_job("abc", b"y")
        assert len(calls) >= 2  # the file and its directory
        assert plain.read_job("abc") == b"y"

    def test_destroy_after_partial_destroy(self, tmp_path: Path) -> None:
        root = tmp_path / "js"
        js = FileJobStore.create(str(root))
        js.write_job("abc", b"x")
        for sub in ("jobs", "shared"):
            shutil.rmtree(root / sub)
        js.destroy()
        assert not root.exists()


def test_file_store_move_when_a_process_opens_the_file_during_the_rename(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A process that began to open the file by its old name while the store renamed it waits
    for the lease, then holds the moved inode: the store must keep a copy instead."""
    import fcntl

    import flow.jobstores.file as filestore_module

    store = FileJobStore.create(str(tmp_path / "js"))
    path = tmp_path / "out.txt"
    path.write_bytes(b"as the tool left it\n")
    real_rename = os.rename
    opener: list[subprocess.Popen[bytes]] = []

    def rename_while_opened(src: str, dst: str) -> None:
        if src == str(path) and not opener:
            ours = [int(n) for n in os.listdir("/proc/self/fd")
                    if os.path.realpath(f"/proc/self/fd/{n}") == str(path)]
            opener.append(subprocess.Popen(["sh", "-c", f"exec 3>>'{src}'; echo late >&3"]))
            _wait_for(lambda: any(fcntl.fcntl(fd, fcntl.F_GETLEASE) != fcntl.F_WRLCK for fd in ours))
        real_rename(src, dst)

    monkeypatch.setattr(filestore_module.os, "rename", rename_while_opened)
    file_id = store.move_file(str(path), "job")
    monkeypatch.undo()
    assert opener and opener[0].wait(timeout=60) == 0  # it opened and wrote, after the lease
    assert not path.exists()
    assert _stored(store, file_id) == b"as the tool left it\n"
