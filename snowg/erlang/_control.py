"""The connected phase of Erlang distribution, sans-IO: control messages to events and back.

After the handshake, each message on a distribution connection is a 4-byte
length and then, since snowg offers neither the atom cache
(``DIST_HDR_ATOM_CACHE``) nor fragments (``DFLAG_FRAGMENTS``), a
*pass-through* message: the byte ``p`` (112), the control message (a tuple
whose first element says which operation it is) as a whole external term with
its version byte, and for some operations a second whole term, the payload
(the message of a send, the reason of a ``PAYLOAD_*`` exit, the arguments of
a spawn request). A message of no bytes is a tick.

The control messages (operation, tuple, and the payload that follows it)::

    LINK                     1   {1, FromPid, ToPid}
    SEND                     2   {2, Unused, ToPid}                                message
    EXIT                     3   {3, FromPid, ToPid, Reason}
    UNLINK (old)             4   {4, FromPid, ToPid}
    REG_SEND                 6   {6, FromPid, Unused, ToName}                      message
    GROUP_LEADER             7   {7, FromPid, ToPid}
    EXIT2                    8   {8, FromPid, ToPid, Reason}
    SEND_TT                 12   {12, Unused, ToPid, Token}                        message
    EXIT_TT                 13   {13, FromPid, ToPid, Token, Reason}
    REG_SEND_TT             16   {16, FromPid, Unused, ToName, Token}              message
    EXIT2_TT                18   {18, FromPid, ToPid, Token, Reason}
    MONITOR_P               19   {19, FromPid, ToProc, Ref}
    DEMONITOR_P             20   {20, FromPid, ToProc, Ref}
    MONITOR_P_EXIT          21   {21, FromProc, ToPid, Ref, Reason}
    SEND_SENDER             22   {22, FromPid, ToPid}                              message
    SEND_SENDER_TT          23   {23, FromPid, ToPid, Token}                       message
    PAYLOAD_EXIT            24   {24, FromPid, ToPid}                              reason
    PAYLOAD_EXIT_TT         25   {25, FromPid, ToPid, Token}                       reason
    PAYLOAD_EXIT2           26   {26, FromPid, ToPid}                              reason
    PAYLOAD_EXIT2_TT        27   {27, FromPid, ToPid, Token}                       reason
    PAYLOAD_MONITOR_P_EXIT  28   {28, FromProc, ToPid, Ref}                        reason
    SPAWN_REQUEST           29   {29, ReqId, From, GroupLeader, {M, F, A}, Opts}   arguments
    SPAWN_REQUEST_TT        30   {30, ReqId, From, GroupLeader, {M, F, A}, Opts, Token}   arguments
    SPAWN_REPLY             31   {31, ReqId, To, Flags, Result}
    SPAWN_REPLY_TT          32   {32, ReqId, To, Flags, Result, Token}
    ALIAS_SEND              33   {33, FromPid, Alias}                              message
    ALIAS_SEND_TT           34   {34, FromPid, Alias, Token}                       message
    UNLINK_ID               35   {35, Id, FromPid, ToPid}
    UNLINK_ID_ACK           36   {36, Id, FromPid, ToPid}

(``ToProc``/``FromProc``: a pid or a registered name, an atom.) :func:`parse`
turns one message into one event (a ``NamedTuple`` below; a ``_TT`` variant
is the same event, its sequential trace token dropped) and refuses anything
else with :class:`ErlangProtocolError` naming the problem: another first
byte, an unknown operation, a wrong arity or field type, a missing or extra
payload, a truncated term, trailing bytes. :class:`Encoder` writes whole
frames (length included) for one peer, in the forms its flags ask for
(``SEND_SENDER`` and the ``PAYLOAD_*`` exits when it has ``DFLAG_SEND_SENDER``
and ``DFLAG_EXIT_PAYLOAD``). Pids and references are snowg's own
:class:`~snowg.Pid`/:class:`~snowg.Ref`, through the connection's
:class:`~snowg.erlang._mapping.TermMap`.

Speed: SEND_SENDER, REG_SEND and ALIAS_SEND (every message and every
gen_server reply) are read on a fast path that recognises the control
tuple from its first bytes and reads its pids through the term map's cache
of encoded pids, without decoding the tuple; any other shape falls through
to the general path, which accepts exactly the same messages (the tests fuzz
the two against each other). :meth:`Encoder.send` writes the control tuple
from cached pid encodings and the message into the same buffer.
"""

from __future__ import annotations

import struct
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple, Union

