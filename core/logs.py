"""Logging set-up and the one-paragraph error report for flow's own errors."""

from __future__ import annotations

import logging
import sys
import types

from flow.batchsystems.abstract import BatchSystemError
from flow.core.exceptions import FailedJobsException, FlowError
from flow.jobstores.abstract import JobStoreError

#: Errors that are the user's input or the run's outcome, reported without a traceback.
USER_ERRORS: tuple[type[BaseException], ...] = (FlowError, JobStoreError, BatchSystemError)

_FORMAT = "[%(asctime)s] %(levelname)-7s %(message)s"


def setup_logging(level: int, log_file: str | None = None) -> logging.Handler | None:
    """Log flow's messages to stderr (and ``log_file``) at ``level``; idempotent.

    Returns the file handler it added, for :func:`remove_handler` when the run ends."""
    flow_logger = logging.getLogger("flow")
    flow_logger.setLevel(level)
    if not any(getattr(h, "_flow", False) for h in flow_logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(_FORMAT, "%H:%M:%S"))
        handler._flow = True  # type: ignore[attr-defined]
        flow_logger.addHandler(handler)
        flow_logger.propagate = False
    if log_file and not any(getattr(h, "_flow_file", None) == log_file for h in flow_logger.handlers):
        file_handler = logging.FileHandler(log_file)
        file_handler.setFormatter(logging.Formatter(_FORMAT))
        file_handler._flow_file = log_file  # type: ignore[attr-defined]
        flow_logger.addHandler(file_handler)
        return file_handler
    return None


def remove_handler(handler: logging.Handler | None) -> None:
    if handler is not None:
        logging.getLogger("flow").removeHandler(handler)
        handler.close()


def report(exc: BaseException) -> int:
    """Print a user error as one paragraph on stderr; returns the exit code to use."""
    print(f"flow: error: {exc}", file=sys.stderr)
    return int(getattr(exc, "exit_code", 1)) if isinstance(exc, FailedJobsException) else 1


def _hook(kind: type[BaseException], exc: BaseException, tb: types.TracebackType | None) -> None:
    if isinstance(exc, USER_ERRORS):
        report(exc)
        return
    if isinstance(exc, KeyboardInterrupt):
        print("flow: interrupted; resume with --restart", file=sys.stderr)
        return
    sys.__excepthook__(kind, exc, tb)


def install_excepthook() -> None:
    """Uncaught flow errors in a user's script print as a paragraph, not a traceback."""
    if sys.excepthook is sys.__excepthook__:
        sys.excepthook = _hook
