"""Links, monitors and exit signals between Python processes and real Erlang processes, both ways.

Every test runs over plain TCP and over ``inet_tls_dist`` (the ``transport``
fixture). The BEAM side is driven through the harness's REPL process
(``beam.eval``): it links, monitors and traps exits itself, and the test
reads what it received with :func:`erl_recv`. Reasons are checked exactly:
atoms on the Erlang side for ``normal``, ``kill``/``killed``, ``shutdown``,
``noproc``, ``noconnection``; a Python crash is ``{python_error, Type,
Message, Traceback}``; on the Python side those atoms equal the strings.

What two real Erlang nodes do with each other is the reference for each
expectation (a link or monitor to a dead process gives ``noproc``, a killed
process exits ``killed``, a lost node gives ``noconnection``...).
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Tuple

import distfuncs
import pytest
from beam import available, skip_unless_beam
from support import is_down, no_message, recv, wait_until

import snowg
import snowg.erlang
from snowg import Atom, Down, Exit

pytestmark = [skip_unless_beam]
TIME_LIMIT = 120

#: An Erlang process that ends as told: ``{go, normal | kill | crash | Reason}``.
TARGET = """Target = fun() ->
    receive
        {go, normal} -> exit(normal);
        {go, kill} -> exit(self(), kill);
        {go, crash} -> erlang:error(boom);
        {go, R} -> exit(R)
    end
end, ok"""

#: How an Erlang target is told to end, and the reason a Python process sees (None: checked apart).
ERLANG_ENDINGS: Dict[str, Tuple[Any, Any]] = {
    "normal": (Atom("normal"), "normal"),
    "kill": (Atom("kill"), "killed"),
    "shutdown": (Atom("shutdown"), "shutdown"),
    "custom": ((Atom("bad"), 1, "x"), (Atom("bad"), 1, "x")),
    "crash": (Atom("crash"), None),
}


def check_erlang_reason(ending: str, reason: Any) -> None:
    expected = ERLANG_ENDINGS[ending][1]
    if expected is None:  # erlang:error(boom) from a fun: {boom, Stacktrace}
        assert type(reason) is tuple and reason[0] == Atom("boom") and type(reason[1]) is list, reason
    else:
        assert reason == expected
        if isinstance(expected, str):  # it crossed as an atom, not as a binary
            assert type(reason) is Atom, reason


def _raise() -> None:
    raise ValueError("boom")


#: How a Python process ends, and the Erlang pattern its reason must match there.
PYTHON_ENDINGS: Dict[str, Tuple[Callable[[], Any], str]] = {
    "normal": (lambda: snowg.exit("normal"), "normal"),
    "return": (lambda: None, "normal"),
    "shutdown": (lambda: snowg.exit("shutdown"), "shutdown"),
    "shutdown_term": (lambda: snowg.exit(("shutdown", Atom("x"))), "{shutdown, x}"),
    "kill": (lambda: snowg.exit(snowg.self(), "kill"), "killed"),
    "custom": (lambda: snowg.exit((Atom("bad"), 1, "x")), '{bad, 1, <<"x">>}'),
    "string": (lambda: snowg.exit("oops"), '<<"oops">>'),
    "crash": (_raise, '{python_error, <<"ValueError">>, <<"boom">>, Tb} when is_binary(Tb)'),
}


def py_target() -> None:
    """Wait for ``{go, Ending}`` (from Erlang), then end as :data:`PYTHON_ENDINGS` says."""
    msg = snowg.receive(lambda m: type(m) is tuple and len(m) == 2 and m[0] == "go")
    PYTHON_ENDINGS[str(msg[1])][0]()


def waiter() -> None:
    snowg.receive(lambda m: m == "stop")


# ------------------------------------------------------------------ helpers


def ready(erlang_node, from_python: bool = True):
    """A BEAM node connected to the test's node, with ``Target`` bound and its REPL registered as ``repl``."""
    beam = erlang_node.beam()
    if from_python:
        assert snowg.erlang.connect(beam.node) is True
    else:
        assert beam.eval(f"net_adm:ping('{erlang_node.name}')") == Atom("pong")
    beam.eval(TARGET)
    beam.eval("register(repl, self())")
    return beam


