"""``snowg example``: processes, a link, a trapped crash and a monitor, narrated.

A short program a newcomer can run (and read) to see what snowg's processes do.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, Callable

import snowg


def _worker(name: str) -> None:
    """Wait for a job; crash on 'crash', stop on 'stop', otherwise answer."""
    while True:
        msg = snowg.receive()
        if msg == "stop":
            return
        if msg == "crash":
            raise ValueError(f"{name} was asked to crash")
        sender, payload = msg
        snowg.send(sender, (snowg.self(), f"{name} did {payload}"))


def run_example(quiet: bool = False) -> int:
    """Run the example; returns 0 when every step behaved as Erlang would."""
    say: Callable[..., Any] = (lambda *a: None) if quiet else print
    if not quiet:
        # Crash reports go to the 'snowg' logger; show them, indented, on stderr.
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("   [snowg %(levelname)s] %(message)s"))
        logging.getLogger("snowg").addHandler(handler)
    me = snowg.self()
    say(f"main process: {me}")

    worker = snowg.spawn(_worker, "alice")
    snowg.send(worker, (me, "the dishes"))
    reply = snowg.receive(lambda m: isinstance(m, tuple) and m[0] == worker, timeout=5)
    say(f"1. spawned {worker}; it answered: {reply[1]!r}")

    ref = snowg.monitor(worker)
    snowg.send(worker, "stop")
    down = snowg.receive(lambda m: isinstance(m, snowg.Down) and m.ref == ref, timeout=5)
    say(f"2. monitor fired: Down(pid={down.pid}, reason={down.reason!r})")

    snowg.trap_exit(True)
    linked = snowg.spawn_link(_worker, "bob")
    say(f"3. trapping exits; spawned and linked {linked}; asking it to crash")
    snowg.send(linked, "crash")
    exit_msg = snowg.receive(lambda m: isinstance(m, snowg.Exit) and m.pid == linked, timeout=5)
    say(f"   the crash arrived as a message: Exit(pid={exit_msg.pid}, reason={exit_msg.reason})")

    snowg.trap_exit(False)
    watcher_ref = snowg.monitor(snowg.spawn(_chain_owner))
    chain_down = snowg.receive(lambda m: isinstance(m, snowg.Down) and m.ref == watcher_ref, timeout=5)
    say(f"4. a crash took down a linked, non-trapping process too: reason {chain_down.reason}")

    ok = (
        reply[1] == "alice did the dishes"
        and down.reason == "normal"
        and isinstance(exit_msg.reason, snowg.Crash)
        and exit_msg.reason.type == "ValueError"
        and isinstance(chain_down.reason, snowg.Crash)
    )
    say("every step behaved as an Erlang node would" if ok else "something did not behave as expected")
    return 0 if ok else 1


def _chain_owner() -> None:
    child = snowg.spawn_link(_worker, "carol")
    snowg.send(child, "crash")
    snowg.receive()  # never returns: the link takes this process down with carol's crash
