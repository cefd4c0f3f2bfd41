"""Distribution flags: what each side of an Erlang connection says it can do.

Both sides of the handshake send a 64-bit word of ``DFLAG_*`` bits (the
values of OTP's ``dist.hrl``); the connection then uses the features both
offered. OTP 25 refuses a peer without the flags it made mandatory
(:data:`MANDATORY_25`: the external-term features every node since OTP 23
has); it also accepts the single bit :data:`MANDATORY_25_DIGEST` as a
shorthand for them, and so does :func:`check_peer`.

:data:`OFFERED` is what snowg sends: the mandatory set and its digest bit,
plus the signals snowg will carry (``V4_NC``, ``UNLINK_ID``, monitors,
``EXIT_PAYLOAD``, ``SEND_SENDER``, ``SPAWN``, ``ALIAS``). ``PUBLISHED`` is
off: snowg joins as a hidden node by default (a published node must speak
``global``'s protocol). :func:`names` turns a word into flag names for logs.
"""

from __future__ import annotations

from typing import Dict, List

from ._errors import ErlangProtocolError

__all__ = ["FLAG_NAMES", "MANDATORY_25", "OFFERED", "check_peer", "describe", "names"]

DFLAG_PUBLISHED = 0x01
DFLAG_ATOM_CACHE = 0x02
DFLAG_EXTENDED_REFERENCES = 0x04
DFLAG_DIST_MONITOR = 0x08
DFLAG_FUN_TAGS = 0x10
DFLAG_DIST_MONITOR_NAME = 0x20
DFLAG_HIDDEN_ATOM_CACHE = 0x40
DFLAG_NEW_FUN_TAGS = 0x80
DFLAG_EXTENDED_PIDS_PORTS = 0x100
DFLAG_EXPORT_PTR_TAG = 0x200
DFLAG_BIT_BINARIES = 0x400
DFLAG_NEW_FLOATS = 0x800
DFLAG_UNICODE_IO = 0x1000
DFLAG_DIST_HDR_ATOM_CACHE = 0x2000
DFLAG_SMALL_ATOM_TAGS = 0x4000
DFLAG_ETS_COMPRESSED = 0x8000
DFLAG_UTF8_ATOMS = 0x10000
DFLAG_MAP_TAG = 0x20000
DFLAG_BIG_CREATION = 0x40000
DFLAG_SEND_SENDER = 0x80000
DFLAG_BIG_SEQTRACE_LABELS = 0x100000
DFLAG_NO_MAGIC = 0x200000
DFLAG_EXIT_PAYLOAD = 0x400000
DFLAG_FRAGMENTS = 0x800000
DFLAG_HANDSHAKE_23 = 0x1000000
DFLAG_UNLINK_ID = 0x2000000
DFLAG_MANDATORY_25_DIGEST = 0x4000000
DFLAG_SPAWN = 1 << 32
DFLAG_NAME_ME = 1 << 33
DFLAG_V4_NC = 1 << 34
DFLAG_ALIAS = 1 << 35

#: The flags OTP 25 requires of a peer (``MANDATORY_DFLAGS_25`` in ``dist.hrl``).
MANDATORY_25 = (
    DFLAG_EXTENDED_REFERENCES
    | DFLAG_FUN_TAGS
    | DFLAG_NEW_FUN_TAGS
    | DFLAG_EXTENDED_PIDS_PORTS
    | DFLAG_EXPORT_PTR_TAG
    | DFLAG_BIT_BINARIES
    | DFLAG_NEW_FLOATS
    | DFLAG_UTF8_ATOMS
    | DFLAG_MAP_TAG
    | DFLAG_BIG_CREATION
    | DFLAG_HANDSHAKE_23
)

#: What snowg offers: hidden (no ``PUBLISHED``), every mandatory flag, and the signals it carries.
OFFERED = (
    MANDATORY_25
    | DFLAG_MANDATORY_25_DIGEST
    | DFLAG_V4_NC
    | DFLAG_UNLINK_ID
    | DFLAG_DIST_MONITOR
    | DFLAG_DIST_MONITOR_NAME
    | DFLAG_EXIT_PAYLOAD
    | DFLAG_SEND_SENDER
    | DFLAG_SPAWN
    | DFLAG_ALIAS
)

#: Bit -> name (without ``DFLAG_``), for logs.
FLAG_NAMES: Dict[int, str] = {
    value: name[len("DFLAG_") :] for name, value in sorted(globals().items()) if name.startswith("DFLAG_")
}


def names(flags: int) -> List[str]:
    """The names of the bits set in ``flags``, lowest first; unknown bits as ``bit<N>``."""
    found = []
    for bit in range(64):
        if flags >> bit & 1:
            found.append(FLAG_NAMES.get(1 << bit, f"bit{bit}"))
    return found


def describe(flags: int) -> str:
    """``flags`` for a log line: hexadecimal, then the names."""
    return f"{flags:#x} ({', '.join(names(flags)) or 'none'})"


def check_peer(flags: int, peer: str) -> None:
    """Check that a peer's flags include every flag OTP 25 makes mandatory.

    The bit ``MANDATORY_25_DIGEST`` stands for all of them, as in OTP 25.

    Raises:
        ErlangProtocolError: flags are missing; the message names the peer and them.
    """
    if flags & DFLAG_MANDATORY_25_DIGEST:
        return
    missing = MANDATORY_25 & ~flags
    if missing:
        raise ErlangProtocolError(
            f"{peer} lacks mandatory distribution flags: {', '.join(names(missing))} (flags {flags:#x})"
        )