from .._core import Atom, Pid, Ref
from . import _etf
from ._errors import ErlangProtocolError
from ._flags import DFLAG_EXIT_PAYLOAD, DFLAG_SEND_SENDER
from ._mapping import TermMap, atom_bytes

__all__ = [
    "SPAWN_FLAG_LINK",
    "SPAWN_FLAG_MONITOR",
    "AliasSend",
    "DemonitorP",
    "Encoder",
    "Event",
    "Exit2Signal",
    "ExitSignal",
    "GroupLeader",
    "Link",
    "MonitorP",
    "MonitorPExit",
    "RegSend",
    "Send",
    "SpawnReply",
    "SpawnRequest",
    "Unlink",
    "UnlinkId",
    "UnlinkIdAck",
    "parse",
]

# Operations (erl_dist_protocol, "Protocol between Connected Nodes").
LINK = 1
SEND = 2
EXIT = 3
UNLINK = 4
REG_SEND = 6
GROUP_LEADER = 7
EXIT2 = 8
SEND_TT = 12
EXIT_TT = 13
REG_SEND_TT = 16
EXIT2_TT = 18
MONITOR_P = 19
DEMONITOR_P = 20
MONITOR_P_EXIT = 21
SEND_SENDER = 22
SEND_SENDER_TT = 23
PAYLOAD_EXIT = 24
PAYLOAD_EXIT_TT = 25
PAYLOAD_EXIT2 = 26
PAYLOAD_EXIT2_TT = 27
PAYLOAD_MONITOR_P_EXIT = 28
SPAWN_REQUEST = 29
SPAWN_REQUEST_TT = 30
SPAWN_REPLY = 31
SPAWN_REPLY_TT = 32
ALIAS_SEND = 33
ALIAS_SEND_TT = 34
UNLINK_ID = 35
UNLINK_ID_ACK = 36

#: SPAWN_REPLY flags: a link, a monitor was set up on the spawning node.
SPAWN_FLAG_LINK = 1
SPAWN_FLAG_MONITOR = 2

PASS_THROUGH = 112
_VERSION = 131
_DIST_HEADER = 68
_DIST_FRAG_HEADER = 69
_DIST_FRAG_CONT = 70
_MAX_UNLINK_ID = (1 << 64) - 1
_MAX_FRAME = 0xFFFFFFFF


# ------------------------------------------------------------------ events


class Link(NamedTuple):
    """LINK: ``from_`` links to ``to``."""

    from_: Pid
    to: Pid


class Send(NamedTuple):
    """SEND (``sender`` None) or SEND_SENDER: ``msg`` for ``to``."""

    sender: Optional[Pid]
    to: Pid
    msg: Any


class RegSend(NamedTuple):
    """REG_SEND: ``msg`` for the process registered as ``name``."""

    sender: Pid
    name: str
    msg: Any


class AliasSend(NamedTuple):
    """ALIAS_SEND: ``msg`` for the process that made the alias ``alias``."""

    sender: Pid
    alias: Ref
    msg: Any


class ExitSignal(NamedTuple):
    """EXIT or PAYLOAD_EXIT: the linked ``from_`` ended with ``reason``."""

    from_: Pid
    to: Pid
    reason: Any


class Exit2Signal(NamedTuple):
    """EXIT2 or PAYLOAD_EXIT2: ``from_`` called ``exit(to, reason)``."""

    from_: Pid
    to: Pid
    reason: Any


class Unlink(NamedTuple):
    """UNLINK (the old link protocol, no acknowledgement)."""

    from_: Pid
    to: Pid


class UnlinkId(NamedTuple):
    """UNLINK_ID: ``from_`` unlinks from ``to``; answer with UNLINK_ID_ACK of the same ``id``."""

    id: int
    from_: Pid
    to: Pid


class UnlinkIdAck(NamedTuple):
    """UNLINK_ID_ACK: ``from_`` acknowledges the UNLINK_ID ``id`` that ``to`` sent."""

    id: int
    from_: Pid
    to: Pid


class MonitorP(NamedTuple):
    """MONITOR_P: ``from_`` monitors ``target`` (a pid or a registered name) with ``ref``."""

    from_: Pid
    target: Union[Pid, str]
    ref: Ref


class DemonitorP(NamedTuple):
    """DEMONITOR_P: ``from_`` drops its monitor ``ref`` of ``target``."""

    from_: Pid
    target: Union[Pid, str]
    ref: Ref


