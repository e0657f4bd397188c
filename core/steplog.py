"""The log of finished steps of a job that runs many (a front-end's batch of scattered calls).

A job that runs steps one after the other records each step's result as soon as the step is
done, so that the job run again (after a failed step, a killed worker or leader, ``--restart``)
runs only the steps that had not finished. One shared record per job, appended to
(``JobStore.append_shared``), instead of a record per step: a new file per step costs a busy
file system as much as a short step.

An entry is ``\\n#step INDEX LENGTH CRC32\\n`` followed by LENGTH bytes of payload. A writer killed
mid-entry leaves it cut short: its checksum does not match, the reader skips it and looks for the
next entry, and that step runs again. Payloads are opaque bytes (JSON, pickles, ...).
"""

from __future__ import annotations

import re
import zlib

from flow.jobstores.abstract import JobStore

_HEADER = re.compile(rb"\n#step (\d+) (\d+) ([0-9a-f]{8})\n")


class StepLog:
    """The finished steps of one job, in the shared record ``name`` of ``store``."""

    def __init__(self, store: JobStore, name: str) -> None:
        self.store = store
        self.name = name

    def add(self, index: int, payload: bytes) -> None:
        """Record step ``index`` as finished with ``payload``, in one append."""
        header = b"\n#step %d %d %08x\n" % (index, len(payload), zlib.crc32(payload))
        self.store.append_shared(self.name, header + payload)

    def finished(self) -> dict[int, bytes]:
        """The payload of each step recorded whole, by index (the last one if recorded twice)."""
        raw = self.store.read_shared(self.name) or b""
        done: dict[int, bytes] = {}
        pos = 0
        while (match := _HEADER.search(raw, pos)) is not None:
            index, length, crc = int(match[1]), int(match[2]), int(match[3], 16)
            payload = raw[match.end():match.end() + length]
            if len(payload) == length and zlib.crc32(payload) == crc:
                done[index] = payload
                pos = match.end() + length
            else:  # cut short by a killed writer: look for the next entry after its header
                pos = match.start() + 1
        return done
