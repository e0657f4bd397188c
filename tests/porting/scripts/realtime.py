"""Toil style: RealtimeLogger messages reach the leader while the job still runs."""
import os
import time

from toil.common import Toil
from toil.job import Job
from toil.realtimeLogger import RealtimeLogger


def talk(job, release):
    RealtimeLogger.info("realtime hello from %s", "the job")
    deadline = time.time() + 120
    while not os.path.exists(release):  # the test creates it once it has seen the message
        if time.time() > deadline:
            raise RuntimeError("never released: the message did not reach the leader in time")
        time.sleep(0.1)
    return "released"


if __name__ == "__main__":
    parser = Job.Runner.getDefaultArgumentParser()
    parser.add_argument("--release")
    options = parser.parse_args()
    with Toil(options) as toil:
        print(toil.start(Job.wrapJobFn(talk, options.release)))
