"""Log lines that a peer or a client could repeat at will: the first in full, the rest counted.

:class:`SummaryLog` is the one implementation for both the cluster (frames
a peer had no authority to send, spawn requests it got wrong) and the
WebSocket server (refused upgrades, malformed requests).
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable, Dict, Hashable, List, Optional, Tuple

import gevent

__all__ = ["SummaryLog"]

#: Builds the summary line of a key: ``(key, count, seconds) -> (msg, args)``.
Summary = Callable[[Any, int, float], Tuple[str, Tuple[Any, ...]]]


class SummaryLog:
    """One line in full per key, then a count of the repeats in one summary line.

    The first report for a key is logged in full; the next ones within
    ``window`` seconds are counted, and when the window ends (or at
    :meth:`flush`) one line built by ``summary`` says how many there were.
    After that, the next report for the key is logged in full again, unless
    ``once``: then the key is only ever counted (a window opens at its next
    report) until :meth:`flush` forgets it. At most ``max_keys`` keys are
    tracked; reports for others are counted together under ``overflow_key``.
    """

    def __init__(
        self,
        logger: logging.Logger,
        summary: Summary,
        window: float,
        max_keys: int = 1024,
        overflow_key: Hashable = "other",
        *,
        once: bool = False,
    ) -> None:
        self.logger = logger
        self.summary = summary
        self.window = window
        self.max_keys = max_keys
        self.overflow_key = overflow_key
        self.once = once
        # key -> [count not logged, window start (monotonic), highest level counted, timer or None]
        self._seen: Dict[Any, List[Any]] = {}

    def report(self, key: Hashable, level: int, msg: str, *args: Any) -> None:
        """Log ``msg % args`` at ``level``, or count it if ``key`` was reported before (see the class)."""
        entry = self._seen.get(key)
        if entry is None and len(self._seen) >= self.max_keys:
            key = self.overflow_key
            entry = self._seen.get(key)
        if entry is not None:
            entry[0] += 1
            entry[2] = max(entry[2], level)
            if entry[3] is None:  # once, and its last window ended: open one
                entry[1] = time.monotonic()
                entry[3] = self._start_timer(key)
            return
        self.logger.log(level, msg, *args)
        self._seen[key] = [0, time.monotonic(), logging.NOTSET, self._start_timer(key)]

    def _start_timer(self, key: Any) -> Any:
        timer = gevent.get_hub().loop.timer(self.window, 0.0, ref=False)
        timer.start(self._expire, key)
        return timer

    def _expire(self, key: Any, forget: bool = False) -> None:
        if self.once and not forget:
            entry = self._seen.get(key)
        else:
            entry = self._seen.pop(key, None)
        if entry is None:
            return
        if entry[3] is not None:
            entry[3].close()
            entry[3] = None
        count, since, level, _ = entry
        entry[0], entry[2] = 0, logging.NOTSET
        if count:
            msg, args = self.summary(key, count, time.monotonic() - since)
            self.logger.log(level, msg, *args)

    def flush(self, which: Optional[Callable[[Any], bool]] = None) -> None:
        """Log the pending summaries now (of the keys ``which`` accepts; default all), and forget those keys."""
        for key in [k for k in self._seen if which is None or which(k)]:
            self._expire(key, forget=True)