class MonitorPExit(NamedTuple):
    """MONITOR_P_EXIT or PAYLOAD_MONITOR_P_EXIT: the monitored ``from_`` (pid or name) ended."""

    from_: Union[Pid, str]
    to: Pid
    ref: Ref
    reason: Any


class SpawnRequest(NamedTuple):
    """SPAWN_REQUEST: ``from_`` asks for a process running ``module:function(*args)``.

    ``arity`` equals ``len(args)`` (checked); ``opts`` is the proper list of
    spawn options as decoded (atoms and tuples such as ``link``,
    ``monitor``, ``{reply, yes}``).
    """

    req_id: Ref
    from_: Pid
    group_leader: Pid
    module: str
    function: str
    arity: int
    opts: list  # type: ignore[type-arg]
    args: list  # type: ignore[type-arg]


class SpawnReply(NamedTuple):
    """SPAWN_REPLY: the answer to the request ``req_id``; ``result`` a pid or an error atom."""

    req_id: Ref
    to: Pid
    flags: int
    result: Any


class GroupLeader(NamedTuple):
    """GROUP_LEADER: ``from_`` makes itself the group leader of ``to``."""

    from_: Pid
    to: Pid


Event = Union[
    Link,
    Send,
    RegSend,
    AliasSend,
    ExitSignal,
    Exit2Signal,
    Unlink,
    UnlinkId,
    UnlinkIdAck,
    MonitorP,
    DemonitorP,
    MonitorPExit,
    SpawnRequest,
    SpawnReply,
    GroupLeader,
]


# ----------------------------------------------------------------- parsing


class _Op(NamedTuple):
    name: str
    arity: int
    payload: bool
    build: Callable[[str, Tuple[Any, ...], Any, TermMap], Event]


def _bad(op: str, what: str) -> ErlangProtocolError:
    return ErlangProtocolError(f"{op} control message: {what}")


def _describe(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text[:60]}{'...' if len(text) > 60 else ''}"


def _pid(op: str, field: str, value: Any) -> Pid:
    if type(value) is not Pid:
        raise _bad(op, f"{field} is not a pid but a {_describe(value)}")
    return value


def _ref(op: str, field: str, value: Any) -> Ref:
    if type(value) is not Ref:
        raise _bad(op, f"{field} is not a reference but a {_describe(value)}")
    return value


def _atom(op: str, field: str, value: Any, tm: TermMap) -> Atom:
    # true, false and the none atom were decoded to Python's constants; a name is still their atom.
    if type(value) is Atom:
        return value
    if value is True:
        return Atom("true")
    if value is False:
        return Atom("false")
    if value is None:
        return Atom(tm.none_atom)
    raise _bad(op, f"{field} is not an atom but a {_describe(value)}")


def _pid_or_atom(op: str, field: str, value: Any, tm: TermMap) -> Union[Pid, Atom]:
    if type(value) is Pid:
        return value
    if type(value) is Atom or value is True or value is False or value is None:
        return _atom(op, field, value, tm)
    raise _bad(op, f"{field} is neither a pid nor an atom but a {_describe(value)}")


def _proper_list(op: str, field: str, value: Any) -> List[Any]:
    if type(value) is not list:
        raise _bad(op, f"{field} is not a proper list but a {_describe(value)}")
    return value


def _b_link(op: str, c: Tuple[Any, ...], p: Any, tm: TermMap) -> Event:
    return Link(_pid(op, "FromPid", c[1]), _pid(op, "ToPid", c[2]))


def _b_send(op: str, c: Tuple[Any, ...], p: Any, tm: TermMap) -> Event:
    return Send(None, _pid(op, "ToPid", c[2]), p)


def _b_send_sender(op: str, c: Tuple[Any, ...], p: Any, tm: TermMap) -> Event:
    return Send(_pid(op, "FromPid", c[1]), _pid(op, "ToPid", c[2]), p)


def _b_reg_send(op: str, c: Tuple[Any, ...], p: Any, tm: TermMap) -> Event:
    return RegSend(_pid(op, "FromPid", c[1]), _atom(op, "ToName", c[3], tm), p)


def _b_alias_send(op: str, c: Tuple[Any, ...], p: Any, tm: TermMap) -> Event:
    return AliasSend(_pid(op, "FromPid", c[1]), _ref(op, "Alias", c[2]), p)


def _b_exit(op: str, c: Tuple[Any, ...], p: Any, tm: TermMap) -> Event:
    return ExitSignal(_pid(op, "FromPid", c[1]), _pid(op, "ToPid", c[2]), c[-1])


