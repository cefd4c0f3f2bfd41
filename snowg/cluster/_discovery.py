"""Discovery: the service that keeps this node connected to every node its strategies name.

Every node of a cluster runs the same service (there is no seed node, so no
single point of failure): one greenlet that

* looks its strategies up (:mod:`snowg.cluster._strategies`) as soon as the
  node starts, so a new node joins at once (every node started before it is
  registered already), then every :data:`POLL_INTERVAL` seconds (with a
  little jitter, so that nodes started together do not ask together); each
  look-up runs in a greenlet of its own, so a host slow to answer holds up
  no dial;
* dials each candidate it is not connected to, each in a greenlet of its
  own (at most :data:`MAX_DIALS` at once);
* retries a candidate it could not reach, or that was lost, with exponential
  backoff: :data:`BACKOFF_FIRST` seconds, doubling up to
  :data:`BACKOFF_CAP`, each delay jittered by ±25 %, for as long as a
  strategy still names it. A node that no strategy names any more (it
  stopped, and its registration went with it) is forgotten.

A lost node sets off a lookup at once: a node that stopped has left its
mapper, and is forgotten without a retry; one that is still registered but
does not answer (frozen, or behind a partition) is retried with backoff until
it answers, so the mesh heals when the network does, with nobody calling
``connect``. Connecting one node also joins its peers (peer lists, see
:mod:`snowg.cluster._connect`), so the mesh forms even faster than the
lookups alone would make it.

Logging: a join and a loss are each logged once at INFO by the connection
layer (``connected to node ...``, ``node ... down``). A candidate that
cannot be reached (twice in a row: a node that has just stopped may still
be listed for an instant) is logged once, in full, at WARNING; its later failures
are counted into one summary line per :data:`FAILURE_LOG_WINDOW`; reaching it
again, or forgetting it, says so once at INFO.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass
from functools import partial
from operator import eq
from typing import Dict, List, Optional, Sequence, Tuple, Union

import gevent
from gevent.event import Event

from .._core import SummaryLog
from ._connect import connect_to
from ._names import loggable
from ._nodemon import session_down_callbacks
from ._nodestate import NodeState
from ._strategies import Candidate, Finder, Strategy, parse_specs

__all__ = [
    "BACKOFF_CAP",
    "BACKOFF_FIRST",
    "FAILURE_LOG_WINDOW",
    "MAX_DIALS",
    "POLL_INTERVAL",
    "WARN_AFTER",
    "Discovery",
    "start",
]

log = logging.getLogger("snowg")

# Why 5 s: a node that starts needs no poll to be found (its own lookup, made
# right after it registered, finds every node started before it, and dialling
# them tells them of it), nor does a node that is lost (its loss sets off a
# lookup). Polling only catches what no event announces: a partition that
# healed, a mapper or a name server that answers again, a node another
# strategy started to name. 5 s bounds that delay (libcluster's polling
# strategies default to 5 s too), while an idle poll costs one short request
# to each mapper: at 16 nodes, about 3 requests a second to the host's
# mapper, some 0.4 % of a core with the mapper's share (its idle CPU row in
# benchmarks/cluster_formation.py).
#: Seconds between two lookups of a node's strategies (each jittered by ±20 %).
POLL_INTERVAL = 5.0
#: Seconds before the first retry of a candidate that failed or was lost; it doubles at each failure...
BACKOFF_FIRST = 0.2
#: ...up to this many seconds between two attempts.
BACKOFF_CAP = 30.0
#: Candidates dialled at once (the others wait for a free slot).
MAX_DIALS = 16
#: Failed attempts in a row before a candidate's failure is logged (see :meth:`Discovery._dial`).
WARN_AFTER = 2
#: Seconds in which repeated failures to reach one candidate are counted into one summary line.
FAILURE_LOG_WINDOW = 300.0


_NEVER = float("inf")


@dataclass
class _Retry:
    """A candidate that failed: how often in a row, when to try again, and the last reason."""

    failures: int = 0
    due: float = 0.0
    reason: str = ""


class Discovery:
    """The discovery service of one node (see the module docstring); made and started by :func:`start`.

    Args:
        st: the running node.
        strategies: what to look up (:func:`~snowg.cluster._strategies.parse_specs`).
        poll_interval: seconds between lookups.
        epmd_port: the port mappers' port; None for ``$ERL_EPMD_PORT`` or 4369.
    """

    def __init__(
        self,
        st: NodeState,
        strategies: Sequence[Strategy],
        *,
        poll_interval: float = POLL_INTERVAL,
        epmd_port: Optional[int] = None,
    ) -> None:
        self.st = st
        self.finders = [Finder(s, st.info.name, epmd_port=epmd_port) for s in strategies]
        self.poll_interval = poll_interval
        self.named: Dict[str, Candidate] = {}  # every candidate a strategy names now, by name
        self.retries: Dict[str, _Retry] = {}
        self.dialing: Dict[str, gevent.Greenlet[[Candidate], None]] = {}
        self._wake = Event()
        self._lookup_due = 0.0
        self._loop: Optional[gevent.Greenlet[[], None]] = None
        self._looking: Optional[gevent.Greenlet[[], None]] = None  # the look-up under way
        self._failures = SummaryLog(log, self._failure_summary, FAILURE_LOG_WINDOW, once=True)

    def start(self) -> None:
        """Look up at once, and keep the node connected until :meth:`stop`. Never blocks."""
        if self.finders and self._loop is None:
            session_down_callbacks.append(self._node_down)
            self._loop = gevent.spawn(self._run)

    def stop(self) -> None:
        """Stop looking up and dialling (attempts under way are abandoned). Never blocks."""
        if self._node_down in session_down_callbacks:
            session_down_callbacks.remove(self._node_down)
        greenlets = [g for g in (self._loop, self._looking, *self.dialing.values()) if g is not None]
        self._loop = self._looking = None
        self.dialing.clear()
        gevent.killall(greenlets, block=False)
        self._failures.flush()
        for finder in self.finders:
            finder.close()

    def _run(self) -> None:
        while not self.st.stopping:
            self._wake.clear()
            if self._looking is None and time.monotonic() >= self._lookup_due:
                # In a greenlet of its own: a host slow to answer delays no retry.
                self._lookup_due = _NEVER  # until it ends; _look_again may bring it forward
                self._looking = gevent.spawn(self._lookup)
            wake_at = min(self._lookup_due, self._dial_due())
            self._wake.wait(None if wake_at == _NEVER else max(0.0, wake_at - time.monotonic()))

    def _look_again(self) -> None:
        """Look up as soon as possible (after the look-up under way, if one is)."""
        self._lookup_due = 0.0
        self._wake.set()

    def _lookup(self) -> None:
        """Ask every strategy at once; remember what they name now, and forget retries of what they do not."""
        try:
            self._find()
        finally:
            if self._lookup_due == _NEVER:
                self._lookup_due = time.monotonic() + self.poll_interval * random.uniform(0.8, 1.2)
            self._looking = None
            self._wake.set()

    def _find(self) -> None:
        jobs = [gevent.spawn(finder.lookup) for finder in self.finders]
        gevent.joinall(jobs)  # each lookup is bounded in time (see Finder.lookup)
        named: Dict[str, Candidate] = {}
        for job in jobs:
            for name, candidate in (job.value or {}).items():
                named.setdefault(name, candidate)
        self.named = named
        for name in [n for n in self.retries if n not in named]:
            retry = self.retries[name]
            if retry.failures >= WARN_AFTER:
                self._failures.flush(partial(eq, name))  # its summary, while its last reason is known
                log.info(
                    "discovery: node %s is no longer found (not retried after %d failed attempts)",
                    loggable(name, quoted=False),
                    retry.failures,
                )
            del self.retries[name]

    def _dial_due(self) -> float:
        """Dial the candidates that are due; when the next one not dialled now is due (monotonic)."""
        st = self.st
        now = time.monotonic()
        next_due = _NEVER
        for name, candidate in self.named.items():
            if name in st.sessions or name in self.dialing:
                continue
            retry = self.retries.get(name)
            if retry is not None and retry.due > now:
                next_due = min(next_due, retry.due)
                continue
            if len(self.dialing) >= MAX_DIALS:
                break  # a finished dial wakes the loop
            self.dialing[name] = gevent.spawn(self._dial, candidate)
        return next_due

    def _dial(self, candidate: Candidate) -> None:
        name = candidate.name
        reasons: List[str] = []
        try:
            connected = connect_to(self.st, name, candidate.host, candidate.port, on_failure=reasons.append)
        finally:
            if self.dialing.get(name) is gevent.getcurrent():
                del self.dialing[name]
            self._wake.set()
        if connected:
            retry = self.retries.get(name)
            if retry is not None and retry.failures >= WARN_AFTER:
                self._failures.flush(partial(eq, name))
                log.info(
                    "discovery: reached node %s after %d failed attempts", loggable(name, quoted=False), retry.failures
                )
            self.retries.pop(name, None)
            return
        retry = self.retries.setdefault(name, _Retry())
        retry.failures += 1
        retry.reason = reasons[-1] if reasons else "the connection did not come up"
        delay = min(BACKOFF_CAP, BACKOFF_FIRST * 2 ** min(retry.failures - 1, 16))
        delay *= random.uniform(0.75, 1.25)
        retry.due = time.monotonic() + delay
        log.debug(
            "discovery: attempt %d to reach node %s failed: %s; next in %.1f s",
            retry.failures,
            loggable(name, quoted=False),
            retry.reason,
            delay,
        )
        if retry.failures < WARN_AFTER:
            # A node that has just stopped may still be listed by its mapper:
            # look again before saying anything (it is then forgotten, quietly).
            self._look_again()
            return
        self._failures.report(
            name,
            logging.WARNING,
            "discovery: cannot connect to node %s at %s:%d: %s; retrying with backoff (up to every %.0f s)"
            " while it is found",
            loggable(name, quoted=False),
            candidate.host,
            candidate.port,
            retry.reason,
            BACKOFF_CAP,
        )

    def _node_down(self, name: str) -> None:
        """A session ended (a node-down callback: runs in a reader greenlet, must not block)."""
        if self.st.stopping or name not in self.named:
            return
        # Ask the strategies again at once (a node that stopped has left its
        # mapper: forgotten, not retried) and retry it soon if it is still there.
        retry = self.retries.setdefault(name, _Retry())
        retry.due = time.monotonic() + BACKOFF_FIRST
        self._look_again()

    def _failure_summary(self, name: str, count: int, seconds: float) -> Tuple[str, Tuple[object, ...]]:
        retry = self.retries.get(name)
        return (
            "discovery: node %s: %d more failed attempts in %.0f s (last: %s)",
            (loggable(name, quoted=False), count, seconds, retry.reason if retry else "unknown"),
        )


def start(
    st: NodeState,
    specs: Union[str, Sequence[str], None],
    *,
    poll_interval: float = POLL_INTERVAL,
    epmd_port: Optional[int] = None,
) -> Discovery:
    """Start the discovery service of the running node ``st`` for ``specs`` (see the module docstring).

    Call it once the node is registered with its port mapper (so that the
    nodes it finds find it too); never blocks: the first lookup runs in the
    service's greenlet. With no specs, nothing runs.

    Args:
        st: the running node.
        specs: the strategies (see :func:`~snowg.cluster._strategies.parse_specs`).
        poll_interval: seconds between lookups.
        epmd_port: the port mappers' port; None for ``$ERL_EPMD_PORT`` or 4369.

    Raises:
        ValueError: a spec is malformed (the message quotes it).
    """
    discovery = Discovery(st, parse_specs(specs), poll_interval=poll_interval, epmd_port=epmd_port)
    discovery.start()
    return discovery
