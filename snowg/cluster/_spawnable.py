"""The functions other nodes may start here: ``@spawnable``.

A peer names a function; only a name registered with :func:`spawnable` is
ever looked up and called. Nothing else a peer sends is treated as code.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Dict, Optional, Sequence, TypeVar, Union, overload

F = TypeVar("F", bound=Callable[..., Any])

_registry: Dict[str, Callable[..., Any]] = {}
# name -> the signature of its function (None: it has none to check), made on first use.
_signatures: Dict[str, Optional[inspect.Signature]] = {}


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

    Raises:
        TypeError: the decorated object is not callable (the caller's mistake).
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
    _signatures.pop(name, None)
    try:
        fn.__snowg_spawnable__ = name  # type: ignore[attr-defined]
    except (AttributeError, TypeError):
        pass  # builtins and some callables take no attributes; the registry is what counts


def lookup_spawnable(name: str) -> Optional[Callable[..., Any]]:
    """The function registered as ``name`` on this node, or None."""
    return _registry.get(name)


def bad_arguments(name: str, fn: Callable[..., Any], args: Sequence[Any], kwargs: Dict[str, Any]) -> Optional[str]:
    """Why ``fn`` (registered as ``name``) cannot be called with these arguments, or None if it can."""
    try:
        sig = _signatures[name]
    except KeyError:
        try:
            sig = inspect.signature(fn)
        except (TypeError, ValueError):
            sig = None  # a builtin without a signature: it says so itself when called
        _signatures[name] = sig
    if sig is None:
        return None
    try:
        sig.bind(*args, **kwargs)
    except TypeError as exc:
        return str(exc)
    return None


def spawnable_name(fn: Union[str, Callable[..., Any]]) -> Optional[str]:
    """The name a peer looks ``fn`` up under, or None when ``fn`` was not declared ``@spawnable``.

    A str is a name already and is returned as it is. A class must be declared
    itself: a subclass does not inherit its parent's name.
    """
    if isinstance(fn, str):
        return fn
    if isinstance(fn, type):
        declared = fn.__dict__.get("__snowg_spawnable__")
    else:
        declared = getattr(fn, "__snowg_spawnable__", None)
    return declared if isinstance(declared, str) else None


def wire_name(fn: Union[str, Callable[..., Any]]) -> str:
    """The name sent to a peer for ``fn``: its spawnable name, else its qualified name.

    An undeclared function is still named, so that the peer refuses it with a
    message naming it (it is not spawnable there either).
    """
    name = spawnable_name(fn)
    if name is not None:
        return name
    return qualified_name(fn)  # type: ignore[arg-type]
