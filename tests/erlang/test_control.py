"""Tests of snowg.erlang._control: every control message both ways, the _TT variants, bad input, fuzzing, erl.

* Every :class:`Encoder` method's frame parses back to its event, with the
  peer flags choosing SEND_SENDER/SEND and PAYLOAD_*/old exits.
* Every ``_TT`` variant (built here with ``_etf.encode`` and a trace token)
  parses to the event of its plain form.
* Malformed messages raise ``ErlangProtocolError`` with the exact text.
* Hypothesis: random bytes, and valid messages mutated or cut short, raise
  nothing but ``ErlangProtocolError``.
* A real ``erl`` reads our frames (length, ``p``, control, payload) and
  finds the very terms it builds itself.
"""

from __future__ import annotations

import struct
from typing import Any, List, Optional, Tuple

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from beam import run_erl_script
from snowg import Atom, Crash, Pid, Ref
from snowg.erlang import _control as c
from snowg.erlang import _etf
from snowg.erlang._errors import ErlangProtocolError
from snowg.erlang._flags import DFLAG_EXIT_PAYLOAD, DFLAG_SEND_SENDER
from snowg.erlang._mapping import TermMap, ref_from_erl
from snowg.erlang._types import ErlPid, ErlRef, ImproperList

ME = "a@127.0.0.1"
PEER = "b@127.0.0.1"
NEW = DFLAG_SEND_SENDER | DFLAG_EXIT_PAYLOAD
OLD = 0

P1 = Pid(ME, 81, 7)
P2 = Pid(PEER, 1 << 64 | 3 << 32 | 40000, 9)
R1 = Ref(PEER, 1 | 2 << 18 | 3 << 50, 9)
R4 = ref_from_erl(PEER, 9, (1, 2, 3, 4))
MSG = (Atom("hello"), "world", 42, [P1, R1, {"k": None}])


@pytest.fixture
def tm() -> TermMap:
    return TermMap(ME, 7)


def body(frame: bytes) -> bytes:
    """The message of a frame, after checking its 4-byte length."""
    (size,) = struct.unpack(">I", frame[:4])
    assert size == len(frame) - 4
    return frame[4:]


def packet(*terms: Any) -> bytes:
    """A pass-through message of the given terms (Erlang's form: ErlPid/ErlRef, Atom for atoms)."""
    return b"p" + b"".join(_etf.encode(t) for t in terms)


def erl(pid: Pid) -> ErlPid:
    if pid.id >> 64:
        return ErlPid(Atom(pid.node), pid.id & 0xFFFFFFFF, (pid.id >> 32) & 0xFFFFFFFF, pid.creation)
    return ErlPid(Atom(pid.node), pid.id & 0x7FFF, pid.id >> 15, pid.creation)


def erlref(ref: Ref) -> ErlRef:
    from snowg.erlang._mapping import erl_ref_words

    return ErlRef(Atom(ref.node), ref.creation, erl_ref_words(ref))


# Any term: the token is dropped.
TOKEN = (Atom("seq"), 0, 1, erl(P1), 0)

# ------------------------------------------------------------ round trips