def erl_recv(beam, pattern: str, result: str, timeout: float = 10.0) -> Any:
    """In the REPL process: the value of ``result`` for the first message matching ``pattern``, or ``timeout``.

    Variables of ``pattern`` bound by earlier evaluations must match; the others stay local.
    """
    ms = int(timeout * 1000)
    return beam.eval(
        f"(fun() -> receive {pattern} -> {result} after {ms} -> {{timeout, process_info(self(), messages)}} end end)()",
        timeout=timeout + 5,
    )


def matches(beam, value_var: str, pattern: str) -> str:
    """Erlang code: ``true`` when ``value_var`` matches ``pattern``, else ``{mismatch, Value}``."""
    return f"case {value_var} of {pattern} -> true; _ -> {{mismatch, {value_var}}} end"


def fence(beam, me) -> None:
    """Everything the BEAM node sent before now has reached this node (one message behind it, on the same wire)."""
    beam.eval(f"({beam.literal(me)}) ! fence_from_erlang")
    recv(lambda m: m == "fence_from_erlang")


def is_exit(pid) -> Callable[[Any], bool]:
    return lambda m: type(m) is Exit and m.pid == pid


# ------------------------------------------------------------------ links


@pytest.mark.parametrize("ending", list(ERLANG_ENDINGS))
def test_python_links_to_an_erlang_process(erlang_node, trapping_me, ending):
    beam = ready(erlang_node)
    target = beam.eval("spawn(Target)")
    snowg.link(target)
    snowg.send(target, (Atom("go"), ERLANG_ENDINGS[ending][0]))
    msg = recv(is_exit(target))
    check_erlang_reason(ending, msg.reason)


@pytest.mark.parametrize("ending", ["normal", "crash"])
def test_a_non_trapping_python_process_dies_with_its_erlang_link(erlang_node, me, ending):
    beam = ready(erlang_node)
    target = beam.eval("spawn(Target)")

    def linked() -> None:
        snowg.link(target)
        snowg.send(me, "linked")
        snowg.receive(lambda m: m == "stop")

    pid = snowg.spawn(linked)
    ref = snowg.monitor(pid)
    recv(lambda m: m == "linked")
    snowg.send(target, (Atom("go"), ERLANG_ENDINGS[ending][0]))
    # the target's end reached this node: a monitor of it (set after the link) fires
    recv(is_down(snowg.monitor(target)))
    fence(beam, me)
    if ending == "normal":
        no_message(is_down(ref))
        assert snowg.is_alive(pid)
        snowg.send(pid, "stop")
        assert recv(is_down(ref)).reason == "normal"
    else:
        check_erlang_reason(ending, recv(is_down(ref)).reason)


@pytest.mark.parametrize("ending", list(PYTHON_ENDINGS))
def test_erlang_links_to_a_python_process(erlang_node, me, ending):
    beam = ready(erlang_node, from_python=False)
    pid = snowg.spawn(py_target)
    beam.eval(f"process_flag(trap_exit, true), P = {beam.literal(pid)}, link(P), P ! {{go, {ending}}}")
    assert erl_recv(beam, "{'EXIT', P, Why}", matches(beam, "Why", PYTHON_ENDINGS[ending][1])) is True


def test_a_non_trapping_erlang_process_dies_with_its_python_link(erlang_node, me):
    beam = ready(erlang_node)
    pid = snowg.spawn(py_target)
    beam.eval(f"P = {beam.literal(pid)}")
    beam.eval("{L, M} = spawn_monitor(fun() -> link(P), repl ! linked, receive never -> ok end end)")
    assert erl_recv(beam, "linked", "ok") == "ok"
    beam.eval("P ! {go, crash}")
    assert erl_recv(beam, "{'DOWN', M, process, L, Why}", matches(beam, "Why", PYTHON_ENDINGS["crash"][1])) is True
    # and a normal end does not take a linked Erlang process with it
    pid2 = snowg.spawn(py_target)
    beam.eval(f"P2 = {beam.literal(pid2)}")
    beam.eval("{L2, M2} = spawn_monitor(fun() -> link(P2), repl ! linked2, receive stop -> ok end end)")
    assert erl_recv(beam, "linked2", "ok") == "ok"
    beam.eval("M3 = erlang:monitor(process, P2), P2 ! {go, normal}")
    assert erl_recv(beam, "{'DOWN', M3, process, P2, Why}", "Why") == "normal"
    assert beam.eval("is_process_alive(L2)") is True
    beam.eval("L2 ! stop")
    assert erl_recv(beam, "{'DOWN', M2, process, L2, Why}", "Why") == "normal"


