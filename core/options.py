"""Command-line options with Toil's names (``Job.Runner.addFlowOptions``)."""

from __future__ import annotations

import argparse
import logging

from flow.core.exceptions import FlowError
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


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {value}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value >= 0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"must not be negative, got {text}")
    return value


#: Options a script may also set on its Namespace by hand: checked again by ``check_options``.
_CHECKED = {"retryCount": _count, "maxJobDuration": _seconds, "rescueJobsFrequency": _seconds,
            "deadlockWait": _seconds}


def check_options(options: argparse.Namespace) -> None:
    """Refuse, in one paragraph, values a script set by hand that the parser would refuse."""
    for name, check in _CHECKED.items():
        value = getattr(options, name, None)
        if value is None:
            continue
        try:
            check(str(value))
        except argparse.ArgumentTypeError as exc:
            raise FlowError(f"--{name} {value}: {exc}.") from None


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
    core.add_argument("--defaultCores", type=_cores, default=1.0, help="cores of a job that names none (1)")
    core.add_argument("--defaultMemory", type=_size, default=_size("2Gi"), help="memory of a job that names none (2Gi)")
    core.add_argument("--defaultDisk", type=_size, default=_size("2Gi"), help="disk of a job that names none (2Gi)")
    core.add_argument("--retryCount", type=_count, default=1, help="times to retry a failed job (1)")
    core.add_argument("--restart", action="store_true", help="resume the workflow in the job store")
    core.add_argument("--force", action="store_true",
                      help="take the job store's lock over from a leader on another host that is "
                           "certainly gone (a lock of a dead leader on this host is taken over "
                           "without it)")
    core.add_argument("--clean", choices=CLEAN_CHOICES, default="onSuccess",
                      help="when to delete the job store at the end (onSuccess)")
    core.add_argument("--logLevel", type=_level, default="INFO", help="CRITICAL, ERROR, WARNING, INFO or DEBUG")
    core.add_argument("--logFile", default=None, help="also write the log to this file")
    core.add_argument("--workDir", default=None, help="where jobs' scratch directories go (default: $TMPDIR)")
    core.add_argument("--stats", action="store_true", help="record per-job statistics for 'flow stats'")
    core.add_argument("--maxJobDuration", type=_seconds, default=None,
                      help="kill and retry a job that runs longer than this many seconds")
    core.add_argument("--rescueJobsFrequency", type=_seconds, default=60.0,
                      help="seconds between checks for lost or over-long jobs (60)")
    core.add_argument("--deadlockWait", type=_seconds, default=60.0,
                      help="seconds that only services may run before the workflow is declared deadlocked (60)")
    core.add_argument("--disableChaining", action="store_true", help="run every job in its own worker call")
    core.add_argument("--linkImports", action="store_true",
                      help="hard-link imported local files into the job store instead of copying them")
    core.add_argument("--noProgress", action="store_true", help="no progress bar even on a terminal")
    slurm = parser.add_argument_group("slurm options (--batchSystem slurm)")
    slurm.add_argument("--slurmPartition", default=None, help="the partition to submit jobs to")
    slurm.add_argument("--slurmArgs", default="",
                       help="extra sbatch arguments for every job, e.g. '--account=lab --qos=long'"
                            " (after those of the FLOW_SLURM_ARGS environment variable)")
    add_autoscaling_options(parser)


def add_autoscaling_options(parser: argparse.ArgumentParser) -> None:
    """Toil's cluster-scaler options (checked when the run starts, by flow.core.autoscale)."""
    scale = parser.add_argument_group("autoscaling options (--provisioner)")
    scale.add_argument("--provisioner", default=None,
                       help="grow and shrink the cluster with this provisioner (directory, slurm); default: none")
    scale.add_argument("--nodeTypes", default=None,
                       help="node types to use, comma-separated, each NAME:CORES/MEMORY[/DISK][:preemptible]"
                            "[:cost=PRICE], e.g. small:2/8G/100G,big:16/64G:preemptible")
    scale.add_argument("--minNodes", default="0",
                       help="nodes to keep at least, per node type, comma-separated (a shorter list repeats its last count; 0)")
    scale.add_argument("--maxNodes", default="10",
                       help="nodes to have at most, per node type, comma-separated (a shorter list repeats its last count; 10)")
    scale.add_argument("--targetTime", type=float, default=1800.0,
                       help="seconds the queued work should take on the cluster the scaler sizes (1800)")
    scale.add_argument("--betaInertia", type=float, default=0.1,
                       help="0 to 1: how slowly the node counts follow the estimate (0.1)")
    scale.add_argument("--scaleInterval", type=float, default=60.0, help="seconds between scaler rounds (60)")
    scale.add_argument("--preemptibleCompensation", type=float, default=0.0,
                       help="0 to 1: non-preemptible nodes to buy per preemptible node that cannot be had (0)")
    scale.add_argument("--nodeLaunchCommand", default=None,
                       help="--provisioner slurm: the site command that starts a node, a template with {name} {cores} "
                            "{memory_mb} {disk_mb} {features} {type} {run}, e.g. 'add-node {name} {cores} {memory_mb} {features}'")
    scale.add_argument("--nodeTerminateCommand", default=None,
                       help="--provisioner slurm: the site command that removes a node, a template with {name} {run}")
    scale.add_argument("--nodeRegisterTimeout", type=float, default=600.0,
                       help="--provisioner slurm: seconds a launched node may take to register with Slurm before it is "
                            "terminated (600)")


def default_options(job_store: str | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_flow_options(parser, jobstore_as_flag=True)
    options = parser.parse_args([])
    options.jobStore = job_store
    return options


def log_level(options: argparse.Namespace) -> int:
    return int(getattr(logging, str(getattr(options, "logLevel", "INFO")).upper(), logging.INFO))
