"""The group leader BEAM processes spawned by this node write to: Erlang's I/O protocol, output only.

A process that a snowg node spawns on a BEAM node gets this node's group
leader (registered ``snowg.erlang.group_leader``), so its ``io:format`` and
``io:put_chars`` come here as ``{io_request, From, ReplyAs, Request}``. The
text is logged at INFO through the ``snowg`` logger and answered
``{io_reply, ReplyAs, ok}``; input requests (``get_line``, ``get_chars``,
...) and options are answered ``{error, enotsup}``.

``io:format`` sends ``{put_chars, unicode, io_lib, format, [Format, Args]}``:
the formatting happens here, with the directives of ``io_lib:format`` that
have a plain text form (``~p ~P ~w ~W ~s ~a ~c ~d ~b ~B ~x ~X ~# ~+ ~e ~f
~g ~i ~n ~~``; widths and precision are read and mostly ignored). A format
this module cannot follow, or any other ``{put_chars, Enc, M, F, A}``, is
answered ``{error, {unsupported_format, ...}}``/``{error, enotsup}``, as an
Erlang device answers what it cannot do.
"""

from __future__ import annotations

import logging
import re
from typing import Any, List, Tuple

from .._core import Atom, Pid, Ref, receive, send
from ._types import BitBinary, ErlPort, ImproperList, OpaqueTerm

log = logging.getLogger("snowg")

#: The registered name of the group leader process.
GROUP_LEADER = "snowg.erlang.group_leader"

#: At most this many characters of one request are logged (the rest is cut, marked).
MAX_LOGGED = 64 * 1024

_MAX_DEPTH = 100
_IO_REQUEST = "io_request"
_IO_REPLY = Atom("io_reply")
_OK = Atom("ok")
_ERROR = Atom("error")
_ENOTSUP = (_ERROR, Atom("enotsup"))
_INPUT = ("get_chars", "get_line", "get_until", "get_password")


class FormatError(ValueError):
    """A format or its arguments that this module cannot turn into text (Erlang would say ``badarg``)."""


def group_leader_loop() -> None:
    """The body of the group leader process: answer I/O requests for ever.

    Blocks in ``receive``; ends only by an exit signal. Messages that are not
    I/O requests are dropped.
    """
    while True:
        msg = receive()
        if type(msg) is tuple and len(msg) == 4 and msg[0] == _IO_REQUEST and type(msg[1]) is Pid:
            _, from_, reply_as, request = msg
            try:
                answer = handle_request(from_, request)
            except Exception:  # noqa: BLE001 - a bad request never ends the group leader
                log.exception("the group leader could not answer an I/O request from %s", from_)
                answer = _ENOTSUP
            send(from_, (_IO_REPLY, reply_as, answer))


def handle_request(from_: Any, request: Any, depth: int = 0) -> Any:
    """Carry out one I/O request (logging its text); returns the reply value.

    Never blocks.
    """
    if type(request) is tuple and request:
        kind = request[0]
        if kind == "put_chars":
            try:
                text = put_chars_text(request[1:])
            except FormatError as e:
                return (_ERROR, (Atom("unsupported_format"), str(e)))
            if text is None:
                return _ENOTSUP
            if len(text) > MAX_LOGGED:
                text = text[:MAX_LOGGED] + f"... ({len(text) - MAX_LOGGED} more characters)"
            log.info("%s: %s", from_, text[:-1] if text.endswith("\n") else text)
            return _OK
        if kind == "requests" and len(request) == 2 and type(request[1]) is list and depth == 0:
            answer: Any = _OK
            for sub in request[1]:
                answer = handle_request(from_, sub, 1)
                if type(answer) is tuple and answer and answer[0] == "error":
                    break
            return answer
    return _ENOTSUP


def put_chars_text(args: Tuple[Any, ...]) -> Any:
    """The text of a ``put_chars`` request's arguments (after the tag); None when it cannot be had.

    Forms: ``(Enc, Chars)``, ``(Chars)``, ``(Enc, M, F, A)``, ``(M, F, A)``;
    only ``io_lib:format/2`` (and ``fwrite``) is applied for the last two.

    Raises:
        FormatError: the characters or the format cannot be read.
    """
    if len(args) == 2 and type(args[0]) is Atom:
        return chars_text(args[1], latin1=args[0] == "latin1")
    if len(args) == 1:
        return chars_text(args[0], latin1=True)
    if len(args) == 4 and type(args[0]) is Atom:
        args = args[1:]
    if len(args) == 3:
        mod, fun, fargs = args
        if mod == "io_lib" and fun in ("format", "fwrite") and type(fargs) is list and len(fargs) == 2:
            return erl_format(fargs[0], fargs[1])
    return None


def chars_text(chars: Any, latin1: bool = False) -> str:
    """Erlang chardata (binaries, code points, nested lists; an atom too) as text.

    Raises:
        FormatError: something else is in it, or it nests too deep.
    """
    out: List[str] = []
    stack: List[Tuple[Any, int]] = [(chars, 0)]
    while stack:
        item, depth = stack.pop()
        if type(item) is str or type(item) is Atom:
            out.append(str(item))
        elif type(item) is bytes:
            out.append(item.decode("latin-1" if latin1 else "utf-8", "replace"))
        elif type(item) is int:
            if not 0 <= item <= 0x10FFFF:
                raise FormatError(f"{item} is not a character")
            out.append(chr(item))
        elif type(item) is list:
            if depth >= _MAX_DEPTH:
                raise FormatError("characters nested too deep")
            stack.extend((x, depth + 1) for x in reversed(item))
        else:
            raise FormatError(f"not characters: {item!r}")
    return "".join(out)


