"""``flow-cwl --provenance DIR``: a CWLProv research object of the run, as ``cwltool --provenance``
writes it, by cwltool's own writer (``cwltool.cwlprov``, reached through :mod:`flow.cwl.adapter`).

cwltool records provenance from inside its executor, as each step starts and ends in its own
process. flow's steps run in worker processes (on other machines with Slurm), so the leader
builds the research object instead, from what the run left in the job store:

* at the start, the research object and its PROV profile (the engine, the user and host when
  asked, the workflow run starting now);
* while the run goes on, each tool invocation stores a record when it succeeds
  (:func:`flow.cwl.jobs.record_invocation`): which step it ran, when it started and ended, its
  input object and its output object, files as the job store holds them;
* at the end, the packed workflow (``workflow/packed.cwl``), the documents (``snapshot/``), the
  input object (``workflow/primary-job.json``), each invocation as a ``wfprov:ProcessRun`` that
  used its inputs and generated its outputs at the recorded times, the workflow's outputs
  (``workflow/primary-output.json``), and every file and string value copied into ``data/``
  under its SHA-1 (from the job store), then the PROV files and the BagIt manifests.

One PROV document holds every invocation, those of sub-workflows too (named ``sub/step``), each
started by the workflow run: cwltool writes a document per sub-workflow run, but its own tests
only ask that every ProcessRun of ``primary.cwlprov`` be started by the main run, which holds.
"""

from __future__ import annotations

import contextlib
import copy
import datetime
import json
import logging
import os
import shlex
import shutil
import urllib.parse
import warnings
from collections import Counter
from collections.abc import Iterator
from typing import IO, Any

from flow.core import records
from flow.core.description import JobState
from flow.cwl import adapter, staging
from flow.cwl.jobs import PROVENANCE_RECORD
from flow.jobstores.abstract import JobStore, JobStoreError
from flow.jobstores.registry import open_job_store

logger = logging.getLogger("flow.cwl")

#: The run's input object (files as imported), kept so that a ``--restart`` can record it.
INPUTS_RECORD = "cwl-inputs"
#: The research object a failed attempt wrote ({"path", "id"}): the ``--restart`` that its
#: resume command runs may replace it (with the whole run's), and nothing else that exists.
WRITTEN_RECORD = "cwl-prov-written"
#: The job kinds whose runs are tool invocations (see :mod:`flow.cwl.jobs`).
TOOL_JOBS = ("CWLJob", "CWLBatch")