def _b_exit_payload(op: str, c: Tuple[Any, ...], p: Any, tm: TermMap) -> Event:
    return ExitSignal(_pid(op, "FromPid", c[1]), _pid(op, "ToPid", c[2]), p)


def _b_exit2(op: str, c: Tuple[Any, ...], p: Any, tm: TermMap) -> Event:
    return Exit2Signal(_pid(op, "FromPid", c[1]), _pid(op, "ToPid", c[2]), c[-1])


def _b_exit2_payload(op: str, c: Tuple[Any, ...], p: Any, tm: TermMap) -> Event:
    return Exit2Signal(_pid(op, "FromPid", c[1]), _pid(op, "ToPid", c[2]), p)


def _b_unlink(op: str, c: Tuple[Any, ...], p: Any, tm: TermMap) -> Event:
    return Unlink(_pid(op, "FromPid", c[1]), _pid(op, "ToPid", c[2]))


def _unlink_id(op: str, value: Any) -> int:
    if type(value) is not int or not 1 <= value <= _MAX_UNLINK_ID:
        raise _bad(op, f"Id is not an integer in 1..2**64-1 but a {_describe(value)}")
    return value


def _b_unlink_id(op: str, c: Tuple[Any, ...], p: Any, tm: TermMap) -> Event:
    return UnlinkId(_unlink_id(op, c[1]), _pid(op, "FromPid", c[2]), _pid(op, "ToPid", c[3]))


def _b_unlink_id_ack(op: str, c: Tuple[Any, ...], p: Any, tm: TermMap) -> Event:
    return UnlinkIdAck(_unlink_id(op, c[1]), _pid(op, "FromPid", c[2]), _pid(op, "ToPid", c[3]))


def _b_group_leader(op: str, c: Tuple[Any, ...], p: Any, tm: TermMap) -> Event:
    return GroupLeader(_pid(op, "FromPid", c[1]), _pid(op, "ToPid", c[2]))


def _b_monitor(op: str, c: Tuple[Any, ...], p: Any, tm: TermMap) -> Event:
    return MonitorP(_pid(op, "FromPid", c[1]), _pid_or_atom(op, "ToProc", c[2], tm), _ref(op, "Ref", c[3]))


def _b_demonitor(op: str, c: Tuple[Any, ...], p: Any, tm: TermMap) -> Event:
    return DemonitorP(_pid(op, "FromPid", c[1]), _pid_or_atom(op, "ToProc", c[2], tm), _ref(op, "Ref", c[3]))


def _b_monitor_exit(op: str, c: Tuple[Any, ...], p: Any, tm: TermMap) -> Event:
    return MonitorPExit(_pid_or_atom(op, "FromProc", c[1], tm), _pid(op, "ToPid", c[2]), _ref(op, "Ref", c[3]), c[4])


def _b_monitor_exit_payload(op: str, c: Tuple[Any, ...], p: Any, tm: TermMap) -> Event:
    return MonitorPExit(_pid_or_atom(op, "FromProc", c[1], tm), _pid(op, "ToPid", c[2]), _ref(op, "Ref", c[3]), p)


def _b_spawn_request(op: str, c: Tuple[Any, ...], p: Any, tm: TermMap) -> Event:
    mfa = c[4]
    if type(mfa) is not tuple or len(mfa) != 3:
        raise _bad(op, f"the entry point is not a {{Module, Function, Arity}} tuple but a {_describe(mfa)}")
    module = _atom(op, "Module", mfa[0], tm)
    function = _atom(op, "Function", mfa[1], tm)
    arity = mfa[2]
    if type(arity) is not int or arity < 0:
        raise _bad(op, f"Arity is not a non-negative integer but a {_describe(arity)}")
    args = _proper_list(op, "the argument list (payload)", p)
    if len(args) != arity:
        raise _bad(op, f"Arity {arity} but {len(args)} arguments")
    return SpawnRequest(
        _ref(op, "ReqId", c[1]),
        _pid(op, "From", c[2]),
        _pid(op, "GroupLeader", c[3]),
        module,
        function,
        arity,
        _proper_list(op, "OptList", c[5]),
        args,
    )


def _b_spawn_reply(op: str, c: Tuple[Any, ...], p: Any, tm: TermMap) -> Event:
    flags = c[3]
    if type(flags) is not int or flags < 0:
        raise _bad(op, f"Flags is not a non-negative integer but a {_describe(flags)}")
    return SpawnReply(_ref(op, "ReqId", c[1]), _pid(op, "To", c[2]), flags, _pid_or_atom(op, "Result", c[4], tm))