_DIRECTIVE = re.compile(r"~(-?(?:\d+|\*))?(?:\.(\d+|\*)?)?(?:\.(.))?([tlk]*)(.)", re.DOTALL)


def erl_format(fmt: Any, args: Any) -> str:
    """``io_lib:format(Format, Args)`` for the directives that have a plain text form.

    Raises:
        FormatError: a directive is unknown here, or the arguments do not fit it.
    """
    text = chars_text(fmt)
    if type(args) is not list:
        raise FormatError("the arguments of a format are a list")
    rest = list(args)
    out: List[str] = []
    pos = 0

    def take() -> Any:
        if not rest:
            raise FormatError(f"too few arguments for {text!r}")
        return rest.pop(0)

    while True:
        at = text.find("~", pos)
        if at < 0:
            out.append(text[pos:])
            break
        out.append(text[pos:at])
        m = _DIRECTIVE.match(text, at)
        if m is None:
            raise FormatError(f"a '~' ends the format {text!r}")
        width, precision, _pad, _mods, control = m.groups()
        if width == "*" or width == "-*":
            take()
        if precision == "*":
            take()
        out.append(_directive(control, take, precision))
        pos = m.end()
    if rest:
        raise FormatError(f"too many arguments for {text!r}")
    return "".join(out)


def _directive(control: str, take: Any, precision: Any) -> str:  # noqa: C901 - one dispatch
    if control == "n":
        return "\n"
    if control == "~":
        return "~"
    if control in ("p", "w"):
        return erl_repr(take(), pretty=control == "p")
    if control in ("P", "W"):
        term = take()
        take()  # the depth
        return erl_repr(term, pretty=control == "P")
    if control == "s":
        return chars_text(take())
    if control == "a":
        value = take()
        if not isinstance(value, str):
            raise FormatError(f"~a needs an atom, not {value!r}")
        return str(value)
    if control == "c":
        value = take()
        return chars_text([value])
    if control in ("d", "b", "B", "x", "X", "#", "+"):
        value = take()
        if type(value) is not int:
            raise FormatError(f"~{control} needs an integer, not {value!r}")
        base = int(precision) if precision and precision != "*" and control in "bBX#+" else 10
        if control in ("x", "X"):
            take()  # the prefix
        if not 2 <= base <= 36:
            raise FormatError(f"base {base}")
        return _int_text(value, base)
    if control in ("e", "f", "g"):
        value = take()
        if type(value) not in (int, float):
            raise FormatError(f"~{control} needs a number, not {value!r}")
        digits = int(precision) if precision and precision != "*" else 6
        return f"{float(value):.{digits}{control}}"
    if control == "i":
        take()
        return ""
    raise FormatError(f"the directive ~{control} is not supported")


def _int_text(value: int, base: int) -> str:
    if base == 10:
        return str(value)
    digits = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    n, out = abs(value), []
    while True:
        n, d = divmod(n, base)
        out.append(digits[d])
        if n == 0:
            break
    return ("-" if value < 0 else "") + "".join(reversed(out))


def _escape(text: str, quote: str) -> str:
    return text.replace("\\", "\\\\").replace(quote, "\\" + quote)


_PLAIN_ATOM = re.compile(r"[a-z][A-Za-z0-9_@]*\Z")


def erl_repr(term: Any, pretty: bool = True, depth: int = 0) -> str:  # noqa: C901 - one dispatch
    """A term as Erlang prints it (``~p`` with ``pretty``, else ``~w``), on one line.

    Raises:
        FormatError: the term nests too deep.
    """
    if depth > _MAX_DEPTH:
        raise FormatError("a term nested too deep to print")
    if term is True:
        return "true"
    if term is False:
        return "false"
    if term is None:
        return "undefined"
    t = type(term)
    if t is Atom:
        return str(term) if _PLAIN_ATOM.match(term) else "'" + _escape(str(term), "'") + "'"
    if t is int or t is float:
        return repr(term)
    if t is str:
        return '<<"' + _escape(str(term), '"') + '"/utf8>>'
    if t is bytes:
        return "<<" + ",".join(str(b) for b in term) + ">>"
    if t is tuple:
        return "{" + ",".join(erl_repr(x, pretty, depth + 1) for x in term) + "}"
    if t is list:
        if pretty and term and all(type(c) is int and (32 <= c < 127 or c in (9, 10)) for c in term):
            return '"' + _escape("".join(chr(c) for c in term), '"') + '"'
        return "[" + ",".join(erl_repr(x, pretty, depth + 1) for x in term) + "]"
    if t is ImproperList:
        head = ",".join(erl_repr(x, pretty, depth + 1) for x in term.items)
        return "[" + head + "|" + erl_repr(term.tail, pretty, depth + 1) + "]"
    if t is dict:
        pairs = (erl_repr(k, pretty, depth + 1) + " => " + erl_repr(v, pretty, depth + 1) for k, v in term.items())
        return "#{" + ",".join(pairs) + "}"
    if t is Pid or t is Ref or t in (ErlPort, BitBinary, OpaqueTerm):
        return str(term)
    return repr(term)
