"""Discovery strategies: what ``cluster=`` (or ``$SNOWG_CLUSTER``) names, and finding those nodes.

A strategy names the nodes this node should be connected to. Four kinds,
written as short specs:

* ``local``: every snowg node registered with this host's port mapper (on
  ``$SNOWG_EPMD_ADDRESS``, else 127.0.0.1) whose *cluster prefix* is this
  node's (:func:`~snowg.cluster._names.cluster_prefix`: ``web-3fa2c1`` and
  ``web-77d0e4`` are both ``web``). It is dialled at its name's host, where
  a node listens.
* ``hosts:h1,h2``: the same, asking the port mapper of each host given;
  each node found is dialled at the host where it was found.
* ``dns:NAME``: every address NAME resolves to (A and AAAA records, as a
  Kubernetes headless service answers with one address per ready pod), then
  the port mapper at each address, as for ``hosts:``. The name is resolved
  by gevent's resolver, so ``GEVENT_RESOLVER`` and its settings apply.
* ``static:alice@h1:9100,bob@h2``: exactly those nodes; one with a port is
  dialled there, one without is looked up in the port mapper of its host.
  Prefixes do not matter here: the names are explicit.

Only snowg nodes are candidates: a mapper also lists Erlang's nodes, and a
snowg node tells itself apart in its registration (``NodeEntry.full_name``).

:func:`parse_specs` turns specs into the frozen records :class:`Local`,
:class:`Hosts`, :class:`Dns` and :class:`Static` (pure; a bad spec is a
``ValueError`` naming it). A :class:`Finder` looks one strategy's nodes up
(blocking, at most :data:`LOOKUP_TIMEOUT` seconds): each host or address is
asked in its own greenlet with its own deadline, so one host that does not
answer never delays the others. A source that cannot be asked this time
(a mapper that does not answer, a name that does not resolve) is taken to
name what it named the last time it answered: a node behind a partition
stays a candidate and is retried, instead of being forgotten.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from functools import partial
from operator import eq
from typing import Dict, List, Optional, Sequence, Tuple, Union

import gevent
from gevent import socket as gsocket

from .._core import SummaryLog
from .._errors import NodeError
from ._epmd_client import NodeEntry, names, port_please
from ._names import alive_part, cluster_prefix, is_node_name, loggable, split_target

__all__ = [
    "LOOKUP_TIMEOUT",
    "MAX_NAMES_PER_HOST",
    "Candidate",
    "Dns",
    "Finder",
    "Hosts",
    "Local",
    "Static",
    "Strategy",
    "local_mapper_address",
    "parse_spec",
    "parse_specs",
]

log = logging.getLogger("snowg")

#: Seconds one lookup of one strategy may take, all its hosts together.
LOOKUP_TIMEOUT = 5.0
#: Names of one host, or addresses of one ``dns:`` name, considered per lookup (more are cut: a bound on the cost).
MAX_NAMES_PER_HOST = 1024
#: Seconds in which repeated failures to ask one source are counted into one summary line.
FAILURE_LOG_WINDOW = 300.0
_MAX_HOST = 253  # the longest DNS name
_KINDS = "local, hosts:H1,H2, dns:NAME or static:NAME@HOST[:PORT],..."


@dataclass(frozen=True)
class Local:
    """``local``: the nodes with this node's prefix registered with this host's port mapper."""

    @property
    def spec(self) -> str:
        return "local"


@dataclass(frozen=True)
class Hosts:
    """``hosts:h1,h2``: the nodes with this node's prefix registered with each host's port mapper."""

    hosts: Tuple[str, ...]

    @property
    def spec(self) -> str:
        return "hosts:" + ",".join(self.hosts)


@dataclass(frozen=True)
class Dns:
    """``dns:NAME``: the nodes with this node's prefix at every address NAME resolves to."""

    name: str

    @property
    def spec(self) -> str:
        return "dns:" + self.name


