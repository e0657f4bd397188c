"""Find batch systems by name (``--batchSystem``)."""

from __future__ import annotations

import importlib

from flow.batchsystems.abstract import BatchConfig, BatchSystem

_SYSTEMS: dict[str, str] = {
    "single_machine": "flow.batchsystems.single_machine:SingleMachineBatchSystem",
    "slurm": "flow.batchsystems.slurm:SlurmBatchSystem",
}
#: Toil's spellings.
_ALIASES = {"singlemachine": "single_machine", "single-machine": "single_machine", "local": "single_machine"}


def register_batch_system(name: str, target: str) -> None:
    """Add a batch system: ``target`` is "package.module:ClassName"."""
    _SYSTEMS[name] = target


def batch_system_names() -> list[str]:
    return sorted(_SYSTEMS)


def batch_system_class(name: str) -> type[BatchSystem]:
    key = _ALIASES.get(name.lower(), name.lower())
    if key not in _SYSTEMS:
        raise KeyError(f"unknown batch system {name!r}; choose one of {', '.join(batch_system_names())}")
    module_name, _, class_name = _SYSTEMS[key].partition(":")
    cls: type = getattr(importlib.import_module(module_name), class_name)
    assert issubclass(cls, BatchSystem)
    return cls


def make_batch_system(name: str, config: BatchConfig) -> BatchSystem:
    return batch_system_class(name)(config)
