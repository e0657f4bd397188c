"""Toil style: two jobs with a service each; --maxServiceJobs 1 runs the services one at a time."""
import os

from toil.common import Toil
from toil.job import Job


class Marker(Job.Service):
    def __init__(self, directory, name):
        Job.Service.__init__(self, cores=0.1, memory="50M", disk="1M")
        self.directory = directory
        self.name = name

    def start(self, job):
        others = [n for n in os.listdir(self.directory) if n.startswith("up-")]
        open(os.path.join(self.directory, "up-" + self.name), "w").close()
        with open(os.path.join(self.directory, "log"), "a") as handle:
            handle.write(f"{self.name} started with {len(others)} other(s) up\n")
        return self.name

    def stop(self, job):
        os.unlink(os.path.join(self.directory, "up-" + self.name))


def use(name):
    return name


def with_service(job, directory, name):
    value = job.addService(Marker(directory, name))
    job.addChildFn(use, value, cores=0.1)


if __name__ == "__main__":
    parser = Job.Runner.getDefaultArgumentParser()
    parser.add_argument("--directory")
    options = parser.parse_args()
    root = Job()
    root.addChildJobFn(with_service, options.directory, "one", cores=0.1)
    root.addChildJobFn(with_service, options.directory, "two", cores=0.1)
    with Toil(options) as toil:
        toil.start(root)
