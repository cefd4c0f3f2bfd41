"""The example application the deployment files run: a chat room over WebSockets.

Every client joins the room ``lobby``; what a client sends reaches every member
of the room on every node of the cluster. ``GET /healthz`` answers
``{"node": ..., "peers": [...]}``: which node served the request and whom it is
connected to (the readiness probe of ``kubernetes.yaml``, and a quick look at
the cluster with ``curl``).

Two ways to run it, one per kind of deployment:

- ``gunicorn -c gunicorn.conf.py chat:app``: gunicorn serves ``app``; each
  worker is a node (``snowg.gunicorn.Worker``).
- ``snowg node NAME --app chat:start``: the node calls :func:`start`, which
  starts the application's top supervisor; its one child serves ``app`` with
  gevent's WSGI server on ``$CHAT_HOST:$CHAT_PORT`` (default
  ``127.0.0.1:8000``). When the supervisor gives up, the node exits non-zero
  and systemd restarts it.
"""

from __future__ import annotations

import os
from typing import Any

from flask import Flask, jsonify
from gevent import socket
from gevent.pywsgi import WSGIServer

import snowg
import snowg.ws as ws
from snowg import ChildSpec, supervisor

web = Flask(__name__)


@web.route("/healthz")
def healthz() -> Any:
    return jsonify(node=snowg.node(), peers=sorted(snowg.nodes()))


def chat(conn: ws.Connection) -> None:
    """One WebSocket client: in the room until it goes."""
    conn.join("lobby")
    while (text := conn.receive()) is not None:
        ws.broadcast("lobby", text)


app = ws.WebSocketApp(chat, fallback_app=web)


def serve_http() -> None:
    """Serve ``app`` on ``$CHAT_PORT`` until stopped (a supervisor's child).

    The socket is opened with ``SO_REUSEPORT``, so every node of a host may
    serve the same port and the kernel spreads the connections among them, as
    among gunicorn's workers.
    """
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    listener.bind((os.environ.get("CHAT_HOST", "127.0.0.1"), int(os.environ.get("CHAT_PORT", "8000"))))
    listener.listen(128)
    server = WSGIServer(listener, app, handler_class=ws.WebSocketHandler)
    server.serve_forever()  # stopped (and the socket closed) when the supervisor stops this child


def start() -> snowg.Pid:
    """Start the application's top supervisor (``snowg node --app chat:start``)."""
    return supervisor.start_link([ChildSpec("http", (serve_http, ()))], strategy="one_for_one", name="chat_sup")
