"""WDL File values moving through flow's file store.

Between jobs a File is ``flowfile:<quoted file id>/<folder key>~<length>/<basename>``: the file
store id, a key naming the folder the file came from (files of one task output folder, or of one
input folder, share it, so that a task sees them side by side as WDL's sibling files), and the
name the file has wherever it is materialised. ``basename()`` of such a value is the file's name;
the length of the name lets :func:`replace_uris` find the URI inside a String that a File became
(coerced or interpolated), so that a task sees its local path there and the final outputs a host
path, never the URI.

A job materialises its input files as private local copies (reflinks where possible) and stores its
output files back (moved into the store where nothing else reaches them: ``moveGlobalFile``); the
leader imports the run's input files and exports the final outputs (handed over, not copied, when
the store is deleted after the run). No host path passes between jobs, so the same run works on
any batch system.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass

from flow.core.exceptions import FlowError
from flow.core.filestore import FileStore
from flow.jobstores.abstract import JobStore

FLOW_FILE = "flowfile:"


class WDLFileError(FlowError):
    """A File value that cannot be found or stored."""


@dataclass(frozen=True)
class FileRef:
    file_id: str
    folder: str
    basename: str

    @property
    def uri(self) -> str:
        quoted = urllib.parse.quote(self.file_id, safe="")
        return f"{FLOW_FILE}{quoted}/{self.folder}~{len(self.basename)}/{self.basename}"


_URI_HEAD = re.compile(FLOW_FILE + r"([^/\s]+)/([^/~\s]+)~([0-9]+)/")


def parse(uri: str) -> FileRef | None:
    """The parts of a ``flowfile:`` URI, or None for anything else."""
    match = _URI_HEAD.match(uri)
    if match is None or len(uri) != match.end() + int(match.group(3)):
        return None
    return FileRef(urllib.parse.unquote(match.group(1)), match.group(2), uri[match.end():])


def replace_uris(text: str, fn: Callable[[str], str]) -> str:
    """``text`` with each ``flowfile:`` URI in it replaced by ``fn(uri)``."""
    out, pos = [], 0
    while (match := _URI_HEAD.search(text, pos)) is not None:
        end = match.end() + int(match.group(3))
        out += [text[pos:match.start()], fn(text[match.start():end])]
        pos = end
    return "".join(out) + text[pos:] if out else text


def folder_key(*parts: str) -> str:
    return hashlib.sha1("\0".join(parts).encode()).hexdigest()[:12]


def is_url(path: str) -> bool:
    return urllib.parse.urlparse(path).scheme in ("http", "https", "file")


# ---- leader: inputs in, outputs out ----------------------------------------------------------
class Importer:
    """Imports the run's input files into the job store (paths relative to the search folders)."""

    def __init__(self, import_file: Callable[[str], str], search: list[str]) -> None:
        self.import_file = import_file
        self.search = search
        self._done: dict[str, str] = {}
        self.origins: dict[str, str] = {}  # URI: the host path it was imported from

    def __call__(self, value: str, is_directory: bool) -> str:
        if is_directory:
            raise WDLFileError(f"Directory inputs are not supported: {value}")
        if value.startswith(FLOW_FILE):
            return value
        if value not in self._done:
            self._done[value] = self._import(value)
        return self._done[value]

    def _import(self, value: str) -> str:
        if is_url(value) and not value.startswith("file:"):
            name = os.path.basename(urllib.parse.urlparse(value).path) or "download"
            return FileRef(self.import_file(value), folder_key(os.path.dirname(value)), name).uri
        path = urllib.parse.unquote(urllib.parse.urlparse(value).path) if value.startswith("file:") else value
        candidates = [path] if os.path.isabs(path) else [os.path.join(d, path) for d in self.search]
        for candidate in candidates:
            if os.path.isfile(candidate):
                real = os.path.abspath(candidate)
                uri = FileRef(self.import_file(real), folder_key(os.path.dirname(real)),
                              os.path.basename(real)).uri
                self.origins[uri] = real
                return uri
        raise WDLFileError(f"input file {value} does not exist (looked in {', '.join(self.search) or '/'})")



