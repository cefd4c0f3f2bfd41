"""The distribution flags, framing and version-6 handshake: alone, fuzzed, and against a real ``erl``.

The sans-IO machines are run against each other (every status, whole and
one byte at a time), against hand-made bytes (the version-5 ``n``, missing
flags, a wrong cookie, a long name), and against random bytes (hypothesis:
only ``ErlangProtocolError`` may escape). Then :mod:`erl_driver` puts them
on a socket beside a real ``erl -sname`` with Erlang's ``epmd`` on a free
port: ``erl`` dials snowg, snowg dials ``erl`` and both keep the connection
up over ticks (``net_ticktime`` 4), and a wrong cookie is refused on both
sides. Those tests skip with the reason when ``erl`` is not installed; each
``erl`` halts itself, is bounded in time and is killed at the end.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket as stdsocket
import struct
from typing import Callable, Dict, Iterator, List, Optional, Tuple, Union

import gevent
import pytest
from epmdsupport import erlang_epmd
from erl_driver import accept_one, dial
from gevent import socket, subprocess
from hypothesis import given, settings
from hypothesis import strategies as st

from snowg._errors import NodeError
from snowg.cluster._epmd_client import port_please, register
from snowg.erlang import _dist_handshake as hs
from snowg.erlang import _flags
from snowg.erlang._dist_framing import TICK, Deframer, Ticker, frame
from snowg.erlang._errors import ErlangProtocolError

TIME_LIMIT = 120

A = "alice@host"
B = "bob@host"


# ------------------------------------------------------------------ flags


def test_offered_flags_are_what_otp_25_requires_and_hidden():
    _flags.check_peer(_flags.OFFERED, "self")
    assert _flags.OFFERED & _flags.MANDATORY_25 == _flags.MANDATORY_25
    assert not _flags.OFFERED & _flags.DFLAG_PUBLISHED
    for name in ("V4_NC", "UNLINK_ID", "DIST_MONITOR", "DIST_MONITOR_NAME", "EXIT_PAYLOAD", "SEND_SENDER", "SPAWN"):
        assert name in _flags.names(_flags.OFFERED)
    assert "ALIAS" in _flags.names(_flags.OFFERED) and "MANDATORY_25_DIGEST" in _flags.names(_flags.OFFERED)
    assert _flags.OFFERED < 1 << 64
    # the values of OTP's dist.hrl
    assert (_flags.DFLAG_HANDSHAKE_23, _flags.DFLAG_MANDATORY_25_DIGEST) == (0x1000000, 0x4000000)
    assert (_flags.DFLAG_SPAWN, _flags.DFLAG_V4_NC, _flags.DFLAG_ALIAS) == (1 << 32, 1 << 34, 1 << 35)


def test_missing_mandatory_flags_are_named():
    flags = _flags.MANDATORY_25 & ~(_flags.DFLAG_UTF8_ATOMS | _flags.DFLAG_BIG_CREATION)
    with pytest.raises(
        ErlangProtocolError, match="old@host lacks mandatory distribution flags: UTF8_ATOMS, BIG_CREATION"
    ):
        _flags.check_peer(flags, "old@host")
    _flags.check_peer(_flags.DFLAG_MANDATORY_25_DIGEST, "new@host")  # the digest bit stands for them all
    assert issubclass(ErlangProtocolError, NodeError)


def test_flag_names_for_logs():
    assert _flags.names(0x5) == ["PUBLISHED", "EXTENDED_REFERENCES"]
    assert _flags.names(1 << 63) == ["bit63"]
    assert _flags.describe(0) == "0x0 (none)"


# ---------------------------------------------------------------- framing


@pytest.mark.parametrize("size", [2, 4])
def test_framing_whole_and_byte_at_a_time(size):
    payloads = [b"abc", b"", b"x" * 300, b"\x00"]
    stream = b"".join(frame(p, size) for p in payloads)
    whole = Deframer(size, 1000)
    whole.receive_data(stream)
    assert whole.messages() == payloads
    slow = Deframer(size, 1000)
    got = []
    for i in range(len(stream)):
        slow.receive_data(stream[i : i + 1])
        got.extend(slow.messages())
    assert got == payloads and slow.pending == b""


def test_framing_bounds_and_ticks():
    d = Deframer(4, 10, "connection to bob@host")
    d.receive_data(TICK + frame(b"y" * 11))
    assert d.next_message() == b""  # a tick
    with pytest.raises(ErlangProtocolError, match="bob@host: message length 11 is over the bound of 10"):
        d.next_message()
    with pytest.raises(ValueError):
        frame(b"z" * 65536, 2)
    with pytest.raises(ValueError):
        Deframer(3)


def test_ticker_ticks_on_silence_in_sending_even_while_receiving():
    t = Ticker(4.0, now=100.0)
    assert not t.tick_due(100.9) and t.wait(100.0) == 1.0
    t.received(100.5)  # receiving does not put off our tick
    assert t.tick_due(101.0)
    t.sent(101.0)
    assert not t.tick_due(101.5) and t.wait(101.5) == 0.5
    assert not t.peer_lost(104.4) and t.peer_lost(104.5)  # silent for a whole tick time since 100.5
    t.received(104.4)
    assert not t.peer_lost(108.3)
    with pytest.raises(ValueError):
        Ticker(0, now=0)


@given(st.lists(st.binary(max_size=40), max_size=8), st.integers(1, 7))
@settings(max_examples=200, deadline=None)
def test_framing_any_split(payloads, step):
    stream = b"".join(frame(p) for p in payloads)
    d = Deframer(4, 100)
    got = []
    for i in range(0, len(stream), step):
        d.receive_data(stream[i : i + step])
        got.extend(d.messages())
    assert got == payloads


# ---------------------------------------------------------------- handshake, sans-IO

Machine = Union[hs.Initiator, hs.Acceptor]


def feed(machine: Machine, data: bytes, step: Optional[int], react: Callable[[object], bytes]) -> Tuple[bytes, list]:
    """Give ``data`` to ``machine`` (whole, or ``step`` bytes at a time); its events, and what ``react`` sends."""
    out = b""
    events = []
    pieces = [data] if step is None else [data[i : i + step] for i in range(0, len(data), step)] or [b""]
    for piece in pieces:
        machine.receive_data(piece)
        while True:
            event = machine.next_event()
            if event is hs.NEED_DATA:
                break
            events.append(event)
            out += react(event)
    return out, events


def converse(
    ini: hs.Initiator,
    acc: hs.Acceptor,
    *,
    step: Optional[int] = None,
    status: Optional[hs.SendStatus] = None,
    alive_answer: bool = True,
) -> Tuple[List[object], List[object]]:
    """Run both roles against each other; the events of each."""

    def ini_react(event: object) -> bytes:
        if isinstance(event, hs.StatusReceived) and event.status == "alive":
            return ini.send(hs.AliveAnswer(alive_answer))
        if isinstance(event, hs.ChallengeReceived):
            return ini.send(hs.SendChallengeReply())
        return b""

    def acc_react(event: object) -> bytes:
        if isinstance(event, hs.NameReceived):
            return acc.send(status or hs.SendStatus("ok"))
        if isinstance(event, hs.AliveAnswer) and event.proceed:
            return acc.challenge_after_alive()
        if isinstance(event, hs.ReplyReceived):
            return acc.send(hs.SendChallengeAck())
        return b""

    ini_events: List[object] = []
    acc_events: List[object] = []
    to_acc = ini.send(hs.SendName())
    while to_acc:
        to_ini, evs = feed(acc, to_acc, step, acc_react)
        acc_events += evs
        to_acc, evs = feed(ini, to_ini, step, ini_react)
        ini_events += evs
    return ini_events, acc_events


def pair(
    cookie_a: str = "c", cookie_b: str = "c", *, flags_a: int = _flags.OFFERED
) -> Tuple[hs.Initiator, hs.Acceptor]:
    return (
        hs.Initiator(A, cookie_a, flags=flags_a, creation=11, challenge=1234, peer="10.0.0.2:4000"),
        hs.Acceptor(B, cookie_b, creation=22, challenge=0xFFFFFFFF, peer="10.0.0.1:5000"),
    )


@pytest.mark.parametrize("step", [None, 1, 3])
@pytest.mark.parametrize("status", ["ok", "ok_simultaneous"])
def test_both_roles_connect(step, status):
    ini, acc = pair()
    ini_events, acc_events = converse(ini, acc, step=step, status=hs.SendStatus(status))
    assert ini_events == [
        hs.StatusReceived(status),
        hs.ChallengeReceived(B, _flags.OFFERED, 22, 0xFFFFFFFF),
        hs.Connected(B, _flags.OFFERED, 22),
    ]
    assert acc_events == [
        hs.NameReceived(A, _flags.OFFERED, 11),
        hs.ReplyReceived(),
        hs.Connected(A, _flags.OFFERED, 11),
    ]
    assert ini.state is acc.state is hs.State.CONNECTED
    assert ini.trailing_data == acc.trailing_data == b""


def test_the_bytes_on_the_wire():
    ini, acc = pair()
    name = ini.send(hs.SendName())
    assert name == struct.pack(">HcQIH", 1 + 8 + 4 + 2 + len(A), b"N", _flags.OFFERED, 11, len(A)) + A.encode()
    acc.receive_data(name)
    assert isinstance(acc.next_event(), hs.NameReceived)
    status_and_challenge = acc.send(hs.SendStatus("ok"))
    challenge = struct.pack(">cQIIH", b"N", _flags.OFFERED, 0xFFFFFFFF, 22, len(B)) + B.encode()
    assert status_and_challenge == frame(b"sok", 2) + frame(challenge, 2)
    ini.receive_data(status_and_challenge)
    assert ini.next_event() == hs.StatusReceived("ok")
    assert isinstance(ini.next_event(), hs.ChallengeReceived)
    reply = ini.send(hs.SendChallengeReply())
    expected = hashlib.md5(b"c" + b"4294967295").digest()
    assert reply == frame(b"r" + struct.pack(">I", 1234) + expected, 2)
    assert hs.digest(4294967295, b"c") == expected


def test_tls_length_prefix():
    data = hs.Initiator(A, "c", length_size=4).send(hs.SendName())
    assert data[:4] == (len(data) - 4).to_bytes(4, "big") and data[4:5] == b"N"
    ini = hs.Initiator(A, "c", length_size=4)
    acc = hs.Acceptor(B, "c", length_size=4)
    ini_events, acc_events = converse(ini, acc, step=1)
    assert isinstance(ini_events[-1], hs.Connected) and isinstance(acc_events[-1], hs.Connected)


@pytest.mark.parametrize("status", ["nok", "not_allowed"])
def test_refusing_statuses(status):
    ini, acc = pair()
    ini_events, acc_events = converse(ini, acc, status=hs.SendStatus(status))
    assert ini_events == [hs.StatusReceived(status), hs.Refused(f"10.0.0.2:4000 answered {status}")]
    assert isinstance(acc_events[-1], hs.Refused)
    assert ini.state is acc.state is hs.State.CLOSED


@pytest.mark.parametrize("answer", [True, False])
def test_alive_is_the_initiators_choice(answer):
    ini, acc = pair()
    ini_events, acc_events = converse(ini, acc, status=hs.SendStatus("alive"), alive_answer=answer)
    assert ini_events[0] == hs.StatusReceived("alive")
    assert hs.AliveAnswer(answer) in acc_events
    if answer:
        assert ini.state is acc.state is hs.State.CONNECTED
    else:
        assert ini.state is acc.state is hs.State.CLOSED
        assert isinstance(ini_events[-1], hs.Refused) and isinstance(acc_events[-1], hs.Refused)


def test_named_gives_the_initiator_its_name():
    ini = hs.Initiator("host", "c", flags=_flags.OFFERED | _flags.DFLAG_NAME_ME, creation=0)
    acc = hs.Acceptor(B, "c")
    ini_events, acc_events = converse(ini, acc, status=hs.SendStatus("named:", "dyn123@host", 99))
    assert ini_events[0] == hs.StatusReceived("named:", "dyn123@host", 99)
    assert ini.name == "dyn123@host" and ini.creation == 99
    assert ini.state is acc.state is hs.State.CONNECTED


def test_the_initiator_refuses_a_node_it_did_not_dial():
    ini = hs.Initiator(A, "c", peer="10.0.0.2:4000", expect="carol@host")
    acc = hs.Acceptor(B, "c")
    with pytest.raises(ErlangProtocolError, match="10.0.0.2:4000: dialled carol@host but the node is 'bob@host'"):
        converse(ini, acc)
    ini, acc = hs.Initiator(A, "c", expect=B), hs.Acceptor(B, "c")
    assert isinstance(converse(ini, acc)[0][-1], hs.Connected)


def test_named_without_asking_is_refused():
    ini, _ = pair()
    ini.send(hs.SendName())
    ini.receive_data(frame(b"snamed:" + struct.pack(">H", 3) + b"a@b" + struct.pack(">I", 1), 2))
    with pytest.raises(ErlangProtocolError, match="named:"):
        ini.next_event()


def test_wrong_cookie_is_refused_by_the_acceptor_naming_the_peer():
    ini, acc = pair("c", "other")
    with pytest.raises(ErlangProtocolError, match=f"handshake with {A}: wrong digest: {A} has another cookie"):
        converse(ini, acc)


def test_wrong_cookie_is_refused_by_the_initiator_naming_the_peer():
    ini, acc = pair()
    acc.receive_data(ini.send(hs.SendName()))
    acc.next_event()
    ini.receive_data(acc.send(hs.SendStatus("ok")))
    ini.next_event(), ini.next_event()
    ini.send(hs.SendChallengeReply())
    ini.receive_data(frame(b"a" + hs.digest(1234, b"not the cookie"), 2))
    with pytest.raises(ErlangProtocolError, match=f"wrong digest: {B} has another cookie"):
        ini.next_event()


def test_version_5_name_is_refused_with_a_clear_error():
    acc = hs.Acceptor(B, "c", peer="10.0.0.1:5000")
    acc.receive_data(frame(b"n" + struct.pack(">HI", 5, 0x7FFFF) + A.encode(), 2))
    with pytest.raises(ErlangProtocolError, match="version-5 'n' name message refused"):
        acc.next_event()


def test_missing_flags_are_refused_naming_the_peer():
    ini, acc = pair(flags_a=_flags.MANDATORY_25 & ~_flags.DFLAG_MAP_TAG)
    with pytest.raises(ErlangProtocolError, match=f"{A} lacks mandatory distribution flags: MAP_TAG"):
        converse(ini, acc)


@pytest.mark.parametrize(
    "body, error",
    [
        (b"N" + struct.pack(">QIH", _flags.OFFERED, 1, 300) + b"x" * 300, "name length 300 is over 255"),
        (b"N" + struct.pack(">QIH", _flags.OFFERED, 1, 9) + b"ab", "truncated at name"),
        (b"N" + b"\x00" * 5, "truncated at flags"),
        (b"N" + struct.pack(">QIH", _flags.OFFERED, 1, 4) + b"nobody", "has no '@'"),
        (b"N" + struct.pack(">QIH", _flags.OFFERED, 1, 3) + b"\xff@x", "not UTF-8"),
        (b"Zzz", "unexpected tag b'Z'"),
        (b"", "empty message"),
    ],
)
def test_bad_names_are_refused(body, error):
    acc = hs.Acceptor(B, "c", peer="10.0.0.1:5000")
    acc.receive_data(frame(body, 2))
    with pytest.raises(ErlangProtocolError, match=error):
        acc.next_event()
    assert acc.state is hs.State.CLOSED
    acc.receive_data(frame(b"N" + struct.pack(">QIH", _flags.OFFERED, 1, 3) + b"a@b", 2))
    assert acc.next_event() is hs.NEED_DATA  # a broken handshake reads nothing more


def test_out_of_turn_sends_are_the_callers_mistake():
    ini, acc = pair()
    with pytest.raises(RuntimeError):
        ini.send(hs.SendChallengeReply())
    with pytest.raises(RuntimeError):
        acc.send(hs.SendChallengeAck())
    with pytest.raises(RuntimeError):
        acc.send(hs.SendName())
    ini.send(hs.SendName())
    with pytest.raises(RuntimeError):
        ini.send(hs.SendName())


def test_trailing_data_goes_to_the_connected_stream():
    ini, acc = pair()
    acc.receive_data(ini.send(hs.SendName()))
    acc.next_event()
    ini.receive_data(acc.send(hs.SendStatus("ok")))
    ini.next_event(), ini.next_event()
    acc.receive_data(ini.send(hs.SendChallengeReply()))
    assert acc.next_event() == hs.ReplyReceived()
    ini.receive_data(acc.send(hs.SendChallengeAck()) + TICK + frame(b"hello"))
    assert isinstance(ini.next_event(), hs.Connected)
    assert ini.next_event() is hs.NEED_DATA
    assert ini.trailing_data == TICK + frame(b"hello")


# ---------------------------------------------------------------- fuzzing


def run_on(machine: Machine, data: bytes, step: int, status: str = "ok") -> None:
    """Feed ``data``; answer whatever is asked as a node would. Only ErlangProtocolError may escape."""

    def react(event: object) -> bytes:
        if machine.state is hs.State.DECIDE_STATUS:
            return machine.send(hs.SendStatus(status))
        if machine.state is hs.State.DECIDE_ALIVE:
            return machine.send(hs.AliveAnswer(True))
        if machine.state is hs.State.SEND_REPLY:
            return machine.send(hs.SendChallengeReply())
        if machine.state is hs.State.SEND_ACK:
            return machine.send(hs.SendChallengeAck())
        if isinstance(event, hs.AliveAnswer) and event.proceed and isinstance(machine, hs.Acceptor):
            return machine.challenge_after_alive()
        return b""

    try:
        feed(machine, data, step, react)
    except ErlangProtocolError:
        pass


def a_transcript(to: str) -> bytes:
    """What a well-behaved peer sends to an initiator (``to='ini'``) or to an acceptor."""
    ini, acc = pair()
    to_acc = ini.send(hs.SendName())
    acc.receive_data(to_acc)
    acc.next_event()
    to_ini = acc.send(hs.SendStatus("ok"))
    ini.receive_data(to_ini)
    ini.next_event(), ini.next_event()
    reply = ini.send(hs.SendChallengeReply())
    acc.receive_data(reply)
    acc.next_event()
    ack = acc.send(hs.SendChallengeAck())
    return to_ini + ack if to == "ini" else to_acc + reply


@st.composite
def mutated(draw: st.DrawFn, to: str) -> bytes:
    data = bytearray(a_transcript(to))
    for _ in range(draw(st.integers(0, 4))):
        i = draw(st.integers(0, len(data) - 1))
        data[i] = draw(st.integers(0, 255))
    cut = draw(st.integers(0, len(data)))
    return bytes(data[:cut]) + draw(st.binary(max_size=20))


def fresh(role: str) -> Machine:
    if role == "ini":
        ini = hs.Initiator(A, "c", challenge=1234)
        ini.send(hs.SendName())
        return ini
    return hs.Acceptor(B, "c", challenge=0xFFFFFFFF)


@pytest.mark.parametrize("role", ["ini", "acc"])
@given(data=st.binary(max_size=300), step=st.integers(1, 50), status=st.sampled_from(["ok", "alive", "nok"]))
@settings(max_examples=300, deadline=None)
def test_fuzz_random_bytes(role, data, step, status):
    run_on(fresh(role), data, step, status)


@pytest.mark.parametrize("role", ["ini", "acc"])
@given(data=st.data(), step=st.integers(1, 50))
@settings(max_examples=300, deadline=None)
def test_fuzz_mutated_transcripts(role, data, step):
    run_on(fresh(role), data.draw(mutated(role)), step)


@pytest.mark.parametrize("role", ["ini", "acc"])
def test_the_unmutated_transcript_connects_byte_at_a_time(role):
    machine = fresh(role)
    _, events = feed(machine, a_transcript(role), 1, lambda e: fresh_react(machine))
    assert isinstance(events[-1], hs.Connected) and machine.state is hs.State.CONNECTED


def fresh_react(machine: Machine) -> bytes:
    if machine.state is hs.State.DECIDE_STATUS:
        return machine.send(hs.SendStatus("ok"))
    if machine.state is hs.State.SEND_REPLY:
        return machine.send(hs.SendChallengeReply())
    if machine.state is hs.State.SEND_ACK:
        return machine.send(hs.SendChallengeAck())
    return b""


# ---------------------------------------------------------------- against a real erl

needs_erl = pytest.mark.skipif(
    shutil.which("erl") is None or shutil.which("epmd") is None,
    reason="ERLANG IS NOT INSTALLED: the handshake is not checked against a real erl (apt-get install erlang-base)",
)
#: Seconds an erl may live (it halts itself sooner; it is killed at the end anyway).
ERL_LIMIT = 40
TICKTIME = 4  # net_ticktime: erl ticks every second and gives up after about 4 silent ones
HOST = stdsocket.gethostname().split(".")[0]  # what erl -sname uses
ME = f"snowgdrv@{HOST}"


@pytest.fixture
def epmd() -> Iterator[int]:
    with erlang_epmd() as port:
        yield port


def start_erl(epmd_port: int, cookie: str, script: str, env: Dict[str, str]) -> subprocess.Popen:
    """``erl -sname x`` on the test's epmd running ``script``; it halts itself after :data:`ERL_LIMIT` s."""
    code = f"timer:apply_after({ERL_LIMIT * 1000}, erlang, halt, [3]), {script}"
    return subprocess.Popen(
        [
            "erl",
            "-sname",
            "x",
            "-setcookie",
            cookie,
            "-noshell",
            "-kernel",
            "net_ticktime",
            str(TICKTIME),
            "-eval",
            code,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "ERL_EPMD_PORT": str(epmd_port), **env},
    )


