"""The application the gunicorn tests serve: a Flask page, and WebSocket clients in the room "lobby".

Each WebSocket client joins "lobby" and is told, as JSON, which worker it
landed on: ``{"node": <node name>, "pid": <worker's OS pid>}``. Then it may
send

* ``nodes``: answered ``{"nodes": [...]}``, the nodes its worker is connected to;
* ``broadcast TEXT``: ``{"broadcast": TEXT}`` goes to every member of "lobby",
  on every worker.

With ``$GUNICORN_APP_STARTS_NODE`` set, importing this module starts a node
(as an application written for a single process might), to show that under
``--preload`` the master does not stay one.
"""

import json
import os

from flask import Flask

import snowg
import snowg.ws as ws

if os.environ.get("GUNICORN_APP_STARTS_NODE"):
    snowg.start_node("appimport")

flask_app = Flask(__name__)


@flask_app.route("/")
def index() -> str:
    return f"served by node {snowg.node()}"


def lobby(conn: ws.Connection) -> None:
    conn.join("lobby")
    conn.send(json.dumps({"node": snowg.node(), "pid": os.getpid()}))
    while True:
        text = conn.receive()
        if text is None:
            return
        if text == "nodes":
            conn.send(json.dumps({"nodes": snowg.nodes()}))
        elif isinstance(text, str) and text.startswith("broadcast "):
            ws.broadcast("lobby", json.dumps({"broadcast": text[len("broadcast ") :]}))


app = ws.WebSocketApp(lobby, fallback_app=flask_app)
