"""Toil style: apiDockerCall as a job function, the working directory mounted at /data."""
import os
import sys

from toil.common import Toil
from toil.job import Job
from toil.lib.docker import apiDockerCall

if __name__ == "__main__":
    workdir = sys.argv[2]
    with open(os.path.join(workdir, "input.txt"), "w") as handle:
        handle.write("from the host\n")
    job = Job.wrapJobFn(apiDockerCall, image="ubuntu", working_dir=workdir,
                        parameters=[["cat", "input.txt"], ["tr", "a-z", "A-Z"]])
    options = Job.Runner.getDefaultOptions(sys.argv[1])
    options.clean = "always"
    with Toil(options) as toil:
        print(toil.start(job), end="")