def _round_trips(enc: c.Encoder) -> List[Tuple[bytes, Any]]:
    crash = Crash("ValueError", "bad", "tb")
    return [
        (enc.send(P1, P2, MSG), c.Send(P1 if enc.send_sender else None, P2, MSG)),
        (enc.send(None, P2, "x"), c.Send(Pid(ME, 0, 7) if enc.send_sender else None, P2, "x")),
        (enc.reg_send(P1, "net_kernel", MSG), c.RegSend(P1, Atom("net_kernel"), MSG)),
        (enc.reg_send(None, "true", 1), c.RegSend(Pid(ME, 0, 7), Atom("true"), 1)),
        (enc.alias_send(P1, R4, MSG), c.AliasSend(P1, R4, MSG)),
        (enc.link(P1, P2), c.Link(P1, P2)),
        (enc.unlink(P1, P2), c.Unlink(P1, P2)),
        (enc.group_leader(P1, P2), c.GroupLeader(P1, P2)),
        (enc.unlink_id(1, P1, P2), c.UnlinkId(1, P1, P2)),
        (enc.unlink_id(2**64 - 1, P1, P2), c.UnlinkId(2**64 - 1, P1, P2)),
        (enc.unlink_id_ack(300, P2, P1), c.UnlinkIdAck(300, P2, P1)),
        (enc.exit(P1, P2, "normal"), c.ExitSignal(P1, P2, Atom("normal"))),
        (enc.exit(P1, P2, crash), c.ExitSignal(P1, P2, (Atom("python_error"), "ValueError", "bad", "tb"))),
        (enc.exit2(P1, P2, "kill"), c.Exit2Signal(P1, P2, Atom("kill"))),
        (enc.exit2(P1, P2, ("shutdown", "x")), c.Exit2Signal(P1, P2, (Atom("shutdown"), "x"))),
        (enc.monitor_p(P1, P2, R1), c.MonitorP(P1, P2, R1)),
        (enc.monitor_p(P1, "srv", R1), c.MonitorP(P1, Atom("srv"), R1)),
        (enc.demonitor_p(P1, P2, R1), c.DemonitorP(P1, P2, R1)),
        (enc.demonitor_p(P1, "srv", R4), c.DemonitorP(P1, Atom("srv"), R4)),
        (enc.monitor_p_exit(P1, P2, R1, "noproc"), c.MonitorPExit(P1, P2, R1, Atom("noproc"))),
        (enc.monitor_p_exit("srv", P2, R1, "other"), c.MonitorPExit(Atom("srv"), P2, R1, "other")),
        (
            enc.spawn_request(R1, P1, P2, "erpc", "execute_call", [1, "two", P1], ["monitor", (Atom("reply"), True)]),
            c.SpawnRequest(
                R1,
                P1,
                P2,
                Atom("erpc"),
                Atom("execute_call"),
                3,
                [Atom("monitor"), (Atom("reply"), True)],
                [1, "two", P1],
            ),
        ),
        (enc.spawn_request(R1, P1, P2, "m", "f", [], []), c.SpawnRequest(R1, P1, P2, Atom("m"), Atom("f"), 0, [], [])),
        (enc.spawn_reply(R1, P2, 3, P1), c.SpawnReply(R1, P2, 3, P1)),
        (enc.spawn_reply(R1, P2, 0, "badopt"), c.SpawnReply(R1, P2, 0, Atom("badopt"))),
    ]


@pytest.mark.parametrize("flags", [NEW, OLD], ids=["payload-send_sender", "old-forms"])
def test_every_message_round_trips(tm: TermMap, flags: int) -> None:
    enc = c.Encoder(tm, flags)
    for frame, event in _round_trips(enc):
        got = c.parse(body(frame), tm)
        assert type(got) is type(event) and got == event, (got, event)
        # Twice: the second goes through the pid caches.
        assert c.parse(body(frame), tm) == event
        # The parse is exact about types too (an Atom stays an Atom, a str a str).
        assert repr(got) == repr(event)


