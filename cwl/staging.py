"""CWL File and Directory objects moving through flow's file store.

Between jobs a File's ``location`` is ``flowfile:<file id>``; a Directory's is
``flowdir:<manifest id>``, a job-store file that lists its content (the source of truth, rewritten
when a tool updates the directory in place) while the value keeps a ``listing`` for expressions.
Nothing refers to a host path, so the same run works on any batch system. A job materialises its inputs as private local copies (reflinks where possible), and
stores its outputs back; the leader imports the inputs and exports the final outputs.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
import stat
import urllib.parse
from collections.abc import Callable
from typing import Any

from flow.core.filestore import FileStore
from flow.cwl.adapter import CWLError, CWLToolError
from flow.cwl.values import outside_roots, walk_files
from flow.jobstores.abstract import JobStore

FLOW_FILE = "flowfile:"
FLOW_DIR = "flowdir:"
CWLTOOL_NAMESPACE = "http://commonwl.org/cwltool#"


def local_path(location: str) -> str | None:
    """The host path of a file:// URL or plain path, else None."""
    parsed = urllib.parse.urlparse(location)
    if parsed.scheme == "file":
        return urllib.parse.unquote(parsed.path)
    if parsed.scheme == "" and location:
        return os.path.abspath(location)
    return None


def _file_uri(path: str) -> str:
    return "file://" + urllib.parse.quote(os.path.abspath(path))


# ---- leader: inputs in ---------------------------------------------------------------------
#: write_bytes(data, basename) -> file id: how the leader stores a directory manifest.
WriteBytes = Callable[[bytes, str], str]


def manifest(obj: dict[str, Any]) -> bytes:
    return json.dumps({"basename": obj.get("basename"), "listing": obj.get("listing") or []}).encode()


def import_inputs(value: Any, import_file: Callable[[str], str], write_bytes: WriteBytes) -> Any:
    """Import every local or http(s) File/Directory in ``value`` into the job store (in place)."""
    if isinstance(value, list):
        for item in value:
            import_inputs(item, import_file, write_bytes)
    elif isinstance(value, dict):
        if value.get("class") == "File":
            _import_file(value, import_file, write_bytes)
        elif value.get("class") == "Directory":
            _import_directory(value, import_file, write_bytes)
        else:
            for item in value.values():
                import_inputs(item, import_file, write_bytes)
    return value


def _import_file(obj: dict[str, Any], import_file: Callable[[str], str], write_bytes: WriteBytes) -> None:
    location = obj.get("location") or obj.get("path")
    if location and not location.startswith((FLOW_FILE, "_:")):
        path = local_path(location)
        if path is not None and not os.path.isfile(path):
            raise CWLError(f"input file {path} does not exist")
        obj["location"] = FLOW_FILE + import_file(path if path is not None else location)
        obj.setdefault("basename", os.path.basename(path or urllib.parse.urlparse(location).path))
        obj.pop("path", None)
    for secondary in obj.get("secondaryFiles") or []:
        import_inputs(secondary, import_file, write_bytes)


def _import_directory(obj: dict[str, Any], import_file: Callable[[str], str], write_bytes: WriteBytes) -> None:
    location = obj.get("location") or obj.get("path")
    path = local_path(location) if location and not location.startswith((FLOW_DIR, "_:")) else None
    if path is not None:
        if not os.path.isdir(path):
            raise CWLError(f"input directory {path} does not exist")
        obj["listing"] = [
            _imported_entry(os.path.join(path, name), import_file, write_bytes) for name in sorted(os.listdir(path))
        ]
        obj.setdefault("basename", os.path.basename(path.rstrip("/")))
        obj["location"] = FLOW_DIR + write_bytes(manifest(obj), ".manifest")
        obj.pop("path", None)
    else:
        for item in obj.get("listing") or []:
            import_inputs(item, import_file, write_bytes)


def _imported_entry(path: str, import_file: Callable[[str], str], write_bytes: WriteBytes) -> dict[str, Any]:
    kind = "Directory" if os.path.isdir(path) else "File"
    entry: dict[str, Any] = {"class": kind, "location": _file_uri(path), "basename": os.path.basename(path)}
    import_inputs(entry, import_file, write_bytes)
    return entry


