"""Toil style: Job.defer runs after the job, whether it returns or raises."""
import sys

from toil.common import Toil
from toil.job import Job


def note(path, text):
    with open(path, "a") as handle:
        handle.write(text + "\n")


def work(job, path, fail):
    job.defer(note, path, "first registered")
    job.defer(note, path, "second registered")
    note(path, "job body")
    if fail:
        raise RuntimeError("failing on purpose")


if __name__ == "__main__":
    options = Job.Runner.getDefaultOptions(sys.argv[1])
    options.retryCount = 0
    options.clean = "always"
    with Toil(options) as toil:
        toil.start(Job.wrapJobFn(work, sys.argv[2], sys.argv[3] == "fail"))