_OPS: Dict[int, _Op] = {
    LINK: _Op("LINK", 3, False, _b_link),
    SEND: _Op("SEND", 3, True, _b_send),
    EXIT: _Op("EXIT", 4, False, _b_exit),
    UNLINK: _Op("UNLINK", 3, False, _b_unlink),
    REG_SEND: _Op("REG_SEND", 4, True, _b_reg_send),
    GROUP_LEADER: _Op("GROUP_LEADER", 3, False, _b_group_leader),
    EXIT2: _Op("EXIT2", 4, False, _b_exit2),
    SEND_TT: _Op("SEND_TT", 4, True, _b_send),
    EXIT_TT: _Op("EXIT_TT", 5, False, _b_exit),
    REG_SEND_TT: _Op("REG_SEND_TT", 5, True, _b_reg_send),
    EXIT2_TT: _Op("EXIT2_TT", 5, False, _b_exit2),
    MONITOR_P: _Op("MONITOR_P", 4, False, _b_monitor),
    DEMONITOR_P: _Op("DEMONITOR_P", 4, False, _b_demonitor),
    MONITOR_P_EXIT: _Op("MONITOR_P_EXIT", 5, False, _b_monitor_exit),
    SEND_SENDER: _Op("SEND_SENDER", 3, True, _b_send_sender),
    SEND_SENDER_TT: _Op("SEND_SENDER_TT", 4, True, _b_send_sender),
    PAYLOAD_EXIT: _Op("PAYLOAD_EXIT", 3, True, _b_exit_payload),
    PAYLOAD_EXIT_TT: _Op("PAYLOAD_EXIT_TT", 4, True, _b_exit_payload),
    PAYLOAD_EXIT2: _Op("PAYLOAD_EXIT2", 3, True, _b_exit2_payload),
    PAYLOAD_EXIT2_TT: _Op("PAYLOAD_EXIT2_TT", 4, True, _b_exit2_payload),
    PAYLOAD_MONITOR_P_EXIT: _Op("PAYLOAD_MONITOR_P_EXIT", 4, True, _b_monitor_exit_payload),
    SPAWN_REQUEST: _Op("SPAWN_REQUEST", 6, True, _b_spawn_request),
    SPAWN_REQUEST_TT: _Op("SPAWN_REQUEST_TT", 7, True, _b_spawn_request),
    SPAWN_REPLY: _Op("SPAWN_REPLY", 5, False, _b_spawn_reply),
    SPAWN_REPLY_TT: _Op("SPAWN_REPLY_TT", 6, False, _b_spawn_reply),
    ALIAS_SEND: _Op("ALIAS_SEND", 3, True, _b_alias_send),
    ALIAS_SEND_TT: _Op("ALIAS_SEND_TT", 4, True, _b_alias_send),
    UNLINK_ID: _Op("UNLINK_ID", 4, False, _b_unlink_id),
    UNLINK_ID_ACK: _Op("UNLINK_ID_ACK", 4, False, _b_unlink_id_ack),
}

# The control tuples' first bytes when Erlang writes them: version, SMALL_TUPLE_EXT
# and arity, SMALL_INTEGER_EXT and the operation.
_SEND_SENDER_HEAD = bytes((_VERSION, 104, 3, 97, SEND_SENDER))
_REG_SEND_HEAD = bytes((_VERSION, 104, 4, 97, REG_SEND))
_ALIAS_SEND_HEAD = bytes((_VERSION, 104, 3, 97, ALIAS_SEND))
_EMPTY_ATOM = b"w\x00"