# ---- worker: materialise inputs, store outputs -----------------------------------------------
class Materializer:
    """Makes flowfile:/flowdir: objects real under ``stage_dir``; ``mutable`` gives copies."""

    def __init__(self, file_store: FileStore, stage_dir: str, mutable: bool = False, restaged: bool = False) -> None:
        self.file_store = file_store
        self.stage_dir = stage_dir
        self.mutable = mutable
        #: The runner stages every input again under its own basename (cwltool does for a
        #: CommandLineTool: a symlink per input in its staging directory): a top-level File's
        #: name here is not what the tool sees, so same-named files share one directory under
        #: numbered names (a gather of 2,000 same-named files makes one directory, not 2,000).
        self.restaged = restaged and not mutable
        self._n = 0
        self._shared_names: set[str] = set()
        self._collisions: dict[str, int] = {}
        #: (file id, local path) of every file and (manifest id, path) of every directory
        #: materialised, for in-place updates.
        self.files: list[tuple[str, str]] = []
        self.dirs: list[tuple[str, str]] = []
        #: The copies to make, (file id, path): all at once (see FileStore.readGlobalFiles).
        self._reads: list[tuple[str, str]] = []

    def __call__(self, value: Any) -> Any:
        value = copy.deepcopy(value)
        self._visit(value, None)
        reads, self._reads = self._reads, []
        self.file_store.readGlobalFiles(reads, mutable=self.mutable, spread_in=self.stage_dir)
        return value

    def _visit(self, value: Any, parent_dir: str | None) -> None:
        if isinstance(value, list):
            for item in value:
                self._visit(item, parent_dir)
        elif isinstance(value, dict):
            if value.get("class") == "File":
                self._file(value, parent_dir)
            elif value.get("class") == "Directory":
                self._directory(value, parent_dir)
            else:
                for item in value.values():
                    self._visit(item, None)

    def _fresh_dir(self, made_by_copy: bool = False) -> str:
        """A new folder under the stage directory; ``made_by_copy``: made by the copy of the
        first file that goes in it."""
        self._n += 1
        path = os.path.join(self.stage_dir, str(self._n))
        if not made_by_copy:
            os.makedirs(path, exist_ok=True)
        return path

    def _shared_dir(self, name: str) -> tuple[str, str]:
        """(directory, name) of a top-level File without secondaryFiles: one directory for all
        whose names differ (a gather of 2,000 files makes one directory, not 2,000), a fresh
        one for a name already there, or a numbered name when the runner restages it."""
        if name in self._shared_names:
            if not self.restaged:
                return self._fresh_dir(made_by_copy=True), name
            count = self._collisions.get(name, 2)
            while f"{name}_{count}" in self._shared_names:
                count += 1
            self._collisions[name] = count
            name = f"{name}_{count}"
        if not self._shared_names:
            os.makedirs(os.path.join(self.stage_dir, "0"), exist_ok=True)
        self._shared_names.add(name)
        return os.path.join(self.stage_dir, "0"), name

    def _file(self, obj: dict[str, Any], parent_dir: str | None) -> None:
        location = str(obj.get("location", ""))
        name = str(obj.get("basename") or os.path.basename(location))
        if parent_dir is not None:
            where = parent_dir
        elif location.startswith(FLOW_FILE) and not obj.get("secondaryFiles"):
            obj["basename"] = name  # the File's name, whatever name its copy here has
            where, name = self._shared_dir(name)
        else:
            where = self._fresh_dir(made_by_copy=location.startswith(FLOW_FILE))
        if location.startswith(FLOW_FILE):
            file_id, path = location[len(FLOW_FILE):], os.path.abspath(os.path.join(where, name))
            self._reads.append((file_id, path))
            self.files.append((file_id, path))
            obj["location"] = _file_uri(path)
            obj["path"] = path
        for secondary in obj.get("secondaryFiles") or []:  # beside their primary file
            self._visit(secondary, where if location.startswith(FLOW_FILE) else parent_dir)

    def _directory(self, obj: dict[str, Any], parent_dir: str | None) -> None:
        location = str(obj.get("location", ""))
        if not location.startswith(FLOW_DIR):
            for item in obj.get("listing") or []:
                self._visit(item, None)
            return
        path = os.path.join(parent_dir or self._fresh_dir(), obj.get("basename") or "dir")
        os.makedirs(path, exist_ok=True)
        manifest_id = location[len(FLOW_DIR):]
        with self.file_store.readGlobalFileStream(manifest_id) as stream:
            listing = json.loads(stream.read()).get("listing") or []
        for item in listing:
            self._visit(item, path)
        self.dirs.append((manifest_id, path))
        obj["location"] = _file_uri(path)
        obj["path"] = path
        obj.pop("listing", None)  # cwltool lists it again as the tool's loadListing says


