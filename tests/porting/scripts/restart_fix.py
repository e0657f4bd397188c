"""Toil style: a job function of the main script fails; the user fixes it and restarts."""
from toil.common import Toil
from toil.job import Job

OFFSET = 1


class Doubler(Job):
    def __init__(self, value):
        Job.__init__(self, cores=0.1)
        self.value = value

    def run(self, fileStore):
        return 2 * self.value


def step(job, value):
    raise RuntimeError("bug: not fixed yet")  # FIXME


def root(job):
    scale = lambda x: x * 10  # noqa: E731 - a lambda: pickled by value, keeps working
    first = job.addChild(Doubler(scale(1)))
    return job.addFollowOnJobFn(step, first.rv()).rv()


if __name__ == "__main__":
    parser = Job.Runner.getDefaultArgumentParser()
    options = parser.parse_args()
    options.retryCount = 0
    with Toil(options) as toil:
        result = toil.restart() if options.restart else toil.start(Job.wrapJobFn(root))
    print("result", result)
