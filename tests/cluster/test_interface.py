"""The cluster layer's interface for the layers above: names, terms, spawnables, extensions."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

import snowg
from snowg import cluster
from snowg.cluster import check_node_name, check_term, is_node_name, spawnable, spawnable_name


@pytest.mark.parametrize("name", ["a@b", "alice@127.0.0.1", "n_1@host.example", "x@[::1]"])
def test_valid_node_names(name: str) -> None:
    assert is_node_name(name)
    assert check_node_name(name) == name.split("@")[1]


@pytest.mark.parametrize(
    "name", ["", "ab", "a@b@c", "@b", "a@", "@", "a b@c", "a@b c", "a\t@b", "a@b\n", "a\x00@b", b"a@b", None, 3]
)
def test_invalid_node_names(name: Any) -> None:
    assert not is_node_name(name)
    with pytest.raises(ValueError, match="not of the form 'name@host'"):
        check_node_name(name)


@pytest.mark.parametrize("term", [None, 1, 2**80, "s", b"b", (1, [2, {"k": (3,)}]), snowg.Pid("a@b", 1, 2)])
def test_check_term_accepts_terms(term: Any) -> None:
    check_term(term)


@pytest.mark.parametrize("value", [{1, 2}, object(), [lambda: 0], {"k": frozenset()}])
def test_check_term_refuses_what_cannot_cross(value: Any) -> None:
    with pytest.raises(TypeError):
        check_term(value)


def test_check_term_refuses_a_term_nested_too_deeply() -> None:
    deep: Any = []
    for _ in range(100_000):
        deep = [deep]
    with pytest.raises(TypeError, match="cannot cross nodes"):
        check_term(deep)


@spawnable("tests.interface.declared")
def _declared() -> None:
    pass


@spawnable
class _DeclaredClass:
    pass


class _Subclass(_DeclaredClass):
    pass


def _undeclared() -> None:
    pass


def test_spawnable_names() -> None:
    assert spawnable_name("any.name") == "any.name"
    assert spawnable_name(_declared) == "tests.interface.declared"
    assert cluster.lookup_spawnable("tests.interface.declared") is _declared
    assert spawnable_name(_DeclaredClass) == f"{__name__}._DeclaredClass"
    assert spawnable_name(_Subclass) is None  # a class is declared itself, not through its parent
    assert spawnable_name(_undeclared) is None
    assert cluster.lookup_spawnable("tests.interface.nothing") is None


def test_a_frame_tag_is_registered_once() -> None:
    with pytest.raises(ValueError, match="already declared as SEND"):
        cluster.register_frame_handler(1, "MINE", (), lambda peer, frame: None)


def test_a_process_that_is_not_a_node() -> None:
    """In a fresh process: start_node checks names with the one rule, frames go nowhere,
    and certificates (cryptography) load on first use (tests/test_imports.py checks import snowg)."""
    code = (
        "import sys, snowg\n"
        "from snowg import cluster\n"
        "try:\n"
        "    snowg.start_node('a@b@c')\n"
        "except snowg.NodeError as exc:\n"
        "    assert 'not of the form' in str(exc), exc\n"
        "else:\n"
        "    raise AssertionError('a@b@c accepted')\n"
        "assert cluster.current() is None\n"
        "assert cluster.send_frame('b@h', [0]) is False\n"
        "assert cluster.broadcast_frame([0]) == 0\n"
        "assert 'cryptography' not in sys.modules\n"
        "from snowg.cluster import make_certs\n"
        "assert 'cryptography' in sys.modules\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
