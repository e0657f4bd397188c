"""``--provisioner slurm``: grow and shrink an elastic Slurm cluster (dynamic nodes) for one run.

Sites with a cloud-bursting or elastic partition start a machine whose ``slurmd -Z`` registers
itself as a node (Slurm 22.05+ dynamic nodes), and give it back after ``scontrol delete``. The
site's two commands are templates (each word is formatted; no shell is involved):

``--nodeLaunchCommand`` placeholders: ``{name}`` (the node name), ``{cores}`` (whole CPUs),
``{memory_mb}``, ``{disk_mb}`` (0 when the type has no disk), ``{features}`` (comma-separated:
the run's feature and the type's), ``{type}`` (the node type's name), ``{run}`` (the run id).
``--nodeTerminateCommand`` placeholders: ``{name}``, ``{run}``. E.g.::

    --nodeLaunchCommand 'add-local-node {name} {cores} {memory_mb} {features}'
    --nodeTerminateCommand 'remove-local-node {name}'

Node names carry the run: ``f`` + eight letters from the run id + a number (e.g. ``fkdoapgbc3``),
so two workflows never touch each other's nodes and ``flow clean`` finds a killed leader's nodes
in Slurm. The number is the lowest one (1-99) no node Slurm knows ends with, and none this run
used before. The node's features are ``flow<letters>`` (the run's jobs are constrained to it, see
:mod:`flow.batchsystems.slurm_nodes`) and ``flow<letters>_<type>`` (its type, read back after a
restart).

A node is BOOTING from its launch until Slurm lists it, READY then; one that Slurm does not list
within ``--nodeRegisterTimeout`` seconds is terminated and reported, and one that Slurm marks
DOWN (its machine failed or was taken away) is removed: the scaler then sees capacity missing and
replaces it. Terminating a node drains it, waits until nothing runs there, deletes it from Slurm
and runs the terminate command. Every Slurm command goes through
:func:`flow.batchsystems.hpc.run_command`, like the batch system's.
"""

from __future__ import annotations

import logging
import math
import re
import shlex
import string
import time
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import ClassVar

from flow.batchsystems.hpc import CommandError, CompletedCommand, run_command
from flow.batchsystems.slurm_nodes import (
    SlurmNode,
    delete_command,
    read_nodes,
    run_feature,
    run_letters,
    set_state_command,
)
from flow.provisioners.contract import (
    Node,
    NodeState,
    Provisioner,
    ProvisionerConfig,
    ProvisionerError,
    ScalerConfigError,
)
from flow.provisioners.shape import UNLIMITED_DISK, NodeType

logger = logging.getLogger("flow.provisioners.slurm")

LAUNCH_FIELDS = frozenset({"name", "cores", "memory_mb", "disk_mb", "features", "type", "run"})
TERMINATE_FIELDS = frozenset({"name", "run"})
MiB = 1024**2
DRAIN_TIMEOUT = 120.0  # seconds terminate waits for a drained node's jobs to end
MAX_NUMBER = 99


def node_prefix(run_id: str) -> str:
    return "f" + run_letters(run_id)


def type_feature(run_id: str, type_name: str) -> str:
    return f"{run_feature(run_id)}_{re.sub(r'[^A-Za-z0-9]', '', type_name) or 'type'}"


def check_template(option: str, template: object, allowed: frozenset[str]) -> list[str]:
    """The template's words; ScalerConfigError naming the option when it is missing or wrong."""
    if not template or not str(template).strip():
        raise ScalerConfigError(f"--provisioner slurm needs {option} (see 'Elastic Slurm' in the README)")
    try:
        words = shlex.split(str(template))
        names = {name for word in words for _, name, _, _ in string.Formatter().parse(word) if name is not None}
    except ValueError as exc:
        raise ScalerConfigError(f"{option} {template!r} cannot be read: {exc}") from None
    unknown = sorted(n for n in names if n not in allowed)
    if unknown:
        raise ScalerConfigError(f"{option} {template!r} uses unknown placeholder(s) {', '.join('{' + n + '}' for n in unknown)};"
                                f" it may use {', '.join('{' + n + '}' for n in sorted(allowed))}")
    return words


def fill(words: Sequence[str], values: Mapping[str, object]) -> list[str]:
    return [word.format(**values) for word in words]


