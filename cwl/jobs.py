"""CWL processes as core jobs. A tool invocation is a :class:`CWLJob`."""

from __future__ import annotations

import os
from typing import Any

from flow.core.filestore import FileStore
from flow.core.job import Job
from flow.cwl import adapter, staging

MiB = 1024 * 1024


def _requirement(process: Any, cls: str) -> dict[str, Any] | None:
    for where in ("requirements", "hints"):
        for req in process.tool.get(where, []) or []:
            if req.get("class") == cls:
                return dict(req)
    return None


def static_resources(process: Any) -> dict[str, Any]:
    """Cores, memory and disk from a ResourceRequirement when they are plain numbers (cwltool's
    defaults otherwise: 1 core, 256 MiB, 1 GiB tmpdir + 1 GiB outdir)."""
    req = _requirement(process, "ResourceRequirement") or {}

    def number(*keys: str, default: float) -> float:
        for key in keys:
            value = req.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return float(value)
        return default

    return {
        "cores": number("coresMin", "coresMax", default=1),
        "memory": int(number("ramMin", "ramMax", default=256) * MiB),
        "disk": int((number("tmpdirMin", default=1024) + number("outdirMin", default=1024)) * MiB),
    }


def _label(process: Any) -> str:
    tool_id = str(process.tool.get("id", "tool"))
    return tool_id.rsplit("#", 1)[-1].rsplit("/", 1)[-1] or tool_id


class CWLJob(Job):
    """Runs one CommandLineTool or ExpressionTool invocation through cwltool on a worker."""

    def __init__(self, ref: adapter.ToolRef, inputs: Any, settings: adapter.RunSettings,
                 process: Any | None = None) -> None:
        process = process if process is not None else adapter.resolve(ref, settings)
        resources = static_resources(process)
        cores = min(float(resources["cores"]), float(os.cpu_count() or 1))
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
        if self.inplace:
            staging.write_back(stage)
        for param in process.tool["outputs"]:  # every declared output, null when absent
            outputs.setdefault(adapter.shortname(param["id"]), None)
        return staging.store_outputs(outputs, fileStore)
