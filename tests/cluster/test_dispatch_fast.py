"""The dispatch fast path (cluster._dispatch): in-line layout checks equal to validate_frame's for their tags.

``SPAWN_REQUEST``, ``SPAWN_REPLY``, ``EXIT`` and ``MONITOR_EXIT`` frames go to
their handler after an in-line check instead of
:func:`~snowg.cluster._frames.validate_frame`. What the in-line check accepts
must be accepted by ``validate_frame`` (else a hostile frame would reach a
handler), and every frame of those tags that a peer really sends must take it
(else the fast path is dead code). Whatever it refuses goes the general way
and is refused with the same error as before.
"""

from __future__ import annotations

from typing import Any, List

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from snowg._core.terms import Pid, Ref
from snowg.cluster import _dispatch
from snowg.cluster import _frames as P
from snowg.cluster._frames import validate_frame
from snowg.cluster._framing import FrameDecoder, MalformedFrame, encode_frame

PID_A = Pid("a@h", 1, 10)
PID_B = Pid("b@h", 2, 20)
REF = Ref("a@h", 3, 10)

FAST_TAGS = (P.SPAWN_REQUEST, P.SPAWN_REPLY, P.EXIT, P.MONITOR_EXIT)

#: Frames of the fast tags as peers send them (after a round trip through the codec).
SENT: List[list] = [
    [P.SPAWN_REQUEST, REF, PID_A, "mod.fn", [1, PID_B, ("t", 2)], {}, ["link"]],
    [P.SPAWN_REQUEST, REF, PID_A, "mod.fn", [], {"k": 1, "j": [2]}, ["link", "monitor"]],
    [P.SPAWN_REQUEST, REF, PID_A, "snowg.rpc.runner", [PID_A, REF, "f", [1], {}], {}, ["monitor"]],
    [P.SPAWN_REQUEST, REF, PID_A, "mod.fn", [], {}, []],
    [P.SPAWN_REPLY, REF, PID_A, PID_B],
    [P.SPAWN_REPLY, REF, PID_A, "'f' is not spawnable on node b@h"],
    [P.EXIT, PID_A, PID_B, "normal"],
    [P.EXIT, PID_A, PID_B, ("shutdown", {"why": [1]})],
    [P.MONITOR_EXIT, PID_A, PID_B, REF, "noproc"],
    [P.MONITOR_EXIT, PID_A, PID_B, REF, (REF, "ok", 3)],
]


def _decoded(frame: list) -> Any:
    (out,) = FrameDecoder().feed(encode_frame(frame))
    return out


@pytest.mark.parametrize("frame", SENT, ids=lambda f: P.TAG_NAMES[f[0]])
def test_frames_as_sent_take_the_fast_path(frame: list) -> None:
    decoded = _decoded(frame)
    check, _handler = _dispatch._FAST[decoded[0]]
    assert check(decoded)
    assert validate_frame(decoded) == tuple(decoded)


_atoms = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 3),
    st.text(max_size=3),
    st.binary(max_size=2),
    st.just(PID_A),
    st.just(REF),
    st.floats(allow_nan=False),
)
_values = st.recursive(
    _atoms,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.tuples(inner, inner),
        st.dictionaries(st.one_of(st.text(max_size=2), st.integers(0, 2)), inner, max_size=2),
    ),
    max_leaves=6,
)


@st.composite
def _near_fast_frames(draw: Any) -> Any:
    """Frames of a fast tag: a valid one with a few of its fields replaced, dropped or added."""
    frame = list(draw(st.sampled_from(SENT)))
    for _ in range(draw(st.integers(0, 3))):
        action = draw(st.sampled_from(["replace", "drop", "add", "inner"]))
        if action == "replace" and len(frame) > 1:
            frame[draw(st.integers(1, len(frame) - 1))] = draw(_values)
        elif action == "drop" and len(frame) > 1:
            del frame[draw(st.integers(1, len(frame) - 1))]
        elif action == "add":
            frame.append(draw(_values))
        elif action == "inner" and frame[0] == P.SPAWN_REQUEST and len(frame) == 7:
            # A bad key in kwargs, or a bad entry in opts (when they are still a dict and a list).
            if type(frame[5]) is dict and draw(st.booleans()):
                frame[5] = {**frame[5], draw(st.one_of(st.integers(), st.none())): 1}
            elif type(frame[6]) is list:
                frame[6] = [*frame[6], draw(_values)]
    if draw(st.booleans()):
        frame = _decoded(frame)  # as the session hands it over
    return frame


@settings(max_examples=1500, deadline=None)
@given(_near_fast_frames())
def test_what_the_fast_path_accepts_validate_frame_accepts(frame: Any) -> None:
    check, _handler = _dispatch._FAST[frame[0]]
    try:
        validated = validate_frame(frame)
    except MalformedFrame:
        validated = None
    if check(frame):
        assert validated == tuple(frame)
    elif validated is not None:
        # Refused in line but valid: only a monitor of a registered name takes the general path.
        assert frame[0] == P.MONITOR_EXIT and type(frame[1]) is tuple


class _Sess:
    peer_name = "a@h"

    def check_from(self, pid: Pid) -> None:
        raise AssertionError("no handler may run for an invalid frame")


@pytest.mark.parametrize(
    "frame",
    [
        [P.SPAWN_REQUEST, REF, PID_A, "f", (1,), {}, []],
        [P.SPAWN_REQUEST, REF, PID_A, "f", [], {1: 2}, []],
        [P.SPAWN_REQUEST, REF, PID_A, "f", [], {}, ["link", 1]],
        [P.SPAWN_REQUEST, REF, PID_A, "f", [], {}],
        [P.SPAWN_REQUEST, PID_A, PID_A, "f", [], {}, []],
        [P.SPAWN_REPLY, REF, PID_A, 5],
        [P.SPAWN_REPLY, REF, "a", PID_A],
        [P.EXIT, PID_A, "b", "normal"],
        [P.EXIT, PID_A, PID_B],
        [P.MONITOR_EXIT, "server", PID_A, REF, 1],
        [P.MONITOR_EXIT, PID_A, PID_B, PID_A, 1],
        [P.MONITOR_EXIT, ("server", 1), PID_A, REF, 1],
    ],
)
def test_an_invalid_frame_of_a_fast_tag_is_refused_as_before(frame: list) -> None:
    with pytest.raises(MalformedFrame) as expected:
        validate_frame(frame)
    with pytest.raises(MalformedFrame) as got:
        _dispatch.on_frames(_Sess(), [frame])  # type: ignore[arg-type]
    assert str(got.value) == str(expected.value)