class SlurmProvisioner(Provisioner):
    name = "slurm"
    batch_systems: ClassVar[tuple[str, ...]] = ("slurm",)

    def __init__(self, config: ProvisionerConfig) -> None:
        super().__init__(config)
        extra = config.extra
        self.launch_words = check_template("--nodeLaunchCommand", extra.get("launch"), LAUNCH_FIELDS)
        self.terminate_words = check_template("--nodeTerminateCommand", extra.get("terminate"), TERMINATE_FIELDS)
        self.register_timeout = float(str(extra.get("registerTimeout") or 600))
        self.prefix = node_prefix(config.run_id)
        self._pattern = re.compile(re.escape(self.prefix) + r"(\d{1,2})$")
        self._booting: dict[str, tuple[str, float]] = {}  # launched, not yet listed: type, since
        self._launched_at: dict[str, float] = {}
        self._used: set[int] = set()  # numbers this run gave out

    @classmethod
    def settings(cls, options: Mapping[str, object]) -> dict[str, str]:
        check_template("--nodeLaunchCommand", options.get("nodeLaunchCommand"), LAUNCH_FIELDS)
        check_template("--nodeTerminateCommand", options.get("nodeTerminateCommand"), TERMINATE_FIELDS)
        given = options.get("nodeRegisterTimeout")
        timeout = 600.0 if given is None else float(str(given))
        if timeout <= 0:
            raise ScalerConfigError(f"--nodeRegisterTimeout {timeout:g} must be more than 0 seconds")
        return {"launch": str(options["nodeLaunchCommand"]), "terminate": str(options["nodeTerminateCommand"]),
                "registerTimeout": f"{timeout:g}"}

    # ---- launching -------------------------------------------------------------------------------
    def add_nodes(self, node_type: NodeType, count: int) -> list[str]:
        names = self._new_names(_read(), count)
        if self.before_launch is not None:  # recorded in the job store before anything starts
            self.before_launch(node_type.name, names)
        shape = node_type.shape
        values = {"cores": max(1, math.ceil(shape.cores - 1e-9)), "memory_mb": shape.memory // MiB,
                  "disk_mb": 0 if shape.disk >= UNLIMITED_DISK else shape.disk // MiB,
                  "features": f"{run_feature(self.config.run_id)},{type_feature(self.config.run_id, node_type.name)}",
                  "type": node_type.name, "run": self.config.run_id}
        argvs = [fill(self.launch_words, {**values, "name": name}) for name in names]
        with ThreadPoolExecutor(max_workers=min(8, max(1, count))) as pool:
            results = list(pool.map(_attempt, argvs, [self.register_timeout] * len(argvs)))
        launched, problems = [], []
        for name, problem in zip(names, results, strict=True):
            if problem is None:
                now = time.time()
                self._booting[name] = (node_type.name, now)
                self._launched_at[name] = now
                launched.append(name)
            else:
                problems.append(f"{name}: {problem}")
                self._give_back([name])  # whatever half of it started
        if problems:
            logger.warning("could not launch %d %s node(s): %s", len(problems), node_type.name, "; ".join(problems))
            if not launched:
                raise ProvisionerError(f"the node launch command failed: {'; '.join(problems)}")
        return launched

    def _new_names(self, known: Mapping[str, SlurmNode], count: int) -> list[str]:
        """Numbers no node Slurm knows ends with (on the test bed the number is the node's
        address), none this run used (each node's record keeps its name)."""
        taken = {int(m.group(1)) for m in (re.search(r"(\d+)$", n) for n in known) if m}
        free = [n for n in range(1, MAX_NUMBER + 1) if n not in taken | self._used]
        if len(free) < count:  # a long run: reuse the numbers of this run's nodes that are gone
            self._used = {int(m.group(1)) for m in map(self._pattern.match, self._booting) if m}
            free = [n for n in range(1, MAX_NUMBER + 1) if n not in taken | self._used]
        picked = free[:count]
        self._used.update(picked)
        return [f"{self.prefix}{n}" for n in picked]

    # ---- listing ---------------------------------------------------------------------------------
    def nodes(self) -> list[Node]:
        known = _read()
        now = time.time()
        out, lost = [], []
        for name, node in sorted(known.items()):
            if not self._pattern.match(name):
                continue
            booting = self._booting.pop(name, None)
            if node.down:
                lost.append(name)
                continue
            out.append(Node(name, self._type_of(node, booting), NodeState.READY, False,
                            self._launched_at.setdefault(name, now)))
        # Launched, listed once and not any more (removed by someone else, or Slurm lost it):
        # its machine may still run, so it is terminated all the same.
        lost += [name for name in self._launched_at if name not in known and name not in self._booting]
        for name, (type_name, since) in list(self._booting.items()):
            if name in known:
                continue
            if now - since > self.register_timeout:
                logger.warning("node %s was launched %.0f s ago and never registered with Slurm: "
                               "terminating it", name, now - since)
                lost.append(name)
                continue
            out.append(Node(name, type_name, NodeState.BOOTING, False, since))
        if lost:
            self._give_back(lost, known)
        return out

    def _type_of(self, node: SlurmNode, booting: tuple[str, float] | None) -> str:
        if booting is not None:
            return booting[0]
        for node_type in self.config.node_types:
            if type_feature(self.config.run_id, node_type.name) in node.features:
                return node_type.name
        return "?"

    # ---- terminating -----------------------------------------------------------------------------
    def terminate_nodes(self, node_ids: Iterable[str]) -> None:
        names = [n for n in node_ids if self._pattern.match(n)]
        if not names:
            return
        known = _read()
        for name in names:
            if name in known and not known[name].drained:
                _quiet(run_command(set_state_command(name, "DRAIN", "flow: terminating it")))
        deadline = time.monotonic() + DRAIN_TIMEOUT
        busy = [n for n in names if n in known and known[n].busy and not known[n].down]
        pause = 0.2
        while busy and time.monotonic() < deadline:
            time.sleep(pause)
            pause = min(2.0, pause * 2)
            known = _read()
            busy = [n for n in busy if n in known and known[n].busy and not known[n].down]
        if busy:
            logger.warning("node(s) %s still run jobs %g s after being drained; terminating them anyway",
                           ", ".join(busy), DRAIN_TIMEOUT)
        self._give_back(names, known)

    def _give_back(self, names: list[str], known: Mapping[str, SlurmNode] | None = None) -> None:
        """Delete from Slurm (a node it still lists) and run the terminate command for each."""
        known = _read() if known is None else known
        for name in names:
            self._booting.pop(name, None)
            self._launched_at.pop(name, None)
            if name in known:
                done = run_command(delete_command(name))
                if not done.ok and "invalid node name" not in done.words.lower():
                    # It has jobs (e.g. lost ones Slurm has not ended yet): down, then delete.
                    _quiet(run_command(set_state_command(name, "DOWN", "flow: terminating it")))
                    _quiet(run_command(delete_command(name)))
        argvs = [fill(self.terminate_words, {"name": name, "run": self.config.run_id}) for name in names]
        with ThreadPoolExecutor(max_workers=min(8, max(1, len(argvs)))) as pool:
            results = list(pool.map(_attempt, argvs, [self.register_timeout] * len(argvs)))
        problems = [f"{name}: {problem}" for name, problem in zip(names, results, strict=True) if problem]
        if problems:
            raise ProvisionerError(f"the node terminate command failed: {'; '.join(problems)}")

    @classmethod
    def cleanup_run(cls, run_id: str, config: ProvisionerConfig, recorded: Sequence[str] = ()) -> list[str]:
        provisioner = cls(ProvisionerConfig(run_id, config.node_types, config.extra))
        known = _read()
        names = sorted({n for n in known if provisioner._pattern.match(n)} | {n for n in recorded
                                                                             if provisioner._pattern.match(n)})
        provisioner.terminate_nodes(names)
        return names


def _read() -> dict[str, SlurmNode]:
    try:
        return read_nodes()
    except CommandError as exc:
        raise ProvisionerError(f"cannot list Slurm's nodes: {exc}") from None


def _attempt(argv: list[str], timeout: float) -> str | None:
    """Run a site command; None if it succeeded, else its words."""
    try:
        done = run_command(argv, timeout=timeout)
    except CommandError as exc:
        return exc.detail
    return None if done.ok else f"{shlex.join(argv)} exited with status {done.returncode}: {done.words}"


def _quiet(done: CompletedCommand) -> None:
    if not done.ok:
        logger.debug("%s: %s", shlex.join(done.argv), done.words)