def parse(packet: bytes, tm: TermMap) -> Optional[Event]:
    """Read one connected-phase message (without its 4-byte length) as an event.

    Args:
        packet: the message's bytes; ``b""`` is a tick.
        tm: the connection's term map (pids and refs come out as snowg's).

    Returns:
        The event, or None for a tick.

    Raises:
        ErlangProtocolError: the message is malformed (see the module
            docstring); the text names the operation and the problem.

    Never blocks.
    """
    if type(packet) is not bytes:
        packet = bytes(packet)
    n = len(packet)
    if n == 0:
        return None
    first = packet[0]
    if first != PASS_THROUGH:
        raise _not_pass_through(packet)
    # Fast paths for the messages of every send (and of every gen_server
    # reply, ALIAS_SEND): the control tuple is read
    # straight from its bytes, its pids through the term map's cache; any
    # other shape (an old atom tag, say) falls through to the general path.
    if packet[1:6] == _SEND_SENDER_HEAD:
        got = tm.read_pid(packet, 6)
        if got is not None:
            got2 = tm.read_pid(packet, got[1])
            if got2 is not None and got2[1] < n:
                msg, end = _payload(packet, got2[1], "SEND_SENDER", tm)
                if end == n:
                    return Send(got[0], got2[0], msg)
    elif packet[1:6] == _ALIAS_SEND_HEAD:
        got = tm.read_pid(packet, 6)
        if got is not None:
            alias = tm.read_ref(packet, got[1])
            if alias is not None and alias[1] < n:
                msg, end = _payload(packet, alias[1], "ALIAS_SEND", tm)
                if end == n:
                    return AliasSend(got[0], alias[0], msg)
    elif packet[1:6] == _REG_SEND_HEAD:
        got = tm.read_pid(packet, 6)
        if got is not None:
            at = got[1]
            if packet[at : at + 3] == b"w\x00w":
                name_end = at + 4 + packet[at + 3] if at + 3 < n else n + 1
                if name_end < n:
                    try:
                        name = Atom(packet[at + 4 : name_end].decode("utf-8"))
                    except UnicodeDecodeError:
                        name = None
                    if name is not None:
                        msg, end = _payload(packet, name_end, "REG_SEND", tm)
                        if end == n:
                            return RegSend(got[0], name, msg)
    return _parse_general(packet, tm)


def _parse_general(packet: bytes, tm: TermMap) -> Event:
    n = len(packet)
    if n == 1:
        raise ErlangProtocolError("pass-through message of no control message (only the byte 112)")
    try:
        ctl, at = tm.decode_dist(packet, 1)
    except ErlangProtocolError as e:
        raise ErlangProtocolError(f"control message: {e}") from None
    if type(ctl) is not tuple or not ctl or type(ctl[0]) is not int:
        raise ErlangProtocolError(f"the control message is not a tuple starting with an operation: {_describe(ctl)}")
    spec = _OPS.get(ctl[0])
    if spec is None:
        raise ErlangProtocolError(f"unknown control message operation {ctl[0]} (tuple of {len(ctl)})")
    op = spec.name
    if len(ctl) != spec.arity:
        raise _bad(op, f"a tuple of {len(ctl)} elements, expected {spec.arity}")
    payload: Any = None
    if spec.payload:
        if at == n:
            raise _bad(op, "the payload term is missing")
        payload, at = _payload(packet, at, op, tm)
    if at != n:
        what = "the payload" if spec.payload else "the control message (it takes no payload)"
        raise _bad(op, f"{n - at} bytes after {what}")
    return spec.build(op, ctl, payload, tm)


def _payload(packet: bytes, at: int, op: str, tm: TermMap) -> Tuple[Any, int]:
    try:
        return tm.decode_dist(packet, at)
    except ErlangProtocolError as e:
        raise _bad(op, f"payload: {e}") from None


def _not_pass_through(packet: bytes) -> ErlangProtocolError:
    first = packet[0]
    second = packet[1] if len(packet) > 1 else -1
    if first == _VERSION and second == _DIST_HEADER:
        return ErlangProtocolError(
            "a distribution header with an atom cache (131 68): DIST_HDR_ATOM_CACHE was not negotiated"
        )
    if first == _VERSION and second in (_DIST_FRAG_HEADER, _DIST_FRAG_CONT):
        return ErlangProtocolError(
            f"a fragmented distribution message (131 {second}): DFLAG_FRAGMENTS was not negotiated"
        )
    return ErlangProtocolError(f"not a pass-through message: first byte {first}, expected 112 ('p')")


# ----------------------------------------------------------------- encoding


