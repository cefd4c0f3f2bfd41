"""Terms through real Erlang processes: what a snowg node sends arrives exactly, and comes back exactly.

The harness itself is checked first: two BEAM nodes it starts ping each
other over TCP and over ``inet_tls_dist`` with the optfile the tests use.
"""

from __future__ import annotations

import pytest
from beam import skip_unless_beam

from snowg.erlang._types import Atom

pytestmark = [skip_unless_beam]
TIME_LIMIT = 120


@pytest.mark.parametrize("tls", [False, True], ids=["tcp", "tls"])
def test_harness_two_beams_ping_each_other(beam_factory, tls):
    a = beam_factory.start(tls=tls)
    b = beam_factory.start(tls=tls)
    assert a.eval(f"net_adm:ping('{b.node}')") == Atom("pong")
    assert b.eval("nodes()") == [Atom(a.node)]
    # net_address{address, host, protocol, family}: the connection's protocol
    assert a.eval("{ok, [{_, I}]} = net_kernel:nodes_info(), element(4, proplists:get_value(address, I))") == Atom(
        "tls" if tls else "tcp"
    )
    b.eval("register(echo, self())")
    a.eval(f"{{echo, '{b.node}'}} ! {{hello, self()}}")
    assert b.eval("receive {hello, P} -> node(P) after 5000 -> timeout end") == Atom(a.node)


@pytest.mark.parametrize("tls", [False, True], ids=["tcp", "tls"])
def test_harness_elixir_and_erlang_ping_each_other(beam_factory, tls):
    from beam import available

    if available(elixir=True) is not None:
        pytest.skip(f"ELIXIR IS NOT INSTALLED: {available(elixir=True)}")
    ex = beam_factory.start(elixir=True, tls=tls)
    erl = beam_factory.start(tls=tls)
    assert ex.eval(f':net_adm.ping(:"{erl.node}")') == Atom("pong")
    assert ex.eval("x = 41") == 41
    assert ex.eval("x + 1") == 42
    assert erl.eval("nodes()") == [Atom(ex.node)]
