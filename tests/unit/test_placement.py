"""flow.jobstores.placement: the ext4 attribute that spreads a folder's subfolders."""

from __future__ import annotations

import fcntl
import os
import subprocess
from pathlib import Path

import pytest

from flow.core.common import Flow
from flow.core.job import Job
from flow.jobstores.placement import _FLAGS, FS_IOC_GETFLAGS, FS_TOPDIR_FL, spread_subdirectories
from flow.jobstores.registry import create_job_store


def _fs_type(path: Path) -> str:
    return subprocess.run(["stat", "-f", "-c", "%T", str(path)], capture_output=True, text=True,
                          check=True).stdout.strip()


def _flags(path: Path) -> int:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        return int(_FLAGS.unpack(fcntl.ioctl(fd, FS_IOC_GETFLAGS, _FLAGS.pack(0)))[0])
    finally:
        os.close(fd)


@pytest.fixture
def ext4_dir(tmp_path: Path) -> Path:
    if _fs_type(tmp_path) != "ext2/ext3":  # how stat names the ext family, ext4 included
        pytest.skip(f"{tmp_path} is not on ext4")
    return tmp_path


def test_the_attribute_is_set_and_kept_on_ext4(ext4_dir: Path) -> None:
    folder = ext4_dir / "spread"
    folder.mkdir()
    assert not _flags(folder) & FS_TOPDIR_FL
    assert spread_subdirectories(str(folder))
    assert _flags(folder) & FS_TOPDIR_FL
    assert spread_subdirectories(str(folder))  # again: no change, no error
    (folder / "sub").mkdir()  # subfolders are still made as usual
    assert (folder / "sub").is_dir()


def test_a_new_file_job_store_spreads_its_shards(ext4_dir: Path) -> None:
    create_job_store(f"file:{ext4_dir / 'store'}")
    for sub in ("", "files", "jobs"):
        assert _flags(ext4_dir / "store" / sub) & FS_TOPDIR_FL, sub
    assert not _flags(ext4_dir / "store" / "shared") & FS_TOPDIR_FL


def test_without_the_attribute_nothing_is_changed_or_raised(tmp_path: Path) -> None:
    shm = Path("/dev/shm")
    if not shm.is_dir() or _fs_type(shm) != "tmpfs":
        pytest.skip("no tmpfs at /dev/shm")
    assert not spread_subdirectories(str(shm / f"flow-test-absent-{os.getpid()}"))  # no such folder
    (tmp_path / "file").write_text("x")
    assert not spread_subdirectories(str(tmp_path / "file"))  # not a folder
    link = tmp_path / "link"
    link.symlink_to(tmp_path)
    assert not spread_subdirectories(str(link))  # a link is not followed
    folder = shm / f"flow-test-{os.getpid()}"
    folder.mkdir()
    try:
        assert not spread_subdirectories(str(folder))  # tmpfs has no such attribute
    finally:
        folder.rmdir()


def _scratch_root_flags(job: Job) -> int:
    return _flags(Path(job.fileStore.getLocalTempDir()).parent.parent)  # <workDir>/flow-<run>


def test_a_workers_scratch_root_spreads_the_jobs_folders(ext4_dir: Path) -> None:
    options = Job.Runner.getDefaultOptions(str(ext4_dir / "store"))
    options.workDir = str(ext4_dir / "work")
    options.noProgress = True
    with Flow(options) as flow:
        flags = flow.start(Job.wrapJobFn(_scratch_root_flags, cores=0.1, memory="10M", disk="1M"))
    assert flags & FS_TOPDIR_FL