def test_flags_choose_the_forms(tm: TermMap) -> None:
    new = c.Encoder(tm, NEW)
    old = c.Encoder(tm, OLD)

    def op(frame: bytes) -> int:
        ctl, _ = _etf.decode_dist(body(frame), 1)
        return int(ctl[0])

    assert op(new.send(P1, P2, 1)) == c.SEND_SENDER and op(old.send(P1, P2, 1)) == c.SEND
    assert op(new.exit(P1, P2, "x")) == c.PAYLOAD_EXIT and op(old.exit(P1, P2, "x")) == c.EXIT
    assert op(new.exit2(P1, P2, "x")) == c.PAYLOAD_EXIT2 and op(old.exit2(P1, P2, "x")) == c.EXIT2
    assert op(new.monitor_p_exit(P1, P2, R1, "x")) == c.PAYLOAD_MONITOR_P_EXIT
    assert op(old.monitor_p_exit(P1, P2, R1, "x")) == c.MONITOR_P_EXIT
    # Exactly the bytes Erlang's own tuples make.
    assert body(new.send(P1, P2, MSG)) == packet((22, erl(P1), erl(P2)), _erl_msg())
    assert body(old.send(P1, P2, MSG)) == packet((2, Atom(""), erl(P2)), _erl_msg())
    assert body(new.exit(P1, P2, "normal")) == packet((24, erl(P1), erl(P2)), Atom("normal"))
    assert body(old.exit(P1, P2, "normal")) == packet((3, erl(P1), erl(P2), Atom("normal")))
    assert body(new.reg_send(P1, "rex", 1)) == packet((6, erl(P1), Atom(""), Atom("rex")), 1)
    assert body(new.unlink_id(2**40, P1, P2)) == packet((35, 2**40, erl(P1), erl(P2)))
    assert body(new.spawn_request(R1, P1, P2, "m", "f", [1], [])) == packet(
        (29, erlref(R1), erl(P1), erl(P2), (Atom("m"), Atom("f"), 1), []), [1]
    )


def _erl_msg() -> Any:
    return (Atom("hello"), "world", 42, [erl(P1), erlref(R1), {"k": Atom("undefined")}])


# -------------------------------------------------------------- _TT forms


def test_every_tt_variant_parses_to_its_plain_event(tm: TermMap) -> None:
    e1, e2, r1 = erl(P1), erl(P2), erlref(R1)
    cases = [
        (packet((12, Atom(""), e2, TOKEN), "m"), c.Send(None, P2, "m")),
        (packet((23, e1, e2, TOKEN), "m"), c.Send(P1, P2, "m")),
        (packet((16, e1, Atom(""), Atom("rex"), TOKEN), "m"), c.RegSend(P1, Atom("rex"), "m")),
        (packet((34, e1, r1, TOKEN), "m"), c.AliasSend(P1, R1, "m")),
        (packet((13, e1, e2, TOKEN, Atom("normal"))), c.ExitSignal(P1, P2, Atom("normal"))),
        (packet((18, e1, e2, TOKEN, Atom("kill"))), c.Exit2Signal(P1, P2, Atom("kill"))),
        (packet((25, e1, e2, TOKEN), Atom("normal")), c.ExitSignal(P1, P2, Atom("normal"))),
        (packet((27, e1, e2, TOKEN), "why"), c.Exit2Signal(P1, P2, "why")),
        (
            packet((30, r1, e1, e2, (Atom("m"), Atom("f"), 1), [Atom("link")], TOKEN), [5]),
            c.SpawnRequest(R1, P1, P2, Atom("m"), Atom("f"), 1, [Atom("link")], [5]),
        ),
        (packet((32, r1, e2, 2, e1, TOKEN)), c.SpawnReply(R1, P2, 2, P1)),
    ]
    for data, event in cases:
        assert c.parse(data, tm) == event


def test_messages_as_erlang_writes_them(tm: TermMap) -> None:
    """The old forms and the ones the encoder never writes."""
    e1, e2, r1 = erl(P1), erl(P2), erlref(R1)
    assert c.parse(packet((2, Atom(""), e2), "m"), tm) == c.Send(None, P2, "m")
    assert c.parse(packet((4, e1, e2)), tm) == c.Unlink(P1, P2)
    assert c.parse(packet((7, e1, e2)), tm) == c.GroupLeader(P1, P2)
    assert c.parse(packet((21, Atom("srv"), e2, r1, Atom("noproc"))), tm) == c.MonitorPExit(
        Atom("srv"), P2, R1, Atom("noproc")
    )
    assert c.parse(packet((28, e1, e2, r1), "x"), tm) == c.MonitorPExit(P1, P2, R1, "x")
    # Names that decode to Python's constants are still names.
    assert c.parse(packet((6, e1, Atom(""), Atom("undefined")), 1), tm) == c.RegSend(P1, Atom("undefined"), 1)
    assert c.parse(packet((19, e1, True, r1)), tm) == c.MonitorP(P1, Atom("true"), R1)
    # Atoms in their old Latin-1 tags, and a SEND_SENDER whose pid has an old atom tag: the general path.
    old_atom = bytes((100, 0, 3)) + b"rex"
    data = b"p" + bytes((131, 104, 4, 97, 6)) + _etf.encode(e1)[1:] + bytes((115, 0)) + old_atom + _etf.encode(1)
    assert c.parse(data, tm) == c.RegSend(P1, Atom("rex"), 1)
    pid_old = bytes((88, 100, 0, len(PEER))) + PEER.encode() + _etf.encode(e2)[-12:]
    data = b"p" + bytes((131, 104, 3, 97, 22)) + _etf.encode(e1)[1:] + pid_old + _etf.encode("m")
    assert c.parse(data, tm) == c.Send(P1, P2, "m")


