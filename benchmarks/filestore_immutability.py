"""The cost of immutable stored files: writeGlobalFile + readGlobalFile, copies against hard links.

    python benchmarks/filestore_immutability.py                    # this checkout only
    python benchmarks/filestore_immutability.py --before ff946e4   # and the code of a revision
    python benchmarks/filestore_immutability.py --big-mib 64 --small 1000   # a quick look

Times, in one process through a ``FileStore`` on a file job store (no workers): writing one big
file (default 1 GiB) and reading it back without ``mutable=True``, then the same for many small
files (default 10,000 of 1 KiB), then the end-of-job check of the read copies where the code has
one. ``--before REV`` runs the same measurement on the code of git revision REV (before issue 18:
hard links both ways) in a child process and prints its figures first. Both use one file system,
the $TMPDIR's (reflinks make the copies nearly free on XFS or btrfs; ext4 copies the bytes).
Prints 'name: value unit' lines; the figures of the base revision end in '[before]'.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from typing import Any

import _bench

PACKAGES = ("core", "cwl", "wdl", "batchsystems", "jobstores")


def _file_store(base: str) -> Any:
    from flow.core.filestore import FileStore
    from flow.jobstores.file import FileJobStore

    store = FileJobStore.create(os.path.join(base, "jobstore"))
    work = os.path.join(base, "work")
    os.mkdir(work)
    return FileStore(store, "benchjob", work)


def _write_local(fs: Any, size: int) -> str:
    path = fs.getLocalTempFile(suffix=".bin")
    block = os.urandom(1 << 20)
    with open(path, "wb") as handle:
        for start in range(0, size, len(block)):
            handle.write(block[: min(len(block), size - start)])
    return path


def measure(big: int, small: int, small_size: int, tag: str) -> None:
    base = tempfile.mkdtemp(prefix="flow-bench-immut-")
    try:
        fs = _file_store(base)
        local = _write_local(fs, big)
        with _bench.Stopwatch() as watch:
            big_id = fs.writeGlobalFile(local)
        _bench.figure(f"write_big_{big >> 20}MiB{tag}", watch.wall, "s")
        with _bench.Stopwatch() as watch:
            fs.readGlobalFile(big_id)
        _bench.figure(f"read_big_{big >> 20}MiB{tag}", watch.wall, "s")
        payload = os.urandom(small_size)
        folder = fs.getLocalTempDir()
        paths = []
        for i in range(small):
            paths.append(os.path.join(folder, f"f{i}.txt"))
            with open(paths[-1], "wb") as handle:
                handle.write(payload)
        with _bench.Stopwatch() as watch:
            ids = [fs.writeGlobalFile(path) for path in paths]
        _bench.figure(f"write_small_{small}x{small_size}B{tag}", watch.wall, "s")
        with _bench.Stopwatch() as watch:
            for file_id in ids:
                fs.readGlobalFile(file_id)
        _bench.figure(f"read_small_{small}x{small_size}B{tag}", watch.wall, "s")
        check = getattr(fs, "check_read_files", None)
        if check is not None:
            with _bench.Stopwatch() as watch:
                check()
            _bench.figure(f"end_of_job_check_{small + 1}_files{tag}", watch.wall, "s")
    finally:
        shutil.rmtree(base, ignore_errors=True)


def run_before(revision: str, argv: list[str]) -> int:
    """The measurement on the code of ``revision``, in a child process importing that code."""
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    tree = tempfile.mkdtemp(prefix="flow-bench-before-")
    try:
        archive = subprocess.run(["git", "-C", repo, "archive", revision], capture_output=True, check=False)
        if archive.returncode != 0:
            return _bench.fail(f"git archive {revision}: {archive.stderr.decode().strip()}")
        subprocess.run(["tar", "-x", "-C", tree], input=archive.stdout, check=True)
        package = os.path.join(tree, "importable", "flow")
        os.makedirs(package)
        for name in PACKAGES:
            os.symlink(os.path.join(tree, name), os.path.join(package, name))
        env = dict(os.environ, PYTHONPATH=os.path.join(tree, "importable"))
        print(f"before: the code of {revision} (hard links)", flush=True)
        return subprocess.run([sys.executable, __file__, "--measure-only", "[before]", *argv],
                              env=env, check=False).returncode
    finally:
        shutil.rmtree(tree, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--big-mib", type=int, default=1024, help="size of the big file (MiB)")
    parser.add_argument("--small", type=int, default=10_000, help="number of small files")
    parser.add_argument("--small-bytes", type=int, default=1024, help="size of each small file")
    parser.add_argument("--before", metavar="REV", help="also measure the code of this git revision")
    parser.add_argument("--measure-only", metavar="TAG", help=argparse.SUPPRESS)
    args, _ = parser.parse_known_args()
    if min(args.big_mib, args.small, args.small_bytes) < 1:
        return _bench.fail("--big-mib, --small and --small-bytes must be at least 1")
    sizes = ["--big-mib", str(args.big_mib), "--small", str(args.small), "--small-bytes", str(args.small_bytes)]
    if args.measure_only is not None:
        measure(args.big_mib << 20, args.small, args.small_bytes, args.measure_only)
        return 0
    if args.before and run_before(args.before, sizes) != 0:
        return 1
    import flow.core.filestore

    print(f"after: {os.path.dirname(os.path.dirname(flow.core.filestore.__file__))} (copies)", flush=True)
    measure(args.big_mib << 20, args.small, args.small_bytes, "")
    return 0


if __name__ == "__main__":
    sys.exit(main())