def write_back(materializer: Materializer) -> None:
    """After a tool with InplaceUpdateRequirement: its changes to input files and directories,
    under their ids, so that every holder of the same File or Directory sees them."""
    file_store = materializer.file_store
    for file_id, path in materializer.files:
        if os.path.isfile(path):
            file_store.updateGlobalFile(file_id, path)
    for manifest_id, path in materializer.dirs:
        if os.path.isdir(path):
            entry = store_outputs(_entry(path), file_store)
            scratch = file_store.getLocalTempFile()
            with open(scratch, "wb") as handle:
                handle.write(manifest(entry))
            file_store.updateGlobalFile(manifest_id, scratch)


def store_outputs(value: Any, file_store: FileStore, movable: frozenset[str] = frozenset()) -> Any:
    """Write every local File/Directory in a tool's output object into the file store; the
    files at ``movable`` paths (see :func:`movable_outputs`) are moved there, not copied."""
    if isinstance(value, list):
        return [store_outputs(item, file_store, movable) for item in value]
    if not isinstance(value, dict):
        return value
    kind = value.get("class")
    if kind not in ("File", "Directory"):
        return {k: store_outputs(v, file_store, movable) for k, v in value.items()}
    out = dict(value)
    path = local_path(str(out.get("location", ""))) if out.get("location") else None
    if kind == "File" and path is not None and not out["location"].startswith(FLOW_FILE):
        store = file_store.moveGlobalFile if path in movable else file_store.writeGlobalFile
        out["location"] = FLOW_FILE + store(path)
        out.pop("path", None)
    elif kind == "Directory" and path is not None and not out["location"].startswith(FLOW_DIR):
        out["listing"] = [
            store_outputs(_entry(os.path.join(path, name)), file_store) for name in sorted(os.listdir(path))
        ]
        with file_store.writeGlobalFileStream(basename=".manifest") as (stream, manifest_id):
            stream.write(manifest(out))
        out["location"] = FLOW_DIR + manifest_id
        out.pop("path", None)
    elif kind == "Directory" and out.get("listing"):
        out["listing"] = store_outputs(out["listing"], file_store)
    if out.get("secondaryFiles"):
        out["secondaryFiles"] = store_outputs(out["secondaryFiles"], file_store)
    return out


def movable_outputs(outputs: Any, outdir: str) -> frozenset[str]:
    """The paths of a finished tool's output Files that may be moved into the file store
    instead of copied: plain files (not symlinks, no other hard link) in the tool's own output
    directory ``outdir`` (whose path starts each of them: a directory, or cwltool's prefix of
    one), each output once, in no Directory output and no secondaryFiles (each path stored once
    with one id, as a copy would be). cwltool itself moves its outputs out of that directory."""
    paths: dict[str, int] = {}
    dirs: list[str] = []
    top = set()
    for depth, obj in _files_with_depth(outputs, 0):
        path = local_path(str(obj.get("location", ""))) if obj.get("location") else None
        if path is None:
            continue
        paths[path] = paths.get(path, 0) + 1
        if obj.get("class") == "Directory":
            dirs.append(path.rstrip(os.sep) + os.sep)
        elif depth == 0:
            top.add(path)
    movable = set()
    for path in top:
        if paths[path] != 1 or not path.startswith(outdir) or any(path.startswith(d) for d in dirs):
            continue
        try:
            st = os.lstat(path)
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode) and st.st_nlink == 1:
            movable.add(path)
    return frozenset(movable)


def _files_with_depth(value: Any, depth: int) -> Any:
    """(depth, obj) of every File and Directory in an output object; depth 0 for those that
    are themselves outputs (or items of one), more for secondaryFiles and listings."""
    if isinstance(value, list):
        for item in value:
            yield from _files_with_depth(item, depth)
    elif isinstance(value, dict):
        if value.get("class") in ("File", "Directory"):
            yield depth, value
            for key in ("secondaryFiles", "listing"):
                yield from _files_with_depth(value.get(key) or [], depth + 1)
        else:
            for item in value.values():
                yield from _files_with_depth(item, depth)


def refuse_outside(outputs: dict[str, Any], roots: tuple[str, ...]) -> None:
    """Fail naming the output when a File of it, or anything in a Directory of it, resolves
    outside the tool's directories (``roots``, see :func:`flow.cwl.values.tool_roots`): storing
    it would copy a host file the workflow was never given (a symlink in an output directory)."""
    for name, value in outputs.items():
        for obj in walk_files(value):
            path = local_path(str(obj.get("location", ""))) if obj.get("location") else None
            if path is None or str(obj.get("location", "")).startswith((FLOW_FILE, FLOW_DIR)):
                continue
            for entry in [path, *_tree(path)]:
                real = outside_roots(entry, roots)
                if real is not None:
                    raise CWLToolError(
                        f"output '{name}': {entry} resolves to {real}, outside the tool's directories: "
                        "refused (see 'Path safety' in the README)")


