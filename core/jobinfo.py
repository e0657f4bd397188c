"""``flow status JOBSTORE --job ID``: one job's state, the end of its log and, when it failed for
good, its story: the last events the leader's scheduler saw for it (see flow.core.state)."""

from __future__ import annotations

from flow.core.description import JobDescription, JobState
from flow.core.records import STORY
from flow.jobstores.abstract import JobStore

LOG_LINES = 20


def print_job(store: JobStore, job_id: str) -> int:
    """Print what the job store knows of one job (NoSuchJobError if it has no such job)."""
    desc = JobDescription.loads(store.read_job(job_id))
    log = store.read_log(job_id)
    story = store.read_shared(STORY.format(job_id))
    state = "done" if desc.state is JobState.RAN else "failed" if story is not None else (
        "pending" if log is None else "failed, may be retried")
    print(f"Job {desc.label} ({job_id}){' [internal]' if desc.hidden else ''}: {state}; "
          f"{desc.retries_left if desc.retries_left >= 0 else 'default'} retries left")
    if log is not None:
        tail = log.decode(errors="replace").rstrip().splitlines()[-LOG_LINES:]
        print(f"  last {len(tail)} lines of its log:")
        print("\n".join("    | " + line for line in tail))
    if story is not None:
        print("  its last events in the leader (#step, oldest first):")
        print("\n".join("    " + line for line in story.decode(errors="replace").splitlines()))
    return 0
