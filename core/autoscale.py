"""The leader's side of autoscaling: drive the run's cluster scaler, keep its record.

Reaches ``flow.provisioners`` only through its contract and registry. The leader calls
:meth:`Autoscaling.on_tick` from its loop; every ``--scaleInterval`` seconds that hands the
scaler every issued job (queued, or running and for how long) and the runtimes of those that
ended. Before the first launch the provisioner's name, the run id and what the provisioner
needs to find its nodes are written to the job store (``records.PROVISIONER``), so that after a
kill -9 of the leader ``flow clean`` and ``--restart`` terminate what it left
(:func:`terminate_leftover_nodes`). Node launch and end times go to ``records.NODES`` for
``flow stats``.
"""

from __future__ import annotations

import argparse
import logging
import pickle
import threading
import time
from collections.abc import Mapping
from typing import Any, Protocol

from flow.core import records
from flow.core.exceptions import FlowError
from flow.jobstores.abstract import JobStore
from flow.provisioners.contract import (
    ProvisionerConfig,
    ProvisionerError,
    Scaler,
    ScalerConfigError,
    WorkItem,
)
from flow.provisioners.registry import make_scaler, provisioner_class, scaler_params
from flow.provisioners.shape import Shape

logger = logging.getLogger("flow.autoscale")

#: Seconds between two releases of drained nodes whose jobs have ended (between rounds).
RELEASE_INTERVAL = 5.0


class IssuedJobs(Protocol):
    """What the scaler needs from the leader."""

    def issued_jobs(self) -> list[tuple[str, str, tuple[float, int, int, int, bool], float | None, bool]]: ...


def check_options(options: argparse.Namespace) -> None:
    """Fail early, in one paragraph, on autoscaling options that cannot work."""
    if getattr(options, "provisioner", None):
        try:
            scaler_params(vars(options))
            cls = provisioner_class(str(options.provisioner))
            cls.settings(vars(options))
            batch = str(getattr(options, "batchSystem", "") or "")
            if cls.batch_systems and batch.lower() not in cls.batch_systems:
                raise ScalerConfigError(f"--provisioner {cls.name} starts nodes for --batchSystem "
                                        f"{' or '.join(cls.batch_systems)}, not {batch or 'the default'}")
        except ScalerConfigError as exc:
            raise FlowError(str(exc)) from None
        except KeyError as exc:
            raise FlowError(f"--provisioner: {exc.args[0]}") from None


