"""Stored files are immutable and file ids are checked before any path is touched (issue 18).

Real worker processes and the real file job store, as in test_api_files.py. A job that changes
its local file after writeGlobalFile, or a copy it read without mutable=True, must never change
what later jobs read and what is exported; the second is also an error of the job, naming the file.
"""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path

import pytest

from flow.core.common import Flow
from flow.core.exceptions import FailedJobsException
from flow.core.job import Job
from flow.core.urls import export_url
from flow.jobstores.abstract import NoSuchFileError
from flow.jobstores.file import FileJobStore
from tests.integration._util import touch

SMALL = {"cores": 0.1, "memory": "50M"}
ORIGINAL = b"the original bytes\n" * 100


# ---- jobs ------------------------------------------------------------------------------------
def write_then_append(job):
    """writeGlobalFile, then keep writing to the local file (in place, and by a hard link)."""
    fs = job.fileStore
    path = fs.getLocalTempFile(suffix=".txt")
    Path(path).write_bytes(ORIGINAL)
    file_id = fs.writeGlobalFile(path)
    with open(path, "ab") as handle:
        handle.write(b"appended after writeGlobalFile\n")
    with open(path, "r+b") as handle:
        handle.write(b"OVERWRITTEN")
    os.link(path, path + ".link")
    with open(path + ".link", "ab") as handle:
        handle.write(b"through a hard link\n")
    return file_id


def read_bytes(job, file_id):
    with open(job.fileStore.readGlobalFile(file_id), "rb") as handle:
        return handle.read()


def append_root(job):
    writer = job.addChildJobFn(write_then_append, **SMALL)
    reader = writer.addFollowOnJobFn(read_bytes, writer.rv(), **SMALL)
    return {"id": writer.rv(), "read": reader.rv()}


def store_original(job):
    path = job.fileStore.getLocalTempFile(suffix=".dat")
    Path(path).write_bytes(ORIGINAL)
    return job.fileStore.writeGlobalFile(path)


def change_read_copy(job, file_id, how, marker):
    """Read without mutable=True and change the copy (only while ``marker`` is absent)."""
    fs = job.fileStore
    path = fs.readGlobalFile(file_id, symlink=how.startswith("symlink"))
    if os.path.exists(marker):
        return "left alone"
    touch(marker)
    if how.endswith("append"):
        with open(path, "ab") as handle:
            handle.write(b"changed by the job")
    elif how == "overwrite-same-size":  # in place, same size, right after the read
        with open(path, "r+b") as handle:
            handle.write(b"X" * 10)
    else:  # replaced by another file
        Path(path + ".new").write_bytes(b"replacement")
        os.replace(path + ".new", path)
    return "changed"


def change_root(job, how, marker):
    writer = job.addChildJobFn(store_original, **SMALL)
    changer = writer.addFollowOnJobFn(change_read_copy, writer.rv(), how, marker, **SMALL)
    reader = changer.addFollowOnJobFn(read_bytes, writer.rv(), **SMALL)
    return {"id": writer.rv(), "changer": changer.rv(), "read": reader.rv()}


def change_mutable_copy(job, file_id):
    fs = job.fileStore
    path = fs.readGlobalFile(file_id, mutable=True)
    with open(path, "r+b") as handle:
        handle.write(b"MUTATED")
    with open(path, "ab") as handle:
        handle.write(b"and appended")
    deleted = fs.readGlobalFile(file_id)  # a read-only copy the job deletes: allowed
    os.unlink(deleted)
    return Path(path).read_bytes()


def mutable_root(job):
    writer = job.addChildJobFn(store_original, **SMALL)
    changer = writer.addFollowOnJobFn(change_mutable_copy, writer.rv(), **SMALL)
    reader = changer.addFollowOnJobFn(read_bytes, writer.rv(), **SMALL)
    return {"changed": changer.rv(), "read": reader.rv()}


def try_crafted_ids(job, crafted, victim):
    """readGlobalFile / deleteGlobalFile of crafted ids: each must raise and touch nothing."""
    fs = job.fileStore
    keep = Path(fs.localTempDir, "keep.txt")
    keep.write_text("scratch content")
    outcome = {}
    for file_id in crafted:
        for user_path in (None, victim):
            try:
                fs.readGlobalFile(file_id, userPath=user_path)
                outcome[f"{file_id} -> {user_path}"] = "no error"
            except NoSuchFileError as exc:
                outcome[f"{file_id} -> {user_path}"] = f"NoSuchFileError {exc.file_id == file_id} {exc}"
        try:
            fs.deleteGlobalFile(file_id)
            outcome[f"delete {file_id}"] = "no error"
        except NoSuchFileError as exc:
            outcome[f"delete {file_id}"] = f"NoSuchFileError {exc.file_id == file_id} {exc}"
    intact = keep.read_text() == "scratch content" and sorted(os.listdir(fs.localTempDir)) == ["keep.txt"]
    outcome["scratch intact"] = str(intact)
    return outcome


