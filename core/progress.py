"""A live progress bar of jobs done / running / waiting, on a terminal only.

Uses enlighten (as Toil does): it keeps the bar pinned at the bottom of the terminal while log
lines scroll above it, and throttles redraws itself. When stderr is not a terminal nothing is
drawn and nothing is imported.
"""

from __future__ import annotations

import sys
from typing import Any

_FORMAT = (
    "{desc}{desc_pad}{percentage:3.0f}%|{bar}| {count:{len_total}d}/{total:d} done, "
    "{running} running, {queued} queued, {waiting} waiting [{elapsed}]"
)


class Progress:
    def __init__(self, enabled: bool = True, description: str = "Jobs") -> None:
        self._manager: Any = None
        self._counter: Any = None
        self._last: tuple[int, ...] = ()
        if enabled and sys.stderr.isatty():
            import enlighten

            self._manager = enlighten.get_manager(stream=sys.stderr)
            self._counter = self._manager.counter(
                total=1, desc=description, unit="jobs", bar_format=_FORMAT,
                fields={"running": 0, "queued": 0, "waiting": 0}, color="green", leave=True,
            )

    @property
    def active(self) -> bool:
        return self._counter is not None

    def update(self, done: int, running: int, queued: int, waiting: int) -> None:
        """``running``: started; ``queued``: issued, not started; ``waiting``: on predecessors."""
        if self._counter is None or (done, running, queued, waiting) == self._last:
            return
        self._last = (done, running, queued, waiting)
        self._counter.total = max(1, done + running + queued + waiting)
        self._counter.count = done
        self._counter.update(0, running=running, queued=queued, waiting=waiting)

    def close(self) -> None:
        if self._counter is not None:
            self._counter.refresh()
            self._counter.close()
            self._manager.stop()
            self._counter = self._manager = None
