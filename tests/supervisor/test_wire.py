"""The wire form of child specs (snowg.supervisor._wire), on one node: what crosses, what is refused.

A spec list goes to another node in this form when a nested supervisor runs
there; here it is encoded and decoded in the same process, which must give
back equal specs (each function looked up by its spawnable name).
"""

from __future__ import annotations

import pytest

from snowg import ChildSpec, supervisor
from snowg.cluster import check_term
from snowg.supervisor._spec import SUPERVISOR, Flags
from snowg.supervisor._wire import BadRemoteSpec, decode_children, encode_children, encode_spec
from supfuncs import Member, named_worker, worker

pytestmark = pytest.mark.timeout(30)


def fields(spec: ChildSpec) -> tuple:
    return (spec.id, spec.start, spec.restart, spec.shutdown, spec.type, spec.node, spec.significant)


def test_specs_survive_the_round_trip():
    inner = supervisor.child_spec("inner", [ChildSpec("w", (worker, ("x",)))], strategy="one_for_all", intensity=3)
    specs = [
        ChildSpec("f", (worker, (1, "f")), restart="transient", shutdown=0.5),
        ChildSpec("n", (named_worker, (2, "n"))),
        ChildSpec("g", (Member, (3, "g"), {"name": "member"}), significant=True, restart="temporary"),
        ChildSpec("r", (named_worker, ()), node=["a@h", "b@h"]),
        inner,
    ]
    wire = encode_children(specs, "the test")
    check_term(wire)  # plain terms only
    back = decode_children(wire)
    assert [fields(s) for s in back] == [fields(s) for s in specs]
    assert back[-1].fn is SUPERVISOR and back[-1].is_supervisor
    assert Flags.from_options(back[-1].kwargs) == Flags.from_options(inner.kwargs)


def test_what_cannot_cross_is_refused_when_encoding():
    def local_only() -> None:
        pass

    with pytest.raises(ValueError, match="spawnable"):
        encode_spec(ChildSpec("l", (local_only, ())), "the test")
    with pytest.raises(TypeError, match="cross"):
        encode_spec(ChildSpec("o", (worker, (object(),))), "the test")


@pytest.mark.parametrize(
    "wire, reason",
    [
        ("spec", "bad_child_spec"),
        (["spec", "x"], "bad_child_spec"),
        (["spec", "x", "fn", "no.such.function", (), {}, "permanent", 5.0, "worker", None, False], "not_spawnable"),
        (
            ["spec", "x", "gen_server", "supfuncs.named_worker", (), {}, "permanent", 5.0, "worker", None, False],
            "not_spawnable",
        ),
        (["spec", "x", "fn", "supfuncs.named_worker", (), {}, "forever", 5.0, "worker", None, False], "bad_child_spec"),
    ],
)
def test_a_bad_wire_spec_is_refused_with_a_plain_reason(wire, reason):
    with pytest.raises(BadRemoteSpec) as ei:
        decode_children([wire])
    assert ei.value.reason[0] == reason
    check_term(ei.value.reason)


def test_a_name_is_looked_up_here_or_kept_for_a_child_that_runs_further_on():
    """A name known here becomes the function; a child for yet another node keeps its name."""
    known = ["spec", "k", "fn", "supfuncs.named_worker", (), {}, "permanent", 5.0, "worker", ["c@h"], False]
    assert decode_children([known])[0].fn is named_worker
    wire = ["spec", "x", "fn", "elsewhere.fn", (), {}, "permanent", 5.0, "worker", ["c@h"], False]
    (spec,) = decode_children([wire])
    assert spec.fn == "elsewhere.fn" and spec.nodes == ("c@h",)