class Autoscaling:
    def __init__(self, store: JobStore, options: argparse.Namespace, run_id: str, batch: object,
                 restart: bool) -> None:
        self.store = store
        self.interval = float(options.scaleInterval)
        name = str(options.provisioner)
        extra = provisioner_class(name).settings(vars(options))
        if restart:  # what an earlier leader of this run left behind
            terminate_leftover_nodes(store)
        # Recorded before anything is launched: flow clean finds the nodes through it.
        store.write_shared(records.PROVISIONER, pickle.dumps({"name": name, "run_id": run_id, "extra": extra}))
        try:
            self.scaler: Scaler = make_scaler(vars(options), run_id, extra, batch, journal=self._journal)
        except (ScalerConfigError, ProvisionerError) as exc:
            raise FlowError(str(exc)) from None
        self.nodes: dict[str, dict[str, Any]] = _read_nodes(store) if restart else {}
        self.cores = {t.name: t.shape.cores for t in scaler_params(vars(options))[1]}
        self._next = 0.0
        self._next_release = 0.0  # drained nodes are released between rounds, this often at most
        self._ended = False  # jobs ended since the last round or release
        self._running_since: dict[str, tuple[str, float]] = {}  # job id -> (name, start)
        #: job id -> when a tick first saw it issued (--targetDeadline runs from then); forgotten
        #: once it is no longer issued
        self._issued_at: dict[str, float] = {}
        self._round: threading.Thread | None = None
        self._lock = threading.Lock()
        self._finished: list[tuple[str, float]] = []  # (name, seconds) for the next round
        self._error: str | None = None

    def on_tick(self, leader: IssuedJobs) -> None:
        """Called from the leader's loop; starts a scaler round every --scaleInterval seconds.

        The round runs on a thread of its own: a site's launch or terminate command may take
        minutes, and the leader keeps issuing and collecting jobs meanwhile. One round at a time.
        """
        if self._error is not None:  # a job no node type can take
            raise FlowError(self._error)
        now = time.monotonic()
        issued = leader.issued_jobs()
        self._ended = self._learn_runtimes(issued, now) > 0 or self._ended
        if self._round is not None and self._round.is_alive():
            return
        if now < self._next:
            if self._ended and now >= self._next_release:  # a drained node may have just emptied
                self._ended, self._next_release = False, now + min(self.interval, RELEASE_INTERVAL)
                self._round = threading.Thread(target=self._release, name="flow-scaler", daemon=True)
                self._round.start()
            return
        self._next, self._ended = now + self.interval, False
        work = [WorkItem(name, Shape(0.0, memory, cores, disk, preemptible), running_for, service,
                         now - self._issued_at.get(job_id, now))
                for job_id, name, (cores, memory, disk, _acc, preemptible), running_for, service in issued]
        self._round = threading.Thread(target=self._run_round, args=(work,), name="flow-scaler", daemon=True)
        self._round.start()

    def _release(self) -> None:
        try:
            if self.scaler.release_drained():
                self._note_nodes()
        except Exception as exc:  # noqa: BLE001 - the next round tries again
            logger.warning("the cluster scaler could not release drained nodes: %s", exc)

    def _run_round(self, work: list[WorkItem]) -> None:
        with self._lock:
            finished, self._finished = self._finished, []
        for name, seconds in finished:
            self.scaler.job_finished(name, seconds)
        try:
            self.scaler.tick(work)
            self._note_nodes()
        except ProvisionerError as exc:
            logger.warning("the cluster scaler could not act this round: %s", exc)
        except ValueError as exc:  # a job no node type can take: the leader fails the run
            self._error = str(exc)
        except Exception as exc:  # noqa: BLE001 - e.g. the batch system's node commands failing
            logger.warning("the cluster scaler could not act this round: %s", exc)

    def _learn_runtimes(self, issued: list[Any], now: float) -> int:
        """Note the jobs that started and ended since the last tick; how many ended."""
        running = {job_id for job_id, _, _, secs, _ in issued if secs is not None}
        ended = 0
        for job_id, (name, start) in list(self._running_since.items()):
            if job_id not in running:  # ended since the last tick (a failure teaches the same)
                ended += 1
                with self._lock:
                    self._finished.append((name, now - start))
                del self._running_since[job_id]
        for job_id, name, _, secs, service in issued:
            if secs is not None and not service and job_id not in self._running_since:
                self._running_since[job_id] = (name, now - secs)
            self._issued_at.setdefault(job_id, now if secs is None else now - secs)
        if ended:  # forget the jobs no longer issued
            issued_ids = {job_id for job_id, *_ in issued}
            self._issued_at = {j: t for j, t in self._issued_at.items() if j in issued_ids}
        return ended

    def _journal(self, event: str, details: Mapping[str, object]) -> None:
        """The scaler's launches and terminations, into the job store at once."""
        now, nodes = time.time(), details.get("nodes")
        if event in ("launching", "launched") and isinstance(nodes, list):
            node_type = str(details.get("node_type"))
            for node_id in nodes:
                if event == "launched" and str(node_id) in self.nodes:
                    continue  # recorded when its launch began
                self.nodes[str(node_id)] = {"id": str(node_id), "type": node_type, "launched": now,
                                            "ended": None, "cores": self.cores.get(node_type, 0.0)}
        elif event == "terminate" and isinstance(nodes, list):
            for node_id in nodes:
                if str(node_id) in self.nodes and self.nodes[str(node_id)]["ended"] is None:
                    self.nodes[str(node_id)]["ended"] = now
        else:
            return
        self.store.write_shared(records.NODES, pickle.dumps(list(self.nodes.values())))

    def _note_nodes(self) -> None:
        now = time.time()
        live = {n.node_id: n for n in self.scaler.live_nodes()}
        changed = False
        for node_id, node in live.items():
            if node_id not in self.nodes:
                self.nodes[node_id] = {"id": node_id, "type": node.node_type, "launched": now, "ended": None,
                                       "cores": self.cores.get(node.node_type, 0.0)}
                changed = True
        for node_id, entry in self.nodes.items():
            if entry["ended"] is None and node_id not in live:
                entry["ended"] = now
                changed = True
        if changed:
            self.store.write_shared(records.NODES, pickle.dumps(list(self.nodes.values())))

    def shutdown(self) -> None:
        """Terminate every node of the run (normal end, failure, Ctrl-C)."""
        if self._round is not None:
            self._round.join()  # a launch in flight ends first: its nodes are terminated too
        try:
            gone = self.scaler.shutdown()
        except ProvisionerError as exc:
            logger.error("could not terminate the run's nodes: %s; 'flow clean' tries again", exc)
            return
        self._note_nodes()
        if gone:
            logger.info("terminated the run's %d node(s)", len(gone))


