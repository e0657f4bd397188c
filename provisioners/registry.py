"""Find provisioners by name (``--provisioner``) and build the run's cluster scaler."""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence

from flow.batchsystems.scalable import ScalableBatchSystem
from flow.provisioners.contract import (
    Provisioner,
    ProvisionerConfig,
    RecordedJob,
    Scaler,
    ScalerConfigError,
)
from flow.provisioners.planner import ScalerParams
from flow.provisioners.scaler import ClusterScaler, Journal
from flow.provisioners.shape import NodeType, NodeTypeError, parse_counts, parse_node_types
from flow.provisioners.simulated import SimResult, simulate

_PROVISIONERS: dict[str, str] = {
    "directory": "flow.provisioners.directory:DirectoryProvisioner",
    "slurm": "flow.provisioners.slurm:SlurmProvisioner",
}


def register_provisioner(name: str, target: str) -> None:
    """Add a provisioner: ``target`` is "package.module:ClassName"."""
    _PROVISIONERS[name] = target


def provisioner_names() -> list[str]:
    return sorted(_PROVISIONERS)


def provisioner_class(name: str) -> type[Provisioner]:
    key = name.lower()
    if key not in _PROVISIONERS:
        raise KeyError(f"unknown provisioner {name!r}; choose one of {', '.join(provisioner_names())}")
    module_name, _, class_name = _PROVISIONERS[key].partition(":")
    cls: type[Provisioner] = getattr(importlib.import_module(module_name), class_name)
    assert issubclass(cls, Provisioner)
    return cls


def make_provisioner(name: str, config: ProvisionerConfig) -> Provisioner:
    return provisioner_class(name)(config)


def make_scaler(options: Mapping[str, object], run_id: str, extra: Mapping[str, str], batch: object,
                journal: Journal | None = None) -> Scaler:
    """The run's cluster scaler from its options (Toil's names: provisioner, nodeTypes, minNodes,
    maxNodes, targetTime, betaInertia, scaleInterval, preemptibleCompensation). ``batch`` is
    used for draining when it is a ScalableBatchSystem; otherwise a provisioner that sees its
    own nodes' jobs (a ScalableBatchSystem itself, as the simulated cluster) is. Raises
    ScalerConfigError."""
    params, types = scaler_params(options)
    name = str(options.get("provisioner"))
    try:
        cls = provisioner_class(name)
    except KeyError as exc:
        raise ScalerConfigError(f"--provisioner: {exc.args[0]}") from None
    provisioner = cls(ProvisionerConfig(run_id, tuple(types), dict(extra)))
    scalable = batch if isinstance(batch, ScalableBatchSystem) else None
    if scalable is None and isinstance(provisioner, ScalableBatchSystem):
        scalable = provisioner
    return ClusterScaler(provisioner, scalable, params, journal=journal)


def scaler_params(options: Mapping[str, object]) -> tuple[ScalerParams, list[NodeType]]:
    """Validated ScalerParams and node types from options with Toil's names."""
    text = options.get("nodeTypes")
    if not text:
        raise ScalerConfigError("--provisioner needs --nodeTypes (e.g. --nodeTypes small:2/8G/100G,big:16/64G)")
    try:
        types = parse_node_types(str(text))
        low = parse_counts(str(options.get("minNodes") or "0"), len(types), "--minNodes")
        high = parse_counts(str(options.get("maxNodes") or "10"), len(types), "--maxNodes")
    except NodeTypeError as exc:
        raise ScalerConfigError(str(exc)) from None
    numbers: dict[str, float] = {}
    for key, default, top in (("targetTime", 1800.0, None), ("betaInertia", 0.1, 1.0), ("scaleInterval", 60.0, None),
                              ("preemptibleCompensation", 0.0, 1.0)):
        raw = options.get(key)
        value = default if raw is None else float(str(raw))
        if value < 0 or (top is not None and value > top) or (key in ("targetTime", "scaleInterval") and value <= 0):
            raise ScalerConfigError(f"--{key} {value:g} is out of range")
        numbers[key] = value
    for i, t in enumerate(types):
        if low[i] > high[i]:
            raise ScalerConfigError(f"--minNodes {low[i]} is more than --maxNodes {high[i]} for node type {t.name!r}")
    return ScalerParams(targetTime=numbers["targetTime"], betaInertia=numbers["betaInertia"],
                        preemptibleCompensation=numbers["preemptibleCompensation"], minNodes=tuple(low),
                        maxNodes=tuple(high), scaleInterval=numbers["scaleInterval"],
                        deadline=bool(options.get("targetDeadline"))), types


def predict(options: Mapping[str, object], jobs: Sequence[RecordedJob],
            boot_delay: float = 60.0) -> tuple[SimResult, list[NodeType]]:
    """Replay ``jobs`` through the scaler the options describe, on a simulated cluster whose
    nodes boot in ``boot_delay`` seconds (for ``flow plan``). Raises ScalerConfigError, or
    UnplaceableJobError for a job no node type can take."""
    params, types = scaler_params(options)
    return simulate(jobs, types, params, boot_delay=boot_delay), types