def output_of(proc: subprocess.Popen) -> str:
    """All erl printed until it exits (bounded); it is killed if it overruns."""
    try:
        out, _ = proc.communicate(timeout=ERL_LIMIT + 10)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate(timeout=10)
    return out.decode("utf-8", "replace")


@pytest.fixture
def erl_procs() -> Iterator[List[subprocess.Popen]]:
    procs: List[subprocess.Popen] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()


def listen_registered(epmd_port: int):
    listener = socket.socket()
    listener.bind((stdsocket.gethostbyname(HOST), 0))
    listener.listen(1)
    registration = register("snowgdrv", listener.getsockname()[1], ME, epmd_port=epmd_port)
    return listener, registration


CONNECT_TO_ME = (
    'Peer = list_to_atom(os:getenv("SNOWG_PEER")),'
    "R = net_kernel:connect_node(Peer),"
    'io:format("connect ~p~n", [R]),'
    'io:format("hidden ~p~n", [[atom_to_list(N) || N <- nodes(hidden)]]),'
    f"timer:sleep({2 * TICKTIME * 1000 + 500}),"
    'io:format("later ~p~n", [[atom_to_list(N) || N <- nodes(hidden)]]),'
    "halt()."
)


@needs_erl
def test_erl_connects_to_the_acceptor_and_the_connection_stays_up(epmd, erl_procs):
    listener, registration = listen_registered(epmd)
    try:
        erl = start_erl(epmd, "c", CONNECT_TO_ME, {"SNOWG_PEER": ME})
        erl_procs.append(erl)
        result = accept_one(listener, ME, "c", run_for=2 * TICKTIME + 5, tick_interval=TICKTIME / 4, recv_size=1)
        out = output_of(erl)
    finally:
        registration.close()
        listener.close()
    assert result.error is None, (result.error, out)
    assert result.connected is not None and result.connected.name == f"x@{HOST}", result
    _flags.check_peer(result.connected.flags, "erl")
    assert result.connected.flags & _flags.DFLAG_PUBLISHED  # erl publishes itself; snowg does not
    assert f'connect true\nhidden ["{ME}"]\nlater ["{ME}"]\n' in out, out
    assert result.ticks_received >= TICKTIME, result  # erl ticked for two periods
    assert result.closed_by_peer  # erl halted


