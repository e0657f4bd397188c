"""Fixtures for the whole test suite."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True, scope="session")
def _own_temporary_directory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Everything the tests and the programs they start put in $TMPDIR (a failed run's job
    store, kept for --restart; a killed worker's scratch) lands under pytest's own temporary
    directory, which pytest prunes, not in the machine's /tmp, where it would pile up."""
    before = os.environ.get("TMPDIR")
    os.environ["TMPDIR"] = str(tmp_path_factory.mktemp("TMPDIR"))
    tempfile.tempdir = None  # tempfile caches the directory it found first
    yield
    if before is None:
        os.environ.pop("TMPDIR", None)
    else:
        os.environ["TMPDIR"] = before
    tempfile.tempdir = None