class Recorder:
    """One run's research object, from the start of the run to its end (:meth:`finish`)."""

    def __init__(self, target: str, argv: list[str], orcid: str, full_name: str, user: bool, host: bool,
                 tmpdir_prefix: str | None, replaceable: str | None = None) -> None:
        self.replaceable = replaceable
        self.target = check_target(target, replaceable)
        self.api = adapter.cwlprov()
        prefix = tmpdir_prefix or os.path.join(os.path.dirname(self.target), f".{os.path.basename(self.target)}.")
        try:
            self.ro = self.api.ResearchObject(self.api.StdFsAccess(""), temp_prefix_ro=prefix, orcid=orcid,
                                              full_name=full_name)
        except ValueError as exc:  # an invalid ORCID
            raise adapter.CWLError(f"--orcid {orcid}: {exc}") from None
        except OSError as exc:
            raise adapter.CWLError(f"--provenance {target}: cannot make its temporary folder: {exc}") from None
        self.ro.cwltool_version = engine_label()  # bag-info.txt's Bag-Software-Agent
        self.log = self.api.bag.open_log_file_for_activity(self.ro, self.ro.engine_uuid)
        # The engine's log, as cwltool's: the command line, then what the leader logs.
        self.handler = logging.StreamHandler(self.log)
        self.handler.setFormatter(_LogFormat())
        self.handler.setLevel(logging.INFO)
        logging.getLogger("flow").addHandler(self.handler)
        self.note(f"[flow-cwl] {shlex.join(['flow-cwl', *argv])}")
        self.started = _now()
        #: The PROV entity of each stored file (by location) declared so far: a step's input is
        #: the very entity an earlier step generated, as in cwltool's (where it is the same value).
        self.entities: dict[str, str] = {}
        self.profile = self.ro.initialize_provenance(full_name=full_name, host_provenance=host,
                                                     user_provenance=user, orcid=orcid,
                                                     fsaccess=self.ro.fsaccess, run_uuid=self.ro.ro_uuid)
        # cwltool's profile labels its engine agent with cwltool's version; here the engine is
        # flow (prov has no call to replace an attribute: the record's own set is replaced).
        for agent in self.profile.document.get_record(self.ro.engine_uuid):
            agent._attributes[self.api.PROV_LABEL] = {engine_label()}

    def note(self, line: str) -> None:
        """A line in the engine's log (``metadata/logs/engine.*.txt``) only."""
        self.handler.handle(logging.LogRecord("flow.cwl", logging.INFO, __file__, 0, line, None, None))

    def finish(self, store: JobStore, uri: str, settings: adapter.RunSettings, process: Any,
               inputs: dict[str, Any], outputs: dict[str, Any] | None) -> str:
        """Write the research object to the target folder; returns its path. ``outputs`` None:
        the run failed (as cwltool, the research object holds what ran)."""
        access = store_access(self.api.StdFsAccess, store)
        self.ro.fsaccess = self.profile.fsaccess = access
        packed, deps = adapter.packed_document(uri, settings)
        self.api.bag.packed_workflow(self.ro, packed)
        workflow = adapter.process_class(process) == "Workflow"
        self._plan(process, workflow)
        run = self.profile.workflow_run_uri
        job = {adapter.shortname(p["id"]): inputs[adapter.shortname(p["id"])] for p in process.tool["inputs"]
               if inputs.get(adapter.shortname(p["id"])) is not None}
        self._used(copy.deepcopy(job), run, None, self.started)
        self.api.bag.create_job(self.ro, job)
        invocations, missing = read_invocations(store)
        if workflow:
            names: Counter[str] = Counter()
            for record in sorted(invocations, key=lambda r: str(r["start"])):
                self._process_run(record, names)
        if missing:
            logger.warning("--provenance: %d tool job(s) ran before this run recorded provenance (a first "
                           "attempt without --provenance): the research object lacks them", missing)
        ended = _now()
        if outputs is not None:
            self._generated(copy.deepcopy(outputs), run, "primary", ended)
            self.api.bag.create_job(self.ro, copy.deepcopy(outputs), True)
        self.profile.document.wasEndedBy(run, None, self.profile.engine_uuid, ended)
        with warnings.catch_warnings():  # rdflib's n-triples writer warns that it always writes UTF-8
            warnings.simplefilter("ignore", UserWarning)
            self.profile.finalize_prov_profile(None)
        self.ro.generate_snapshot(deps)
        self.note(f"[flow-cwl] Final process status is {'success' if outputs is not None else 'permanentFail'}")
        saved = self._save()
        if outputs is None:
            store.write_shared(WRITTEN_RECORD, json.dumps({"path": saved, "id": self.ro.base_uri}).encode())
        return saved

    def discard(self) -> None:
        """Remove the temporary research object (the run ended without one)."""
        logging.getLogger("flow").removeHandler(self.handler)
        with contextlib.suppress(OSError, ValueError):
            self.log.close()
        self.api.bag.close_ro(self.ro)

    def _save(self) -> str:
        logging.getLogger("flow").removeHandler(self.handler)
        self.log.close()  # adds it to the tag manifest
        if check_target(self.target, self.replaceable) and os.path.isdir(self.target):
            shutil.rmtree(self.target)  # empty, or the failed attempt's (checked)
        self.api.bag.close_ro(self.ro, self.target)
        return self.target

    def _plan(self, process: Any, workflow: bool) -> None:
        """Prospective provenance, as cwltool's: the workflow (or tool) as a plan, and its steps."""
        document, wfdesc, plan = self.profile.document, self.api.constants.WFDESC, self.api.PROV["Plan"]
        kind = wfdesc["Workflow"] if workflow else wfdesc["Process"]
        document.entity("wf:main", [("prov:type", kind), ("prov:type", plan), ("prov:label", "Prospective provenance")])
        for step in process.steps if workflow else []:
            name = "wf:main/" + urllib.parse.quote(adapter.shortname(step.id), safe=":/,#")
            sub = document.entity(name, [("prov:type", wfdesc["Process"]), ("prov:type", plan)])
            document.entity("wf:main", {"wfdesc:hasSubProcess": sub})

    def _process_run(self, record: dict[str, Any], names: Counter[str]) -> None:
        """One tool invocation of the workflow as a ``wfprov:ProcessRun`` started by the
        workflow run, named as cwltool names its jobs (``step``, ``step_2``, ... and
        ``sub/step`` inside a sub-workflow)."""
        base = "/".join(adapter.shortname(step) for step in record["steps"])
        names[base] += 1
        name = base if names[base] == 1 else f"{base}_{names[base]}"
        started = datetime.datetime.fromisoformat(record["start"])
        ended = datetime.datetime.fromisoformat(record["end"])
        run = self.profile.start_process(urllib.parse.quote(name, safe=":/,#"), started)
        self._used(record["inputs"], run, name, started)
        self._generated(record["outputs"], run, name, ended)
        self.profile.document.wasEndedBy(run, None, self.profile.workflow_run_uri, ended)

    def _used(self, job: dict[str, Any], run: str, name: str | None, when: datetime.datetime) -> None:
        """``run`` used each input (cwltool's used_artefacts, at the time the run started)."""
        base = "main" if name is None else f"main/{name}"
        for key, value in job.items():
            try:
                entity = self._declare(value)
            except OSError as exc:  # as cwltool: an input it cannot read is left out
                logger.warning("--provenance: input %s of %s left out: %s", key, base, exc)
                continue
            self.profile.document.used(run, entity, when, None,
                                       {"prov:role": self.profile.wf_ns[f"{base}/{key}"]})

    def _generated(self, outputs: dict[str, Any], run: str, name: str, when: datetime.datetime) -> None:
        """Each output was generated by ``run`` (cwltool's generate_output_prov, at its end)."""
        for key, value in outputs.items():
            entity = self._declare(value)
            role = self.profile.wf_ns[f"main/{urllib.parse.quote(name, safe=':/,#')}/{key}"]
            self.profile.document.wasGeneratedBy(entity, run, when, None, {"prov:role": role})


    def _declare(self, value: Any) -> Any:
        """cwltool's declare_artefact, a file already declared being the same entity."""
        for item in _files(value):
            if item.get("location") in self.entities:
                item["@id"] = self.entities[item["location"]]
        entity = self.profile.declare_artefact(value)
        for item in _files(value):
            if "@id" in item and isinstance(item.get("location"), str):
                self.entities.setdefault(item["location"], item["@id"])
        return entity