def test_a_tick_is_none(tm: TermMap) -> None:
    assert c.parse(b"", tm) is None


# ------------------------------------------------------------- bad input


def _bad_cases() -> List[Tuple[bytes, str]]:
    e1, e2, r1 = erl(P1), erl(P2), erlref(R1)
    send_sender = packet((22, e1, e2), "m")
    return [
        (b"\x83Dxyz", "a distribution header with an atom cache (131 68): DIST_HDR_ATOM_CACHE was not negotiated"),
        (b"\x83E\x00", "a fragmented distribution message (131 69): DFLAG_FRAGMENTS was not negotiated"),
        (b"\x83F\x00", "a fragmented distribution message (131 70): DFLAG_FRAGMENTS was not negotiated"),
        (b"q\x83a\x01", "not a pass-through message: first byte 113, expected 112 ('p')"),
        (b"\x83", "not a pass-through message: first byte 131, expected 112 ('p')"),
        (b"p", "pass-through message of no control message (only the byte 112)"),
        (packet((99, e1, e2)), "unknown control message operation 99 (tuple of 3)"),
        (packet((5,)), "unknown control message operation 5 (tuple of 1)"),
        (packet((37, e1, e2)), "unknown control message operation 37 (tuple of 3)"),
        (packet([22, e1, e2]), "the control message is not a tuple starting with an operation: list"),
        (packet(()), "the control message is not a tuple starting with an operation: tuple ()"),
        (packet((Atom("send"), e1)), "the control message is not a tuple starting with an operation: tuple"),
        (packet((22, e1), "m"), "SEND_SENDER control message: a tuple of 2 elements, expected 3"),
        (packet((1, e1, e2, e2)), "LINK control message: a tuple of 4 elements, expected 3"),
        (packet((22, e1, e2)), "SEND_SENDER control message: the payload term is missing"),
        (packet((6, e1, Atom(""), Atom("rex"))), "REG_SEND control message: the payload term is missing"),
        (packet((24, e1, e2)), "PAYLOAD_EXIT control message: the payload term is missing"),
        (packet((29, r1, e1, e2, (Atom("m"), Atom("f"), 0), [])), "SPAWN_REQUEST control message: the payload"),
        (send_sender + b"\x00", "SEND_SENDER control message: 1 bytes after the payload"),
        (send_sender + _etf.encode(1), "SEND_SENDER control message: 3 bytes after the payload"),
        (packet((1, e1, e2), "m"), "LINK control message: 7 bytes after the control message (it takes no payload)"),
        (packet((3, e1, e2, Atom("r")), 1), "EXIT control message: 3 bytes after the control message"),
        (packet((22, e1, "pid"), "m"), "SEND_SENDER control message: ToPid is not a pid but a str 'pid'"),
        (packet((22, Atom("x"), e2), "m"), "SEND_SENDER control message: FromPid is not a pid but a Atom"),
        (packet((2, Atom(""), r1), "m"), "SEND control message: ToPid is not a pid but a Ref"),
        (packet((6, e1, Atom(""), "rex"), 1), "REG_SEND control message: ToName is not an atom but a str 'rex'"),
        (packet((6, e1, Atom(""), e2), 1), "REG_SEND control message: ToName is not an atom but a Pid"),
        (packet((33, e1, e2), 1), "ALIAS_SEND control message: Alias is not a reference but a Pid"),
        (packet((19, e1, 5, r1)), "MONITOR_P control message: ToProc is neither a pid nor an atom but a int 5"),
        (packet((19, e1, e2, e2)), "MONITOR_P control message: Ref is not a reference but a Pid"),
        (packet((21, "srv", e2, r1, 1)), "MONITOR_P_EXIT control message: FromProc is neither a pid nor an atom"),
        (packet((35, 0, e1, e2)), "UNLINK_ID control message: Id is not an integer in 1..2**64-1 but a int 0"),
        (packet((36, 2**64, e1, e2)), "UNLINK_ID_ACK control message: Id is not an integer in 1..2**64-1"),
        (packet((35, Atom("x"), e1, e2)), "UNLINK_ID control message: Id is not an integer in 1..2**64-1 but a Atom"),
        (packet((29, r1, e1, e2, (Atom("m"), Atom("f")), []), []), "SPAWN_REQUEST control message: the entry point"),
        (packet((29, r1, e1, e2, (Atom("m"), "f", 0), []), []), "SPAWN_REQUEST control message: Function is not an"),
        (packet((29, r1, e1, e2, (Atom("m"), Atom("f"), -1), []), []), "SPAWN_REQUEST control message: Arity is not"),
        (packet((29, r1, e1, e2, (Atom("m"), Atom("f"), 2), []), [1]), "SPAWN_REQUEST control message: Arity 2 but 1"),
        (
            packet((29, r1, e1, e2, (Atom("m"), Atom("f"), 1), []), ImproperList((1,), 2)),
            "SPAWN_REQUEST control message: the argument list (payload) is not a proper list",
        ),
        (packet((29, r1, e1, e2, (Atom("m"), Atom("f"), 0), Atom("x")), []), "SPAWN_REQUEST control message: OptList"),
        (packet((31, r1, e2, -1, e1)), "SPAWN_REPLY control message: Flags is not a non-negative integer"),
        (packet((31, r1, e2, 0, "error")), "SPAWN_REPLY control message: Result is neither a pid nor an atom"),
        (b"p\x83h\x03a\x16", "control message: SMALL_TUPLE_EXT at offset 2:"),
        (b"p\x83h\x03a\x16X", "control message: truncated: an atom expected at offset 7"),
        (b"p\x83d\x01\x00" + b"a" * 256, "control message: ATOM_EXT at offset 2: atom length 256 bytes, over 255"),
        (send_sender[:-1], "SEND_SENDER control message: payload: "),
        (packet((22, e1, e2)) + b"\x83P\x00\x00\x00\x01x\x9c\x03\x00\x00\x00\x00\x01", "payload: COMPRESSED"),
        (b"p\x84", "control message: version byte 132 at offset 1, expected 131"),
        (b"p\x83R\x00", "control message: ATOM_CACHE_REF at offset 2"),
    ]


