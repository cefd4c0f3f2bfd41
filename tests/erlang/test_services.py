"""The services a BEAM node expects of a snowg node, and calls both ways, against real ``erl``/``elixir``.

From Erlang into Python: ``net_adm:ping`` (``net_kernel``), ``erpc:call``
and ``rpc:call`` of ``@snowg.spawnable("mod:fun")`` functions (a value, a
Python exception, ``snowg.exit``, an ``ErlangError`` throw, ``undef`` for an
unknown name or arity, exactly as Erlang reports them), ``erpc:cast``,
``spawn``/``spawn_monitor`` of a spawnable (and of an unknown one),
``gen_server:call``/``cast``/``stop`` to a snowg ``GenServer`` by name and
by pid (and from Elixir's ``GenServer.call``).

From Python into Erlang: ``snowg.call``/``snowg.cast`` to an Erlang
``gen_server`` (by name and by pid; ``noproc``, a crash, ``noconnection``),
``snowg.erlang.call``/``cast`` (a value, each kind of exception, ``undef``,
a timeout that kills the remote process, ``noconnection``), ``snowg.spawn``
of ``("mod", "fun")`` there, and ``io:format`` of the processes this node
spawns there, logged through the node's group leader.

Every test runs over plain TCP and over ``inet_tls_dist``; each BEAM OS
process is killed at the end of its test (the ``beam_factory`` fixture).
"""

from __future__ import annotations

import itertools
import logging
import os
from typing import Any

import pytest
from beam import skip_unless_beam, skip_unless_elixir
from support import recv, tagged

import snowg
import snowg.erlang
import snowg.gen_server
from snowg import Atom
from snowg.erlang import ErlangError
from snowg.erlang._io import FormatError, erl_format, handle_request
from snowg.erlang._types import ImproperList

pytestmark = [skip_unless_beam]
TIME_LIMIT = 120

A = Atom


# ------------------------------------------------------------- Python functions Erlang calls


@snowg.spawnable("pysvc:add")
def add(a: int, b: int) -> int:
    return a + b


@snowg.spawnable("pysvc:echo")
def echo(value: Any) -> Any:
    return ("got", value)


@snowg.spawnable("pysvc:boom")
def boom(message: str) -> None:
    raise ValueError(message)


@snowg.spawnable("pysvc:leave")
def leave(reason: Any) -> None:
    snowg.exit(reason)


@snowg.spawnable("pysvc:throw")
def throw(value: Any) -> None:
    raise ErlangError("throw", value)


@snowg.spawnable("pysvc:unsendable")
def unsendable() -> Any:
    return object()


@snowg.spawnable("pysvc:notify")
def notify(to: snowg.Pid, what: Any) -> None:
    snowg.send(to, ("notified", what, snowg.self()))


@snowg.spawnable("pysvc:greet")
def greet(to: snowg.Pid) -> None:
    snowg.send(to, (A("hello_from_python"), snowg.self()))


class Counter(snowg.GenServer):
    def init(self, start: int) -> int:
        return start

    def handle_call(self, request: Any, from_: Any, state: int) -> Any:
        if request == "get":
            return ("reply", state, state)
        if type(request) is tuple and request[0] == "add":
            return ("reply", A("ok"), state + request[1])
        if request == "who":
            return ("reply", from_[0], state)
        return ("reply", A("unknown"), state)

    def handle_cast(self, request: Any, state: int) -> Any:
        if type(request) is tuple and request[0] == "add":
            return ("noreply", state + request[1])
        return ("noreply", state)

    def terminate(self, reason: Any, state: Any) -> None:
        snowg.send("counter_watch", ("terminated", reason, state))


# ------------------------------------------------------------- helpers


