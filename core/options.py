"""Command-line options with Toil's names (``Job.Runner.addFlowOptions``)."""

from __future__ import annotations

import argparse
import logging

from flow.core.resources import parse_cores, parse_size

CLEAN_CHOICES = ("always", "onError", "never", "onSuccess")


def _size(text: str) -> int:
    try:
        value = parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    assert value is not None
    return value


def _cores(text: str) -> float:
    try:
        value = parse_cores(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    assert value is not None
    return value


def _level(text: str) -> str:
    name = text.upper()
    if name not in ("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG"):
        raise argparse.ArgumentTypeError(f"unknown log level {text!r}")
    return name


def add_flow_options(parser: argparse.ArgumentParser, jobstore_as_flag: bool = False) -> None:
    """Add flow's core options to ``parser`` (the job store positional unless ``jobstore_as_flag``)."""
    if jobstore_as_flag:
        parser.add_argument("--jobStore", "--jobstore", dest="jobStore", default=None,
                            help="the job store (a directory; default: a temporary one)")
    else:
        parser.add_argument("jobStore", help="the job store: a directory such as ./js or file:./js")
    core = parser.add_argument_group("flow core options")
    core.add_argument("--batchSystem", default="single_machine",
                      help="where jobs run: single_machine (default) or slurm")
    core.add_argument("--maxCores", type=_cores, default=None, help="cores to use at most (default: all)")
    core.add_argument("--maxMemory", type=_size, default=None, help="memory to use at most (default: all)")
    core.add_argument("--maxDisk", type=_size, default=None, help="disk to use at most (default: all)")
    core.add_argument("--defaultCores", type=_cores, default=1, help="cores of a job that names none (1)")
    core.add_argument("--defaultMemory", type=_size, default=_size("2Gi"), help="memory of a job that names none (2Gi)")
    core.add_argument("--defaultDisk", type=_size, default=_size("2Gi"), help="disk of a job that names none (2Gi)")
    core.add_argument("--retryCount", type=int, default=1, help="times to retry a failed job (1)")
    core.add_argument("--restart", action="store_true", help="resume the workflow in the job store")
    core.add_argument("--clean", choices=CLEAN_CHOICES, default="onSuccess",
                      help="when to delete the job store at the end (onSuccess)")
    core.add_argument("--logLevel", type=_level, default="INFO", help="CRITICAL, ERROR, WARNING, INFO or DEBUG")
    core.add_argument("--logFile", default=None, help="also write the log to this file")
    core.add_argument("--workDir", default=None, help="where jobs' scratch directories go (default: $TMPDIR)")
    core.add_argument("--stats", action="store_true", help="record per-job statistics for 'flow stats'")
    core.add_argument("--maxJobDuration", type=float, default=None,
                      help="kill and retry a job that runs longer than this many seconds")
    core.add_argument("--rescueJobsFrequency", type=float, default=60.0,
                      help="seconds between checks for lost or over-long jobs (60)")
    core.add_argument("--deadlockWait", type=float, default=60.0,
                      help="seconds that only services may run before the workflow is declared deadlocked (60)")
    core.add_argument("--disableChaining", action="store_true", help="run every job in its own worker call")
    core.add_argument("--linkImports", action="store_true",
                      help="hard-link imported local files into the job store instead of copying them")
    core.add_argument("--noProgress", action="store_true", help="no progress bar even on a terminal")
    core.add_argument("--realTimeLogging", action="store_true",
                      help="show jobs' RealtimeLogger messages on the leader while they run")
    slurm = parser.add_argument_group("slurm options (--batchSystem slurm)")
    slurm.add_argument("--slurmPartition", default=None, help="the partition to submit jobs to")
    slurm.add_argument("--slurmArgs", default="",
                       help="extra sbatch arguments for every job, e.g. '--account=lab --qos=long'"
                            " (after those of the FLOW_SLURM_ARGS environment variable)")


def default_options(job_store: str | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_flow_options(parser, jobstore_as_flag=True)
    options = parser.parse_args([])
    options.jobStore = job_store
    return options


def log_level(options: argparse.Namespace) -> int:
    return int(getattr(logging, str(getattr(options, "logLevel", "INFO")).upper(), logging.INFO))


def normalise_options(options: argparse.Namespace) -> None:
    """Options set in a script as Toil allows (``options.defaultMemory = "2G"``, a level in any
    case) take their parsed form."""
    for name in ("maxMemory", "maxDisk", "defaultMemory", "defaultDisk"):
        value = getattr(options, name, None)
        if isinstance(value, str):
            setattr(options, name, _size(value))
    for name in ("maxCores", "defaultCores"):
        value = getattr(options, name, None)
        if isinstance(value, str):
            setattr(options, name, _cores(value))
