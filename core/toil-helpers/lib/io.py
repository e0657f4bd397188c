"""``flow.lib.io``: Toil's ``toil.lib.io`` helpers that scripts use."""

from __future__ import annotations

import os
import shutil
import tempfile

from flow.lib.misc import StrPath

#: Mode of directories made by :func:`mkdtemp`: the owner may do anything, others may only pass
#: through (so a container running as another user can reach a bind-mounted subdirectory).
MKDTEMP_MODE = 0o711


def mkdtemp(suffix: str | None = None, prefix: str | None = None, dir: StrPath | None = None) -> str:
    """Like :func:`tempfile.mkdtemp` (same arguments, a new private directory's absolute path),
    but with mode 711 instead of 700, as Toil's: others may traverse it, not list or read it."""
    path = tempfile.mkdtemp(suffix=suffix, prefix=prefix, dir=dir)
    os.chmod(path, MKDTEMP_MODE)
    return os.path.abspath(path)


def robust_rmtree(path: StrPath) -> None:
    """Remove a file or directory tree; what is already gone is not an error."""
    path = os.fspath(path)
    if os.path.islink(path) or os.path.isfile(path):
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        return
    try:
        shutil.rmtree(path)
    except FileNotFoundError:
        pass
