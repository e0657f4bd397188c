"""Toil style: PromisedRequirement, resource defaults inside run(), Toil's accelerator forms."""
import sys

from toil.common import Toil
from toil.job import Job, PromisedRequirement


def measure(job):
    return 3 * 1024 * 1024, 2


def report(job, label):
    return f"{label}: cores={job.cores} memory={job.memory} disk={job.disk}"


def root(job):
    sizes = job.addChildJobFn(measure)
    exact = Job.wrapJobFn(report, "exact", disk=PromisedRequirement(sizes.rv(0)))
    doubled = Job.wrapJobFn(report, "doubled",
                            memory=PromisedRequirement(lambda size: 2 * size, sizes.rv(0)),
                            cores=PromisedRequirement(sizes.rv(1)))
    defaults = Job.wrapJobFn(report, "defaults")
    sizes.addFollowOn(exact)
    sizes.addFollowOn(doubled)
    sizes.addFollowOn(defaults)
    return [exact.rv(), doubled.rv(), defaults.rv()]


class Looping(Job):
    def run(self, fileStore):
        return sum(1 for _ in range(self.cores))  # int cores, as in Toil


if __name__ == "__main__":
    options = Job.Runner.getDefaultOptions(sys.argv[1])
    options.clean = "always"
    options.defaultCores = 1
    options.defaultMemory = "100M"
    options.defaultDisk = "200M"
    top = Job.wrapJobFn(root)
    loop = top.addChild(Looping())
    gpus = Job(accelerators=["cuda:1", {"kind": "gpu", "model": "a100", "count": 2}, 1])
    with Toil(options) as toil:
        results = toil.start(top)
    for line in results:
        print(line)
    print("accelerators", gpus.accelerators)