@dataclass(frozen=True)
class Static:
    """``static:alice@h1:9100,bob@h2``: these nodes, at their port or the one their host's mapper gives."""

    nodes: Tuple[Tuple[str, Optional[int]], ...]

    @property
    def spec(self) -> str:
        return "static:" + ",".join(name if port is None else f"{name}:{port}" for name, port in self.nodes)


Strategy = Union[Local, Hosts, Dns, Static]


@dataclass(frozen=True)
class Candidate:
    """A node a strategy names, and where to dial it."""

    name: str
    host: str
    port: int


def parse_specs(specs: Union[str, Sequence[str], None]) -> List[Strategy]:
    """The strategies ``specs`` names: one spec, several separated by whitespace, or a list of them.

    ``None`` or an empty string names none. Duplicates are dropped (the first stays).

    Raises:
        ValueError: a spec is malformed (the caller's mistake); the message
            quotes it and says what is wrong.
    """
    if specs is None:
        return []
    items = [specs] if isinstance(specs, str) else list(specs)
    strategies: List[Strategy] = []
    for item in items:
        if not isinstance(item, str):
            raise ValueError(f"a cluster strategy is a str ({_KINDS}), not {loggable(item)}")
        for spec in item.split():
            strategy = parse_spec(spec)
            if strategy not in strategies:
                strategies.append(strategy)
    return strategies


def parse_spec(spec: str) -> Strategy:
    """One spec (``local``, ``hosts:...``, ``dns:...``, ``static:...``) as its record.

    Raises:
        ValueError: the spec is malformed; the message quotes it and says what is wrong.
    """
    kind, colon, rest = spec.partition(":")
    if kind == "local":
        if colon:
            raise ValueError(f"cluster strategy {loggable(spec)}: 'local' takes nothing after it")
        return Local()
    if kind == "hosts":
        return Hosts(tuple(_host(spec, h) for h in _items(spec, rest, "a host")))
    if kind == "dns":
        if not rest:
            raise ValueError(f"cluster strategy {loggable(spec)}: 'dns:' needs a name, as in dns:nodes.example")
        return Dns(_host(spec, rest))
    if kind == "static":
        nodes: List[Tuple[str, Optional[int]]] = []
        for target in _items(spec, rest, "a node 'name@host' or 'name@host:port'"):
            try:
                nodes.append(split_target(target))
            except ValueError:
                raise ValueError(
                    f"cluster strategy {loggable(spec)}: {loggable(target)} is not 'name@host' or 'name@host:port'"
                ) from None
        return Static(tuple(dict.fromkeys(nodes)))
    raise ValueError(f"cluster strategy {loggable(spec)}: unknown kind {loggable(kind)} (expected {_KINDS})")


def _items(spec: str, rest: str, what: str) -> List[str]:
    items = rest.split(",")
    if not rest or any(not item for item in items):
        raise ValueError(f"cluster strategy {loggable(spec)}: needs a comma-separated list, each item {what}")
    return list(dict.fromkeys(items))


def _host(spec: str, host: str) -> str:
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not bare or len(bare) > _MAX_HOST or not all(c.isascii() and (c.isalnum() or c in ".-_:%") for c in bare):
        raise ValueError(
            f"cluster strategy {loggable(spec)}: {loggable(host)} is not a host name or address "
            f"(letters, digits, '.', '-', '_', ':' for IPv6; at most {_MAX_HOST} characters)"
        )
    return bare


def local_mapper_address() -> str:
    """Where this host's port mapper is asked: ``$SNOWG_EPMD_ADDRESS``, else 127.0.0.1."""
    return os.environ.get("SNOWG_EPMD_ADDRESS") or "127.0.0.1"


# What one source (a host's mapper, a static node) named at its last answer, by node name.
Named = Dict[str, Candidate]


