"""Toil style: the FileStore calls Toil's documentation and sort example use."""
import errno
import io
import os
import sys

from toil.common import Toil
from toil.job import Job


def fill(job, empty_id):
    with job.fileStore.updateGlobalFileStream(empty_id) as stream:
        stream.write(b"b\na\nc\n")
    local = job.fileStore.readGlobalFile(empty_id)
    with open(local) as handle:
        lines = sorted(handle)
    sorted_path = job.fileStore.getLocalTempFile()
    with open(sorted_path, "w") as handle:
        handle.writelines(lines)
    job.fileStore.updateGlobalFile(empty_id, sorted_path)
    job.fileStore.deleteLocalFile(empty_id)
    try:
        job.fileStore.deleteLocalFile(empty_id)
    except OSError as exc:
        assert exc.errno == errno.ENOENT
    else:
        raise AssertionError("deleting local copies twice must raise ENOENT")
    with job.fileStore.writeGlobalFileStream(cleanup=True) as (stream, temp_id):
        stream.write(b"temporary")
    job.fileStore.log_user_stream("tool-output", io.BytesIO(b"tool said hi\n"))
    return temp_id


def check(job, empty_id, temp_id):
    with job.fileStore.readGlobalFileStream(empty_id, encoding="utf-8") as handle:
        content = handle.read()
    with job.fileStore.readSharedFileStream("settings") as handle:
        shared = handle.read().decode()
    return content, job.fileStore.globalFileExists(temp_id), shared


def after(job, temp_id):
    return job.fileStore.globalFileExists(temp_id)


def root(job):
    empty_id = job.fileStore.getEmptyFileStoreID()
    assert job.fileStore.getGlobalFileSize(empty_id) == 0
    filled = job.addChildJobFn(fill, empty_id)
    checked = filled.addChildJobFn(check, empty_id, filled.rv())
    final = job.addFollowOnJobFn(after, filled.rv())
    return checked.rv(), final.rv()


if __name__ == "__main__":
    options = Job.Runner.getDefaultOptions(sys.argv[1])
    options.clean = "always"
    settings = os.path.join(sys.argv[2], "settings.txt")
    with open(settings, "w") as handle:
        handle.write("shared!")
    with Toil(options) as toil:
        assert toil.importFile("file://" + settings, sharedFileName="settings") is None
        assert toil.importFile(settings + ".missing", check_existence=False) is None
        try:
            toil.importFile(settings + ".missing")
        except FileNotFoundError:
            pass
        else:
            raise AssertionError("a missing import must raise FileNotFoundError")
        (content, exists_in_subtree, shared), exists_after = toil.start(Job.wrapJobFn(root))
    print(repr(content), exists_in_subtree, shared, exists_after)
