"""Command-line options with Toil's names (``Job.Runner.addFlowOptions``)."""

from __future__ import annotations

import argparse
import logging
import optparse
import os
import sys
from collections.abc import Callable
from typing import Any

import configargparse

from flow.core.exceptions import FlowError
from flow.core.requirements import parse_accelerators
from flow.core.resources import parse_cores, parse_size

CLEAN_CHOICES = ("always", "onError", "never", "onSuccess")
#: The level of --logOff / --logLevel OFF: above every message.
LOG_OFF = logging.CRITICAL + 10


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
    if name not in ("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG", "OFF"):
        raise argparse.ArgumentTypeError(f"unknown log level {text!r}")
    return name


def add_flow_options(parser: Any, jobstore_as_flag: bool = False) -> None:
    """Add flow's core options to ``parser`` (the job store positional unless ``jobstore_as_flag``).

    ``parser`` is an argparse (or configargparse) parser, or an optparse ``OptionParser`` as Toil
    also takes (there the job store is ``--jobStore``)."""
    if isinstance(parser, optparse.OptionParser):
        add_flow_options(OptparseAdapter(parser), jobstore_as_flag=True)
        return
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
    core.add_argument("--realTimeLogging", action="store_true",
                      help="show jobs' RealtimeLogger messages on the leader while they run")
    slurm = parser.add_argument_group("slurm options (--batchSystem slurm)")
    slurm.add_argument("--slurmPartition", default=None, help="the partition to submit jobs to")
    slurm.add_argument("--slurmArgs", default="",
                       help="extra sbatch arguments for every job, e.g. '--account=lab --qos=long'"
                            " (after those of the FLOW_SLURM_ARGS environment variable)")
    add_autoscaling_options(parser)
    add_toil_options(parser)


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
    scale.add_argument("--targetDeadline", action="store_true", default=False,
                       help="--targetTime runs from when each job was issued (a deadline the scaler buys nodes to "
                            "meet), not from each scaler round (Toil's meaning); costs more node time")
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
    name = str(getattr(options, "logLevel", "INFO")).upper()
    if name == "OFF":  # Toil's --logOff: not even errors
        return LOG_OFF
    return int(getattr(logging, name, logging.INFO))


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


# ---- Toil's other options --------------------------------------------------------------------
CLEAN_WORK_DIR_CHOICES = ("always", "onSuccess", "onError", "never")
#: Toil's --maxLogFileSize default: 62.5 KiB.
DEFAULT_MAX_LOG_SIZE = 64_000


