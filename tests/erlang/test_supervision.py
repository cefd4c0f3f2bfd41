"""Supervision across snowg and the BEAM, against real ``erl``/``elixir``.

* A snowg supervisor keeps a child on a BEAM node
  (``ChildSpec(id, ("mod:fun", [args]), node=beam)``): the Erlang process is
  restarted (a new pid) when it crashes, and stopped with ``exit(Pid,
  shutdown)`` (``'shutdown'``), or killed after the shutdown time when it
  traps exits and stays (``'killed'``).
* An Erlang ``supervisor`` and an Elixir ``Supervisor`` keep a Python child,
  started as documented (``{erlang, apply, [fun() -> {ok,
  spawn_link(PyNode, mod, fun, Args)} end, []]}``): restarted when it
  crashes, stopped by ``terminate_child`` with ``'shutdown'``, or killed
  after the shutdown time.

Over plain TCP and ``inet_tls_dist``; every BEAM OS process is killed at the
end of its test.
"""

from __future__ import annotations

from typing import Any

from beam import skip_unless_beam, skip_unless_elixir
from support import is_down, recv, tagged
from test_services import compile_erlang, connected_beam

import snowg
import snowg.erlang
from snowg import Atom
from snowg.supervisor import ChildSpec, count_children, which_children

pytestmark = [skip_unless_beam]
TIME_LIMIT = 120

A = Atom


# ------------------------------------------------------------- Python children of BEAM supervisors


@snowg.spawnable("pychild:run")
def run(tag: Any, to: snowg.Pid) -> None:
    snowg.send(to, ("child_started", tag, snowg.self()))
    while True:
        if snowg.receive() == "crash":
            raise RuntimeError("asked to crash")


@snowg.spawnable("pychild:stubborn")
def stubborn(tag: Any, to: snowg.Pid) -> None:
    snowg.trap_exit(True)
    snowg.send(to, ("child_started", tag, snowg.self()))
    while True:
        snowg.receive()  # an Exit('shutdown') too: it stays until it is killed


PYSUP_SOURCE = """
-module(pysup).
-behaviour(supervisor).
-export([start/3, init/1]).
start(PyNode, Fun, Args) ->
    {ok, Sup} = supervisor:start_link({local, pysup}, ?MODULE, {PyNode, Fun, Args}),
    unlink(Sup),
    Sup.
init({PyNode, Fun, Args}) ->
    Child = #{id => py,
              start => {erlang, apply, [fun() -> {ok, spawn_link(PyNode, pychild, Fun, Args)} end, []]},
              restart => permanent, shutdown => 1000, type => worker},
    {ok, {#{strategy => one_for_one, intensity => 5, period => 10}, [Child]}}.
"""


def started(tag: Any) -> snowg.Pid:
    msg = recv(tagged("child_started", tag))
    pid: snowg.Pid = msg[2]
    return pid


def test_an_erlang_supervisor_restarts_and_stops_a_python_child(erlang_node, me, tmp_path):
    beam = connected_beam(erlang_node)
    compile_erlang(beam, tmp_path, PYSUP_SOURCE)
    beam.eval(f"Me = {beam.literal(me)}, Sup = pysup:start('{erlang_node.name}', run, [a, Me])")
    first = started(A("a"))
    assert first.node == erlang_node.name and snowg.is_alive(first)
    # (not count_children: OTP's calls is_process_alive/1, which takes only local pids)
    assert beam.eval("[{py, P, worker, _}] = supervisor:which_children(pysup), P") == first
    # a crash: the supervisor gets the Python error as the exit reason and starts a new process
    snowg.send(first, "crash")
    second = started(A("a"))
    assert second != first and not snowg.is_alive(first)
    assert beam.eval("[{py, P2, worker, _}] = supervisor:which_children(pysup), P2") == second
    # terminate_child: monitor, unlink, exit(Pid, shutdown); the child ends with 'shutdown'
    ref = snowg.monitor(second)
    assert beam.eval("supervisor:terminate_child(pysup, py)") == A("ok")
    assert recv(is_down(ref)).reason == "shutdown"
    assert beam.eval("supervisor:which_children(pysup)") == [(A("py"), None, A("worker"), [A("erlang")])]
    # and back
    assert beam.eval("{ok, P3} = supervisor:restart_child(pysup, py), P3") == started(A("a"))


def test_an_erlang_supervisor_kills_a_python_child_that_stays_after_shutdown(erlang_node, me, tmp_path):
    beam = connected_beam(erlang_node)
    compile_erlang(beam, tmp_path, PYSUP_SOURCE)
    beam.eval(f"Me = {beam.literal(me)}, Sup = pysup:start('{erlang_node.name}', stubborn, [b, Me])")
    child = started(A("b"))
    ref = snowg.monitor(child)
    assert beam.eval("supervisor:terminate_child(pysup, py)") == A("ok")
    assert recv(is_down(ref)).reason == "killed"
    # the whole supervisor stops the same way
    restarted = beam.eval("{ok, P} = supervisor:restart_child(pysup, py), P")
    child2 = started(A("b"))
    assert restarted == child2 != child
    ref2 = snowg.monitor(child2)
    assert beam.eval("gen_server:stop(pysup)") == A("ok")
    assert recv(is_down(ref2)).reason == "killed"