@pytest.mark.parametrize("index", range(len(_bad_cases())))
def test_bad_input_is_refused_naming_the_problem(tm: TermMap, index: int) -> None:
    data, words = _bad_cases()[index]
    with pytest.raises(ErlangProtocolError) as info:
        c.parse(data, tm)
    assert str(info.value).startswith(words) or words in str(info.value), (str(info.value), words)


def test_every_truncation_of_every_message_is_refused(tm: TermMap) -> None:
    for flags in (NEW, OLD):
        for frame, _event in _round_trips(c.Encoder(tm, flags)):
            data = body(frame)
            for cut in range(1, len(data)):
                with pytest.raises(ErlangProtocolError):
                    c.parse(data[:cut], tm)


# ----------------------------------------------------------- encoder errors


def test_encoder_refuses_what_has_no_erlang_form(tm: TermMap) -> None:
    enc = c.Encoder(tm, NEW)
    with pytest.raises(TypeError, match="a pid was expected"):
        enc.send(P1, "not a pid", 1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="has no Erlang form"):
        enc.send(P1, P2, {1, 2})
    with pytest.raises(TypeError, match="at most 255"):
        enc.reg_send(P1, "n" * 256, 1)
    with pytest.raises(TypeError, match="must be a str"):
        enc.reg_send(P1, 5, 1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="a reference was expected"):
        enc.alias_send(P1, P2, 1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="unlink id"):
        enc.unlink_id(0, P1, P2)
    with pytest.raises(TypeError, match="unlink id"):
        enc.unlink_id_ack(2**64, P1, P2)
    with pytest.raises(TypeError, match="Pid or a registered name"):
        enc.monitor_p(P1, 5, R1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="Erlang has no float nan"):
        enc.exit(P1, P2, float("nan"))
    with pytest.raises(TypeError, match="Erlang has no float inf"):
        c.Encoder(tm, OLD).exit(P1, P2, float("inf"))
    with pytest.raises(TypeError, match="lists"):
        enc.spawn_request(R1, P1, P2, "m", "f", (1,), [])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="Pid or an atom"):
        enc.spawn_reply(R1, P2, 0, 5)
    with pytest.raises(TypeError, match="flags"):
        enc.spawn_reply(R1, P2, -1, P1)


