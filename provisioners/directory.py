"""``--provisioner directory``: a stand-in cloud whose nodes are records in a directory.

Each node is a JSON file ``<run id>.<node id>.json`` (type, run, launch time) in
``$FLOW_NODE_DIRECTORY`` (default ``$TMPDIR/flow-nodes-<uid>``); terminating a node deletes it.
Nodes are ready at once and run nothing themselves: jobs still run on the run's batch system.
It exists so that the leader's whole node lifecycle (launch before use, terminate at the end,
after a failure or Ctrl-C, found again by ``flow clean`` and ``--restart`` after a kill -9) runs
and is tested with real processes and files, without a cloud account; a site or cloud
provisioner replaces the file operations with its commands.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence

from flow.provisioners.contract import (
    Node,
    NodeState,
    Provisioner,
    ProvisionerConfig,
    ProvisionerError,
)
from flow.provisioners.shape import NodeType

DIRECTORY_VARIABLE = "FLOW_NODE_DIRECTORY"


def _directory(extra: Mapping[str, object]) -> str:
    return str(extra.get("directory") or os.path.join(tempfile.gettempdir(), f"flow-nodes-{os.getuid()}"))


class DirectoryProvisioner(Provisioner):
    name = "directory"

    def __init__(self, config: ProvisionerConfig) -> None:
        super().__init__(config)
        self.directory = _directory(config.extra)
        try:
            os.makedirs(self.directory, exist_ok=True)
        except OSError as exc:
            raise ProvisionerError(f"cannot use the node directory {self.directory}: {exc.strerror}") from None
        self._count = 0

    @classmethod
    def settings(cls, options: Mapping[str, object]) -> dict[str, str]:
        return {"directory": os.path.abspath(os.environ.get(DIRECTORY_VARIABLE) or _directory({}))}

    def add_nodes(self, node_type: NodeType, count: int) -> list[str]:
        ids = []
        for _ in range(count):
            self._count += 1
            node_id = f"{node_type.name}-{os.getpid()}-{self._count}"
            record = {"run": self.config.run_id, "node_type": node_type.name, "launched_at": time.time(),
                      "preemptible": node_type.preemptible}
            path = self._path(self.config.run_id, node_id)
            try:
                with open(path + ".tmp", "w") as handle:
                    json.dump(record, handle)
                os.replace(path + ".tmp", path)
            except OSError as exc:
                raise ProvisionerError(f"cannot launch a {node_type.name} node in {self.directory}: {exc.strerror}") from None
            ids.append(node_id)
        return ids

    def nodes(self) -> list[Node]:
        out = []
        for node_id, record in _records(self.directory, self.config.run_id):
            out.append(Node(node_id, str(record["node_type"]), NodeState.READY, bool(record.get("preemptible")),
                            float(str(record["launched_at"]))))
        return out

    def terminate_nodes(self, node_ids: Iterable[str]) -> None:
        for node_id in node_ids:
            with contextlib.suppress(FileNotFoundError):
                os.remove(self._path(self.config.run_id, node_id))

    @classmethod
    def cleanup_run(cls, run_id: str, config: ProvisionerConfig, recorded: Sequence[str] = ()) -> list[str]:
        directory = _directory(config.extra)
        found = [node_id for node_id, _ in _records(directory, run_id)]
        try:
            names = os.listdir(directory)
        except FileNotFoundError:
            return found
        for name in names:  # the nodes, and any launch a killed leader left half done (.tmp)
            if name.startswith(run_id + "."):
                with contextlib.suppress(FileNotFoundError):
                    os.remove(os.path.join(directory, name))
        return found

    def _path(self, run_id: str, node_id: str) -> str:
        return os.path.join(self.directory, f"{run_id}.{node_id}.json")


def _records(directory: str, run_id: str) -> list[tuple[str, dict[str, object]]]:
    out = []
    try:
        names = sorted(os.listdir(directory))
    except FileNotFoundError:
        return []
    for name in names:
        if not (name.startswith(run_id + ".") and name.endswith(".json")):
            continue
        try:
            with open(os.path.join(directory, name)) as handle:
                record = json.load(handle)
        except (FileNotFoundError, ValueError):
            continue  # terminated meanwhile
        out.append((name[len(run_id) + 1: -len(".json")], record))
    return out
