"""Several calls of one scattered task in one job: :class:`WDLTaskBatch`.

A scatter of thousands of short calls as one job per call pays, per call, a job record written
and read back, a scheduling round in the leader, a hand-off to a worker and a scratch directory
removed. A batch pays those once for up to :data:`MAX_BATCH` calls; each call still runs as a
:class:`~flow.wdl.task.WDLTaskJob` would, in a folder that is fresh for it (but for the command
itself, run on the host in a subshell of the batch's bash: :mod:`flow.wdl.shell`), and its outputs are
recorded in the job's step log (:mod:`flow.core.steplog`) once its files are in the store, so that a batch run again (after a
failed call, a killed worker or leader, ``--restart``) runs only the calls that had not finished.
Calls share a batch only when they ask for the same cores, memory, disk and retries.
"""

from __future__ import annotations

import math
import os
import pickle
import stat

from flow.core.filestore import FileStore
from flow.core.steplog import StepLog
from flow.jobstores.leases import release, take_write_lease
from flow.wdl import adapter
from flow.wdl.packing import PackedValues
from flow.wdl.shell import BatchShell
from flow.wdl.task import CallJob, Needs, RunSettings, bash, run_call
from flow.wdl.taskdirs import TaskDirs

#: The most calls one batch runs, one after the other.
MAX_BATCH = 100
#: Batches per job slot of the machine: enough for every slot to stay busy to the end.
BATCHES_PER_SLOT = 4
#: Slots assumed where the run has no core limit (a cluster).
CLUSTER_SLOTS = 64
#: Environment variable: an exact batch size (tests; 1 turns batches off).
BATCH_VARIABLE = "FLOW_WDL_BATCH_SIZE"


def batch_size(count: int, cores: float | None, max_cores: float | None) -> int:
    """How many of a scatter's ``count`` calls (each asking for ``cores``, None: one) one batch
    runs: about BATCHES_PER_SLOT batches for each call the machine runs at once, at most
    MAX_BATCH. 1 means a job per call (a small scatter)."""
    forced = os.environ.get(BATCH_VARIABLE, "")
    if forced.isdigit() and int(forced) > 0:
        return int(forced)
    slots = max(1, int(max_cores // max(cores or 1.0, 0.001))) if max_cores else CLUSTER_SLOTS
    return max(1, min(MAX_BATCH, math.ceil(count / (BATCHES_PER_SLOT * slots))))


class WDLTaskBatch(CallJob):
    """Calls of one task (``add`` them before the job is stored); returns their outputs, each
    named ``<namespace>.<output>``, in the order added."""

    def __init__(self, ref: adapter.ExeRef, namespace: str, settings: RunSettings, needs: Needs) -> None:
        super().__init__(needs, namespace)
        self.ref = ref
        self.namespace = namespace
        self.settings = settings
        self.calls: list[tuple[adapter.Values, str]] = []  # (inputs, label)

    def add(self, inputs: adapter.Values, label: str) -> int:
        """Add a call; its index in the returned list. The job is named by its calls."""
        self.calls.append((inputs, label))
        first = self.calls[0][1]
        self.description.display_name = first if len(self.calls) == 1 else f"{first} .. {label}"
        return len(self.calls) - 1

    def run(self, fileStore: FileStore) -> list[PackedValues]:
        results = []
        # The calls run one after the other in one task folder, which each finds as a fresh one
        # (but for its command file, which it rewrites): see _clear_for_next. Each file made
        # (and later removed) costs as much as running a small command on some file systems.
        root = os.path.join(fileStore.localTempDir, "call")
        aside = os.path.join(fileStore.localTempDir, "done")
        os.mkdir(root)
        os.mkdir(aside)
        log = StepLog(fileStore.jobStore, f"wdl-batch-{self.jobStoreID}")
        finished = log.finished()
        with BatchShell(bash()) as shell:
            for index, (inputs, label) in enumerate(self.calls):
                done = _outputs(finished.get(index))
                if done is None:
                    try:
                        done = run_call(self.ref, inputs, label, self.namespace, self.settings,
                                        fileStore, TaskDirs(root), f"{self.jobStoreID}-{index}", shell)
                    finally:
                        _clear_for_next(TaskDirs(root), aside, index)
                    log.add(index, pickle.dumps(dict(done)))
                results.append(done)
        return results


def _outputs(raw: bytes | None) -> PackedValues | None:
    """The outputs an earlier attempt of the batch recorded for a call, or None (not finished;
    or a record of another version of flow: run the call again, its outputs are new files)."""
    if raw is None:
        return None
    try:
        return PackedValues(pickle.loads(raw))
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, ImportError):
        return None

def _clear_for_next(dirs: TaskDirs, aside: str, index: int) -> None:
    """Leave ``dirs`` as a fresh task folder for the next call, making as few files as can be:
    its empty working directory and empty stdout and stderr are kept when the call left no
    process holding them and nothing else there; stdout and stderr with content are moved
    aside (:func:`_set_aside`), and so is everything when the call left more.

    A process the command left running holds its stdout and stderr (it inherits them), unless
    it redirected both: kept, they would take its later output into the next call's files; and
    a file it makes in the working directory would not leave that empty. A file with content
    is not emptied for the next call: on ext4 (``auto_da_alloc``) a file cut to nothing is
    written out to the disk at its next close, which costs more than a new one. Each file made
    and later removed costs, on ext4 without a journal, a scan of every inode removed nearby in
    the last minutes: most of a short call's time when a folder and two files were made anew
    for every call."""
    with os.scandir(dirs.root) as entries:
        found = {entry.name: entry.is_dir(follow_symlinks=False) for entry in entries}
    clean = set(found) <= _FRESH and found.get("work", False)  # a folder, not a link
    if clean:
        with os.scandir(dirs.work) as entries:
            clean = not any(True for _ in entries)
    sizes = [_size_if_unheld(path) for path in (dirs.stdout, dirs.stderr)] if clean else [None]
    if None in sizes:
        _set_aside(dirs.root, aside, index)
        return
    for path, size in zip((dirs.stdout, dirs.stderr), sizes, strict=True):
        if size:
            os.rename(path, os.path.join(aside, f"{index}.{os.path.basename(path)}"))


#: What a task folder holds after a call that made nothing but its output in stdout, stderr.
_FRESH = frozenset({"command", "work", "stdout.txt", "stderr.txt"})


def _size_if_unheld(path: str) -> int | None:
    """The size of the regular file ``path`` (0: there is none) if no process has it open,
    else None: Linux grants a write lease only then. None too where leases are not granted at
    all (a network file system: then the folder is moved aside)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)  # a FIFO: no wait
    except FileNotFoundError:  # the command removed it; the next call makes it again
        return 0
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or take_write_lease(fd) != "taken":
            return None
        release(fd)
        return st.st_size
    finally:
        os.close(fd)


def _set_aside(root: str, aside: str, index: int) -> None:
    """Move what call ``index`` left in ``root`` (all but the command file) into ``aside``, its
    names prefixed with the index. Moved, not copied: a process the call left running keeps
    writing to what it had open, never to the next call's files."""
    with os.scandir(root) as entries:
        names = [entry.name for entry in entries if entry.name != "command"]
    for name in names:
        os.rename(os.path.join(root, name), os.path.join(aside, f"{index}.{name}"))
