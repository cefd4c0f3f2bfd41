"""Prometheus metrics of a node: counters kept from snowg's telemetry events, gauges read at scrape time.

:func:`metrics_text` writes them in Prometheus's text exposition format
(version 0.0.4), the body of a ``/metrics`` endpoint; :func:`metrics_app` is
that endpoint as a WSGI application, to mount in a server the node already
runs (``snowg.ws.serve``, gunicorn, Flask's dispatcher).

Counters, counted from the node's start. Most come from the handler (id
:data:`HANDLER_ID`) this module attaches to snowg's telemetry events when it
is imported (by ``import snowg``); the supervisor ones are counted by the
supervisors themselves, in line (``snowg._core.restart_counts``: a handler
on each restart cost it about 2 µs of 13), and read here:

* ``snowg_process_crashes_total``: processes that ended by their own error;
* ``snowg_supervisor_restarts_total{supervisor}`` and
  ``snowg_supervisor_give_ups_total{supervisor}`` (the supervisor's
  registered name, else its pid);
* ``snowg_node_up_total``, ``snowg_node_down_total{reason}``;
* ``snowg_session_busy_total{peer}``: processes suspended on a session over
  its bound;
* ``snowg_ws_connects_total``, ``snowg_ws_closes_total{code}``,
  ``snowg_ws_overflows_total``, and the summary
  ``snowg_ws_connection_duration_seconds`` (``_sum``, ``_count``).

Gauges, read when the text is made (no waiting: the process table and the
sessions are looked at in place): ``snowg_processes``,
``snowg_message_queue_messages`` (all mailboxes) and
``snowg_message_queue_max`` (the longest), ``snowg_connected_nodes``,
``snowg_ws_open_connections``; per peer node,
``snowg_session_received_bytes_total``, ``snowg_session_sent_bytes_total``
(since the session began: a new session restarts them, which Prometheus's
``rate`` takes as a counter reset), ``snowg_session_queued_bytes`` and
``snowg_session_last_heard_seconds``.

A label takes at most :data:`MAX_LABEL_VALUES` values per metric (supervisor
pids come and go): further ones are counted under ``"other"``.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

from .._core import process_info, processes
from .._core import restart_counts as _restart_counts
from .._core import telemetry as _telemetry
from ..cluster import nodes, session_stats

__all__ = ["CONTENT_TYPE", "HANDLER_ID", "MAX_LABEL_VALUES", "attach", "metrics_app", "metrics_text"]

HANDLER_ID = "snowg.observe.metrics"
#: The ``Content-Type`` of :func:`metrics_text`'s answer.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: Label values kept per metric; more are counted under ``"other"``.
MAX_LABEL_VALUES = _restart_counts.MAX_LABEL_VALUES

# name -> (help, type); the order of the exposition.
_COUNTERS: Dict[str, Tuple[str, str]] = {
    "snowg_process_crashes_total": ("Processes that ended by their own uncaught error.", ""),
    "snowg_supervisor_restarts_total": ("Children restarted, by supervisor.", "supervisor"),
    "snowg_supervisor_give_ups_total": ("Supervisors that gave up (restart intensity reached).", "supervisor"),
    "snowg_node_up_total": ("Peer nodes connected.", ""),
    "snowg_node_down_total": ("Peer nodes lost, by reason.", "reason"),
    "snowg_session_busy_total": ("Processes suspended by a session over its queue bound, by peer.", "peer"),
    "snowg_ws_connects_total": ("WebSocket connections opened.", ""),
    "snowg_ws_closes_total": ("WebSocket connections ended, by close code.", "code"),
    "snowg_ws_overflows_total": ("WebSocket connections closed because their outbound queue overflowed.", ""),
}
_DURATION = "snowg_ws_connection_duration_seconds"

# metric -> label value ('' without a label; a code or a node as the event gave it: made a
# str only when the text is written, so that counting stays cheap) -> count. The supervisor
# metrics are not here: they are read from snowg._core.restart_counts.
_counts: Dict[str, Dict[Any, float]] = {name: {} for name in _COUNTERS if name not in _restart_counts.COUNTS.by_label}
_duration = [0.0, 0]  # sum of seconds, count


def _add(metric: str, label: Any = "", k: int = 1) -> None:
    values = _counts[metric]
    n = values.get(label)
    if n is None:
        if len(values) >= MAX_LABEL_VALUES:
            label = "other"
            n = values.get(label, 0)
        else:
            n = 0
    values[label] = n + k


def _handle(event: Tuple[str, ...], measurements: Dict[str, float], metadata: Dict[str, Any], config: Any) -> None:
    metric, label_key = config[event]
    if label_key is None:
        _add(metric)
    else:
        _add(metric, metadata.get(label_key))
    if event is _telemetry.WS_CLOSE:
        _duration[0] += measurements.get("duration", 0.0)
        _duration[1] += 1


# event -> (metric, the metadata key of its label, or None)
_ON: Dict[Tuple[str, ...], Tuple[str, Optional[str]]] = {
    _telemetry.PROCESS_CRASH: ("snowg_process_crashes_total", None),
    _telemetry.NODE_UP: ("snowg_node_up_total", None),
    _telemetry.NODE_DOWN: ("snowg_node_down_total", "reason"),
    _telemetry.SESSION_BUSY: ("snowg_session_busy_total", "node"),
    _telemetry.WS_CONNECT: ("snowg_ws_connects_total", None),
    _telemetry.WS_CLOSE: ("snowg_ws_closes_total", "code"),
    _telemetry.WS_OVERFLOW: ("snowg_ws_overflows_total", None),
}


def attach() -> None:
    """Attach the counting handler unless it is attached (at import; again after a detach). Never blocks."""
    if any(h.id == HANDLER_ID for h in _telemetry.list_handlers(("snowg",))):
        return
    _telemetry.attach_many(HANDLER_ID, list(_ON), _handle, _ON)


# ------------------------------------------------------------------ exposition


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    return repr(float(value)) if isinstance(value, float) else str(int(value))


def _family(out: List[str], name: str, kind: str, help_text: str, samples: Iterable[Tuple[str, str, float]]) -> None:
    """One metric family: ``samples`` are ``(sample name, label text, value)``."""
    out.append(f"# HELP {name} {help_text}")
    out.append(f"# TYPE {name} {kind}")
    for sample, labels, value in samples:
        out.append(f"{sample}{labels} {_number(value)}")


def _labelled(metric: str, label: str) -> List[Tuple[str, str, float]]:
    cells = _restart_counts.COUNTS.by_label.get(metric)
    values: Dict[Any, float] = _counts[metric] if cells is None else {k: c[0] for k, c in list(cells.items())}
    if not label:
        return [(metric, "", values.get("", 0))]
    merged: Dict[str, float] = {}
    for value, n in list(values.items()):
        text = str(value)
        merged[text] = merged.get(text, 0) + n
    return [(metric, f'{{{label}="{_escape(v)}"}}', n) for v, n in sorted(merged.items())]


def metrics_text() -> str:
    """This node's metrics in Prometheus's text format (version 0.0.4; see the module docstring).

    Never blocks: it reads the counters and looks at every local process
    and session in place (one pass over the process table).
    """
    out: List[str] = []
    for metric, (help_text, label) in _COUNTERS.items():
        _family(out, metric, "counter", help_text, _labelled(metric, label))
    total, count = _duration
    _family(
        out,
        _DURATION,
        "summary",
        "How long WebSocket connections lasted.",
        [(f"{_DURATION}_sum", "", float(total)), (f"{_DURATION}_count", "", count)],
    )
    queued = longest = n = 0
    for pid in processes():
        info = process_info(pid, ("message_queue_len",))
        if info is not None:
            n += 1
            length = info["message_queue_len"]
            queued += length
            longest = max(longest, length)
    open_ws = _counts["snowg_ws_connects_total"].get("", 0) - _duration[1]
    for name, help_text, value in (
        ("snowg_processes", "Live processes of this node.", n),
        ("snowg_message_queue_messages", "Messages waiting in all mailboxes.", queued),
        ("snowg_message_queue_max", "The longest mailbox.", longest),
        ("snowg_connected_nodes", "Peer nodes connected now.", len(nodes())),
        ("snowg_ws_open_connections", "WebSocket connections open now.", open_ws),
    ):
        _family(out, name, "gauge", help_text, [(name, "", value)])
    sessions = session_stats()
    for name, kind, key, help_text in (
        ("snowg_session_received_bytes_total", "counter", "bytes_in", "TLS bytes read from the peer."),
        ("snowg_session_sent_bytes_total", "counter", "bytes_out", "TLS bytes written to the peer."),
        ("snowg_session_queued_bytes", "gauge", "queued", "Bytes queued for the peer, not yet written."),
        ("snowg_session_last_heard_seconds", "gauge", "last_heard", "Seconds since the peer was last heard."),
    ):
        rows = [(name, f'{{peer="{_escape(s["node"])}"}}', s[key]) for s in sessions]
        _family(out, name, kind, help_text, rows)
    return "\n".join(out) + "\n"


def metrics_app(environ: Dict[str, Any], start_response: Callable[..., Any]) -> List[bytes]:
    """A WSGI application answering ``GET`` (and ``HEAD``) with :func:`metrics_text`; never blocks.

    Mount it at ``/metrics``; it answers every path it is given. Other
    methods get 405.
    """
    method = environ.get("REQUEST_METHOD", "GET")
    if method not in ("GET", "HEAD"):
        start_response("405 Method Not Allowed", [("Allow", "GET, HEAD"), ("Content-Type", "text/plain")])
        return [b"GET only\n"]
    body = metrics_text().encode("utf-8")
    start_response("200 OK", [("Content-Type", CONTENT_TYPE), ("Content-Length", str(len(body)))])
    return [] if method == "HEAD" else [body]


attach()