def _files(value: Any) -> Iterator[dict[str, Any]]:
    """The File and Directory objects in a value (secondary files and listings included)."""
    if isinstance(value, list):
        for item in value:
            yield from _files(item)
    elif isinstance(value, dict):
        if value.get("class") in ("File", "Directory"):
            yield value
        for item in value.values():
            if isinstance(item, (list, dict)):
                yield from _files(item)


def check_target(target: str, replaceable: str | None = None) -> str:
    """The research object's folder: new, an empty directory, or the research object that a
    failed attempt of this run wrote there (its arcp identifier ``replaceable``). cwltool
    deletes whatever is there; flow deletes nothing else."""
    path = os.path.abspath(target)
    empty = os.path.isdir(path) and not os.path.islink(path) and not os.listdir(path)
    if os.path.lexists(path) and not empty and not (replaceable and bag_identifier(path) == replaceable):
        raise adapter.CWLError(f"--provenance {target}: {path} exists and is not an empty directory; "
                               "give a new folder (cwltool would delete what is there)")
    if not os.path.isdir(os.path.dirname(path)):
        raise adapter.CWLError(f"--provenance {target}: {os.path.dirname(path)} is not a directory")
    return path


def bag_identifier(path: str) -> str | None:
    """The External-Identifier of the research object (a BagIt bag) at ``path``, if it is one."""
    with contextlib.suppress(OSError, UnicodeDecodeError):
        with open(os.path.join(path, "bag-info.txt"), encoding="utf-8") as info:
            for line in info:
                key, _, value = line.partition(":")
                if key == "External-Identifier":
                    return value.strip()
    return None


