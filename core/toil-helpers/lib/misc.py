"""``flow.lib.misc``: Toil's ``toil.lib.misc`` names that scripts use."""

from __future__ import annotations

import getpass
import os
from typing import Union

#: A path given as a string or a path-like object (``pathlib.Path``), as Toil's ``StrPath``.
StrPath = Union[str, "os.PathLike[str]"]


def get_user_name() -> str:
    """The current user's name, or ``UnknownUser<uid>`` when the system has none for the uid
    (as in a container run under an arbitrary uid)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"UnknownUser{os.getuid()}"
