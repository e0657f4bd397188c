"""Global files between jobs, scratch space, and import/export through Flow, end to end."""

from __future__ import annotations

import argparse
import contextlib
import functools
import http.server
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from flow.core.common import Flow
from flow.core.exceptions import FailedJobsException, FlowError
from flow.core.job import Job
from flow.jobstores.file import FileJobStore

SMALL = {"cores": 0.1, "memory": "50M"}


# ---- jobs ------------------------------------------------------------------------------------
def write_files(job, outside_path):
    """Write global files: from scratch, from outside scratch, two streams (all stored as copies)."""
    fs = job.fileStore
    scratch = fs.getLocalTempFile(suffix=".txt")
    with open(scratch, "w") as handle:
        handle.write("from scratch\n")
    scratch_id = fs.writeGlobalFile(scratch)
    outside_id = fs.writeGlobalFile(outside_path)
    with fs.writeGlobalFileStream() as (stream, stream_id):
        stream.write(b"streamed bytes " * 1000)
    with fs.writeGlobalFileStream(encoding="utf-8", basename="text.txt") as (text, text_id):
        text.write("héllo wörld\n")
    return {
        "scratch": scratch_id, "outside": outside_id, "stream": stream_id, "text": text_id,
        "scratch_size": scratch_id.size,
    }


def inspect_read(job, ids, outside_path):
    fs = job.fileStore
    store_path = fs.jobStore._file_path(ids["scratch"])  # the file store's layout
    linked = fs.readGlobalFile(ids["scratch"])
    copy = fs.readGlobalFile(ids["scratch"], mutable=True)
    user_path = os.path.join(fs.getLocalTempDir(), "chosen-name.txt")
    at_user_path = fs.readGlobalFile(ids["outside"], userPath=user_path)
    out = {
        "linked_content": Path(linked).read_text(),
        "linked_nlink": os.stat(linked).st_nlink,
        "linked_same_inode": os.stat(linked).st_ino == os.stat(store_path).st_ino,
        "linked_basename": os.path.basename(linked),
        "copy_content": Path(copy).read_text(),
        "copy_nlink": os.stat(copy).st_nlink,
        "copy_same_inode": os.stat(copy).st_ino == os.stat(store_path).st_ino,
        "user_path_ok": at_user_path == user_path,
        "outside_content": Path(at_user_path).read_text(),
        "outside_original_now": Path(outside_path).read_text(),
    }
    # a mutable copy may be changed without touching the stored file
    with open(copy, "a") as handle:
        handle.write("changed\n")
    with fs.readGlobalFileStream(ids["scratch"]) as stream:
        out["stored_after_change"] = stream.read().decode()
    with fs.readGlobalFileStream(ids["stream"]) as stream:
        out["stream_content"] = stream.read()
    with fs.readGlobalFileStream(ids["text"], encoding="utf-8") as text:
        out["text_content"] = text.read()
    out["sizes"] = {k: fs.getGlobalFileSize(ids[k]) for k in ("scratch", "outside", "stream", "text")}
    return out


def change_outside(path):
    with open(path, "w") as handle:
        handle.write("changed after it was written\n")


def files_root(job, outside_path):
    writer = job.addChildJobFn(write_files, outside_path, **SMALL)
    # the local original changes after writeGlobalFile: the stored copy must not
    changer = writer.addChildFn(change_outside, outside_path, **SMALL)
    reader = changer.addFollowOnJobFn(inspect_read, writer.rv(), outside_path, **SMALL)
    return {"ids": writer.rv(), "read": reader.rv()}


def make_file(job):
    fs = job.fileStore
    path = fs.getLocalTempFile()
    Path(path).write_text("to be deleted")
    keep = fs.getLocalTempFile()
    Path(keep).write_text("to be kept")
    return fs.writeGlobalFile(path), fs.writeGlobalFile(keep)


def delete_file(job, file_id):
    local = job.fileStore.readGlobalFile(file_id)
    job.fileStore.deleteGlobalFile(file_id)
    still_there_while_running = job.fileStore.jobStore.file_exists(file_id)
    return {"local_removed": not os.path.exists(local), "exists_during_job": still_there_while_running}


def exists_after(job, file_id):
    return job.fileStore.jobStore.file_exists(file_id)


def delete_root(job):
    maker = job.addChildJobFn(make_file, **SMALL)
    deleter = maker.addFollowOnJobFn(delete_file, maker.rv(0), **SMALL)
    checker = deleter.addFollowOnJobFn(exists_after, maker.rv(0), **SMALL)
    return {"ids": maker.rv(), "delete": deleter.rv(), "exists_after": checker.rv()}