# ------------------------------------------------------------------ monitors


@pytest.mark.parametrize("ending", list(ERLANG_ENDINGS))
@pytest.mark.parametrize("by", ["pid", "name"])
def test_python_monitors_an_erlang_process(erlang_node, me, ending, by):
    beam = ready(erlang_node)
    target = beam.eval("register(tgt, T = spawn(Target)), T")
    ref = snowg.monitor(target if by == "pid" else ("tgt", beam.node))
    snowg.send(target, (Atom("go"), ERLANG_ENDINGS[ending][0]))
    down = recv(is_down(ref))
    assert down.pid == (target if by == "pid" else ("tgt", beam.node))
    check_erlang_reason(ending, down.reason)


@pytest.mark.parametrize("ending", list(PYTHON_ENDINGS))
@pytest.mark.parametrize("by", ["pid", "name"])
def test_erlang_monitors_a_python_process(erlang_node, me, ending, by):
    beam = ready(erlang_node, from_python=False)
    pid = snowg.spawn(py_target)
    snowg.register("pytarget", pid)
    beam.eval(f"P = {beam.literal(pid)}")
    target = "P" if by == "pid" else f"{{pytarget, '{erlang_node.name}'}}"
    beam.eval(f"M = erlang:monitor(process, {target}), P ! {{go, {ending}}}")
    result = erl_recv(beam, f"{{'DOWN', M, process, {target}, Why}}", matches(beam, "Why", PYTHON_ENDINGS[ending][1]))
    assert result is True


def test_demonitor_from_python_and_from_erlang(erlang_node, me):
    beam = ready(erlang_node)
    target = beam.eval("spawn(Target)")
    ref = snowg.monitor(target)
    snowg.demonitor(ref)
    ref2 = snowg.monitor(target)
    snowg.send(target, (Atom("go"), Atom("normal")))
    assert recv(is_down(ref2)).reason == "normal"
    fence(beam, me)
    no_message(is_down(ref))
    # Erlang demonitors a Python process
    pid = snowg.spawn(py_target)
    beam.eval(f"P = {beam.literal(pid)}, M = erlang:monitor(process, P), true = erlang:demonitor(M)")
    beam.eval("M2 = erlang:monitor(process, P), P ! {go, normal}")
    assert erl_recv(beam, "{'DOWN', M2, process, P, Why}", "Why") == "normal"
    snowg.send(("repl", beam.node), Atom("fence_from_python"))
    assert erl_recv(beam, "fence_from_python", "ok") == "ok"
    assert erl_recv(beam, "{'DOWN', M, _, _, _}", "got_down", timeout=0) == ("timeout", ("messages", []))


# ------------------------------------------------------------------ noproc


def dead_erlang_pid(beam):
    return beam.eval(
        "(fun() -> {D, Mr} = spawn_monitor(fun() -> ok end), receive {'DOWN', Mr, _, _, _} -> D end end)()"
    )


def dead_python_pid():
    pid = snowg.spawn(lambda: None)
    ref = snowg.monitor(pid)
    recv(is_down(ref))
    return pid


def test_noproc_from_python(erlang_node, trapping_me):
    beam = ready(erlang_node)
    dead = dead_erlang_pid(beam)
    ref = snowg.monitor(dead)
    assert recv(is_down(ref)) == Down(ref, dead, "noproc")
    ref = snowg.monitor(("nobody", beam.node))
    assert recv(is_down(ref)) == Down(ref, ("nobody", beam.node), "noproc")
    snowg.link(dead)
    assert recv(is_exit(dead)) == Exit(dead, "noproc")


def test_noproc_from_erlang(erlang_node, me):
    beam = ready(erlang_node, from_python=False)
    dead = dead_python_pid()
    beam.eval(f"process_flag(trap_exit, true), D = {beam.literal(dead)}")
    beam.eval("M1 = erlang:monitor(process, D)")
    assert erl_recv(beam, "{'DOWN', M1, process, D, Why}", "Why") == "noproc"
    beam.eval(f"M2 = erlang:monitor(process, {{nobody, '{erlang_node.name}'}})")
    assert erl_recv(beam, f"{{'DOWN', M2, process, {{nobody, '{erlang_node.name}'}}, Why}}", "Why") == "noproc"
    beam.eval("link(D)")
    assert erl_recv(beam, "{'EXIT', D, Why}", "Why") == "noproc"