# ---------------------------------------------------------------- fuzzing


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=200))
def test_random_bytes_raise_only_the_protocol_error(data: bytes) -> None:
    tm = TermMap(ME, 7)
    for candidate in (data, b"p" + data, b"p\x83" + data, b"p\x83h\x03a\x16" + data):
        try:
            c.parse(candidate, tm)
        except ErlangProtocolError:
            pass


_VALID: Optional[List[bytes]] = None


def _valid_packets() -> List[bytes]:
    global _VALID
    if _VALID is None:
        tm = TermMap(ME, 7)
        _VALID = [body(f) for flags in (NEW, OLD) for f, _e in _round_trips(c.Encoder(tm, flags))]
    return _VALID


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(draw=st.data())
def test_mutated_and_truncated_messages_raise_only_the_protocol_error(draw: st.DataObject) -> None:
    tm = TermMap(ME, 7)
    packets = _valid_packets()
    data = bytearray(packets[draw.draw(st.integers(0, len(packets) - 1))])
    for _ in range(draw.draw(st.integers(1, 4))):
        at = draw.draw(st.integers(0, len(data) - 1))
        kind = draw.draw(st.sampled_from(["set", "insert", "delete"]))
        if kind == "set":
            data[at] = draw.draw(st.integers(0, 255))
        elif kind == "insert":
            data[at:at] = bytes([draw.draw(st.integers(0, 255))])
        elif len(data) > 1:
            del data[at]
    cut = draw.draw(st.integers(0, len(data)))
    for candidate in (bytes(data), bytes(data[:cut])):
        event: Any
        try:
            event = c.parse(candidate, tm)
        except ErlangProtocolError:
            event = "refused"
        assert event is None or event == "refused" or isinstance(event, tuple)
        if candidate[:1] == b"p":
            # The fast paths (SEND_SENDER, REG_SEND) accept exactly what the general path accepts.
            try:
                general: Any = c._parse_general(candidate, tm)
            except ErlangProtocolError:
                general = "refused"
            assert repr(general) == repr(event)


def test_fast_paths_agree_with_the_general_path(tm: TermMap) -> None:
    for data in _valid_packets():
        assert repr(c.parse(data, tm)) == repr(c._parse_general(data, tm))


# ------------------------------------------------------------- against erl


# erl reads a frame: <<Len:32, $p, Rest/binary>>, the control term, then the
# payload (if any), and compares both with the terms it builds itself.
_ERL_READ = (
    "Read = fun(Hex) -> "
    "<<Len:32, $p, Rest/binary>> = Frame = binary:decode_hex(Hex), "
    "Len = byte_size(Frame) - 4, "
    "{Ctl, Used} = binary_to_term(Rest, [used]), "
    "case binary:part(Rest, Used, byte_size(Rest) - Used) of "
    "<<>> -> {Ctl}; "
    "More -> {P, Used2} = binary_to_term(More, [used]), Used2 = byte_size(More), {Ctl, P} end end"
)


