"""The runners: what a parent supervisor spawns on another node to start a GenServer or a supervisor there.

A remote worker that is a plain function is started with a remote
``spawn_link`` of that ``@spawnable`` function. A remote ``GenServer`` or a
remote nested supervisor needs more: it counts as started only once it has
initialised, and its class or its child specs must cross the wire. So the
parent remote-spawns one of these two runners, ``@spawnable`` under the names
of ``_wire`` on every node that imports ``snowg``. The runner becomes the
child itself (it runs the server loop in the spawned process) and
acknowledges its start to the parent with gen_server's start protocol, which
is made of plain terms and so works across nodes.
"""

from __future__ import annotations

from typing import Any, List, Tuple

from .._core import exit
from ..cluster import lookup_spawnable, spawnable
from ..gen_server import Starter, ack_fail, run_server
from ._server import Supervisor
from ._spec import ChildSpec, Flags, check_children, gen_server_class
from ._wire import RUN_GEN_SERVER, RUN_SUPERVISOR, BadRemoteSpec, decode_children


@spawnable(RUN_GEN_SERVER)
def run_gen_server(starter: Starter, class_name: Any, args: Tuple[Any, ...], name: Any) -> None:
    """The body of a remote GenServer child: look its class up here, then run it (with init ack)."""
    cls = gen_server_class(lookup_spawnable(class_name)) if type(class_name) is str else None
    if cls is None:
        ack_fail(starter, ("not_spawnable", class_name))
        exit("normal")
    else:
        run_server(starter, cls, tuple(args), name)


@spawnable(RUN_SUPERVISOR)
def run_supervisor(starter: Starter, children: Any, options: Any) -> None:
    """The body of a remote nested supervisor: rebuild its specs here, then run it (with init ack).

    It acknowledges once all its children have started, so the parent's start
    order still means "started and initialised".
    """
    try:
        flags, specs = _rebuild(children, options)
    except BadRemoteSpec as e:
        ack_fail(starter, e.reason)
        exit("normal")
    else:
        run_server(starter, Supervisor, (flags, specs), flags.name)


def _rebuild(children: Any, options: Any) -> Tuple[Flags, List[ChildSpec]]:
    """A remote supervisor's flags and child specs, from their wire form.

    Raises:
        BadRemoteSpec: they cannot be rebuilt here (the parent's mistake, or a
            mismatch between the two nodes' code).
    """
    if type(options) is not dict:
        raise BadRemoteSpec(("bad_flags", repr(options)[:200]))
    try:
        flags = Flags.from_options(options)
        return flags, check_children(decode_children(children), flags.strategy)
    except BadRemoteSpec:
        raise
    except (TypeError, ValueError) as e:
        raise BadRemoteSpec(("bad_flags", str(e))) from None