def change_both_copies(job, file_id):
    """Change a mutable copy and (an error) a read-only copy of an input file."""
    fs = job.fileStore
    for mutable in (True, False):
        with open(fs.readGlobalFile(file_id, mutable=mutable), "ab") as handle:
            handle.write(b"a job's change")


# ---- tests -----------------------------------------------------------------------------------
def test_changing_a_written_file_does_not_change_the_stored_copy(
    options: argparse.Namespace, tmp_path: Path
) -> None:
    options.clean = "never"
    with Flow(options) as flow:
        result = flow.start(Job.wrapJobFn(append_root, **SMALL))
        assert result["read"] == ORIGINAL
        assert result["id"].size == len(ORIGINAL)
        flow.exportFile(result["id"], str(tmp_path / "exported.txt"))
    assert (tmp_path / "exported.txt").read_bytes() == ORIGINAL


@pytest.mark.parametrize("how", ["append", "overwrite-same-size", "replace", "symlink-append"])
def test_changing_a_read_copy_fails_the_job_and_not_the_store(
    options: argparse.Namespace, tmp_path: Path, how: str
) -> None:
    options.clean = "never"
    options.retryCount = 0
    marker = tmp_path / "changed-once"
    with pytest.raises(FailedJobsException) as info:
        with Flow(options) as flow:
            flow.start(Job.wrapJobFn(change_root, how, str(marker), **SMALL))
    assert marker.exists()
    assert [f.name for f in info.value.failed] == ["change_read_copy"]
    message = str(info.value)
    assert "ChangedReadFileError" in message and "mutable=True" in message
    assert "Traceback" not in message
    # the stored file, what a later reader and an export see, is the original
    store = FileJobStore.open(options.jobStore)
    (stored,) = Path(options.jobStore, "files").glob("*/*")  # the one file of the workflow
    found = re.search(rf"global file '({stored.parent.name}/{stored.name}/[^/']+\.dat)'", message)
    assert found is not None, message
    file_id = found.group(1)
    assert f"/{file_id.rsplit('/', 1)[1]}, its copy" in message  # the local path of the changed copy
    with store.read_file_stream(file_id) as stream:
        assert stream.read() == ORIGINAL
    export_url(store, file_id, str(tmp_path / "exported.dat"))
    assert (tmp_path / "exported.dat").read_bytes() == ORIGINAL
    # resumed, the job leaves its copy alone this time and the next job reads the original
    options.restart = True
    with Flow(options) as flow:
        result = flow.restart()
    assert result["changer"] == "left alone"
    assert result["read"] == ORIGINAL


def test_mutable_copies_may_be_changed(options: argparse.Namespace) -> None:
    with Flow(options) as flow:
        result = flow.start(Job.wrapJobFn(mutable_root, **SMALL))
    assert result["changed"].startswith(b"MUTATED") and result["changed"].endswith(b"and appended")
    assert result["read"] == ORIGINAL


def test_crafted_file_ids_raise_and_touch_nothing(options: argparse.Namespace, tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("must survive")
    outside = tmp_path / "outside.txt"
    outside.write_text("not in the store")
    crafted = ["../x", "..", "aa/aaaaaaaaaaaaaaaa/..", str(outside), "/etc/passwd",
               "aa/aaaaaaaaaaaaaaaa/unknown.txt"]
    with Flow(options) as flow:
        outcome = flow.start(Job.wrapJobFn(try_crafted_ids, crafted, str(victim), **SMALL))
    assert outcome.pop("scratch intact") == "True"
    # deleting a well-formed id of no file is no error (as in Toil); the others name the id
    assert outcome.pop("delete aa/aaaaaaaaaaaaaaaa/unknown.txt") == "no error"
    for key, value in outcome.items():
        file_id = key.removeprefix("delete ").split(" -> ")[0]
        assert value.startswith("NoSuchFileError True"), (key, value)
        assert repr(file_id) in value, (key, value)
    assert victim.read_text() == "must survive"
    assert outside.read_text() == "not in the store"


def test_linked_imports_are_read_as_copies(options: argparse.Namespace, tmp_path: Path) -> None:
    """--linkImports keeps the user's file in the store (they promised not to change it), but a
    job still cannot change it: it reads copies."""
    options.linkImports = True
    options.clean = "never"
    options.retryCount = 0
    src = tmp_path / "input.txt"
    src.write_bytes(ORIGINAL)
    with Flow(options) as flow:
        file_id = flow.importFile(str(src))
        shard, token, _ = file_id.split("/")
        assert Path(options.jobStore, "files", shard, token).stat().st_ino == src.stat().st_ino
        with pytest.raises(FailedJobsException, match="ChangedReadFileError"):
            flow.start(Job.wrapJobFn(change_both_copies, file_id, **SMALL))
    assert src.read_bytes() == ORIGINAL
    export_url(FileJobStore.open(options.jobStore), file_id, str(tmp_path / "exported.txt"))
    assert (tmp_path / "exported.txt").read_bytes() == ORIGINAL