class Finder:
    """Looks up the nodes one strategy names, for the node ``own_name``.

    Keeps, per source, what it named at its last answer (see the module
    docstring) and, per mapper, which registration is which node (a node's
    entry is asked once, not at every lookup, while its port stays the same).

    Args:
        strategy: what to look up.
        own_name: this node's name (never a candidate; its prefix selects the others).
        epmd_port: the port mappers' TCP port; None for ``$ERL_EPMD_PORT`` or 4369.
        timeout: seconds a :meth:`lookup` may take.
    """

    def __init__(
        self, strategy: Strategy, own_name: str, *, epmd_port: Optional[int] = None, timeout: float = LOOKUP_TIMEOUT
    ) -> None:
        self.strategy = strategy
        self.own_name = own_name
        self.prefix = cluster_prefix(own_name)
        self.epmd_port = epmd_port
        self.timeout = timeout
        self._last: Dict[str, Named] = {}
        # (mapper host, alive, port) -> the snowg node's full name, or None (not a snowg node).
        self._entries: Dict[Tuple[str, str, int], Optional[Tuple[str, int]]] = {}
        self._failing: Dict[str, str] = {}  # source -> the last reason it could not be asked
        self._failures = SummaryLog(log, self._failure_summary, FAILURE_LOG_WINDOW, overflow_key="other", once=True)

    def lookup(self) -> Dict[str, Candidate]:
        """The candidates this strategy names now, by node name.

        Blocks for at most about :attr:`timeout` seconds (resolving a ``dns:``
        name included); never raises for what a host, a mapper or a name
        server does (that is logged, once per source, and repeats are
        summarised).
        """
        deadline = time.monotonic() + self.timeout
        strategy = self.strategy
        sources: Dict[str, Tuple[str, Optional[int]]]
        if isinstance(strategy, Local):
            sources = {"local": (local_mapper_address(), None)}
        elif isinstance(strategy, Hosts):
            sources = {h: (h, None) for h in strategy.hosts}
        elif isinstance(strategy, Dns):
            addresses = self._resolve(strategy.name, deadline)
            if addresses is None:
                return self._merge(self._last)
            sources = {a: (a, None) for a in addresses}
        else:
            sources = {name if port is None else f"{name}:{port}": (name, port) for name, port in strategy.nodes}
        jobs = {key: gevent.spawn(self._ask, key, where, port, deadline) for key, (where, port) in sources.items()}
        gevent.joinall(list(jobs.values()), timeout=max(0.0, deadline - time.monotonic()) + 0.5)
        answers: Dict[str, Named] = {}
        for key, job in jobs.items():
            result = job.value if job.successful() else None
            if result is None:
                if not job.ready():
                    job.kill(block=False)
                    self._failed(key, "no answer in time")
                result = self._last.get(key, {})
            answers[key] = result
        self._last = answers
        self._forget_all_but(sources)
        return self._merge(answers)

    def _forget_all_but(self, sources: Dict[str, Tuple[str, Optional[int]]]) -> None:
        """Drop what is kept about sources no longer asked (the addresses a ``dns:`` name stopped giving)."""
        hosts = {where for where, _ in sources.values()}
        for key in [k for k in self._entries if k[0] not in hosts]:
            del self._entries[key]
        for source in [s for s in self._failing if s not in sources and not s.startswith("dns:")]:
            del self._failing[source]
            self._failures.flush(partial(eq, source))

    def _merge(self, answers: Dict[str, Named]) -> Dict[str, Candidate]:
        merged: Dict[str, Candidate] = {}
        for named in answers.values():
            for name, candidate in named.items():
                merged.setdefault(name, candidate)
        return merged

    def _resolve(self, name: str, deadline: float) -> Optional[List[str]]:
        """Every address ``name`` resolves to, in the resolver's order; None when it cannot be resolved."""
        source = f"dns:{name}"
        try:
            with gevent.Timeout(max(0.0, deadline - time.monotonic()), TimeoutError("no answer in time")):
                infos = gsocket.getaddrinfo(name, None, 0, gsocket.SOCK_STREAM)
        except (OSError, TimeoutError, UnicodeError) as exc:
            self._failed(source, f"cannot resolve {name}: {exc}")
            return None
        self._answered(source)
        return list(dict.fromkeys(str(info[4][0]) for info in infos))[:MAX_NAMES_PER_HOST]

    def _ask(self, key: str, host: str, port: Optional[int], deadline: float) -> Optional[Named]:
        """What ``key`` names now; None when it could not be asked (then logged)."""
        try:
            if isinstance(self.strategy, Static):
                found = self._ask_static(host, port, deadline)
            else:
                found = self._ask_mapper(host, deadline)
        except _NotTaken as exc:
            self._failed(key, str(exc))
            return {}
        except NodeError as exc:  # it names the mapper
            self._failed(key, str(exc))
            return None
        except (OSError, ValueError) as exc:
            self._failed(key, f"cannot ask the port mapper on {host}: {exc}")
            return None
        self._answered(key)
        return found

    def _ask_mapper(self, host: str, deadline: float) -> Named:
        listed = names(host, epmd_port=self.epmd_port, timeout=_left(deadline))[:MAX_NAMES_PER_HOST]
        found: Named = {}
        seen = set()
        for alive, port in listed:
            if cluster_prefix(alive) != self.prefix:
                continue
            key = (host, alive, port)
            seen.add(key)
            if key not in self._entries:
                entry = port_please(host, alive, epmd_port=self.epmd_port, timeout=_left(deadline))
                full = _snowg_name(entry, alive)
                # A node with Erlang distribution on registers its Erlang port; its snowg port is in the extra.
                snowg_port = None if entry is None else entry.snowg_port
                self._entries[key] = None if full is None or snowg_port is None else (full, snowg_port)
            known = self._entries[key]
            if known is None or known[0] == self.own_name:
                continue
            full_name, snowg_port = known
            dial = full_name.split("@", 1)[1] if isinstance(self.strategy, Local) else host
            found[full_name] = Candidate(full_name, dial, snowg_port)
        for key in [k for k in self._entries if k[0] == host and k not in seen]:
            del self._entries[key]  # gone from the mapper: a node that comes back on that port is asked again
        return found

    def _ask_static(self, name: str, port: Optional[int], deadline: float) -> Named:
        host = name.split("@", 1)[1]
        if name == self.own_name:
            return {}
        if port is not None:
            return {name: Candidate(name, host, port)}
        alive = alive_part(name)
        entry = port_please(host, alive, epmd_port=self.epmd_port, timeout=_left(deadline))
        if entry is None:
            return {}  # not running now: a later lookup finds it when it is
        full_name = _snowg_name(entry, alive)
        if full_name != name:
            what = "is not a snowg node" if full_name is None else f"is the node {loggable(full_name, quoted=False)}"
            raise _NotTaken(f"{loggable(alive)} registered with {host}'s port mapper {what}, not {name}")
        return {name: Candidate(name, host, entry.snowg_port or entry.port)}

    def _failed(self, source: str, reason: str) -> None:
        self._failing[source] = reason
        self._failures.report(
            source, logging.WARNING, "discovery %s: %s; asked again at each lookup", self.strategy.spec, reason
        )

    def _answered(self, source: str) -> None:
        if self._failing.pop(source, None) is not None:
            self._failures.flush(partial(eq, source))
            log.info("discovery %s: %s answers again", self.strategy.spec, source)

    def _failure_summary(self, source: str, count: int, seconds: float) -> Tuple[str, Tuple[object, ...]]:
        return (
            "discovery %s: %s failed %d more times in %.0f s (last: %s)",
            (self.strategy.spec, source, count, seconds, self._failing.get(source, "answers again")),
        )

    def close(self) -> None:
        """Log the pending failure summaries (the node stops)."""
        self._failures.flush()


class _NotTaken(Exception):
    """A source answered with a node this strategy cannot take (the message says why)."""


def _left(deadline: float) -> float:
    return max(0.05, deadline - time.monotonic())


def _snowg_name(entry: Optional[NodeEntry], alive: str) -> Optional[str]:
    """The full name of the snowg node ``entry`` registers as ``alive``; None for anything else.

    A registration whose full name is not a node name, or whose alive part is
    not the one it is registered under, is not taken (bad input from a mapper).
    """
    if entry is None or not 0 < entry.port < 65536:
        return None
    full_name = entry.full_name
    if full_name is None or not is_node_name(full_name) or alive_part(full_name) != alive:
        return None
    return full_name
