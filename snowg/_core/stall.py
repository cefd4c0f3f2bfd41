"""How long this node's own event loop kept a repeating timer from running.

A connection checks its peer's liveness on a repeating hub timer and
declares the peer down when nothing has arrived for a while. When this
node's loop itself was held up (a blocking call in user code, a long
computation, a process the machine starved of CPU), nothing could be read
meanwhile: what the peer sent may be waiting, unread, in the socket, and
the timer runs before the reader once the loop resumes. That time is not
the peer's silence. :class:`LoopStall` measures it from the timer's own
lateness, so that a liveness check counts only the time during which this
node could have read. A peer that is really silent is still declared down,
after the same span of this node's running time. (The peer, which did not
hear from this node meanwhile, judges by its own clock.)
"""

from __future__ import annotations

from typing import Optional, Tuple


class LoopStall:
    """The time by which the runs of a repeating timer came late: time this node's loop did not run.

    Args:
        interval: the timer's period, in seconds.
        now: when the timer was started (``time.monotonic()``).
    """

    __slots__ = ("interval", "_last")

    def __init__(self, interval: float, now: float) -> None:
        self.interval = interval
        self._last = now

    def since_last_run(self, now: float) -> float:
        """Seconds the loop was held up since the timer's previous run; 0.0 when it ran on time.

        Call it once per run of the timer, with the run's ``time.monotonic()``.
        Lateness up to one more interval is a busy loop, not a held-up one,
        and counts as on time.
        """
        late = now - self._last - self.interval
        self._last = now
        return late if late > self.interval else 0.0

    def excuse(self, now: float, last_recv: float, stalled_since: Optional[float]) -> Tuple[float, Optional[float]]:
        """A connection's two liveness clocks, moved on by the time the loop was held up before this run.

        Call it once per run of the timer instead of :meth:`since_last_run`.
        What the peer sent may be unread in the socket, and our writes could
        not progress either: ``last_recv`` (when something last arrived) and
        ``stalled_since`` (since when the writer has made no progress; None:
        it is not stalled) both skip the held-up time.
        """
        held_up = self.since_last_run(now)
        if not held_up:
            return last_recv, stalled_since
        return last_recv + held_up, None if stalled_since is None else stalled_since + held_up
