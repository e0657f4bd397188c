"""Where a WDL task runs, and which paths are its own (no miniwdl here)."""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass


@dataclass(frozen=True)
class TaskDirs:
    """Where a task runs: ``root`` holds ``work/`` (its working directory), stdout, stderr."""

    root: str

    @property
    def work(self) -> str:
        return os.path.join(self.root, "work")

    @property
    def stdout(self) -> str:
        return os.path.join(self.root, "stdout.txt")

    @property
    def stderr(self) -> str:
        return os.path.join(self.root, "stderr.txt")

    @property
    def command(self) -> str:
        return os.path.join(self.root, "command")

    @property
    def writes(self) -> str:
        return os.path.join(self.root, "write_")

    @property
    def inputs(self) -> str:
        return os.path.join(self.root, "inputs")

    def outside(self, path: str) -> bool:
        """Whether ``path`` (absolute, or relative to the working directory) leaves the task's
        own files (its working directory, localized inputs, write_* files, stdout and stderr),
        by ``..``, as an absolute path elsewhere, or through a symlink. Like miniwdl's check of
        output paths: without it, ``File o = "/etc/passwd"`` would copy a host file out."""
        full = os.path.normpath(os.path.join(self.work, path))
        real = os.path.realpath(full)
        tops, real_tops, files, real_files = self._own
        as_written = (any(_within(full, t) for t in (*tops, *real_tops))
                      or full in files or full in real_files)
        resolved = any(_within(real, t) for t in real_tops) or real in real_files
        return not (as_written and resolved)

    @functools.cached_property
    def _own(self) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
        """The task's own folders and files, as named and resolved: the root resolved once per
        task (each realpath is a stat per level), the names in it taken as flow made them, so
        that one the command replaced by a link is not followed."""
        root = os.path.realpath(self.root)
        tops = (self.work, self.inputs, self.writes)
        files = (self.stdout, self.stderr)
        return (tops, tuple(os.path.join(root, os.path.basename(t)) for t in tops), files,
                tuple(os.path.join(root, os.path.basename(f)) for f in files))


    def shown(self, path: str) -> str:
        """``path`` for a message: relative to the working directory when in it, and where it
        leads when it is a symlink."""
        full = os.path.normpath(os.path.join(self.work, path))
        if not _within(full, self.work):
            return path
        text = os.path.relpath(full, self.work)
        real = os.path.realpath(full)
        linked = real != os.path.normpath(os.path.join(os.path.realpath(self.work), text))
        return f"{text} (a link to {real})" if linked and os.path.exists(full) else text


def _within(path: str, top: str) -> bool:
    return path == top or path.startswith(top.rstrip(os.sep) + os.sep)