class Exporter:
    """Copies output files out of the job store into ``outdir``: by name, in a sub-folder named by
    the file's folder key when two outputs share a name."""

    def __init__(self, store: JobStore, outdir: str, hand_over: bool = False) -> None:
        """``hand_over``: the store is deleted when the run ends, so each stored file may be
        handed over (``JobStore.hand_over_file``: no copy) the first time it is exported."""
        self.store = store
        self.outdir = os.path.abspath(outdir)
        self.hand_over = hand_over
        self._handed: set[str] = set()  # a second export of one file is a copy: no shared inode
        self._done: dict[str, str] = {}
        self._taken: set[str] = set()

    def __call__(self, value: str, is_directory: bool) -> str:
        ref = parse(value)
        if ref is None:
            return value
        if value in self._done:
            return self._done[value]
        target = os.path.join(self.outdir, ref.basename)
        n = 1
        while target in self._taken:
            sub = ref.folder if n == 1 else f"{ref.folder}-{n}"
            target = os.path.join(self.outdir, sub, ref.basename)
            n += 1
        self._taken.add(target)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if os.path.lexists(target):
            os.unlink(target)
        if self.hand_over and ref.file_id not in self._handed:
            self._handed.add(ref.file_id)
            self.store.hand_over_file(ref.file_id, target)
        else:
            self.store.read_file(ref.file_id, target)
        self._done[value] = target
        return target


# ---- workers ---------------------------------------------------------------------------------
class StoreFiles:
    """Files of workflow-level expressions (read_*, write_*, size ...) in a job."""

    def __init__(self, file_store: FileStore, origins_id: str | None = None) -> None:
        self.file_store = file_store
        self.origins_id = origins_id  # JSON {URI: host path} of the run's imported files
        self._origins: dict[str, str] | None = None
        self._fetched: dict[str, str] = {}
        self._scratch: str | None = None

    def scratch(self) -> str:
        if self._scratch is None:
            self._scratch = self.file_store.getLocalTempDir()
        return self._scratch

    def fetch(self, uri: str) -> str:
        if uri in self._fetched:
            return self._fetched[uri]
        ref = parse(uri)
        if ref is None:
            if os.path.isabs(uri) and os.path.exists(uri):
                return uri
            if not is_url(uri):
                raise WDLFileError(f"no such file: {uri}")
            ref = FileRef(self.file_store.importFile(uri), folder_key(uri), os.path.basename(uri))
        folder = os.path.join(self.scratch(), ref.folder)
        os.makedirs(folder, exist_ok=True)
        path = self.file_store.readGlobalFile(ref.file_id, userPath=os.path.join(folder, ref.basename))
        self._fetched[uri] = path
        return path

    def store(self, path: str) -> str:
        self._host_paths_in(path)
        file_id = self.file_store.writeGlobalFile(path)
        uri = FileRef(str(file_id), folder_key(self.file_store.job_id, path), os.path.basename(path)).uri
        self._fetched[uri] = path
        return uri


    def _host_paths_in(self, path: str) -> None:
        """Host paths, as miniwdl writes them, for the Files that became Strings in a file a
        write_* function made: the run's inputs have one; a file a task made has none yet."""
        with open(path, encoding="utf-8", errors="surrogateescape") as handle:
            text = handle.read()
        if FLOW_FILE not in text:
            return
        if self._origins is None:
            self._origins = {}
            if self.origins_id:
                with self.file_store.readGlobalFileStream(self.origins_id) as stream:
                    self._origins = json.load(stream)
        origins = self._origins

        def host(uri: str) -> str:
            if uri in origins:
                return origins[uri]
            raise WDLFileError(f"{uri.rsplit('/', 1)[-1]}, a file a task made, has no host path "
                               "to write into a file in a workflow expression; call write_* in "
                               "the command of the task that reads it instead")

        with open(path, "w", encoding="utf-8", errors="surrogateescape") as handle:
            handle.write(replace_uris(text, host))


