"""``@spawnable`` helpers for the call tests across nodes (tests/core/test_calls_remote.py).

Peer nodes import this module (``peers.start(modules=["callfuncs"])``).
"""

from __future__ import annotations

from typing import Any, List

import snowg


@snowg.spawnable
def holding_server(parent: snowg.Pid) -> None:
    """A call server written with messages: holds ``'hold'`` calls until ``('release', value)``, echoes the rest."""
    held: List[Any] = []
    while True:
        msg = snowg.receive()
        if msg[0] == "$gen_call":
            _tag, from_, req = msg
            if req == "hold":
                held.append(from_)
                snowg.send(parent, ("holding", snowg.node()))
            else:
                snowg.reply(from_, req)
        elif msg[0] == "release":
            for from_ in held:
                snowg.reply(from_, msg[1])
            held = []
