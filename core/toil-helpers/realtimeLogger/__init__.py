"""``flow.realtimeLogger.RealtimeLogger``: log from a running job to the leader (Toil's
``toil.realtimeLogger``). Shown on the leader when the workflow runs with ``--realTimeLogging``;
otherwise the messages go to the job's own log."""

from __future__ import annotations

import logging
from typing import Any

from flow.core.realtime import worker_logger

__all__ = ["RealtimeLogger"]


class RealtimeLogger:
    """Class-level logging calls, as Toil's: ``RealtimeLogger.info("...")``."""

    @classmethod
    def getLogger(cls) -> logging.Logger:
        return worker_logger()

    @classmethod
    def debug(cls, msg: object, *args: Any, **kwargs: Any) -> None:
        worker_logger().debug(msg, *args, **kwargs)

    @classmethod
    def info(cls, msg: object, *args: Any, **kwargs: Any) -> None:
        worker_logger().info(msg, *args, **kwargs)

    @classmethod
    def warning(cls, msg: object, *args: Any, **kwargs: Any) -> None:
        worker_logger().warning(msg, *args, **kwargs)

    warn = warning

    @classmethod
    def error(cls, msg: object, *args: Any, **kwargs: Any) -> None:
        worker_logger().error(msg, *args, **kwargs)

    @classmethod
    def critical(cls, msg: object, *args: Any, **kwargs: Any) -> None:
        worker_logger().critical(msg, *args, **kwargs)

    @classmethod
    def exception(cls, msg: object, *args: Any, **kwargs: Any) -> None:
        worker_logger().exception(msg, *args, **kwargs)

    @classmethod
    def log(cls, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        worker_logger().log(level, msg, *args, **kwargs)