KV_SOURCE = """
-module(kv).
-behaviour(gen_server).
-export([init/1, handle_call/3, handle_cast/2, handle_info/2]).
init(S) -> {ok, S}.
handle_call({get, K}, _From, S) -> {reply, maps:get(K, S, none), S};
handle_call(crash, _From, _S) -> exit(crashed);
handle_call(hang, From, S) -> repl ! {hanging, From}, {noreply, S};
handle_call(whoami, {Pid, _Tag}, S) -> {reply, Pid, S}.
handle_cast({put, K, V}, S) -> {noreply, S#{K => V}}.
handle_info(_, S) -> {noreply, S}.
"""


# The REPL keeps bindings: helpers bind fresh variable names each time.
_fresh = itertools.count(1)

SLEEPER_SOURCE = """
-module(sleeper).
-export([run/0]).
run() -> repl ! {sleeper, self()}, receive after infinity -> ok end.
"""


def compile_erlang(beam: Any, directory: Any, source: str) -> None:
    """Compile and load an Erlang module from ``source`` (its first line names it) on ``beam``."""
    module = source.strip().split("\n")[0].split("(")[1].split(")")[0]
    path = os.path.join(str(directory), f"{module}.erl")
    with open(path, "w") as f:
        f.write(source)
    n = next(_fresh)
    compiled = f'{{ok, M{n}, B{n}}} = compile:file("{path}", [binary, return_errors])'
    code = f'{compiled}, code:load_binary(M{n}, "{path}", B{n})'
    assert beam.eval(code) == (A("module"), A(module))


def connected_beam(erlang_node: Any, **options: Any) -> Any:
    """A BEAM node with ``repl`` registered (the harness's evaluating process), connected to us."""
    beam = erlang_node.beam(**options)
    if beam.elixir:
        assert beam.eval(f':net_adm.ping(:"{erlang_node.name}")') == A("pong")
        beam.eval("Process.register(self(), :repl)")
    else:
        assert beam.eval(f"net_adm:ping('{erlang_node.name}')") == A("pong")
        beam.eval("register(repl, self())")
    return beam


def erl_try(beam: Any, expr: str) -> Any:
    """``{Class, Reason}`` of what ``expr`` raises on ``beam``, or ``{value, V}``."""
    n = next(_fresh)
    return beam.eval(f"try {expr} of V{n} -> {{value, V{n}}} catch C{n}:R{n} -> {{C{n}, R{n}}} end")


# ------------------------------------------------------------- from Erlang into Python


def test_ping_and_net_kernel(erlang_node):
    beam = connected_beam(erlang_node)
    # the is_auth call net_adm:ping makes, by hand, and any other call answered at once
    assert beam.eval(f"gen_server:call({{net_kernel, '{erlang_node.name}'}}, {{is_auth, node()}})") == A("yes")
    assert beam.eval(f"gen_server:call({{net_kernel, '{erlang_node.name}'}}, other, 5000)") == (
        A("error"),
        A("not_supported"),
    )


def test_erpc_call_returns_the_value(erlang_node):
    beam = connected_beam(erlang_node)
    py = erlang_node.name
    assert beam.eval(f"erpc:call('{py}', pysvc, add, [2, 40])") == 42
    # a str comes back as a binary, an atom as an atom
    assert beam.eval(f'erpc:call(\'{py}\', pysvc, echo, [<<"héllo"/utf8>>]) =:= {{<<"got">>, <<"héllo"/utf8>>}}')
    assert beam.eval(f"erpc:call('{py}', pysvc, echo, [ok])") == ("got", A("ok"))
    assert beam.eval(f"rpc:call('{py}', pysvc, add, [1, 2])") == 3


def test_erpc_call_of_a_raising_function_raises_the_python_error_in_erlang(erlang_node):
    beam = connected_beam(erlang_node)
    py = erlang_node.name
    got = erl_try(beam, f"erpc:call('{py}', pysvc, boom, [<<\"no good\">>])")
    kind, (exception, (tag, type_name, message, traceback), stack) = got
    assert (kind, exception, tag, type_name, message) == (
        A("error"),
        A("exception"),
        A("python_error"),
        "ValueError",
        "no good",
    )
    assert "raise ValueError(message)" in traceback
    assert stack == [(A("pysvc"), A("boom"), 1, [])]
    # rpc:call makes the same a badrpc
    bad = beam.eval(f"rpc:call('{py}', pysvc, boom, [<<\"x\">>])")
    assert (
        bad[0] == A("badrpc") and bad[1][0] == A("EXIT") and bad[1][1][0][:3] == (A("python_error"), "ValueError", "x")
    )


