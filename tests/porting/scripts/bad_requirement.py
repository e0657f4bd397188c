"""Toil style, with a bug found in Toil's own tutorial: the job passed as its memory."""
import sys

from toil.common import Toil
from toil.job import Job


class Hello(Job):
    def __init__(self, message):
        super().__init__(self)
        self.message = message

    def run(self, fileStore):
        return self.message


if __name__ == "__main__":
    options = Job.Runner.getDefaultOptions(sys.argv[1])
    with Toil(options) as toil:
        print(toil.start(Hello("Woot")))
