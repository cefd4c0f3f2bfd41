"""Terms through real Erlang processes: what a snowg node sends arrives exactly, and comes back exactly.

The harness itself is checked first: two BEAM nodes it starts ping each
other over TCP and over ``inet_tls_dist`` with the optfile the tests use.

Then, over TCP and over ``inet_tls_dist``, a term holding every mapped type
goes from a Python process to an Erlang echo process and back: the Erlang
side checks with ``=:=`` that it received exactly the Erlang term it should
(built there from source), the Python side that the echo equals what it
sent, value and type (``True`` is not ``1``, an ``Atom`` is not a ``str``).
"""

from __future__ import annotations

import hashlib
import math
from typing import Any

import pytest
from beam import BeamError, available, skip_unless_beam
from support import no_message, recv

import snowg
from snowg.erlang._types import Atom, BitBinary, ErlPort, ImproperList, OpaqueTerm

pytestmark = [skip_unless_beam]
TIME_LIMIT = 120


# ------------------------------------------------------------------ the harness


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
    # eval_async runs in another process, with the bindings made so far
    b.eval("Me = self()")
    b.eval_async("Me ! {async, self() =/= Me}")
    assert b.eval("receive {async, Other} -> Other after 5000 -> timeout end") is True
    with pytest.raises(BeamError) as raised:
        b.eval("erlang:error({oops, 1})")
    assert raised.value.cls == "error" and raised.value.reason == (Atom("oops"), 1)


@pytest.mark.parametrize("tls", [False, True], ids=["tcp", "tls"])
def test_harness_elixir_and_erlang_ping_each_other(beam_factory, tls):
    if available(elixir=True) is not None:
        pytest.skip(f"ELIXIR IS NOT INSTALLED: {available(elixir=True)}")
    ex = beam_factory.start(elixir=True, tls=tls)
    erl = beam_factory.start(tls=tls)
    assert ex.eval(f':net_adm.ping(:"{erl.node}")') == Atom("pong")
    assert ex.eval("x = 41") == 41
    assert ex.eval("x + 1") == 42
    assert erl.eval("nodes()") == [Atom(ex.node)]


# ------------------------------------------------------------------ helpers


def canon(value: Any) -> Any:
    """``value`` with every type made explicit, so ``==`` compares types too (``True`` is not ``1``)."""
    kind = type(value).__name__
    if isinstance(value, tuple):
        return (kind, tuple(canon(v) for v in value))
    if isinstance(value, list):
        return (kind, tuple(canon(v) for v in value))
    if isinstance(value, dict):
        return (kind, frozenset((canon(k), canon(v)) for k, v in value.items()))
    if isinstance(value, ImproperList):
        return (kind, canon(value.items), canon(value.tail))
    return (kind, value)


def echo_node(erlang_node, from_python: bool):
    """A BEAM node with an ``echo`` process: ``{From, T}`` -> ``From ! {echo, T}``, and ``{seen, T}`` to ``repl``.

    ``repl`` is the harness's evaluating process, so a test checks what Erlang received with :func:`seen`.
    """
    beam = erlang_node.beam()
    if from_python:
        assert snowg.erlang.connect(beam.node) is True
    else:
        assert beam.eval(f"net_adm:ping('{erlang_node.name}')") == Atom("pong")
    beam.eval("register(repl, self())")
    beam.eval(
        "register(echo, spawn(fun Loop() -> receive {From, T} -> From ! {echo, T}, repl ! {seen, T}, Loop() end end))"
    )
    return beam


def seen(beam, check: str, timeout: float = 10.0) -> Any:
    """Evaluate ``check`` (an Erlang expression of ``Seen``) on the next term the echo process received."""
    ms = int(timeout * 1000)
    return beam.eval(
        f"(fun() -> receive {{seen, Seen}} -> {check} after {ms} -> no_term_seen end end)()", timeout=timeout + 5
    )


def is_echo(m: Any) -> bool:
    return type(m) is tuple and len(m) == 2 and m[0] == "echo"


# ------------------------------------------------------------------ every mapped type

#: The Erlang term the Python value below must become (``Me``, ``R``... are bound in the BEAM).
ERLANG_TERM = """{ok, 'ünïcødé', '', true, false, undefined,
  0, 255, 256, -1, 2147483647, -2147483648, 1 bsl 64, -(1 bsl 200), 1.5, 1.0e300, -2.5e-300,
  <<"héllo"/utf8>>, <<>>, <<255, 0, 1>>,
  {}, {1, {2, {3}}}, [], [1, 2, 3], "abc", [1, 2 | 3], [a | <<"b">>],
  #{}, #{a => 1, <<"k">> => [x], {t} => #{n => nil}},
  [{nested, [#{deep => {[<<"x">>]}}]}],
  Me, Other, E, BigPid,
  R, Alias, MyRef, Ref1, Ref4, Ref5, RefBig,
  Port, F, fun lists:reverse/1, <<1:3>>, <<255, 7:4>>}"""