# ------------------------------------------------------------------ exit/2


def test_python_sends_exit_signals_to_erlang(erlang_node, trapping_me):
    beam = ready(erlang_node)
    # a trapping Erlang process gets {'EXIT', From, Reason}, the reason as the atom
    beam.eval(
        "Tr = spawn(fun() -> process_flag(trap_exit, true), repl ! trapping, receive M -> repl ! {got, M} end end)"
    )
    assert erl_recv(beam, "trapping", "ok") == "ok"
    trapper = beam.eval("Tr")
    snowg.exit(trapper, "normal")
    assert erl_recv(beam, "{got, Got}", "Got") == (Atom("EXIT"), trapping_me, "normal")
    assert erl_recv(beam, "{got, Got}", "Got", timeout=0)[0] == "timeout"
    # a non-trapping one ignores 'normal' and dies of anything else, 'kill' as killed
    for reason, expected in [(Atom("bye"), "bye"), ("shutdown", "shutdown"), ("kill", "killed"), ("text", "text")]:
        target = beam.eval("spawn(Target)")
        ref = snowg.monitor(target)
        snowg.exit(target, "normal")
        snowg.exit(target, reason)
        down = recv(is_down(ref))
        assert down.reason == expected
        assert type(down.reason) is (str if expected == "text" else Atom)


def test_erlang_sends_exit_signals_to_python(erlang_node, me):
    beam = ready(erlang_node, from_python=False)
    repl = beam.eval("self()")
    # trapping: Exit(sender, reason), atoms equal to the strings
    got = []

    def trapper() -> None:
        snowg.trap_exit(True)
        snowg.send(me, "trapping")
        got.append(snowg.receive(lambda m: type(m) is Exit))
        snowg.receive(lambda m: m == "stop")

    pid = snowg.spawn(trapper)
    recv(lambda m: m == "trapping")
    beam.eval(f"P = {beam.literal(pid)}, exit(P, normal), exit(P, bye)")
    wait_until(lambda: len(got) == 1, "the Exit of exit(P, normal)")
    assert got[0] == Exit(repl, "normal")
    ref = snowg.monitor(pid)
    # kill cannot be trapped: killed
    beam.eval("exit(P, kill)")
    assert recv(is_down(ref)).reason == "killed"
    # a non-trapping process: 'normal' ignored, anything else ends it
    pid2 = snowg.spawn(waiter)
    ref2 = snowg.monitor(pid2)
    beam.eval(f"P2 = {beam.literal(pid2)}, exit(P2, normal), exit(P2, {{shutdown, why}})")
    assert recv(is_down(ref2)).reason == ("shutdown", Atom("why"))


# ------------------------------------------------------------------ unlink


def test_after_unlink_no_exit_arrives_either_way(erlang_node, trapping_me):
    beam = ready(erlang_node)
    target = beam.eval("spawn(Target)")
    snowg.link(target)
    snowg.unlink(target)
    ref = snowg.monitor(target)
    snowg.send(target, (Atom("go"), Atom("crash")))
    recv(is_down(ref))
    fence(beam, trapping_me)
    no_message(is_exit(target))
    # Erlang links, unlinks (UNLINK_ID), then the Python process crashes
    pid = snowg.spawn(py_target)
    beam.eval(f"process_flag(trap_exit, true), P = {beam.literal(pid)}, link(P), unlink(P)")
    beam.eval("M = erlang:monitor(process, P), P ! {go, crash}")
    assert erl_recv(beam, "{'DOWN', M, process, P, _}", "ok") == "ok"
    snowg.send(("repl", beam.node), Atom("fence_from_python"))
    assert erl_recv(beam, "fence_from_python", "ok") == "ok"
    assert erl_recv(beam, "{'EXIT', P, _}", "got_exit", timeout=0)[0] == "timeout"


def test_links_after_an_unlink_still_work(erlang_node, trapping_me):
    beam = ready(erlang_node)
    target = beam.eval("spawn(Target)")
    for _ in range(3):
        snowg.link(target)
        snowg.unlink(target)
    snowg.link(target)
    snowg.send(target, (Atom("go"), Atom("bye")))
    assert recv(is_exit(target)) == Exit(target, "bye")


# ------------------------------------------------------------------ lost nodes


