"""Toil style: a deferred function still runs when its worker is killed (kill -9)."""
import os
import signal
import sys

from toil.common import Toil
from toil.job import Job


def note(path, text):
    with open(path, "a") as handle:
        handle.write(text + "\n")


def work(job, directory):
    notes = os.path.join(directory, "notes")
    first = not os.path.exists(os.path.join(directory, "attempted"))
    open(os.path.join(directory, "attempted"), "w").close()
    if first:
        job.defer(note, notes, "cleanup of the killed attempt")
        os.kill(os.getpid(), signal.SIGKILL)
    with open(notes) as handle:
        return handle.read().splitlines()


if __name__ == "__main__":
    options = Job.Runner.getDefaultOptions(sys.argv[1])
    options.retryCount = 1
    options.clean = "always"
    with Toil(options) as toil:
        print(toil.start(Job.wrapJobFn(work, sys.argv[2])))
