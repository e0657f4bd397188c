"""Real-time logging (``--realTimeLogging``): jobs' ``RealtimeLogger`` messages reach the leader
while the jobs run, as Toil's do.

The leader listens on a UDP port (:class:`RealtimeServer`) and tells workers where through the
environment (``FLOW_RT_LOGGING_ADDRESS``, ``FLOW_RT_LOGGING_LEVEL``); each message is one JSON
datagram, logged by the leader under the ``flow.realtime`` logger. UDP as in Toil: a job never
waits on the leader, and a worker on another node (Slurm) reaches it the same way.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading

ADDRESS_VARIABLE = "FLOW_RT_LOGGING_ADDRESS"
LEVEL_VARIABLE = "FLOW_RT_LOGGING_LEVEL"
#: Longest message sent in one datagram (longer ones are cut, with a note).
MAX_MESSAGE = 60_000

leader_logger = logging.getLogger("flow.realtime")


def _advertised_host() -> str:
    """An address of this machine that other nodes can reach (127.0.0.1 when it has none)."""
    with contextlib.suppress(OSError):
        address = socket.gethostbyname(socket.gethostname())
        if address:
            return address
    return "127.0.0.1"


class RealtimeServer:
    """Receives workers' messages and logs them on the leader until :meth:`close`."""

    def __init__(self, level: int) -> None:
        self.level = level
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind(("", 0))
        self._sock.settimeout(0.2)
        self.address = f"{_advertised_host()}:{self._sock.getsockname()[1]}"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="flow-realtime-log", daemon=True)
        self._thread.start()

    def environment(self) -> dict[str, str]:
        """What a worker needs to send here."""
        return {ADDRESS_VARIABLE: self.address, LEVEL_VARIABLE: logging.getLevelName(self.level)}

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data = self._sock.recv(65_535)
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                record = json.loads(data.decode("utf-8", "replace"))
                level, message = int(record["level"]), str(record["message"])
            except (ValueError, KeyError, TypeError):
                continue  # not one of ours
            leader_logger.log(level, message)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._sock.close()


class _UDPHandler(logging.Handler):
    """Sends each record to the leader as one datagram."""

    def __init__(self, address: str) -> None:
        super().__init__()
        host, _, port = address.rpartition(":")
        self._target = (host, int(port))
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = self.format(record)
            if len(message) > MAX_MESSAGE:
                message = message[:MAX_MESSAGE] + " [cut: message too long for real-time logging]"
            payload = json.dumps({"level": record.levelno, "message": message}).encode()
            self._sock.sendto(payload, self._target)
        except (OSError, ValueError):
            self.handleError(record)


def worker_logger() -> logging.Logger:
    """The logger behind ``RealtimeLogger``: sends to the leader when real-time logging is on
    (else its messages go to the job's own log, which ``flow status`` shows for failed jobs)."""
    logger = logging.getLogger("flow-rt")
    address = os.environ.get(ADDRESS_VARIABLE)
    tag = f"udp:{address}"
    if address and not any(getattr(h, "_flow_rt", None) == tag for h in logger.handlers):
        for old in [h for h in logger.handlers if getattr(h, "_flow_rt", None)]:
            logger.removeHandler(old)
        handler = _UDPHandler(address)
        handler._flow_rt = tag  # type: ignore[attr-defined]
        logger.addHandler(handler)
        logger.propagate = False
        level = os.environ.get(LEVEL_VARIABLE, "INFO")
        logger.setLevel(logging.getLevelName(level) if isinstance(logging.getLevelName(level), int) else logging.INFO)
    return logger