def _tree(path: str) -> list[str]:
    """Everything under a directory, symlinks not followed (they are checked, not entered)."""
    found: list[str] = []
    for top, dirs, files in os.walk(path) if os.path.isdir(path) and not os.path.islink(path) else ():
        found.extend(os.path.join(top, name) for name in [*dirs, *files])
    return found


def _entry(path: str) -> dict[str, Any]:
    kind = "Directory" if os.path.isdir(path) else "File"
    return {"class": kind, "location": _file_uri(path), "basename": os.path.basename(path)}


# ---- leader: outputs out ---------------------------------------------------------------------
def _final_file_fields(value: dict[str, Any], path: str) -> None:
    """The fields of a File or Directory in cwltool's final output: no nameroot, nameext or
    dirname (cwltool's main drops them), a size and a sha1 checksum on every File, those in a
    Directory's listing included (cwltool computes them when it relocates the outputs)."""
    for key in ("nameroot", "nameext", "dirname"):
        value.pop(key, None)
    if value.get("class") != "File":
        return
    value.setdefault("size", os.path.getsize(path))
    if not value.get("checksum"):
        digest = hashlib.sha1()
        with open(path, "rb") as stream:
            for block in iter(lambda: stream.read(1 << 20), b""):
                digest.update(block)
        value["checksum"] = "sha1$" + digest.hexdigest()


class Exporter:
    """Writes flowfile:/flowdir: objects into ``outdir`` as cwltool lays out its outputs."""

    def __init__(self, store: JobStore, outdir: str, hand_over: bool = False) -> None:
        """``hand_over``: the store is deleted when the run ends, so each stored file may be
        handed over (``JobStore.hand_over_file``: no copy) the first time it is exported."""
        self.store = store
        self.outdir = os.path.abspath(outdir)
        self.hand_over = hand_over
        self._handed: set[str] = set()  # a second export of one file is a copy: no shared inode
        self._taken: set[str] = set()
        #: What was exported where: one path per file (by id, or by name and checksum, since
        #: an in-place update stores the same file again), as cwltool moves each file once.
        self._exported: dict[tuple[str | None, str, str], str] = {}

    def __call__(self, value: Any) -> Any:
        value = copy.deepcopy(value)
        os.makedirs(self.outdir, exist_ok=True)
        self._visit(value, None)
        return value

    def _export(self, file_id: str, path: str) -> None:
        if self.hand_over and file_id not in self._handed:
            self._handed.add(file_id)
            self.store.hand_over_file(file_id, path)
        else:
            self.store.read_file(file_id, path)

    def _target(self, parent: str | None, name: str) -> str:
        """Where an output goes: like cwltool, replacing what an earlier run left there, and
        numbering names that two outputs of this run share."""
        base = os.path.join(parent or self.outdir, name)
        path, n = base, 1
        while parent is None and path in self._taken:
            n += 1
            path = f"{base}_{n}"
        self._taken.add(path)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        elif os.path.lexists(path):
            os.unlink(path)
        return path

    def _visit(self, value: Any, parent: str | None) -> None:
        if isinstance(value, list):
            for item in value:
                self._visit(item, parent)
            return
        if not isinstance(value, dict):
            return
        for key in [k for k in value if k.startswith(CWLTOOL_NAMESPACE)]:
            del value[key]  # cwltool's bookkeeping (e.g. its inplace-update generation)
        kind, location = value.get("class"), str(value.get("location", ""))
        if kind == "File" and location.startswith(FLOW_FILE):
            checksum = str(value.get("checksum") or "")
            key = (parent, str(value.get("basename")), checksum) if checksum else (parent, location, "")
            path = self._exported.get(key) or self._target(parent, value.get("basename") or os.path.basename(location))
            if key not in self._exported:
                self._export(location[len(FLOW_FILE):], path)
                self._exported[key] = path
            value["location"], value["path"] = _file_uri(path), path
            _final_file_fields(value, path)
            for secondary in value.get("secondaryFiles") or []:
                self._visit(secondary, os.path.dirname(path))
        elif kind == "Directory" and location.startswith(FLOW_DIR):
            path = self._target(parent, value.get("basename") or "dir")
            os.makedirs(path, exist_ok=True)
            with self.store.read_file_stream(location[len(FLOW_DIR):]) as stream:
                value["listing"] = json.loads(stream.read()).get("listing") or []
            for item in value["listing"]:
                self._visit(item, path)
            value["location"], value["path"] = _file_uri(path), path
            _final_file_fields(value, path)
        elif kind is None:
            for item in value.values():
                self._visit(item, None)
