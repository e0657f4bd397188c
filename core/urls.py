"""Import files into a job store from URLs and export them out (``file://``, ``http(s)://``)."""

from __future__ import annotations

import contextlib
import os
import shutil
import urllib.parse

from flow.core.exceptions import FlowError
from flow.jobstores.abstract import JobStore


class UnsupportedURLError(FlowError):
    def __init__(self, url: str, action: str) -> None:
        super().__init__(f"cannot {action} {url!r}: only file:// and http(s):// URLs (or plain paths) are supported")
        self.url = url


def _local_path(url: str) -> str | None:
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme in ("", "file"):
        path = urllib.parse.unquote(parsed.path) if parsed.scheme == "file" else url
        return os.path.abspath(path)
    return None


def import_url(store: JobStore, url: str, link: bool = False) -> str:
    """Copy the file at ``url`` into the store; returns its file id. ``link`` (``--linkImports``)
    lets the store hard-link a local file instead: the user promises not to change it while the
    run lasts; jobs still get copies of it, so none of them can change it either."""
    path = _local_path(url)
    if path is not None:
        if not os.path.isfile(path):
            raise FlowError(f"cannot import {url!r}: no such file")
        return store.write_file(path, link=link)
    scheme = urllib.parse.urlparse(url).scheme
    if scheme not in ("http", "https"):
        raise UnsupportedURLError(url, "import")
    from urllib.request import urlopen

    basename = os.path.basename(urllib.parse.urlparse(url).path) or "download"
    try:
        with urlopen(url, timeout=60) as response:
            with store.write_file_stream(basename=basename) as (out, file_id):
                shutil.copyfileobj(response, out, 1024 * 1024)
    except OSError as exc:
        raise FlowError(f"cannot import {url!r}: {exc}") from exc
    return file_id


def export_url(store: JobStore, file_id: str, url: str) -> None:
    """Write the stored file to ``url`` (a local path or file:// URL)."""
    path = _local_path(url)
    if path is None:
        raise UnsupportedURLError(url, "export to")
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = f"{path}.flow-export-{os.getpid()}-{os.urandom(4).hex()}"
    try:
        store.read_file(file_id, tmp)  # a copy (a reflink where possible), never a link
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
