"""Toil style: a workflow whose jobs report what Toil's options changed."""
import argparse
import json
import logging
import os
import sys

from toil.common import Toil
from toil.job import Job


class Probe(Job):
    def __init__(self, **kwargs):
        Job.__init__(self, **kwargs)

    def run(self, fileStore):
        scratch = fileStore.getLocalTempFile(prefix="scratch-")
        with open(scratch, "w") as handle:
            handle.write("kept?")
        print("probe output line")
        fileStore.log_to_leader("probe-info")
        fileStore.log_to_leader("probe-debug", level=logging.DEBUG)
        fileStore.log_to_leader("probe-critical", level=logging.CRITICAL)
        pid = os.getpid()
        coordination = os.environ.get("PROBE_COORDINATION")
        return {
            "preemptible": self.preemptible,
            "accelerators": self.accelerators,
            "env": {k: os.environ.get(k) for k in ("PROBE_A", "PROBE_B")},
            "log_in_coordination": bool(coordination) and f"worker-{pid}.log" in os.listdir(coordination),
        }


def noisy_failure(job, size):
    sys.stdout.write("X" * size + "\nEND-OF-LOG\n")
    raise RuntimeError("failing on purpose")


def main():
    parser = argparse.ArgumentParser()
    Job.Runner.addToilOptions(parser)
    parser.add_argument("--fail", type=int, default=0, help="also run a failing job printing this many bytes")
    parser.add_argument("--cores", type=float, default=None)
    options = parser.parse_args()
    root = Probe(cores=options.cores) if options.cores else Probe()
    if options.fail:
        root.addChildJobFn(noisy_failure, options.fail)
    with Toil(options) as toil:
        print(json.dumps(toil.start(root)))


if __name__ == "__main__":
    main()
