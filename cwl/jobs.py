"""CWL processes as core jobs. A tool invocation is a :class:`CWLJob`."""

from __future__ import annotations

import datetime
import json
import math
import os
import tempfile
from typing import Any

from flow.core.exceptions import ChangedReadFileError
from flow.core.filestore import FileStore
from flow.core.job import Job
from flow.core.steplog import StepLog
from flow.cwl import adapter, adapter_run, staging
from flow.cwl.values import tool_roots

MiB = 1024 * 1024
#: Set (to "1") by a leader writing a research object (``--provenance``): each tool invocation
#: then stores what :func:`record_invocation` says, for the leader to read at the end. In the
#: environment, not in the jobs' settings, so that a ``--restart --provenance`` records the jobs
#: it runs although the first attempt did not ask for it.
PROVENANCE_VARIABLE = "FLOW_CWL_PROVENANCE"
#: The shared record of one invocation: the job's id, then "-<index>" for a batch's invocations.
PROVENANCE_RECORD = "cwl-prov-{}"


def _requirement(process: Any, cls: str) -> dict[str, Any] | None:
    for where in ("requirements", "hints"):
        for req in process.tool.get(where, []) or []:
            if req.get("class") == cls:
                return dict(req)
    return None


def resources_of(process: Any, inputs: Any, settings: adapter.RunSettings) -> dict[str, Any]:
    """Cores, memory and disk for the batch system from the tool's ResourceRequirement, its
    expressions evaluated on ``inputs``; cwltool's defaults for what it leaves out (1 core,
    256 MiB, 1 GiB tmpdir + 1 GiB outdir)."""
    request = adapter.resource_request(process, inputs, settings)
    return {
        "cores": request.get("cores", 1.0),
        "memory": int(math.ceil(request.get("ram", 256)) * MiB),
        "disk": int((math.ceil(request.get("tmpdir", 1024)) + math.ceil(request.get("outdir", 1024))) * MiB),
    }


def _label(process: Any) -> str:
    tool_id = str(process.tool.get("id", "tool"))
    return tool_id.rsplit("#", 1)[-1].rsplit("/", 1)[-1] or tool_id


class CWLJob(Job):
    """Runs one CommandLineTool or ExpressionTool invocation through cwltool on a worker."""

    def __init__(self, ref: adapter.ToolRef, inputs: Any, settings: adapter.RunSettings,
                 process: Any | None = None) -> None:
        process = process if process is not None else adapter.resolve(ref, settings)
        resources = resources_of(process, inputs, settings)
        cores = float(resources["cores"])
        if settings.max_cores is not None:
            cores = min(cores, settings.max_cores)
        super().__init__(cores=cores, memory=resources["memory"], disk=resources["disk"],
                         displayName=_label(process))
        self.ref = ref
        self.inputs = inputs
        self.settings = settings
        self.inplace = _requirement(process, "InplaceUpdateRequirement") is not None

    def run(self, fileStore: FileStore) -> Any:
        process = adapter.resolve(self.ref, self.settings)
        started = _now()
        outputs = run_tool(process, self.inputs, self.settings, fileStore, fileStore.getLocalTempDir(), self.inplace)
        record_invocation(fileStore, PROVENANCE_RECORD.format(self.jobStoreID), self.ref, started, self.inputs, outputs)
        return outputs


def _now() -> str:
    return datetime.datetime.now().isoformat()


def record_invocation(fileStore: FileStore, name: str, ref: adapter.ToolRef, started: str, inputs: Any,
                      outputs: Any) -> None:
    """For ``--provenance`` (see PROVENANCE_VARIABLE): which tool of the workflow ran, when, on
    which inputs and with which outputs (their files as stored), as a shared record."""
    if os.environ.get(PROVENANCE_VARIABLE) != "1":
        return
    record = {"steps": list(ref.steps), "start": started, "end": _now(), "inputs": inputs, "outputs": outputs}
    fileStore.jobStore.write_shared(name, json.dumps(record).encode())


def run_tool(process: Any, inputs: Any, settings: adapter.RunSettings, fileStore: FileStore, work: str,
             inplace: bool, prefix: str = "", tmpdir: str | None = None, outdir: str | None = None) -> Any:
    """One tool invocation in ``work`` (its entries there named ``prefix``..., its $TMPDIR
    ``tmpdir`` and output directory ``outdir`` if given): inputs staged from the file store,
    cwltool run, outputs checked and stored. Returns the output object with flowfile:/flowdir:
    locations."""
    stage = staging.Materializer(fileStore, os.path.join(work, f"{prefix}inputs"), mutable=inplace,
                                 restaged=adapter.process_class(process) == "CommandLineTool"
                                 and settings.container is not None)
    roots = tool_roots(work, (settings.tmpdir_prefix, settings.tmp_outdir_prefix), prefix, tmpdir, outdir)
    outputs = adapter_run.run_process(process, stage(inputs), work, settings, prefix, tmpdir, outdir, roots)
    try:
        fileStore.check_read_files()
    except ChangedReadFileError as exc:
        # cwltool without a container lets the tool change the user's own file; in one the
        # inputs are mounted read-only and the write fails. flow keeps the stored input
        # intact and fails the step, as a container run would.
        raise adapter.CWLToolError(
            f"tool {_label(process)} changed its input file {os.path.basename(exc.path)} "
            f"({exc.path}). CWL inputs are read-only: declare InplaceUpdateRequirement (with "
            "the file writable in InitialWorkDirRequirement) or write a new file."
        ) from None
    if inplace:
        staging.write_back(stage)
    for param in process.tool["outputs"]:  # every declared output, null when absent
        outputs.setdefault(adapter.shortname(param["id"]), None)
    staging.refuse_outside(outputs, roots)
    # The outputs the tool left in its own output directory are moved into the store (as
    # cwltool moves them to their final place): no copy, no new file, nothing to remove later.
    movable = frozenset[str]() if inplace or settings.tmp_outdir_prefix is not None else staging.movable_outputs(
        outputs, outdir.rstrip(os.sep) + os.sep if outdir else os.path.join(work, f"{prefix}{adapter_run.OUTDIR_NAME}"))
    return staging.store_outputs(outputs, fileStore, movable)