KEEP_CONNECTION = (
    "net_kernel:monitor_nodes(true, [{node_type, hidden}]),"
    'io:format("ready~n"),'
    'receive {nodeup, N, _} -> io:format("up ~s~n", [N]) after 20000 -> io:format("no nodeup~n"), halt(1) end,'
    f"timer:sleep({2 * TICKTIME * 1000 + 500}),"
    'io:format("later ~p~n", [[atom_to_list(N) || N <- nodes(hidden)]]),'
    "halt()."
)


def wait_ready(proc: subprocess.Popen) -> str:
    assert proc.stdout is not None
    with gevent.Timeout(ERL_LIMIT, AssertionError("erl did not start")):
        line = proc.stdout.readline().decode()
    assert line == "ready\n", line
    return line


@needs_erl
def test_the_initiator_connects_to_erl_and_answers_its_ticks(epmd, erl_procs):
    erl = start_erl(epmd, "c", KEEP_CONNECTION, {})
    erl_procs.append(erl)
    wait_ready(erl)
    entry = port_please("127.0.0.1", "x", epmd_port=epmd)
    assert entry is not None and entry.highest == 6
    result = dial(
        "127.0.0.1",
        entry.port,
        ME,
        "c",
        run_for=2 * TICKTIME + 5,
        tick_interval=TICKTIME / 4,
        recv_size=1,
        expect=f"x@{HOST}",
    )
    out = output_of(erl)
    assert result.error is None, (result.error, out)
    assert result.connected is not None and result.connected.name == f"x@{HOST}"
    assert f'up {ME}\nlater ["{ME}"]\n' in out, out
    assert result.ticks_received >= TICKTIME and result.ticks_sent >= TICKTIME, result  # both ticked for periods
    assert result.closed_by_peer