class Localizer:
    """Materialises a task's input files under ``inputs_dir``: one folder per folder key, so
    sibling files stay side by side and files of the same name from different folders do not
    collide. Remembers what it made, so outputs that are inputs keep their identity."""

    def __init__(self, file_store: FileStore, inputs_dir: str) -> None:
        self.file_store = file_store
        self.inputs_dir = inputs_dir
        self.by_uri: dict[str, str] = {}
        self.by_path: dict[str, str] = {}
        self._folders: dict[tuple[str, str], str] = {}  # (folder key, basename) -> file id there
        self._made: set[str] = set()
        self._real_inputs: str | None = None
        self._pending: list[tuple[str, str]] = []  # (file id, target) placed, not yet copied

    def __call__(self, value: str, is_directory: bool) -> str:
        """Where ``value``'s file is for the task; it is there once :meth:`materialize` ran."""
        if is_directory:
            raise WDLFileError(f"Directory values are not supported: {value}")
        if value in self.by_uri:
            return self.by_uri[value]
        target, file_id = self._place(value)
        if file_id is not None:
            self._pending.append((file_id, target))
        return target

    def materialize(self) -> None:
        """Copy the files placed since the last call to where they go, side by side when there
        are many (:meth:`FileStore.readGlobalFiles`)."""
        pending, self._pending = self._pending, []
        self.file_store.readGlobalFiles(pending, spread_in=self.inputs_dir)

    def _place(self, value: str) -> tuple[str, str | None]:
        """Where ``value``'s file goes, remembered; and the file id to copy there (None: it is
        there already)."""
        ref = parse(value)
        if ref is None:
            if not (os.path.isabs(value) or is_url(value)):
                raise WDLFileError(f"file {value} is neither an input of the workflow nor made by it")
            ref = FileRef(self.file_store.importFile(value), folder_key(os.path.dirname(value)),
                          os.path.basename(value.rstrip("/")) or "file")
        folder, n = ref.folder, 1
        while self._folders.get((folder, ref.basename), ref.file_id) != ref.file_id:
            n += 1
            folder = f"{ref.folder}-{n}"
        self._folders[(folder, ref.basename)] = ref.file_id
        target = os.path.join(self.inputs_dir, folder, ref.basename)
        fresh = target not in self._made and not os.path.exists(target)
        self._made.add(target)
        self.by_uri[value] = target
        if self._real_inputs is None:
            self._real_inputs = os.path.realpath(self.inputs_dir)
        # the folders under inputs_dir are flow's own, never links: no realpath per file
        self.by_path.setdefault(os.path.join(self._real_inputs, folder, ref.basename), ref.uri)
        return target, ref.file_id if fresh else None

    def uris_for_paths(self, text: str) -> str:
        """``text`` (a String output) with the local paths of input files in it as their URIs
        again, so that the String names the file in the next task and in the final outputs."""
        by_path = {path: value for value, path in self.by_uri.items()}
        if not any(path in text for path in by_path):
            return text
        longest_first = sorted(by_path, key=len, reverse=True)  # a.txt.bai before a.txt
        pattern = re.compile("|".join(re.escape(path) for path in longest_first))
        return pattern.sub(lambda match: by_path[match.group(0)], text)


class Uploader:
    """Stores a task's output files; files under the same folder share a folder key."""

    def __init__(self, file_store: FileStore, localizer: Localizer, root: str, token: str) -> None:
        self.file_store = file_store
        self.localizer = localizer
        self.root = root
        self.token = token
        self._stored: dict[str, str] = {}

    def __call__(self, path: str, is_directory: bool) -> str:
        if is_directory:
            raise WDLFileError(f"Directory outputs are not supported: {path}")
        real = os.path.realpath(path)
        name = os.path.basename(path)
        known = self.localizer.by_path.get(real)
        if known is not None:  # an input passed through (or linked to)
            ref = parse(known)
            assert ref is not None
            return known if ref.basename == name else FileRef(ref.file_id, ref.folder, name).uri
        file_id = self._stored.get(real)
        if file_id is None:
            # the task's own file (outputs outside the task were refused) is moved into the
            # store when nothing else reaches it (no other name, no process holding it open:
            # see JobStore.move_file), as miniwdl leaves outputs in place; else copied
            file_id = self._stored[real] = str(self.file_store.moveGlobalFile(real))
        folder = os.path.relpath(os.path.dirname(os.path.abspath(path)), self.root)
        return FileRef(file_id, folder_key(self.token, folder), name).uri
