"""Pickle what the user's main script defines by reference to the script, not by value.

dill pickles functions and classes of ``__main__`` by value: a job stored before a failure keeps
the code it had then, so fixing the script and running ``--restart`` would re-run the old code.
As Toil does, flow stores a top-level function or class of the main script as (script path,
qualified name) and loads it by importing the script when the job runs, so a fix followed by
``--restart`` runs the fix. Lambdas, closures and nested functions have no such name: they are
still pickled by value (with the code they had when they were stored).

A worker that is not the script's own process (spawned workers, Slurm jobs) imports the script
as a module named ``__flow_script_<hash>__`` (its ``if __name__ == "__main__":`` block does not
run); objects of such a module are pickled by reference to the script as well.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import os
import sys
import threading
import types
from typing import Any

import dill

from flow.core.exceptions import FlowError

#: Attribute marking a module loaded from a user's script by :func:`script_module`.
SCRIPT_ATTR = "__flow_script__"
_lock = threading.RLock()


class ScriptReferenceError(FlowError):
    """A stored job names a function or class that the script no longer defines."""


def _script_path(module: types.ModuleType) -> str | None:
    """The script file of ``__main__`` or of a module loaded from a script, else None."""
    marked = getattr(module, SCRIPT_ATTR, None)
    if marked:
        return str(marked)
    if module.__name__ == "__main__":
        path = getattr(module, "__file__", None)
        if isinstance(path, str) and path.endswith(".py"):
            return os.path.realpath(path)
    return None


def _reference(obj: Any) -> tuple[str, str] | None:
    """(script, qualified name) for a top-level function or class of the user's script."""
    if not isinstance(obj, (types.FunctionType, type)):
        return None
    qualname = getattr(obj, "__qualname__", "")
    if not qualname or "<" in qualname:  # lambdas, closures, functions nested in functions
        return None
    module = sys.modules.get(getattr(obj, "__module__", "") or "")
    if module is None:
        return None
    path = _script_path(module)
    if path is None:
        return None
    target: Any = module
    for part in qualname.split("."):
        target = getattr(target, part, None)
    return (path, qualname) if target is obj else None


class ScriptPickler(dill.Pickler):
    """dill, except that the script's top-level functions and classes go by reference."""

    def reducer_override(self, obj: Any) -> Any:
        ref = _reference(obj)
        if ref is None:
            return NotImplemented
        return load_script_attribute, ref


def dumps(obj: Any) -> bytes:
    """``dill.dumps(obj, recurse=True)`` with script references."""
    buffer = io.BytesIO()
    ScriptPickler(buffer, protocol=dill.settings["protocol"], recurse=True).dump(obj)
    return buffer.getvalue()


def script_module(path: str, imported: bool = False) -> types.ModuleType:
    """The user's script as a module: ``__main__`` in its own process (unless ``imported``),
    else imported once."""
    main = sys.modules.get("__main__")
    if not imported and main is not None and _script_path(main) == path:
        return main
    name = f"__flow_script_{hashlib.sha1(path.encode()).hexdigest()[:12]}__"
    with _lock:
        module = sys.modules.get(name)
        if module is not None:
            return module
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None or not os.path.isfile(path):
            raise ScriptReferenceError(
                f"the workflow's jobs are defined in {path}, which cannot be loaded any more "
                "(moved or deleted?): put the script back to run or restart the workflow")
        module = importlib.util.module_from_spec(spec)
        setattr(module, SCRIPT_ATTR, path)
        directory = os.path.dirname(path)
        if directory not in sys.path:  # the script's own imports of its neighbours
            sys.path.append(directory)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[name]
            raise
        return module


def _lookup(module: types.ModuleType, qualname: str) -> Any:
    target: Any = module
    for part in qualname.split("."):
        target = getattr(target, part)
    return target


def load_script_attribute(path: str, qualname: str) -> Any:
    """What a stored reference names (the unpickling side of :class:`ScriptPickler`)."""
    try:
        return _lookup(script_module(path), qualname)
    except AttributeError:
        pass
    try:  # a worker forked while __main__ was still running its top level: import it afresh
        return _lookup(script_module(path, imported=True), qualname)
    except AttributeError:
        raise ScriptReferenceError(
            f"a stored job uses {qualname!r} of {path}, which the script no longer defines: "
            "restore it (a name may change only in a new workflow)") from None