@needs_erl
def test_a_wrong_cookie_is_refused_when_erl_connects(epmd, erl_procs):
    listener, registration = listen_registered(epmd)
    try:
        erl = start_erl(
            epmd, "c", CONNECT_TO_ME.replace(f"timer:sleep({2 * TICKTIME * 1000 + 500}),", ""), {"SNOWG_PEER": ME}
        )
        erl_procs.append(erl)
        result = accept_one(listener, ME, "not-c")
        out = output_of(erl)
    finally:
        registration.close()
        listener.close()
    assert isinstance(result.error, ErlangProtocolError), result
    assert str(result.error) == f"handshake with x@{HOST}: wrong digest: x@{HOST} has another cookie"
    assert result.connected is None
    assert "connect false\nhidden []\n" in out, out


@needs_erl
def test_a_wrong_cookie_is_refused_by_erl(epmd, erl_procs):
    script = (
        'io:format("ready~n"), timer:sleep(3000),'
        'io:format("hidden ~p~n", [[atom_to_list(N) || N <- nodes(hidden)]]), halt().'
    )
    erl = start_erl(epmd, "c", script, {})
    erl_procs.append(erl)
    wait_ready(erl)
    entry = port_please("127.0.0.1", "x", epmd_port=epmd)
    assert entry is not None
    result = dial("127.0.0.1", entry.port, ME, "not-c", expect=f"x@{HOST}")
    assert result.connected is None and result.closed_by_peer and result.error is None, result
    assert isinstance(result.events[-1], hs.ChallengeReceived)  # erl closed instead of sending its ack
    out = output_of(erl)
    assert "hidden []\n" in out, out
    assert "rejected" in out or "nvalid challenge" in out, out
