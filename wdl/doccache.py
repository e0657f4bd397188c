"""A cache of type-checked WDL documents on disk, so that a run parses its document once.

Building miniwdl's parser and type-checking a document takes a few tenths of a second, more than
running a small workflow; the leader and every worker would pay it. The leader stores the loaded
document (pickled) under a key of the document's path and content, with the paths and checksums
of the files it imports; workers and later runs load it from there while all those files are
unchanged. ``FLOW_WDL_CACHE`` names the folder (default ``$XDG_CACHE_HOME/flow/wdl`` or
``~/.cache/flow/wdl``); ``FLOW_WDL_CACHE=off`` turns the cache off. An unreadable, stale or
unwritable cache only means parsing again.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pickle
import sys
import tempfile
from typing import Any

CACHE_VARIABLE = "FLOW_WDL_CACHE"
_FORMAT = 1
#: Documents kept in the cache (the oldest used are removed).
KEEP = 100


def folder() -> str | None:
    configured = os.environ.get(CACHE_VARIABLE)
    if configured is not None:
        return None if configured.lower() in ("", "off", "0", "no") else configured
    base = os.environ.get("XDG_CACHE_HOME")
    if not base:
        home = os.path.expanduser("~")
        if not os.path.isabs(home):
            return None  # no home folder: no cache
        base = os.path.join(home, ".cache")
    return os.path.join(base, "flow", "wdl")


def _digest(path: str) -> str | None:
    try:
        with open(path, "rb") as handle:
            return hashlib.sha256(handle.read()).hexdigest()
    except OSError:
        return None


def _installed(package_file: str) -> str:
    """Which installation of miniwdl (its package file's path, size and time) made an entry."""
    try:
        st = os.stat(package_file)
    except OSError:
        return package_file
    return f"{package_file}:{st.st_size}:{st.st_mtime_ns}"


def _entry(uri: str, package_file: str) -> str | None:
    where = folder()
    digest = _digest(uri)
    if where is None or digest is None:
        return None
    installed = _installed(package_file)
    key = hashlib.sha256(f"{_FORMAT}\0{installed}\0{sys.version}\0{uri}\0{digest}".encode()).hexdigest()
    return os.path.join(where, f"{key}.pickle")


def read(uri: str, package_file: str) -> Any | None:
    """The cached document of ``uri`` (parsed by the miniwdl whose ``WDL/__init__.py`` is
    ``package_file``), or None."""
    path = _entry(uri, package_file)
    if path is None or not os.path.isfile(path):
        return None
    try:
        with open(path, "rb") as handle:
            sources, blob = pickle.load(handle)
        if any(_digest(source) != digest for source, digest in sources):
            return None
        with contextlib.suppress(OSError):
            os.utime(path)
        return pickle.loads(blob)
    except (OSError, pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
            ImportError, RecursionError):
        return None


def write(uri: str, package_file: str, doc: Any, sources: list[str] | None) -> None:
    """Cache ``doc`` (quietly not, when anything goes wrong)."""
    path = _entry(uri, package_file)
    if path is None or sources is None:
        return
    previous = sys.getrecursionlimit()
    try:
        sys.setrecursionlimit(max(previous, 20000))
        blob = pickle.dumps(doc, protocol=pickle.HIGHEST_PROTOCOL)
        listed = [(source, _digest(source)) for source in sources]
        os.makedirs(os.path.dirname(path), exist_ok=True)
        handle, tmp = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".tmp")
        with os.fdopen(handle, "wb") as out:
            pickle.dump((listed, blob), out, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, path)
        _prune(os.path.dirname(path))
    except (OSError, pickle.PicklingError, RecursionError, TypeError, AttributeError):
        with contextlib.suppress(OSError, UnboundLocalError):
            os.unlink(tmp)
    finally:
        sys.setrecursionlimit(previous)


def _prune(where: str, keep: int = KEEP) -> None:
    """Keep the ``keep`` documents used last (reading a document touches its entry)."""
    entries = [e for e in os.scandir(where) if e.name.endswith(".pickle") and not e.name.startswith("lark-")]
    if len(entries) <= keep:
        return
    entries.sort(key=lambda e: e.stat().st_mtime, reverse=True)
    for entry in entries[keep:]:
        with contextlib.suppress(OSError):
            os.unlink(entry.path)


def enable_parser_cache() -> None:
    """Let miniwdl's LALR parsers load from disk.

    miniwdl builds its parser with lark on the first parse of each process (about 0.2 s, most of
    the time of a small run, in the leader and again in each worker). lark can keep the built
    tables in a file (its documented ``cache`` option) but miniwdl does not ask for it; this makes
    ``lark.Lark`` default to a file in the cache folder for LALR parsers. lark checks the file
    against the grammar and options itself; any problem means building the parser as before.
    """
    import lark

    where = folder()
    original = lark.Lark.__init__
    if where is None or getattr(original, "_flow_cached", False):
        return

    def init(self: Any, grammar: Any, **options: Any) -> None:
        if options.get("parser") == "lalr" and "cache" not in options and isinstance(grammar, str):
            key = repr(sorted((k, repr(v)) for k, v in options.items() if k != "lexer_callbacks"))
            digest = hashlib.sha256(f"{lark.__version__}\0{key}\0{grammar}".encode()).hexdigest()[:32]
            try:
                os.makedirs(where, exist_ok=True)
                options["cache"] = os.path.join(where, f"lark-{digest}.pickle")
            except OSError:
                pass
        original(self, grammar, **options)

    init._flow_cached = True  # type: ignore[attr-defined]
    lark.Lark.__init__ = init  # type: ignore[method-assign]