#: The most scattered invocations one :class:`CWLBatch` runs, one after the other.
MAX_BATCH = 100
#: Batches per job slot of the machine: enough for the slots to stay busy to the end.
BATCHES_PER_SLOT = 4
#: Environment variable: an exact batch size, for tests (the conformance suite's scatters are
#: too small to be batched otherwise).
BATCH_VARIABLE = "FLOW_CWL_BATCH_SIZE"


def batch_size(count: int, cores: float, max_cores: float | None) -> int:
    """How many of a scatter's ``count`` invocations (each asking for ``cores``) one batch job
    runs: about BATCHES_PER_SLOT batches for each invocation the machine runs at once, so that
    every slot keeps busy to the end, and at most MAX_BATCH (a cluster, max_cores None: 64
    slots are assumed)."""
    forced = os.environ.get(BATCH_VARIABLE, "")
    if forced.isdigit() and int(forced) > 0:
        return int(forced)
    slots = max(1, int(max_cores // max(cores, 0.001))) if max_cores else 64
    return max(1, min(MAX_BATCH, math.ceil(count / (BATCHES_PER_SLOT * slots))))


def batchable(process: Any) -> bool:
    """Whether a scattered step's invocations may share a job: tools that change no input."""
    return (adapter.process_class(process) in ("CommandLineTool", "ExpressionTool")
            and _requirement(process, "InplaceUpdateRequirement") is None)


class CWLBatch(Job):
    """Several invocations of one scattered tool, run one after the other in one job: a scatter
    of thousands of short steps costs a job record, a schedule and a worker hand-off per batch,
    not per step. Each invocation runs exactly as a :class:`CWLJob` would, in its own scratch
    directory (removed once its outputs are stored); the job returns their output objects in
    order. The batch asks for the most any of its invocations asks for (disk: the invocations'
    outputs are in the store, their scratch stays until the job ends)."""

    def __init__(self, ref: adapter.ToolRef, inputs: list[Any], settings: adapter.RunSettings, process: Any) -> None:
        requests = [resources_of(process, one, settings) for one in inputs]
        cores = max(float(r["cores"]) for r in requests)
        if settings.max_cores is not None:
            cores = min(cores, settings.max_cores)
        super().__init__(cores=cores, memory=max(r["memory"] for r in requests),
                         disk=max(r["disk"] for r in requests), displayName=_label(process))
        self.ref = ref
        self.inputs = inputs
        self.settings = settings

    def run(self, fileStore: FileStore) -> list[Any]:
        """Each invocation's output object, logged in a shared record once its files are in
        the store: a batch run again (after a failure, a killed worker or leader) runs only the
        invocations that had not finished, as one job per invocation would."""
        process = adapter.resolve(self.ref, self.settings)
        log = StepLog(fileStore.jobStore, f"cwl-batch-{self.jobStoreID}")
        done = {index: json.loads(payload) for index, payload in log.finished().items()}
        results = []
        work = fileStore.getLocalTempDir()  # shared: each invocation's entries named "<index>-..."
        tmpdir = outdir = None
        for index, one in enumerate(self.inputs):
            if index in done:
                results.append(done[index])
                continue
            # Left to the janitor with the job's scratch: removing each invocation's
            # directories one by one costs more than the tool (rmdir is slow under load).
            tmpdir = _tool_dir(tmpdir, work, self.settings, self.settings.tmpdir_prefix, "tmp-")
            outdir = _tool_dir(outdir, work, self.settings, self.settings.tmp_outdir_prefix, "out-")
            started = _now()
            outputs = run_tool(process, one, self.settings, fileStore, work, False, f"{index}-", tmpdir, outdir)
            record_invocation(fileStore, PROVENANCE_RECORD.format(f"{self.jobStoreID}-{index}"), self.ref,
                              started, one, outputs)
            log.add(index, json.dumps(outputs, separators=(",", ":")).encode())
            results.append(outputs)
        return results


def _tool_dir(previous: str | None, work: str, settings: adapter.RunSettings, user_prefix: str | None,
              name: str) -> str | None:
    """The $TMPDIR (or output directory) for a batch's next tool run on the host: the previous
    one's again when that tool left it empty (and usable; its outputs were moved into the
    store), else a new one; None (cwltool makes it) under a user's --tmpdir-prefix (or
    --tmp-outdir-prefix), where cwltool removes it after each run."""
    if user_prefix is not None or settings.container is not None:
        return None
    if previous is not None:
        try:
            with os.scandir(previous) as entries:
                empty = next(entries, None) is None
            if empty and os.access(previous, os.R_OK | os.W_OK | os.X_OK):
                return previous
        except OSError:
            pass
    return tempfile.mkdtemp(prefix=name, dir=work)

