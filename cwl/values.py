"""CWL values and the paths of a tool's outputs: plain helpers shared by the CWL modules (no
cwltool import, which stays in :mod:`flow.cwl.adapter`)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, MutableMapping
from typing import Any


def walk_files(value: Any) -> Iterator[dict[str, Any]]:
    """Every File and Directory object in a CWL value, outermost first."""
    if isinstance(value, dict):
        if value.get("class") in ("File", "Directory"):
            yield value
            for key in ("secondaryFiles", "listing"):
                for item in value.get(key) or []:
                    yield from walk_files(item)
            return
        for item in value.values():
            yield from walk_files(item)
    elif isinstance(value, list):
        for item in value:
            yield from walk_files(item)


def plain(value: Any) -> Any:
    """A deep copy made of dicts, lists and scalars (ruamel types do not travel well)."""
    if isinstance(value, MutableMapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def tool_roots(work_dir: str, prefixes: Iterable[str | None], name_prefix: str = "",
               tmpdir: str | None = None, outdir: str | None = None) -> tuple[str, ...]:
    """The real paths a tool's outputs may lie under: the job's directory (only its entries
    whose names start with ``name_prefix`` when invocations share it), the tool's ``tmpdir``
    and ``outdir`` when it was given them, and cwltool's directories under the user's
    ``--tmpdir-prefix`` / ``--tmp-outdir-prefix`` (prefixes of names, as cwltool makes them)."""
    real = [os.path.join(os.path.realpath(os.path.dirname(p) or "."), os.path.basename(p)) for p in prefixes if p]
    given = [os.path.realpath(d) + os.sep for d in (tmpdir, outdir) if d]
    return (os.path.realpath(work_dir) + os.sep + name_prefix, *given, *real)


def outside_roots(path: str, roots: tuple[str, ...]) -> str | None:
    """The real path ``path`` resolves to when that is outside ``roots`` (see tool_roots), else None."""
    real, inside = resolve_in_roots(path, roots)
    return None if inside else real


def resolve_in_roots(path: str, roots: tuple[str, ...]) -> tuple[str, bool]:
    """(``os.path.realpath(path)``, whether it lies in ``roots``). The roots are real paths, so
    below one only the path's own components are looked at (os.path.realpath checks every
    component from /: a tenth of a millisecond, three times per tool run)."""
    real = None
    if ".." in path.split(os.sep):  # '..' after a symlink leads from its target: no shortcut
        real = os.path.realpath(path)
    path = os.path.abspath(path)
    for root in roots if real is None else ():
        base = root.rstrip(os.sep) if root.endswith(os.sep) else os.path.dirname(root)
        if path.startswith(base + os.sep):
            real = _resolve_below(base, path[len(base) + 1:])
            break
    if real is None:
        real = os.path.realpath(path)
    inside = any((real + os.sep).startswith(root) if root.endswith(os.sep) else real.startswith(root)
                 for root in roots)
    return real, inside


def _resolve_below(base: str, rest: str) -> str:
    """The real path of ``base/rest`` for a real ``base`` and a normalised ``rest``."""
    current = base
    for name in rest.split(os.sep):
        following = current + os.sep + name
        if os.path.islink(following):  # a symlink below the root: resolved the usual way
            return os.path.realpath(base + os.sep + rest)
        current = following
    return current


class SharedItemsList(list[Any]):
    """A list whose deep copy is a shallow one (of the same kind), for cwltool's input object.

    cwltool's Builder.bind_input deep-copies an array's input binding once per item, with the
    whole array in it (``binding["datum"]``), and replaces that copy's array by the item at
    once: binding an array of n Files deep-copies n * n File objects (a gather of 2,000 files:
    a minute). The array's items are what the copies keep apart; they are the ones cwltool fills
    in (paths, sizes) and uses. This input object is the invocation's own (the Materializer's
    copy), so sharing its items among cwltool's copies changes nothing cwltool sees or returns,
    and binding becomes linear in the items (plus one pointer copy per item and copy)."""

    def __deepcopy__(self, memo: dict[int, Any]) -> SharedItemsList:
        return SharedItemsList(self)


def sharing_lists(value: Any) -> Any:
    """``value`` with every list (at any depth) a :class:`SharedItemsList`."""
    if isinstance(value, list):
        return SharedItemsList(sharing_lists(item) for item in value)
    if isinstance(value, dict):
        return {key: sharing_lists(item) for key, item in value.items()}
    return value
