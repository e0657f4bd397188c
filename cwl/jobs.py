"""CWL processes as core jobs. A tool invocation is a :class:`CWLJob`."""

from __future__ import annotations

import math
import os
from typing import Any

from flow.core.exceptions import ChangedReadFileError
from flow.core.filestore import FileStore
from flow.core.job import Job
from flow.cwl import adapter, staging
from flow.cwl.values import tool_roots

MiB = 1024 * 1024


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
        work = fileStore.getLocalTempDir()
        stage = staging.Materializer(fileStore, os.path.join(work, "inputs"), mutable=self.inplace)
        outputs = adapter.run_process(process, stage(self.inputs), work, self.settings)
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
        if self.inplace:
            staging.write_back(stage)
        for param in process.tool["outputs"]:  # every declared output, null when absent
            outputs.setdefault(adapter.shortname(param["id"]), None)
        staging.refuse_outside(outputs, tool_roots(work, (self.settings.tmpdir_prefix, self.settings.tmp_outdir_prefix)))
        return staging.store_outputs(outputs, fileStore)
