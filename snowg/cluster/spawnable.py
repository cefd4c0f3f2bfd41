"""The functions other nodes may start here: ``@spawnable``.

A peer names a function; only a name registered with :func:`spawnable` is
ever looked up and called. Nothing else a peer sends is treated as code.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, Optional, TypeVar, Union, overload

F = TypeVar("F", bound=Callable[..., Any])

_registry: Dict[str, Callable[..., Any]] = {}


def qualified_name(fn: Callable[..., Any]) -> str:
    """``module.qualname`` of a function: the default name it is spawnable under."""
    return f"{fn.__module__}.{fn.__qualname__}"


@overload
def spawnable(fn: F) -> F: ...


@overload
def spawnable(fn: str) -> Callable[[F], F]: ...


def spawnable(fn: Union[F, str]) -> Union[F, Callable[[F], F]]:
    """Allow ``fn`` to be spawned from other nodes (decorator).

    ``@spawnable`` registers it under ``module.qualname``; ``@spawnable('name')``
    under ``name``. The module must be imported on the node that runs it (for
    ``snowg node``, with ``--import``).
    """
    if isinstance(fn, str):
        name = fn

        def register(f: F) -> F:
            _register(name, f)
            return f

        return register
    _register(qualified_name(fn), fn)
    return fn


def _register(name: str, fn: Callable[..., Any]) -> None:
    if not callable(fn):
        raise TypeError(f"@spawnable needs a callable, got {type(fn).__name__}")
    _registry[name] = fn
    try:
        fn.__snowg_spawnable__ = name  # type: ignore[attr-defined]
    except (AttributeError, TypeError):
        pass  # builtins and some callables take no attributes; the registry is what counts


def lookup(name: str) -> Optional[Callable[..., Any]]:
    """The function registered as ``name``, or None."""
    return _registry.get(name)


def name_of(fn: Union[str, Callable[..., Any]]) -> str:
    """The name under which a peer will look ``fn`` up."""
    if isinstance(fn, str):
        return fn
    return getattr(fn, "__snowg_spawnable__", None) or qualified_name(fn)