def scratch_job(job):
    fs = job.fileStore
    temp_file = fs.getLocalTempFile(suffix=".dat", prefix="pre-")
    temp_dir = fs.getLocalTempDir()
    temp_dir2 = fs.getLocalTempDir()
    Path(temp_dir, "inside.txt").write_text("x")
    return {
        "file": temp_file, "dir": temp_dir, "dir2": temp_dir2,
        "file_exists": os.path.isfile(temp_file), "dir_empty": os.listdir(temp_dir2) == [],
        "tempDir": job.tempDir,
    }


def read_text(job, file_id):
    with job.fileStore.readGlobalFileStream(file_id, encoding="utf-8") as text:
        return text.read()


def write_result(job, text):
    with job.fileStore.writeGlobalFileStream(encoding="utf-8", basename="result.txt") as (out, fid):
        out.write(text.upper())
    return fid


def import_in_job(job, url):
    file_id = job.fileStore.importFile(url)
    with open(job.fileStore.readGlobalFile(file_id)) as handle:
        return handle.read()


def read_three(job, a, b, c):
    texts = [read_text(job, fid) for fid in (a, b, c)]
    return {"texts": texts, "result": job.addFollowOnJobFn(write_result, "".join(texts), **SMALL).rv()}


def read_many(job, count):
    """readGlobalFiles of ``count`` same-named files, each into a folder of its own (made by
    the copy); then one of the read-only copies changed, which the job's end must catch."""
    ids = []
    for i in range(count):
        path = os.path.join(job.fileStore.getLocalTempDir(), "same.txt")
        with open(path, "w") as handle:
            handle.write(f"file {i}\n")
        ids.append(job.fileStore.writeGlobalFile(path))
    stage = os.path.join(job.fileStore.getLocalTempDir(), "stage")
    reads = [(fid, os.path.join(stage, str(i), "same.txt")) for i, fid in enumerate(ids)]
    job.fileStore.readGlobalFiles(reads, spread_in=stage)
    contents = []
    for _, path in reads:
        with open(path) as handle:
            contents.append(handle.read())
    return contents


def read_many_and_change_one(job):
    fid = job.fileStore.writeGlobalFile(_scratch_text(job, "kept\n"))
    stage = os.path.join(job.fileStore.getLocalTempDir(), "stage")
    reads = [(fid, os.path.join(stage, str(i), "same.txt")) for i in range(20)]
    job.fileStore.readGlobalFiles(reads)
    with open(reads[7][1], "a") as handle:
        handle.write("changed\n")


def _scratch_text(job, text):
    path = job.fileStore.getLocalTempFile()
    with open(path, "w") as handle:
        handle.write(text)
    return path


