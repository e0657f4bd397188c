"""A small flow workflow: fan out, pass files between jobs, gather with promises.

    python examples/hello.py ./jobstore            # run
    python examples/hello.py ./jobstore --restart  # resume after a crash or Ctrl-C
"""

from __future__ import annotations

from flow.core.common import Flow
from flow.core.job import Job


def greet(job: Job, name: str) -> str:
    """Write a greeting to a global file; return its file id."""
    path = job.fileStore.getLocalTempFile(suffix=".txt")
    with open(path, "w") as handle:
        handle.write(f"Hello, {name}!\n")
    job.log(f"greeted {name}")
    return job.fileStore.writeGlobalFile(path)


def gather(job: Job, file_ids: list[str]) -> str:
    """Read every greeting back and join them."""
    lines = []
    for file_id in file_ids:
        with open(job.fileStore.readGlobalFile(file_id)) as handle:
            lines.append(handle.read().strip())
    return "\n".join(lines)


def start(job: Job, names: list[str]) -> str:
    greetings = [job.addChildJobFn(greet, name, cores=0.1, memory="50M").rv() for name in names]
    return job.addFollowOnJobFn(gather, greetings, cores=0.1, memory="50M").rv()


def main() -> None:
    parser = Job.Runner.getDefaultArgumentParser()
    options = parser.parse_args()
    names = ["Ada", "Barbara", "Grace", "Katherine", "Margaret"]
    with Flow(options) as flow:
        result = flow.restart() if options.restart else flow.start(Job.wrapJobFn(start, names))
    print(result)


if __name__ == "__main__":
    main()