class Encoder:
    """Writes whole frames (4-byte length, ``p``, control message, payload) for one peer.

    Args:
        tm: the connection's term map.
        peer_flags: the peer's distribution flags from the handshake; they
            choose SEND_SENDER over SEND and the PAYLOAD_* exits.

    Every method returns the frame's bytes and never blocks. A ``None``
    sender is this node's pid 0. Reasons go through :meth:`TermMap.reason`.
    Each raises ``TypeError`` (before anything is returned) for a value with
    no Erlang form or a field of the wrong type.
    """

    __slots__ = ("tm", "peer_flags", "send_sender", "exit_payload", "_node_pid")

    def __init__(self, tm: TermMap, peer_flags: int) -> None:
        self.tm = tm
        self.peer_flags = peer_flags
        self.send_sender = bool(peer_flags & DFLAG_SEND_SENDER)
        self.exit_payload = bool(peer_flags & DFLAG_EXIT_PAYLOAD)
        self._node_pid = Pid(tm.node, 0, tm.creation)

    # The frame: 4-byte length, then b"p", then the control message with its
    # version byte and the tuple's head (arity, operation), then its fields.
    def _frame(self, op: int, fields: Sequence[bytes], payload: Any = None, has_payload: bool = False) -> bytes:
        out = bytearray(b"\0\0\0\0p")
        out += bytes((_VERSION, 104, 1 + len(fields), 97, op))
        for field in fields:
            out += field
        if has_payload:
            self.tm.encode_into(out, payload)
        size = len(out) - 4
        if size > _MAX_FRAME:
            raise TypeError(f"a distribution message of {size} bytes is over the 4 GiB a frame can carry")
        struct.pack_into(">I", out, 0, size)
        return bytes(out)

    def _pid(self, pid: Optional[Pid]) -> bytes:
        return self.tm.pid_bytes(self._node_pid if pid is None else pid)

    def _term(self, value: Any) -> bytes:
        return self.tm.encode(value)[1:]

    def _proc(self, target: Union[Pid, str], what: str) -> bytes:
        if type(target) is Pid:
            return self.tm.pid_bytes(target)
        if isinstance(target, str):
            return atom_bytes(target)
        raise TypeError(f"{what} must be a Pid or a registered name (str), not {type(target).__name__}")

    def send(self, sender: Optional[Pid], to: Pid, msg: Any) -> bytes:
        """SEND_SENDER (or SEND when the peer lacks DFLAG_SEND_SENDER) of ``msg`` to ``to``."""
        tm = self.tm
        if self.send_sender:
            out = bytearray(b"\0\0\0\0p")
            out += _SEND_SENDER_HEAD
            out += tm.pid_bytes(self._node_pid if sender is None else sender)
            out += tm.pid_bytes(to)
            tm.encode_into(out, msg)
            size = len(out) - 4
            if size > _MAX_FRAME:
                raise TypeError(f"a distribution message of {size} bytes is over the 4 GiB a frame can carry")
            struct.pack_into(">I", out, 0, size)
            return bytes(out)
        return self._frame(SEND, (_EMPTY_ATOM, tm.pid_bytes(to)), msg, True)

    def reg_send(self, sender: Optional[Pid], name: str, msg: Any) -> bytes:
        """REG_SEND of ``msg`` to the process registered as ``name`` on the peer."""
        return self._frame(REG_SEND, (self._pid(sender), _EMPTY_ATOM, _name(name, "name")), msg, True)

    def alias_send(self, sender: Optional[Pid], alias: Ref, msg: Any) -> bytes:
        """ALIAS_SEND of ``msg`` to the process alias ``alias``."""
        return self._frame(ALIAS_SEND, (self._pid(sender), self.tm.ref_bytes(alias)), msg, True)

    def link(self, from_: Pid, to: Pid) -> bytes:
        """LINK from ``from_`` to ``to``."""
        return self._frame(LINK, (self._pid(from_), self.tm.pid_bytes(to)))

    def unlink(self, from_: Pid, to: Pid) -> bytes:
        """UNLINK (the old link protocol, for a peer without DFLAG_UNLINK_ID) from ``from_`` to ``to``."""
        return self._frame(UNLINK, (self._pid(from_), self.tm.pid_bytes(to)))

    def group_leader(self, from_: Pid, to: Pid) -> bytes:
        """GROUP_LEADER: ``from_`` becomes the group leader of ``to``."""
        return self._frame(GROUP_LEADER, (self._pid(from_), self.tm.pid_bytes(to)))

    def unlink_id(self, id: int, from_: Pid, to: Pid) -> bytes:
        """UNLINK_ID ``id`` (1..2**64-1) from ``from_`` to ``to``."""
        return self._frame(UNLINK_ID, (_id_bytes(id), self._pid(from_), self.tm.pid_bytes(to)))

    def unlink_id_ack(self, id: int, from_: Pid, to: Pid) -> bytes:
        """UNLINK_ID_ACK ``id``: ``from_`` acknowledges the UNLINK_ID that ``to`` sent."""
        return self._frame(UNLINK_ID_ACK, (_id_bytes(id), self._pid(from_), self.tm.pid_bytes(to)))

    def exit(self, from_: Pid, to: Pid, reason: Any) -> bytes:
        """EXIT over the link ``from_``-``to`` (PAYLOAD_EXIT when the peer has DFLAG_EXIT_PAYLOAD)."""
        reason = self.tm.reason(reason)
        if self.exit_payload:
            return self._frame(PAYLOAD_EXIT, (self._pid(from_), self.tm.pid_bytes(to)), reason, True)
        return self._frame(EXIT, (self._pid(from_), self.tm.pid_bytes(to), self._term(reason)))

    def exit2(self, from_: Pid, to: Pid, reason: Any) -> bytes:
        """EXIT2 (``exit(to, reason)`` called by ``from_``), PAYLOAD_EXIT2 when the peer has it."""
        reason = self.tm.reason(reason)
        if self.exit_payload:
            return self._frame(PAYLOAD_EXIT2, (self._pid(from_), self.tm.pid_bytes(to)), reason, True)
        return self._frame(EXIT2, (self._pid(from_), self.tm.pid_bytes(to), self._term(reason)))

    def monitor_p(self, from_: Pid, target: Union[Pid, str], ref: Ref) -> bytes:
        """MONITOR_P: ``from_`` monitors ``target`` (a pid or a name registered on the peer)."""
        return self._frame(MONITOR_P, (self._pid(from_), self._proc(target, "target"), self.tm.ref_bytes(ref)))

    def demonitor_p(self, from_: Pid, target: Union[Pid, str], ref: Ref) -> bytes:
        """DEMONITOR_P: ``from_`` drops its monitor ``ref`` of ``target``."""
        return self._frame(DEMONITOR_P, (self._pid(from_), self._proc(target, "target"), self.tm.ref_bytes(ref)))

    def monitor_p_exit(self, from_: Union[Pid, str], to: Pid, ref: Ref, reason: Any) -> bytes:
        """MONITOR_P_EXIT (PAYLOAD_ form when the peer has it): the monitored ``from_`` ended."""
        reason = self.tm.reason(reason)
        fields = [self._proc(from_, "from_"), self.tm.pid_bytes(to), self.tm.ref_bytes(ref)]
        if self.exit_payload:
            return self._frame(PAYLOAD_MONITOR_P_EXIT, fields, reason, True)
        fields.append(self._term(reason))
        return self._frame(MONITOR_P_EXIT, fields)

    def spawn_request(
        self,
        req_id: Ref,
        from_: Pid,
        group_leader: Pid,
        module: str,
        function: str,
        args: list,  # type: ignore[type-arg]
        opts: list,  # type: ignore[type-arg]
    ) -> bytes:
        """SPAWN_REQUEST of ``module:function(*args)``; a plain ``str`` among ``opts`` is sent as an atom."""
        if type(args) is not list or type(opts) is not list:
            raise TypeError("args and opts of a spawn request must be lists")
        mfa = atom_bytes(module) + atom_bytes(function) + self._term(len(args))
        opts_bytes = self._term([Atom(o) if type(o) is str else o for o in opts])
        fields = (
            self.tm.ref_bytes(req_id),
            self._pid(from_),
            self.tm.pid_bytes(group_leader),
            b"h\x03" + mfa,
            opts_bytes,
        )
        return self._frame(SPAWN_REQUEST, fields, args, True)

    def spawn_reply(self, req_id: Ref, to: Pid, flags: int, result: Any) -> bytes:
        """SPAWN_REPLY to ``to``: ``result`` the new pid, or the reason (a ``str``, sent as an atom)."""
        if type(flags) is not int or not 0 <= flags < 1 << 32:
            raise TypeError(f"spawn reply flags must be a non-negative int, not {flags!r}")
        if type(result) is Pid:
            result_bytes = self.tm.pid_bytes(result)
        elif isinstance(result, str):
            result_bytes = atom_bytes(result)
        else:
            raise TypeError(f"a spawn reply's result is a Pid or an atom (str), not {type(result).__name__}")
        return self._frame(
            SPAWN_REPLY, (self.tm.ref_bytes(req_id), self.tm.pid_bytes(to), self._term(flags), result_bytes)
        )


def _name(name: Any, what: str) -> bytes:
    if not isinstance(name, str):
        raise TypeError(f"{what} must be a str (an atom), not {type(name).__name__}")
    return atom_bytes(name)


def _id_bytes(value: Any) -> bytes:
    if type(value) is not int or not 1 <= value <= _MAX_UNLINK_ID:
        raise TypeError(f"an unlink id is an int in 1..2**64-1, not {value!r}")
    return _etf.encode(value)[1:]