# ---- tests -----------------------------------------------------------------------------------
def test_global_files_between_jobs(options: argparse.Namespace, tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("written from outside scratch\n")
    with Flow(options) as flow:
        result = flow.start(Job.wrapJobFn(files_root, str(outside), **SMALL))
    read = result["read"]
    assert read["linked_content"] == "from scratch\n"
    # the default read is a private copy too (issue 18: a link would let the job change the store)
    assert not read["linked_same_inode"]
    assert read["linked_nlink"] == 1
    assert read["linked_basename"].endswith(".txt")
    # mutable=True gives a private copy
    assert read["copy_content"] == "from scratch\n"
    assert not read["copy_same_inode"]
    assert read["copy_nlink"] == 1
    assert read["stored_after_change"] == "from scratch\n"
    # a file written from outside scratch was copied: later changes to the original do not show
    assert read["outside_original_now"] == "changed after it was written\n"
    assert read["outside_content"] == "written from outside scratch\n"
    assert read["user_path_ok"]
    assert read["stream_content"] == b"streamed bytes " * 1000
    assert read["text_content"] == "héllo wörld\n"
    assert read["sizes"] == {
        "scratch": len("from scratch\n"),
        "outside": len("written from outside scratch\n"),
        "stream": len(b"streamed bytes ") * 1000,
        "text": len("héllo wörld\n".encode()),
    }
    assert result["ids"]["scratch_size"] == len("from scratch\n")


def test_delete_global_file(options: argparse.Namespace) -> None:
    options.clean = "never"
    with Flow(options) as flow:
        result = flow.start(Job.wrapJobFn(delete_root, **SMALL))
    deleted, kept = result["ids"]
    assert result["delete"] == {"local_removed": True, "exists_during_job": True}
    assert result["exists_after"] is False
    store = FileJobStore.open(options.jobStore)
    assert not store.file_exists(deleted)
    assert store.file_exists(kept)


def test_local_temp_files_and_dirs(options: argparse.Namespace, tmp_path: Path) -> None:
    with Flow(options) as flow:
        result = flow.start(Job.wrapJobFn(scratch_job, **SMALL))
    assert result["file_exists"] and result["dir_empty"]
    assert os.path.basename(result["file"]).startswith("pre-")
    assert result["file"].endswith(".dat")
    assert len({result["dir"], result["dir2"], result["tempDir"]}) == 3
    work = os.path.realpath(options.workDir)
    for key in ("file", "dir", "dir2", "tempDir"):
        assert os.path.realpath(result[key]).startswith(work + os.sep), (key, result[key])
        # scratch space is removed once the job has finished
        assert not os.path.exists(result[key]), (key, result[key])


def test_work_dir_removed_after_workflow(options: argparse.Namespace) -> None:
    """Jobs' scratch space and worker logs do not outlive a successful workflow."""
    with Flow(options) as flow:
        flow.start(Job.wrapJobFn(scratch_job, **SMALL))
    leftovers = sorted(str(p) for p in Path(options.workDir).rglob("*")) if os.path.exists(options.workDir) else []
    assert leftovers == []


def test_import_export_paths_and_file_urls(options: argparse.Namespace, tmp_path: Path) -> None:
    src = tmp_path / "input data.txt"  # a space: the file:// URL must be unquoted
    src.write_text("imported text\n")
    out_path = tmp_path / "out" / "nested" / "result.txt"
    out_url = tmp_path / "out-url.txt"
    with Flow(options) as flow:
        by_path = flow.importFile(str(src))
        by_url = flow.importFile(src.as_uri())
        assert by_path.size == by_url.size == len("imported text\n")
        result = flow.start(Job.wrapJobFn(read_three, by_path, by_url, by_path, **SMALL))
        assert result["texts"] == ["imported text\n"] * 3
        flow.exportFile(result["result"], str(out_path))
        flow.exportFile(result["result"], out_url.as_uri())
        flow.exportFile(by_url, str(tmp_path / "roundtrip.txt"))
    assert out_path.read_text() == "IMPORTED TEXT\n" * 3
    assert out_url.read_text() == "IMPORTED TEXT\n" * 3
    assert (tmp_path / "roundtrip.txt").read_text() == "imported text\n"
    assert src.read_text() == "imported text\n"  # the original is untouched


def test_import_missing_file_is_a_clear_error(options: argparse.Namespace, tmp_path: Path) -> None:
    with Flow(options) as flow:
        with pytest.raises(FlowError, match="no such file"):
            flow.importFile(str(tmp_path / "missing.txt"))


@contextlib.contextmanager
def http_server(directory: Path) -> Iterator[str]:
    """A threaded HTTP server on 127.0.0.1 serving ``directory``; yields its base URL."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

    handler = functools.partial(Quiet, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
        assert not thread.is_alive()


def test_import_http(options: argparse.Namespace, tmp_path: Path) -> None:
    served = tmp_path / "served"
    served.mkdir()
    payload = bytes(range(256)) * 4096  # 1 MiB, binary
    (served / "data.bin").write_bytes(payload)
    (served / "hello.txt").write_text("hello over http\n")
    with http_server(served) as base, Flow(options) as flow:
        file_id = flow.importFile(f"{base}/data.bin")
        assert file_id.size == len(payload)
        with flow.jobStore.read_file_stream(file_id) as stream:
            assert stream.read() == payload
        # a job may import from a URL too (from its own worker process)
        result = flow.start(Job.wrapJobFn(import_in_job, f"{base}/hello.txt", **SMALL))
        assert result == "hello over http\n"
        with pytest.raises(FlowError):
            flow.importFile(f"{base}/missing.bin")


def delete_then_fail_once(job, file_id, marker):
    with job.fileStore.readGlobalFileStream(file_id) as stream:
        content = stream.read().decode()
    job.fileStore.deleteGlobalFile(file_id)
    if not os.path.exists(marker):
        Path(marker).write_text("failed once")
        raise RuntimeError("fails after deleteGlobalFile: the deletion must not happen")
    return content


def test_delete_of_failed_attempt_is_not_applied(options: argparse.Namespace, tmp_path: Path) -> None:
    options.retryCount = 1
    options.clean = "never"
    src = tmp_path / "input.txt"
    src.write_text("still here on the retry")
    with Flow(options) as flow:
        file_id = flow.importFile(str(src))
        result = flow.start(Job.wrapJobFn(delete_then_fail_once, file_id, str(tmp_path / "marker"), **SMALL))
        assert result == "still here on the retry"
        assert not flow.jobStore.file_exists(file_id)  # the successful attempt deleted it


@pytest.mark.parametrize("count", [3, 40])  # one by one, and side by side
def test_read_global_files(options: argparse.Namespace, count: int) -> None:
    with Flow(options) as flow:
        contents = flow.start(Job.wrapJobFn(read_many, count, **SMALL))
    assert contents == [f"file {i}\n" for i in range(count)]


def test_read_global_files_gives_read_only_copies(options: argparse.Namespace) -> None:
    options.retryCount = 0
    with Flow(options) as flow, pytest.raises(FailedJobsException) as failed:
        flow.start(Job.wrapJobFn(read_many_and_change_one, **SMALL))
    reason = failed.value.failed[0].reason
    assert reason.startswith("ChangedReadFileError") and "/stage/7/same.txt" in reason, reason
