"""Toil style: toil.lib.io.mkdtemp for the job store, toil.lib.misc.StrPath in annotations."""
import os
import stat
import sys

from toil.common import Toil
from toil.job import Job
from toil.lib.io import mkdtemp
from toil.lib.misc import StrPath


def describe(path: StrPath) -> str:
    mode = stat.S_IMODE(os.stat(path).st_mode)
    return f"{os.path.basename(path)} {oct(mode)}"


if __name__ == "__main__":
    scratch = mkdtemp(suffix="-porting", dir=sys.argv[1])
    jobstore = mkdtemp("helpers_io", dir=sys.argv[1])
    os.rmdir(jobstore)
    options = Job.Runner.getDefaultOptions(jobstore)
    options.logLevel = "OFF"
    options.clean = "always"
    with Toil(options) as toil:
        print(toil.start(Job.wrapFn(describe, scratch)))