def _read_nodes(store: JobStore) -> dict[str, dict[str, Any]]:
    raw = store.read_shared(records.NODES)
    return {n["id"]: n for n in pickle.loads(raw)} if raw else {}


def terminate_leftover_nodes(store: JobStore) -> str:
    """Terminate the nodes a gone leader of the run left (for flow clean and --restart); says
    what it did, as a sentence to add to a report ('' when there was nothing)."""
    raw = store.read_shared(records.PROVISIONER)
    if not raw:
        return ""
    record: Mapping[str, Any] = pickle.loads(raw)
    name = str(record["name"])
    try:
        cls = provisioner_class(name)
        recorded = [str(n["id"]) for n in _read_nodes(store).values() if n["ended"] is None]
        run_id = str(record["run_id"])
        gone = cls.cleanup_run(run_id, ProvisionerConfig(run_id, (), record["extra"]), recorded)
    except (KeyError, ProvisionerError) as exc:
        return f" Could not terminate the nodes it may have left with the {name} provisioner: {exc}."
    if not gone:
        return ""
    now = time.time()
    nodes = _read_nodes(store)
    for node_id in gone:
        nodes.setdefault(node_id, {"id": node_id, "type": "?", "launched": now, "ended": None})
        if nodes[node_id]["ended"] is None:
            nodes[node_id]["ended"] = now
    store.write_shared(records.NODES, pickle.dumps(list(nodes.values())))
    shown = ", ".join(gone[:10]) + (", ..." if len(gone) > 10 else "")
    return f" Terminated the {len(gone)} node(s) it had left: {shown}."


def node_usage(store: JobStore, stats: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Node-hours per type, peak nodes and idle fraction of a run that used a provisioner (None
    if it did not). Idle: the share of the nodes' core-hours no job asked for (from --stats)."""
    raw = store.read_shared(records.NODES)
    if not raw:
        return None
    nodes = pickle.loads(raw)
    now = time.time()
    spans = [(float(n["launched"]), float(n["ended"] if n["ended"] is not None else now)) for n in nodes]
    hours: dict[str, float] = {}
    for n, (start, end) in zip(nodes, spans, strict=True):
        hours[str(n["type"])] = hours.get(str(n["type"]), 0.0) + (end - start) / 3600
    events = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    peak = current = 0
    for _, step in events:
        current += step
        peak = max(peak, current)
    paid = sum((end - start) * float(n.get("cores", 0.0)) for n, (start, end) in zip(nodes, spans, strict=True))
    config = store.read_shared(records.CONFIG)
    default_cores = float(pickle.loads(config).default_cores) if config else 1.0
    used = sum(float(r.get("wall", 0.0)) * float(_cores(r, default_cores)) for r in stats)
    idle = max(0.0, 1.0 - used / paid) if paid and stats else None
    return {"node_hours": hours, "nodes": len(nodes), "peak_nodes": peak, "idle_fraction": idle}


def _cores(record: Mapping[str, Any], default: float) -> float:
    request = record.get("request")
    return float(request[0]) if request and request[0] is not None else default