def test_kill_9_of_the_beam_gives_noconnection(erlang_node, trapping_me):
    beam = ready(erlang_node)
    linked = beam.eval("spawn(Target)")
    monitored = beam.eval("register(tgt, T = spawn(Target)), T")
    snowg.link(linked)
    ref_pid = snowg.monitor(monitored)
    ref_name = snowg.monitor(("tgt", beam.node))
    bystander = snowg.spawn(waiter)
    ref_bystander = snowg.monitor(bystander)

    def link_bystander() -> None:
        snowg.link(linked)
        snowg.send(me_pid, "linked")
        snowg.receive(lambda m: m == "stop")

    me_pid = trapping_me
    linker = snowg.spawn(link_bystander)
    ref_linker = snowg.monitor(linker)
    recv(lambda m: m == "linked")
    beam.kill()
    assert recv(is_exit(linked)) == Exit(linked, "noconnection")
    assert recv(is_down(ref_pid)) == Down(ref_pid, monitored, "noconnection")
    assert recv(is_down(ref_name)) == Down(ref_name, ("tgt", beam.node), "noconnection")
    assert recv(is_down(ref_linker)).reason == "noconnection"
    wait_until(lambda: beam.node not in snowg.erlang.nodes(), "the BEAM node to be gone from snowg.erlang.nodes()")
    assert snowg.is_alive(bystander)
    no_message(is_down(ref_bystander))
    snowg.send(bystander, "stop")


def test_kill_9_of_the_python_node_gives_noconnection(peers, beam_factory, transport):
    peer = peers.start(modules=["distfuncs"], extra_args=["--erlang", transport])
    keeper = peer.rpc(distfuncs.start_registered, "keeper")
    beam = beam_factory.start(tls=transport == "tls")
    assert beam.eval(f"net_adm:ping('{peer.name}')") == Atom("pong")
    beam.eval("register(repl, self()), process_flag(trap_exit, true)")
    beam.eval(f"K = {beam.literal(keeper)}, link(K), M1 = erlang:monitor(process, K)")
    beam.eval(f"M2 = erlang:monitor(process, {{keeper, '{peer.name}'}})")
    peer.kill()
    assert erl_recv(beam, "{'EXIT', K, Why}", "Why") == "noconnection"
    assert erl_recv(beam, "{'DOWN', M1, process, K, Why}", "Why") == "noconnection"
    assert erl_recv(beam, f"{{'DOWN', M2, process, {{keeper, '{peer.name}'}}, Why}}", "Why") == "noconnection"
    assert beam.eval("nodes(hidden)") == []


# ------------------------------------------------------------------ :global


def test_global_register_name_of_a_python_process_from_erlang(erlang_node, me):
    beam = ready(erlang_node, from_python=False)
    pid = snowg.spawn(lambda: snowg.send(me, ("got", snowg.receive())))
    beam.eval(f"P = {beam.literal(pid)}")
    assert beam.eval("global:register_name(py, P)") == "yes"
    assert beam.eval("global:whereis_name(py) =:= P") is True
    beam.eval("global:send(py, hello)")
    assert recv(lambda m: type(m) is tuple and m[0] == "got") == ("got", Atom("hello"))
    # the process ended: global's monitor removes the name
    wait_until(lambda: beam.eval("global:whereis_name(py)") is None, "global to drop the name of the ended process")
    assert beam.eval("global:registered_names()") == []


def test_global_register_name_of_a_python_process_from_elixir(erlang_node, me):
    if available(elixir=True) is not None:
        pytest.skip(f"ELIXIR IS NOT INSTALLED: {available(elixir=True)}")
    beam = erlang_node.beam(elixir=True)
    assert beam.eval(f':net_adm.ping(:"{erlang_node.name}")') == Atom("pong")
    pid = snowg.spawn(lambda: snowg.send(me, ("got", snowg.receive())))
    beam.eval(f"p = {beam.literal(pid)}")
    assert beam.eval(":global.register_name(:py, p)") == "yes"
    assert beam.eval(":global.whereis_name(:py) === p") is True
    beam.eval(':global.send(:py, {:hello, "from elixir"})')
    assert recv(lambda m: type(m) is tuple and m[0] == "got") == ("got", (Atom("hello"), "from elixir"))
    wait_until(lambda: beam.eval(":global.whereis_name(:py)") is None, "global to drop the name of the ended process")
