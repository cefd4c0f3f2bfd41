"""The BEAM's side of the local benchmarks (``local.py``, ``gen_server.py``): one compiled module, one ``erl``.

The node is not distributed and runs one scheduler (``+S 1``), as snowg runs
its processes on one thread. It reads commands from its standard input and
prints ``result <figure>`` (a rate per second) for each:

* ``{call, N}``: ``gen_server:call`` to an echo ``gen_server`` N times (the
  default timeout, 5 s, as ``snowg.call``'s);
* ``{pingpong, N}``: N round trips of raw ``!``/``receive`` between two
  processes (the caller sends its pid, the echo answers ``pong``);
* ``{spawn_exit, N}``: spawn N processes that return at once, and wait until
  all have ended (a process spawned last tells; on one scheduler the run
  queue is in spawn order, as snowg's);
* ``{ring, R, L}``: a token passed R * L times around a ring of R processes.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Optional

from _beam import Beam, compile_module, missing_tools, otp_release

MODULE = """
-module(snowg_local_bench).
-behaviour(gen_server).
-export([main/0, init/1, handle_call/3, handle_cast/2]).

init([]) -> {ok, nostate}.
handle_call(Req, _From, State) -> {reply, Req, State}.
handle_cast(_Req, State) -> {noreply, State}.

main() ->
    {ok, Srv} = gen_server:start(?MODULE, [], []),
    Echo = spawn(fun echo/0),
    io:format("ready~n"),
    loop(Srv, Echo).

loop(Srv, Echo) ->
    case io:read('') of
        {ok, {call, N}} -> T0 = now_ns(), calls(Srv, N), result(N, T0), loop(Srv, Echo);
        {ok, {pingpong, N}} -> T0 = now_ns(), ping(Echo, N), result(N, T0), loop(Srv, Echo);
        {ok, {spawn_exit, N}} -> spawn_exit(N), loop(Srv, Echo);
        {ok, {ring, R, L}} -> ring(R, L), loop(Srv, Echo);
        _ -> halt()
    end.

calls(_, 0) -> ok;
calls(Srv, K) -> K = gen_server:call(Srv, K), calls(Srv, K - 1).

echo() -> receive From -> From ! pong, echo() end.

ping(_, 0) -> ok;
ping(Echo, K) -> Echo ! self(), receive pong -> ping(Echo, K - 1) end.

noop() -> ok.

spawn_exit(N) ->
    Me = self(),
    T0 = now_ns(),
    spawn_n(N),
    spawn(fun() -> Me ! done end),
    receive done -> ok end,
    result(N, T0).

spawn_n(0) -> ok;
spawn_n(K) -> spawn(fun noop/0), spawn_n(K - 1).

ring(R, L) ->
    Me = self(),
    Pids = [spawn(fun() -> ring_node(Me) end) || _ <- lists:seq(1, R)],
    [First | _] = Pids,
    lists:foreach(fun({P, Next}) -> P ! {next, Next} end, lists:zip(Pids, tl(Pids) ++ [First])),
    Hops = R * L,
    T0 = now_ns(),
    First ! Hops,
    receive done -> ok end,
    result(Hops, T0),
    First ! stop.

ring_node(Me) -> receive {next, Next} -> ring_node(Me, Next) end.

ring_node(Me, Next) ->
    receive
        stop -> Next ! stop_from_ring, ok;
        stop_from_ring -> Next ! stop_from_ring, ok;
        0 -> Me ! done, ring_node(Me, Next);
        K -> Next ! K - 1, ring_node(Me, Next)
    end.

now_ns() -> erlang:monotonic_time(nanosecond).

result(N, T0) -> io:format("result ~f~n", [N / (now_ns() - T0) * 1.0e9]).
"""


class LocalBeam:
    """The compiled module in a temporary directory and one ``erl`` running it; ``close`` kills and removes both."""

    def __init__(self) -> None:
        self.release = otp_release()
        self.dir = tempfile.mkdtemp(prefix="snowg-local-beam-")
        try:
            compile_module(self.dir, "snowg_local_bench", MODULE)
            self.beam = Beam(
                "snowg_local_bench:main().",
                self.dir,
                dict(os.environ),
                dist_args=["+S", "1"],
            )
        except BaseException:
            shutil.rmtree(self.dir, ignore_errors=True)
            raise

    def call(self, n: int) -> float:
        """``gen_server:call`` round trips per second."""
        return self.beam.command(f"{{call, {n}}}")

    def pingpong(self, n: int) -> float:
        """Raw ``!``/``receive`` round trips per second."""
        return self.beam.command(f"{{pingpong, {n}}}")

    def spawn_exit(self, n: int) -> float:
        """Processes spawned and ended per second."""
        return self.beam.command(f"{{spawn_exit, {n}}}")

    def ring(self, size: int, laps: int) -> float:
        """Hops per second of a token around a ring of ``size`` processes."""
        return self.beam.command(f"{{ring, {size}, {laps}}}")

    def close(self) -> None:
        self.beam.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


def start_local_beam(reason_out: list) -> Optional[LocalBeam]:
    """The BEAM for the local rows, or None (with the reason appended to ``reason_out``) when ``erl`` is missing."""
    missing = missing_tools(("erl", "erlc"))
    if missing:
        reason_out.append(f"{', '.join(missing)} not installed, skipped")
        return None
    return LocalBeam()
