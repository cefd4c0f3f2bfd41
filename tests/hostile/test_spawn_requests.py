"""Spawn requests a peer gets wrong: refused with a clear reply, and logged once, not once per request.

The node under test is this test process (node A). The attacker, node B, is
a raw TLS session that completed the real handshake (it holds a certificate
of the cluster CA and the cookie) and then writes frames by hand. The
witness is a real peer node that must go on being served.
"""

from __future__ import annotations

import itertools
import os
import re
from typing import Any, List

import gevent
import pytest
from gevent.lock import Semaphore

import snowg
from snowg import Pid, Ref
from snowg.cluster import spawnable_name
from snowg.cluster._frames import SPAWN_REPLY, SPAWN_REQUEST, TICK
from snowg.cluster._framing import FrameDecoder, encode_frame
from snowg.testing import wait_for

import authfuncs as af
import distfuncs as df
from support import log_lines, raw_session

pytestmark = pytest.mark.timeout(120)

CREATION = 4243
REQUESTS = 20_000
_serial = itertools.count(1)


class SpawningPeer:
    """Node B: the real handshake, then SPAWN_REQUESTs written by hand; it collects the SPAWN_REPLYs."""

    def __init__(self, config: Any, node: Any) -> None:
        self.name = f"zzspawn{next(_serial)}-{os.getpid()}@127.0.0.1"
        self.sock, hs = raw_session(config, node.port, self.name, CREATION, node.name)
        self.replies: List[Any] = []
        self._wlock = Semaphore()
        self._decoder = FrameDecoder()
        self._handle(self._decoder.feed(hs.trailing_data))
        self._glets = [gevent.spawn(self._reader), gevent.spawn(self._ticker)]
        assert wait_for(lambda: self.name in snowg.nodes(), timeout=10)

    def request(self, id: int, fn_name: str, args: List[Any], kwargs: Any) -> List[Any]:
        return [SPAWN_REQUEST, Ref(self.name, id, CREATION), Pid(self.name, 1, CREATION), fn_name, args, kwargs, []]

    def send(self, frames: List[List[Any]]) -> None:
        data = b"".join(encode_frame(f) for f in frames)
        with self._wlock:
            self.sock.sendall(data)

    def close(self) -> None:
        for g in self._glets:
            g.kill()
        self.sock.close()

    def _handle(self, frames: List[Any]) -> None:
        self.replies.extend(f for f in frames if f[0] == SPAWN_REPLY)

    def _reader(self) -> None:
        try:
            while True:
                data = self.sock.recv(65536)
                if not data:
                    break
                self._handle(self._decoder.feed(data))
        except OSError:
            pass

    def _ticker(self) -> None:
        while True:
            try:
                self.send([[TICK]])
            except OSError:
                return
            gevent.sleep(0.25)


@pytest.fixture
def attacker(snowg_cluster_config, snowg_node):
    b = SpawningPeer(snowg_cluster_config, snowg_node)
    yield b
    b.close()


def test_spawn_requests_with_a_bad_keyword_are_refused_and_logged_once(witness, attacker, log) -> None:
    """Attack: B sends 20,000 SPAWN_REQUESTs of a @spawnable function with a keyword it does not take.
    Before: each one started a process that crashed, a traceback each (7 MB of log). Now: each is
    refused with a SPAWN_REPLY saying why, one WARNING line, the rest counted in summaries."""
    b = attacker
    give = spawnable_name(af.give)
    assert give is not None
    for start in range(0, REQUESTS, 1000):
        b.send([b.request(i, give, [1], {"no_such_keyword": i}) for i in range(start, start + 1000)])
    assert wait_for(lambda: len(b.replies) == REQUESTS, timeout=60), len(b.replies)
    for reply in b.replies:
        result = reply[3]
        assert type(result) is str and "cannot be called with those arguments" in result, result
        assert "no_such_keyword" in result
    # The node keeps serving: B's own good request, and the witness.
    b.send([b.request(REQUESTS, give, [2], {})])
    assert wait_for(lambda: len(b.replies) == REQUESTS + 1, timeout=10)
    assert type(b.replies[-1][3]) is Pid and b.replies[-1][3].node == snowg.node()
    assert witness.name in snowg.nodes()
    assert witness.rpc(df.ping, 1) == ("pong", witness.name, 1)

    b.close()
    assert wait_for(lambda: b.name not in snowg.nodes(), timeout=10)
    full = [line for line in log_lines(log) if repr(b.name) in line and "with bad arguments (" in line]
    assert len(full) == 1 and "no_such_keyword" in full[0], full

    def summarised() -> int:
        counts = [re.search(r"sent (\d+) more spawn requests with bad arguments", line) for line in log_lines(log)]
        return sum(int(m.group(1)) for m in counts if m is not None)

    # The other 19,999 summarised (at most every 10 s, and when B goes), not logged one by one.
    assert wait_for(lambda: summarised() == REQUESTS - 1, timeout=10), summarised()
    assert not [r for r in log.records if r.name == "snowg" and r.exc_info]  # no traceback
    assert len(log_lines(log)) < 20, log_lines(log)[:30]