@pytest.mark.parametrize("from_python", [True, False], ids=["python-dials", "erlang-dials"])
def test_every_mapped_type_round_trips_exactly(erlang_node, me, from_python):
    beam = echo_node(erlang_node, from_python)
    other = snowg.spawn(snowg.receive)
    my_ref = snowg.make_ref()
    beam.eval(f"Me = {beam.literal(me)}, Other = {beam.literal(other)}, MyRef = {beam.literal(my_ref)}")
    erl_pid = beam.eval("E = spawn(fun() -> receive stop -> ok end end)")
    # a pid number over 15 bits, and refs of 1, 4 and 5 words and a first word over 18 bits, of a made-up node
    big_pid = beam.eval('BigPid = binary_to_term(<<131, 88, 100, 4:16, "x@hh", 40000:32, 7:32, 9:32>>)')
    ref1 = beam.eval('Ref1 = binary_to_term(<<131, 90, 1:16, 100, 4:16, "x@hh", 9:32, 77:32>>)')
    ref4 = beam.eval('Ref4 = binary_to_term(<<131, 90, 4:16, 100, 4:16, "x@hh", 9:32, 1:32, 2:32, 3:32, 4:32>>)')
    ref5 = beam.eval('Ref5 = binary_to_term(<<131, 90, 5:16, 100, 4:16, "x@hh", 9:32, 5:32, 4:32, 3:32, 2:32, 1:32>>)')
    ref_big = beam.eval(
        'RefBig = binary_to_term(<<131, 90, 3:16, 100, 4:16, "x@hh", 9:32, 16#FFFFFFFF:32, 0:32, 1:32>>)'
    )
    ref = beam.eval("R = make_ref()")
    alias = beam.eval("Alias = erlang:monitor(process, self(), [{alias, explicit_unalias}])")
    port = beam.eval("Port = hd(erlang:ports())")
    # funs as they come over distribution (term_to_binary writes the same fun's atoms in another form)
    beam.eval("F = fun(X) -> X + 1 end, Me ! {funs, F, fun lists:reverse/1}, ok")
    _, fun, export = recv(lambda m: type(m) is tuple and m[0] == "funs")
    assert type(erl_pid) is snowg.Pid and erl_pid.node == beam.node
    assert type(big_pid) is snowg.Pid and big_pid.node == "x@hh"
    assert all(type(r) is snowg.Ref for r in (ref, alias, ref1, ref4, ref5, ref_big))
    assert len({ref.id, alias.id, ref1.id, ref4.id, ref5.id, ref_big.id}) == 6
    assert type(port) is ErlPort and type(fun) is OpaqueTerm and type(export) is OpaqueTerm

    value = (
        Atom("ok"), Atom("ünïcødé"), Atom(""), True, False, None,
        0, 255, 256, -1, 2**31 - 1, -(2**31), 2**64, -(2**200), 1.5, 1.0e300, -2.5e-300,
        "héllo", "", b"\xff\x00\x01",
        (), (1, (2, (3,))), [], [1, 2, 3], [97, 98, 99], ImproperList((1, 2), 3), ImproperList((Atom("a"),), "b"),
        {}, {Atom("a"): 1, "k": [Atom("x")], (Atom("t"),): {Atom("n"): Atom("nil")}},
        [(Atom("nested"), [{Atom("deep"): (["x"],)}])],
        me, other, erl_pid, big_pid,
        ref, alias, my_ref, ref1, ref4, ref5, ref_big,
        port, fun, export, BitBinary(b"\x20", 3), BitBinary(b"\xff\x70", 4),
    )  # fmt: skip
    snowg.send(("echo", beam.node), (me, value))
    assert seen(beam, f"Seen =:= {ERLANG_TERM}") is True
    back = recv(is_echo, 10)[1]
    assert canon(back) == canon(value)
    # the fun came back from Python and is still the same, callable fun in Erlang
    snowg.send(("echo", beam.node), (me, back[-4]))
    assert seen(beam, "{Seen =:= F, Seen(41)}") == (True, 42)
    assert recv(is_echo, 10)[1] == fun
    snowg.exit(other, "kill")


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf], ids=["nan", "inf", "-inf"])
def test_nan_and_infinity_are_refused_in_the_sender(erlang_node, me, bad):
    beam = echo_node(erlang_node, from_python=True)
    erl_pid = beam.eval("whereis(echo)")
    with pytest.raises(TypeError):
        snowg.send(("echo", beam.node), (me, [1, {"x": bad}]))
    with pytest.raises(TypeError):
        snowg.send(erl_pid, (me, bad))
    # nothing of the refused sends reached Erlang: the next term is the first it sees
    snowg.send(("echo", beam.node), (me, 1.25))
    assert seen(beam, "Seen") == 1.25
    assert recv(is_echo, 10) == (Atom("echo"), 1.25)
    no_message(is_echo)
    assert beam.eval("process_info(whereis(echo), message_queue_len)") == (Atom("message_queue_len"), 0)


def test_ten_megabytes_both_ways(erlang_node, me):
    beam = echo_node(erlang_node, from_python=True)
    big = bytes([0, 255, 1, 254]) * (10 * 1024 * 1024 // 4)
    snowg.send(("echo", beam.node), (me, big))
    assert seen(beam, "{byte_size(Seen), Seen =:= binary:copy(<<0, 255, 1, 254>>, 2621440)}", 60) == (len(big), True)
    back = recv(is_echo, 60)[1]
    assert type(back) is bytes and len(back) == len(big) and back == big
    # and one made in Erlang, sent to a registered Python process
    snowg.register("big", me)
    beam.eval(
        f"Made = binary:copy(<<9, 200>>, 5242880), {{big, '{erlang_node.name}'}} ! {{made, erlang:md5(Made), Made}}, ok"
    )
    made = recv(lambda m: type(m) is tuple and m[0] == "made", 60)
    assert made[2] == bytes([9, 200]) * 5242880
    assert made[1] == hashlib.md5(made[2]).digest()