def test_erpc_call_of_an_unknown_function_is_undef(erlang_node):
    beam = connected_beam(erlang_node)
    py = erlang_node.name
    assert erl_try(beam, f"erpc:call('{py}', nomod, nofun, [1])") == (
        A("error"),
        (A("exception"), A("undef"), [(A("nomod"), A("nofun"), [1], [])]),
    )
    # a known name with another arity is another function: undef too
    assert erl_try(beam, f"erpc:call('{py}', pysvc, add, [1])") == (
        A("error"),
        (A("exception"), A("undef"), [(A("pysvc"), A("add"), [1], [])]),
    )
    assert beam.eval(f"rpc:call('{py}', nomod, nofun, [])") == (
        A("badrpc"),
        (A("EXIT"), (A("undef"), [(A("nomod"), A("nofun"), [], [])])),
    )


def test_erpc_call_exit_throw_and_a_value_with_no_erlang_form(erlang_node):
    beam = connected_beam(erlang_node)
    py = erlang_node.name
    assert erl_try(beam, f"erpc:call('{py}', pysvc, leave, [bye])") == (A("exit"), (A("exception"), A("bye")))
    assert erl_try(beam, f"erpc:call('{py}', pysvc, throw, [{{my, ball}}])") == (A("throw"), (A("my"), A("ball")))
    kind, (exception, error, _stack) = erl_try(beam, f"erpc:call('{py}', pysvc, unsendable, [])")
    assert (kind, exception, error[0], error[1]) == (A("error"), A("exception"), A("python_error"), "TypeError")
    # the node keeps serving
    assert beam.eval(f"erpc:call('{py}', pysvc, add, [1, 1])") == 2


def test_erpc_cast_runs_the_function(erlang_node, me):
    beam = connected_beam(erlang_node)
    beam.eval(f"Me = {beam.literal(me)}")
    assert beam.eval(f"erpc:cast('{erlang_node.name}', pysvc, notify, [Me, cast])") == A("ok")
    msg = recv(tagged("notified"))
    assert msg[1] == A("cast") and msg[2].node == erlang_node.name


def test_spawn_from_erlang_runs_the_spawnable(erlang_node):
    beam = connected_beam(erlang_node)
    py = erlang_node.name
    got = beam.eval(
        f"P = spawn('{py}', pysvc, greet, [self()]), receive {{hello_from_python, Q}} -> Q =:= P after 5000 -> none end"
    )
    assert got is True
    # spawn_monitor of an unknown function: the process ends as Erlang's does
    assert beam.eval(
        f"{{_, M}} = spawn_monitor('{py}', nomod, nofun, [1, x]), "
        "receive {'DOWN', M, process, _, R} -> R after 5000 -> none end"
    ) == (A("undef"), [(A("nomod"), A("nofun"), [1, A("x")], [])])


def test_gen_server_call_cast_and_stop_from_erlang_into_a_genserver(erlang_node, me):
    beam = connected_beam(erlang_node)
    py = erlang_node.name
    snowg.register("counter_watch", me)
    pid = Counter.start(10, name="counter")
    # by name: OTP 25 tags the call [alias | Ref], the reply goes to the alias
    assert beam.eval(f"gen_server:call({{counter, '{py}'}}, get)") == 10
    assert beam.eval(f"gen_server:call({{counter, '{py}'}}, {{add, 5}})") == A("ok")
    # by pid
    beam.eval(f"P = {beam.literal(pid)}")
    assert beam.eval("gen_server:call(P, get)") == 15
    assert beam.eval("gen_server:call(P, who) =:= self()") is True
    assert beam.eval(f"gen_server:cast({{counter, '{py}'}}, {{add, 1}})") == A("ok")
    assert beam.eval("gen_server:call(P, get)") == 16
    # the caller's monitor and alias were removed: nothing is left in its mailbox
    assert beam.eval("receive M -> M after 0 -> empty end") == A("empty")
    # gen_server:stop: sys:terminate, then the server's terminate runs and it ends with the reason
    assert beam.eval(f"gen_server:stop({{counter, '{py}'}}, normal, 5000)") == A("ok")
    assert recv(tagged("terminated")) == ("terminated", A("normal"), 16)
    assert not snowg.is_alive(pid)


