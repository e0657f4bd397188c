"""``--writeLogs DIR`` / ``--writeLogsGzip DIR``: the jobs' logs as files, as Toil writes them.

Failed jobs' logs always are in the job store; with ``--writeLogsFromAllJobs`` every job's is.
At the end of a run (success or failure) each stored log becomes ``DIR/<job name>_<job id>.log``
(``.log.gz`` with --writeLogsGzip), and so do the named streams jobs sent with
``fileStore.log_user_stream`` (``<job name>_<job id>_<stream name>.log``).
"""

from __future__ import annotations

import argparse
import gzip
import logging
import os
import re

from flow.core.description import JobDescription
from flow.core.filestore import USER_STREAM_TAG
from flow.jobstores.abstract import JobStore, JobStoreError

logger = logging.getLogger(__name__)
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def _target(options: argparse.Namespace) -> tuple[str, bool] | None:
    for name, gzipped in (("writeLogsGzip", True), ("writeLogs", False)):
        value = getattr(options, name, None)
        if value is not None:
            return os.path.abspath(value or os.getcwd()), gzipped
    return None


def write_job_logs(store: JobStore, options: argparse.Namespace) -> int:
    """Write the stored job logs into the --writeLogs directory; how many files were written."""
    target = _target(options)
    if target is None:
        return 0
    directory, gzipped = target
    os.makedirs(directory, exist_ok=True)
    written = 0
    for job_id in store.list_jobs():
        try:
            desc = JobDescription.loads(store.read_job(job_id))
            log = store.read_log(job_id)
        except (JobStoreError, OSError, TypeError, ValueError):
            continue
        stem = _UNSAFE.sub("_", f"{desc.label}_{job_id}")
        if log:
            _write(os.path.join(directory, stem + ".log"), log, gzipped)
            written += 1
        for message in desc.messages:
            tag, _, text = message.partition("\t")
            if tag.startswith(USER_STREAM_TAG):
                name = _UNSAFE.sub("_", tag[len(USER_STREAM_TAG):])
                _write(os.path.join(directory, f"{stem}_{name}.log"), text.encode(), gzipped)
                written += 1
    logger.info("wrote %d job log file(s) to %s", written, directory)
    return written


def _write(path: str, data: bytes, gzipped: bool) -> None:
    if gzipped:
        with gzip.open(path + ".gz", "wb") as handle:
            handle.write(data)
    else:
        with open(path, "wb") as handle:
            handle.write(data)
