"""Find provisioners by name (``--provisioner``)."""

from __future__ import annotations

import importlib

from flow.provisioners.contract import Provisioner, ProvisionerConfig

_PROVISIONERS: dict[str, str] = {
    "directory": "flow.provisioners.directory:DirectoryProvisioner",
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
    cls = getattr(importlib.import_module(module_name), class_name)
    assert issubclass(cls, Provisioner)
    return cls


def make_provisioner(name: str, config: ProvisionerConfig) -> Provisioner:
    return provisioner_class(name)(config)