@skip_unless_elixir
def test_elixir_genserver_call_into_a_genserver(erlang_node):
    beam = connected_beam(erlang_node, elixir=True)
    Counter.start(3, name="counter")
    assert beam.eval(f'GenServer.call({{:counter, :"{erlang_node.name}"}}, :get)') == 3
    assert beam.eval(f'GenServer.call({{:counter, :"{erlang_node.name}"}}, {{:add, 2}})') == A("ok")
    assert beam.eval(f'GenServer.call({{:counter, :"{erlang_node.name}"}}, :get)') == 5


# ------------------------------------------------------------- from Python into Erlang


def test_snowg_call_and_cast_into_an_erlang_gen_server(erlang_node, tmp_path):
    beam = connected_beam(erlang_node)
    compile_erlang(beam, tmp_path, KV_SOURCE)
    pid = beam.eval("{ok, Kv} = gen_server:start({local, kv}, kv, #{}, []), Kv")
    assert snowg.call(("kv", beam.node), (A("get"), A("a"))) == A("none")
    snowg.cast(("kv", beam.node), (A("put"), A("a"), [1, "two"]))
    assert snowg.call(("kv", beam.node), (A("get"), A("a"))) == [1, "two"]
    snowg.cast(pid, (A("put"), A("b"), 2))
    assert snowg.call(pid, (A("get"), A("b"))) == 2
    assert snowg.call(pid, A("whoami")) == snowg.self()
    # a name nobody has, a server that crashes in the call
    with pytest.raises(snowg.NoProc):
        snowg.call(("nosuch", beam.node), A("get"))
    with pytest.raises(snowg.CallError) as info:
        snowg.call(pid, A("crash"))
    assert info.value.reason == A("crashed")


def test_gen_server_stop_of_an_erlang_gen_server(erlang_node, tmp_path):
    beam = connected_beam(erlang_node)
    compile_erlang(beam, tmp_path, KV_SOURCE)
    beam.eval("{ok, Kv} = gen_server:start({local, kv}, kv, #{}, []), Mon = monitor(process, Kv)")
    snowg.gen_server.stop(("kv", beam.node))
    # it ended with the atom normal (not a binary), and no reply was left in our mailbox
    assert beam.eval("receive {'DOWN', Mon, process, Kv, R} -> R after 5000 -> alive end") == A("normal")
    assert snowg.flush_messages() == []
    with pytest.raises(snowg.NoProc):
        snowg.gen_server.stop(("kv", beam.node))


def test_snowg_call_to_a_gen_server_whose_node_dies_is_noconnection(erlang_node, tmp_path):
    beam = connected_beam(erlang_node)
    compile_erlang(beam, tmp_path, KV_SOURCE)
    beam.eval("{ok, Kv} = gen_server:start({local, kv}, kv, #{}, [])")
    caller = snowg.self()

    def call_it() -> None:
        try:
            snowg.call(("kv", beam.node), A("hang"), timeout=30)
        except snowg.CallError as e:
            snowg.send(caller, ("call_error", e.reason))

    snowg.spawn(call_it)
    assert beam.eval("receive {hanging, _} -> yes after 10000 -> no end") == A("yes")
    beam.kill()
    assert recv(tagged("call_error"), 30) == ("call_error", "noconnection")