@skip_unless_elixir
def test_an_elixir_supervisor_restarts_and_stops_a_python_child(erlang_node, me):
    beam = connected_beam(erlang_node, elixir=True)
    beam.eval(
        f'me = {beam.literal(me)}; py = :"{erlang_node.name}"\n'
        "children = [%{id: :py, shutdown: 1000, start: {Kernel, :apply, "
        "[fn -> {:ok, Node.spawn_link(py, :pychild, :run, [:ex, me])} end, []]}}]\n"
        "{:ok, sup} = Supervisor.start_link(children, strategy: :one_for_one, name: :pysup)\n"
        "Process.unlink(sup)"
    )
    first = started(A("ex"))
    snowg.send(first, "crash")
    second = started(A("ex"))
    assert second != first and not snowg.is_alive(first)
    assert beam.eval("[{:py, p, :worker, _}] = Supervisor.which_children(:pysup); p") == second
    ref = snowg.monitor(second)
    assert beam.eval("Supervisor.stop(:pysup)") == A("ok")
    assert recv(is_down(ref)).reason == "shutdown"


# ------------------------------------------------------------- BEAM children of a snowg supervisor


WORKER_SOURCE = """
-module(worker).
-export([start/1, stubborn/1]).
start(To) -> To ! {started, self()}, loop().
loop() -> receive crash -> exit(crashed); _ -> loop() end.
stubborn(To) -> process_flag(trap_exit, true), To ! {started, self()}, receive never -> ok end.
"""


def test_a_snowg_supervisor_restarts_and_stops_an_erlang_child(erlang_node, trapping_me, tmp_path):
    beam = connected_beam(erlang_node)
    compile_erlang(beam, tmp_path, WORKER_SOURCE)
    spec = ChildSpec("w", ("worker:start", [trapping_me]), node=beam.node, shutdown=5.0)
    sup = snowg.supervisor.start_link([spec], intensity=3)
    first = recv(tagged("started"))[1]
    assert type(first) is snowg.Pid and first.node == beam.node
    assert which_children(sup) == [("w", first, "worker")]
    assert count_children(sup)["active"] == 1
    # the Erlang process crashes: a new one, on the same node
    snowg.send(first, A("crash"))
    second = recv(tagged("started"))[1]
    assert second != first and second.node == beam.node
    assert which_children(sup) == [("w", second, "worker")]
    beam.eval(f"First = {beam.literal(first)}, Second = {beam.literal(second)}")
    assert beam.eval("{is_process_alive(First), is_process_alive(Second)}") == (False, True)
    # the supervisor ends (its parent's exit signal): the child gets exit(Pid, shutdown)
    ref = snowg.monitor(second)
    snowg.exit(sup, "shutdown")
    assert recv(is_down(ref)).reason == "shutdown"
    assert recv(lambda m: type(m) is snowg.Exit and m.pid == sup).reason == "shutdown"


def test_a_snowg_supervisor_kills_an_erlang_child_that_stays_after_shutdown(erlang_node, trapping_me, tmp_path):
    beam = connected_beam(erlang_node)
    compile_erlang(beam, tmp_path, WORKER_SOURCE)
    spec = ChildSpec("s", ("worker:stubborn", [trapping_me]), node=beam.node, shutdown=1.0)
    sup = snowg.supervisor.start_link([spec])
    child = recv(tagged("started"))[1]
    ref = snowg.monitor(child)
    snowg.supervisor.terminate_child(sup, "s")
    assert recv(is_down(ref)).reason == "killed"
    assert count_children(sup)["active"] == 0
    snowg.exit(sup, "shutdown")
    assert recv(lambda m: type(m) is snowg.Exit and m.pid == sup).reason == "shutdown"


def test_a_snowg_supervisor_connects_to_the_beam_node_of_its_child(erlang_node, trapping_me, tmp_path):
    beam = erlang_node.beam()  # not connected: the supervisor's start connects
    compile_erlang(beam, tmp_path, WORKER_SOURCE)
    assert snowg.erlang.nodes() == []
    spec = ChildSpec("w", ("worker:start", [trapping_me]), node=beam.node, shutdown=5.0)
    sup = snowg.supervisor.start_link([spec])
    child = recv(tagged("started"))[1]
    assert child.node == beam.node and snowg.erlang.nodes() == [beam.node]
    assert which_children(sup) == [("w", child, "worker")]
    snowg.exit(sup, "shutdown")
    assert recv(lambda m: type(m) is snowg.Exit and m.pid == sup).reason == "shutdown"