def replaceable(locator: str | None, target: str) -> str | None:
    """The identifier of the research object a failed attempt of the run in job store
    ``locator`` wrote at ``target`` (what a --restart may replace), else None."""
    if not locator:
        return None
    try:
        raw = open_job_store(locator).read_shared(WRITTEN_RECORD)
        written = json.loads(raw) if raw is not None else {}
    except (JobStoreError, ValueError):
        return None  # the restart itself reports a store it cannot read
    same = isinstance(written, dict) and written.get("path") == os.path.abspath(target)
    return str(written["id"]) if same and written.get("id") else None


def engine_label() -> str:
    """Who ran the workflow, for the PROV engine agent and bag-info.txt."""
    from importlib.metadata import version

    return f"flow {version('flow')} (cwltool {version('cwltool')})"


class _LogFormat(logging.Formatter):
    """cwltool's provenance log format: ``[2026-01-02T03:04:05,678Z] message`` (UTC)."""

    def __init__(self) -> None:
        super().__init__("[%(asctime)sZ] %(message)s")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        when = datetime.datetime.fromtimestamp(record.created, datetime.timezone.utc)
        return f"{when:%Y-%m-%dT%H:%M:%S},{int(record.msecs):03d}"


def _now() -> datetime.datetime:
    return datetime.datetime.now()


def read_invocations(store: JobStore) -> tuple[list[dict[str, Any]], int]:
    """The invocation records of every tool job (see :func:`flow.cwl.jobs.record_invocation`),
    and how many tool jobs that ran left none (they ran before provenance was asked for)."""
    found: list[dict[str, Any]] = []
    missing = 0
    for job_id in store.list_jobs():
        raw = store.read_shared(PROVENANCE_RECORD.format(job_id))
        if raw is not None:
            found.append(json.loads(raw))
            continue
        index, before = 0, len(found)
        while (raw := store.read_shared(PROVENANCE_RECORD.format(f"{job_id}-{index}"))) is not None:
            found.append(json.loads(raw))
            index += 1
        if len(found) == before:
            desc = records.load_description(store, job_id)
            missing += desc.name in TOOL_JOBS and desc.state is JobState.RAN
    return found, missing


def store_access(base: Any, store: JobStore) -> Any:
    """cwltool's file access (``base``, its StdFsAccess) that also reads files from the job
    store (``flowfile:`` locations): how the research object copies them into data/. Files are
    handed over without their path, so that cwltool copies them: given a path it hard-links the
    file into data/ when it can, which would tie the research object to the job store's stored
    file (or to the user's input), each changing with the other."""

    def open_file(self: Any, fn: str, mode: str) -> Any:
        if fn.startswith(staging.FLOW_FILE):
            return _unnamed(store.read_file_stream(fn[len(staging.FLOW_FILE):]))
        return _unnamed(base.open(self, fn, mode))

    return type("StoreFsAccess", (base,), {"open": open_file})("")


@contextlib.contextmanager
def _unnamed(opened: Any) -> Iterator[_Reader]:
    with opened as stream:
        yield _Reader(stream)


class _Reader:
    """A binary stream that only reads (no ``name``: see :func:`store_access`)."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream

    def read(self, size: int = -1) -> bytes:
        return self._stream.read(size)