def test_erlang_call_returns_and_raises(erlang_node):
    beam = connected_beam(erlang_node)
    node = beam.node
    assert snowg.erlang.call(node, "lists", "reverse", [[1, 2, 3]]) == [3, 2, 1]
    assert snowg.erlang.call(node, "erlang", "node", []) == A(node)
    assert snowg.erlang.call(node, "erlang", "list_to_binary", [[104, 105]]) == "hi"
    with pytest.raises(ErlangError) as info:
        snowg.erlang.call(node, "erlang", "error", [A("bad")])
    assert (info.value.kind, info.value.reason) == ("error", A("bad"))
    assert type(info.value.stack) is list
    with pytest.raises(ErlangError) as info:
        snowg.erlang.call(node, "erlang", "throw", [(A("ball"), 1)])
    assert (info.value.kind, info.value.reason, info.value.stack) == ("throw", (A("ball"), 1), [])
    with pytest.raises(ErlangError) as info:
        snowg.erlang.call(node, "erlang", "exit", [A("gone")])
    assert (info.value.kind, info.value.reason) == ("exit", A("gone"))
    with pytest.raises(ErlangError) as info:
        snowg.erlang.call(node, "nomod", "nofun", [1])
    assert (info.value.kind, info.value.reason) == ("error", A("undef"))
    assert info.value.stack[0] == (A("nomod"), A("nofun"), [1], [])
    with pytest.raises(TypeError):
        snowg.erlang.call(node, "lists", "reverse", [[object()]])
    assert snowg.erlang.call(node, "erlang", "abs", [-7]) == 7


def test_erlang_call_timeout_kills_the_remote_process(erlang_node, tmp_path):
    beam = connected_beam(erlang_node)
    compile_erlang(beam, tmp_path, SLEEPER_SOURCE)
    with pytest.raises(snowg.CallTimeout):
        snowg.erlang.call(beam.node, "sleeper", "run", [], timeout=1.0)
    reason = beam.eval(
        "receive {sleeper, P} -> M = monitor(process, P), "
        "receive {'DOWN', M, process, P, R} -> R after 5000 -> still_alive end after 5000 -> never_ran end"
    )
    assert reason in (A("killed"), A("noproc"))  # noproc: the kill was there before the monitor


def test_erlang_call_when_the_node_dies_is_noconnection(erlang_node, tmp_path):
    beam = connected_beam(erlang_node)
    compile_erlang(beam, tmp_path, SLEEPER_SOURCE)
    caller = snowg.self()

    def call_it() -> None:
        try:
            snowg.erlang.call(beam.node, "sleeper", "run", [], timeout=30)
        except snowg.CallError as e:
            snowg.send(caller, ("call_error", e.reason))

    snowg.spawn(call_it)
    assert beam.eval("receive {sleeper, _} -> yes after 10000 -> no end") == A("yes")
    beam.kill()
    assert recv(tagged("call_error"), 30) == ("call_error", "noconnection")


def test_erlang_cast_and_spawn_on_the_beam(erlang_node, me):
    beam = connected_beam(erlang_node)
    assert snowg.erlang.cast(beam.node, "erlang", "send", [me, (A("cast"), 1)]) is None
    assert recv(tagged("cast")) == (A("cast"), 1)
    pid = snowg.spawn(("erlang", "send"), me, (A("spawned"), 2), node=beam.node)
    assert recv(tagged("spawned")) == (A("spawned"), 2)
    assert type(pid) is snowg.Pid and pid.node == beam.node
    pid, ref = snowg.spawn_monitor("lists:reverse", [1], node=beam.node)
    assert recv(lambda m: type(m) is snowg.Down and m.ref == ref) == snowg.Down(ref, pid, A("normal"))