def test_erl_reads_our_frames_as_its_own_terms(tmp_path: Any) -> None:
    here = "nonode@nohost"
    tm = TermMap(here, 0)
    p81 = Pid(here, 81, 0)
    p82 = Pid(here, 82 | 1 << 15, 0)
    ref = Ref(here, 3 | 2 << 18 | 1 << 50, 0)
    e81, e82, eref = 'list_to_pid("<0.81.0>")', 'list_to_pid("<0.82.1>")', 'list_to_ref("#Ref<0.1.2.3>")'
    new, old = c.Encoder(tm, NEW), c.Encoder(tm, OLD)
    msg = (Atom("hello"), "world", 42, [p81, None, {"k": [1.5]}])
    emsg = '{hello, <<"world">>, 42, [' + e81 + ', undefined, #{<<"k">> => [1.5]}]}'
    cases: List[Tuple[bytes, str]] = [
        (new.send(p81, p82, msg), f"{{{{22, {e81}, {e82}}}, {emsg}}}"),
        (old.send(p81, p82, msg), f"{{{{2, '', {e82}}}, {emsg}}}"),
        (new.reg_send(p81, "rex", msg), f"{{{{6, {e81}, '', rex}}, {emsg}}}"),
        (new.alias_send(p81, ref, msg), f"{{{{33, {e81}, {eref}}}, {emsg}}}"),
        (new.link(p81, p82), f"{{{{1, {e81}, {e82}}}}}"),
        (new.unlink_id(2**63, p81, p82), f"{{{{35, {2**63}, {e81}, {e82}}}}}"),
        (new.unlink_id_ack(7, p81, p82), f"{{{{36, 7, {e81}, {e82}}}}}"),
        (new.exit(p81, p82, "normal"), f"{{{{24, {e81}, {e82}}}, normal}}"),
        (old.exit(p81, p82, "normal"), f"{{{{3, {e81}, {e82}, normal}}}}"),
        (new.exit2(p81, p82, ("shutdown", "x")), f'{{{{26, {e81}, {e82}}}, {{shutdown, <<"x">>}}}}'),
        (old.exit2(p81, p82, "kill"), f"{{{{8, {e81}, {e82}, kill}}}}"),
        (new.monitor_p(p81, "srv", ref), f"{{{{19, {e81}, srv, {eref}}}}}"),
        (new.demonitor_p(p81, p82, ref), f"{{{{20, {e81}, {e82}, {eref}}}}}"),
        (new.monitor_p_exit("srv", p82, ref, "noproc"), f"{{{{28, srv, {e82}, {eref}}}, noproc}}"),
        (old.monitor_p_exit(p81, p82, ref, "noconnection"), f"{{{{21, {e81}, {e82}, {eref}, noconnection}}}}"),
        (
            new.spawn_request(ref, p81, p82, "erpc", "execute_call", [1, "a"], ["monitor"]),
            f'{{{{29, {eref}, {e81}, {e82}, {{erpc, execute_call, 2}}, [monitor]}}, [1, <<"a">>]}}',
        ),
        (new.spawn_reply(ref, p82, 3, p81), f"{{{{31, {eref}, {e82}, 3, {e81}}}}}"),
        (new.spawn_reply(ref, p82, 0, "badopt"), f"{{{{31, {eref}, {e82}, 0, badopt}}}}"),
    ]
    lines = [f'io:format("~p~n", [Read(<<"{frame.hex()}">>) =:= {expected}])' for frame, expected in cases]
    out = run_erl_script(tmp_path, _ERL_READ + ", " + ", ".join(lines) + ".")
    assert out == ["true"] * len(cases), [(e, o) for (_f, e), o in zip(cases, out) if o != "true"]
