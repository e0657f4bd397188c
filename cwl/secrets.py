"""``cwltool:Secrets``: secret input values never reach the job store.

cwltool replaces the value of each top-level input its ``cwltool:Secrets`` requirement names by a
placeholder (``(secret-<uuid>)``, its SecretStore) and puts the real value back only where the tool
runs: in its command line, its environment and the files InitialWorkDir writes. flow does the
same across processes:

- the leader replaces the values by cwltool's placeholders before any job exists, so every job
  record, promise and log holds only placeholders;
- the job store keeps which input each placeholder stands for (the name, never the value), in
  the shared item ``cwl-secrets``;
- the values reach the workers through the environment (:data:`VARIABLE`, a JSON object
  placeholder -> value), set in the leader before its batch system starts: the local pool's
  workers inherit it and Slurm hands it to every job (sbatch's ``--export=ALL``), so it is never
  in a file flow writes. Tools do not see it: cwltool gives a tool a fresh environment;
- ``--restart`` needs the values again: the user gives the same input object, and the leader
  maps the stored placeholders back to its values (a run with secrets refuses to restart without
  it, naming the inputs).

This module does not import cwltool; :mod:`flow.cwl.adapter` fills cwltool's SecretStore with
:func:`worker_secrets` in every tool run.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterable, MutableMapping
from typing import Any

from flow.core.exceptions import FlowError

VARIABLE = "FLOW_CWL_SECRETS"
RECORD = "cwl-secrets"


class CWLSecretsError(FlowError):
    """Secret inputs that cannot be hidden or found again."""


def worker_secrets() -> dict[str, str]:
    """placeholder -> value, as the leader handed them to this process (empty when none)."""
    raw = os.environ.get(VARIABLE)
    if not raw:
        return {}
    try:
        values = json.loads(raw)
    except ValueError:
        raise CWLSecretsError(f"the environment variable {VARIABLE} is not a JSON object") from None
    if not isinstance(values, dict) or not all(isinstance(v, str) for v in values.values()):
        raise CWLSecretsError(f"the environment variable {VARIABLE} is not a JSON object of strings")
    return {str(k): v for k, v in values.items()}


def hide(names: Iterable[str], inputs: MutableMapping[str, Any]) -> dict[str, str]:
    """Replace the values of the inputs ``names`` by placeholders, in place, as cwltool's
    SecretStore does (one placeholder per distinct value). Returns placeholder -> value."""
    values: dict[str, str] = {}
    for name in names:
        value = inputs.get(name)
        if value is None:
            continue
        if not isinstance(value, str):
            raise CWLSecretsError(f"the secret input '{name}' must be a string (cwltool:Secrets holds strings only)")
        placeholder = next((p for p, v in values.items() if v == value), None)
        if placeholder is None:
            placeholder = f"(secret-{uuid.uuid4()})"
            values[placeholder] = value
        inputs[name] = placeholder
    return values


def record(names: Iterable[str], inputs: MutableMapping[str, Any]) -> bytes:
    """What the job store keeps: input name -> its placeholder (after :func:`hide`)."""
    return json.dumps({name: inputs[name] for name in names if inputs.get(name) is not None}).encode()


def recover(stored: bytes, inputs: MutableMapping[str, Any], job_order: str | None) -> dict[str, str]:
    """On --restart: placeholder -> value from the stored record and the input object given again."""
    try:
        by_name = json.loads(stored)
    except ValueError:
        raise CWLSecretsError(f"the job store's item {RECORD} is damaged (not JSON)") from None
    missing = sorted(name for name in by_name if not isinstance(inputs.get(name), str))
    if missing:
        given = f"the input object {job_order} lacks them" if job_order else "no input object was given"
        raise CWLSecretsError(
            f"this run has secret inputs ({', '.join(missing)}), which flow does not store: give the "
            f"same input object again with --restart ({given})")
    return {placeholder: inputs[name] for name, placeholder in by_name.items()}


def expose(values: dict[str, str]) -> None:
    """Hand the values to every worker the batch system starts from now on (see the module doc)."""
    if values:
        os.environ[VARIABLE] = json.dumps(values)
    else:
        os.environ.pop(VARIABLE, None)