def test_io_format_on_the_beam_logs_through_the_group_leader(erlang_node, caplog):
    beam = connected_beam(erlang_node)
    with caplog.at_level(logging.INFO, logger="snowg"):
        # io is synchronous: the call returns once the group leader answered
        assert snowg.erlang.call(beam.node, "io", "format", ["hello ~p and ~s~n", [[1, A("a")], "text"]]) == A("ok")
        assert snowg.erlang.call(beam.node, "io", "put_chars", [[104, "i there"]]) == A("ok")
        # input is not supported
        assert snowg.erlang.call(beam.node, "io", "get_line", ["prompt> "]) == (A("error"), A("enotsup"))
    lines = [r.getMessage() for r in caplog.records if r.name == "snowg" and r.levelno == logging.INFO]
    assert any(line.endswith(": hello [1,a] and text") for line in lines), lines
    assert any(line.endswith(": hi there") for line in lines), lines
    # the group leader still serves, and the BEAM's own output was not used
    assert not any("hello [1,a]" in line for line in beam.output)


def test_erlang_call_to_an_unreachable_node_is_noconnection(erlang_node):
    with pytest.raises(snowg.CallError) as info:
        snowg.erlang.call(f"nobody-{os.getpid()}@127.0.0.1", "erlang", "node", [], timeout=10)
    assert info.value.reason == "noconnection"


# ------------------------------------------------------------- the group leader's formatting (no BEAM)


def s(text: str) -> list:
    """An Erlang string (a list of code points), as a format arrives."""
    return [ord(c) for c in text]


def test_io_lib_format_directives():
    fmt = s("~p ~w ~s ~a ~c ~b ~.16B ~.2f ~e ~i~~ ~P~n")
    args = [s("abc"), s("abc"), "bin", A("at om"), 120, 42, 255, 1.005, 2.5, "ignored", [1, [2, [3]]], 2]
    assert erl_format(fmt, args) == '"abc" [97,98,99] bin at om x 42 FF 1.00 2.500000e+00 ~ [1,[2,[3]]]\n'
    assert erl_format("~p", [(A("ok"), "b", b"\x01\x02", ImproperList((1,), 2), {A("k"): None}, A("Q"))]) == (
        "{ok,<<\"b\"/utf8>>,<<1,2>>,[1|2],#{k => undefined},'Q'}"
    )
    for bad_fmt, bad_args in (("~p", []), ("~p", [1, 2]), ("~d", ["x"]), ("~z", [1]), ("~", [])):
        with pytest.raises(FormatError):
            erl_format(bad_fmt, bad_args)


def test_group_leader_requests(caplog, me):
    with caplog.at_level(logging.INFO, logger="snowg"):
        assert handle_request(me, (A("put_chars"), A("unicode"), [s("a"), "b", [[99]]])) == A("ok")
        assert handle_request(me, (A("put_chars"), A("latin1"), b"\xe9\n")) == A("ok")
        assert handle_request(me, (A("put_chars"), A("unicode"), A("io_lib"), A("format"), [s("~p~n"), [7]])) == A("ok")
        # another M:F:A cannot be applied here; input is not supported; bad characters are an error
        assert handle_request(me, (A("put_chars"), A("unicode"), A("m"), A("f"), [])) == (A("error"), A("enotsup"))
        assert handle_request(me, (A("get_line"), A("unicode"), s("> "))) == (A("error"), A("enotsup"))
        assert handle_request(me, (A("put_chars"), A("unicode"), [-1]))[0] == A("error")
        requests = (A("requests"), [(A("put_chars"), A("unicode"), "x"), (A("get_chars"), "", 1)])
        assert handle_request(me, requests) == (A("error"), A("enotsup"))
    logged = [r.getMessage() for r in caplog.records if r.name == "snowg"]
    assert logged == [f"{me}: abc", f"{me}: \xe9", f"{me}: 7", f"{me}: x"]


def test_erlang_error_kinds():
    e = ErlangError("throw", (A("ball"),))
    assert (e.kind, e.reason, e.stack, str(e)) == ("throw", (A("ball"),), [], "throw:(Atom('ball'),)")
    with pytest.raises(ValueError):
        ErlangError("oops", 1)