def _bool(text: str) -> bool:
    value = str(text).strip().lower()
    if value in ("true", "yes", "y", "1", "on", "t"):
        return True
    if value in ("false", "no", "n", "0", "off", "f"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _signed_size(text: str) -> int:
    text = str(text).strip()
    negative = text.startswith("-")
    size = _size(text[1:] if negative else text)
    return -size if negative else size


def _accelerators(text: str) -> list[dict[str, Any]]:
    try:
        return parse_accelerators([part for part in str(text).split(",") if part.strip()])
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _env_setting(text: str) -> str:
    name = text.split("=", 1)[0]
    if not name or not name.replace("_", "a").isalnum() or name[0].isdigit():
        raise argparse.ArgumentTypeError(f"--setEnv takes NAME or NAME=VALUE, got {text!r}")
    return text


def add_toil_options(parser: Any) -> None:
    """Toil's options beyond the core ones, each with Toil's meaning (README: Porting from Toil)."""
    if isinstance(parser, configargparse.ArgumentParser):
        parser.add_argument("--config", is_config_file=True, default=None,
                            help="read options from this YAML file (as 'toil config' writes it)")
    log = parser.add_argument_group("logging (Toil's options)")
    for level in ("Off", "Critical", "Error", "Warning", "Info", "Debug"):
        log.add_argument(f"--log{level}", dest="logLevel", action="store_const", const=level.upper(),
                         help=f"the same as --logLevel {level.upper()}")
    log.add_argument("--writeLogs", nargs="?", const="", default=None, metavar="DIR",
                     help="write the logs of failed jobs (all jobs with --writeLogsFromAllJobs) "
                          "into DIR, one file per job (default DIR: the current directory)")
    log.add_argument("--writeLogsGzip", nargs="?", const="", default=None, metavar="DIR",
                     help="as --writeLogs, gzipped")
    log.add_argument("--writeLogsFromAllJobs", action="store_true",
                     help="keep and write the logs of every job, not only of failed ones")
    log.add_argument("--maxLogFileSize", type=_signed_size, default=DEFAULT_MAX_LOG_SIZE,
                     help="keep the last this many bytes of a job's log (0: all; negative: the first)")
    jobs = parser.add_argument_group("jobs (Toil's options)")
    jobs.add_argument("--scale", type=float, default=1.0,
                      help="multiply every job's cores by this on the single-machine batch system")
    jobs.add_argument("--defaultPreemptible", "--defaultPreemptable", nargs="?", const=True,
                      type=_bool, default=False, help="jobs that do not say are preemptible")
    jobs.add_argument("--defaultAccelerators", type=_accelerators, default=[],
                      help="accelerators of jobs that name none, e.g. 'cuda:1' (comma-separated)")
    jobs.add_argument("--maxServiceJobs", type=int, default=sys.maxsize,
                      help="services running at once at most (others wait)")
    jobs.add_argument("--maxPreemptibleServiceJobs", "--maxPreemptableServiceJobs", type=int,
                      default=sys.maxsize, help="preemptible services running at once at most")
    jobs.add_argument("--doubleMem", action="store_true",
                      help="a job killed for exceeding its memory is retried with twice the memory")
    jobs.add_argument("--maxLocalJobs", type=int, default=None,
                      help="accepted for Toil's scripts: flow runs no housekeeping jobs on the leader")
    jobs.add_argument("--badWorker", type=float, default=0.0,
                      help="for testing: kill this fraction of job attempts with SIGKILL")
    jobs.add_argument("--badWorkerFailInterval", type=float, default=0.01,
                      help="a --badWorker kill comes within this many seconds of the job's start")
    files = parser.add_argument_group("files and directories (Toil's options)")
    files.add_argument("--caching", type=_bool, default=None,
                       help="accepted: flow keeps no cache between jobs (see README)")
    files.add_argument("--disableCaching", dest="caching", action="store_false",
                       help="the same as --caching false (what flow always does)")
    files.add_argument("--coordinationDir", default=None,
                       help="directory for the workers' state and log files (default: --workDir)")
    files.add_argument("--cleanWorkDir", choices=CLEAN_WORK_DIR_CHOICES, default="always",
                       help="when to delete a job's scratch directory (always); kept ones are "
                            "moved to --workDir and named in the log")
    files.add_argument("--setEnv", "-e", action="append", type=_env_setting, default=[],
                       metavar="NAME[=VALUE]",
                       help="set this variable in every job (VALUE: the leader's value if omitted)")
    batch = parser.add_argument_group("batch systems (Toil's options)")
    batch.add_argument("--batchLogsDir", default=None,
                       help="where a cluster's batch system writes jobs' own output (kept there)")
    batch.add_argument("--slurmPreemptiblePartition", default=None,
                       help="Slurm: the partition for preemptible jobs (others: --slurmPartition)")
    batch.add_argument("--statePollingWait", type=float, default=None,
                       help="seconds between a cluster's job state queries (at least)")


def set_env(options: argparse.Namespace) -> dict[str, str]:
    """--setEnv as a mapping (a bare NAME takes the leader's value, or is skipped if unset)."""
    env: dict[str, str] = {}
    for item in getattr(options, "setEnv", None) or []:
        name, sep, value = item.partition("=")
        if sep:
            env[name] = value
        elif name in os.environ:
            env[name] = os.environ[name]
    return env


def default_argument_parser(jobstore_as_flag: bool = False) -> argparse.ArgumentParser:
    """Job.Runner.getDefaultArgumentParser: configargparse, so ``--config FILE`` (YAML) and the
    environment (``FLOW_<OPTION>``, e.g. FLOW_MAXCORES=4) give defaults, as in Toil."""
    parser: argparse.ArgumentParser = configargparse.ArgumentParser(
        config_file_parser_class=configargparse.YAMLConfigFileParser,
        ignore_unknown_config_file_keys=True,  # 'toil config' lists options flow has not
        auto_env_var_prefix="FLOW_",
    )
    add_flow_options(parser, jobstore_as_flag=jobstore_as_flag)
    return parser


class OptparseAdapter:
    """Takes argparse-style ``add_argument`` calls and adds the options to an optparse parser
    (or group), so Toil scripts that build an ``OptionParser`` keep working."""

    def __init__(self, target: Any) -> None:
        self._target = target

    def add_argument_group(self, title: str, description: str | None = None) -> OptparseAdapter:
        parser = self._target if isinstance(self._target, optparse.OptionParser) else self._target.parser
        group = optparse.OptionGroup(parser, title, description)
        parser.add_option_group(group)
        return OptparseAdapter(group)

    def add_argument(self, *flags: str, **kwargs: Any) -> None:
        if not flags[0].startswith("-"):  # a positional: optparse has none (--jobStore instead)
            kwargs.setdefault("dest", flags[0])
            flags = (f"--{flags[0]}",)
        dest = kwargs.get("dest") or flags[-1].lstrip("-").replace("-", "_")
        option: dict[str, Any] = {"dest": dest, "help": kwargs.get("help"), "default": kwargs.get("default")}
        action = kwargs.get("action")
        convert: Callable[[str], Any] | None = kwargs.get("type")
        if action in ("store_true", "store_false", "store_const"):
            option["action"] = action
            if action == "store_const":
                option["const"] = kwargs["const"]
            if kwargs.get("default") is None and action != "store_const":
                option["default"] = action == "store_false"
        elif "choices" in kwargs:
            option.update(type="choice", choices=list(kwargs["choices"]))
        else:
            option.update(action="callback", type="string",
                          callback=_optparse_setter(convert, dest, append=action == "append"))
        self._target.add_option(*flags, **option)


def _optparse_setter(convert: Callable[[str], Any] | None, dest: str, append: bool) -> Callable[..., None]:
    def store(option: optparse.Option, opt: str, value: str, parser: optparse.OptionParser) -> None:
        try:
            parsed = convert(value) if convert is not None else value
        except (argparse.ArgumentTypeError, ValueError) as exc:
            raise optparse.OptionValueError(f"option {opt}: {exc}") from None
        if append:
            parsed = [*(getattr(parser.values, dest, None) or []), parsed]
        setattr(parser.values, dest, parsed)
    return store
