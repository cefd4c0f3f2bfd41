"""OTP's supervisor on snowg processes.

A supervisor is a process (a :class:`~snowg.GenServer` that traps exits)
that starts its children, watches them through links, and restarts them
according to a *strategy* (semantics rules 13-20):

* ``'one_for_one'`` (default): only the child that ended is restarted.
* ``'one_for_all'``: the others are stopped (reverse start order), then all
  are started again (start order).
* ``'rest_for_one'``: the children started after the one that ended are
  stopped (reverse order), then it and they are started again.
* ``'simple_one_for_one'``: one template spec and no children at start;
  ``start_child(sup, extra_args)`` starts the template with ``args +
  extra_args``. Children are kept in a dict by pid (cheap with 10,000s of
  them) and are stopped all at once, not one by one. Their id is None.

Restart types (``ChildSpec.restart``): ``'permanent'`` (default) always,
``'transient'`` unless the reason is ``'normal'``, ``'shutdown'`` or
``('shutdown', term)``, ``'temporary'`` never (not even when a sibling's end
takes it down), and its spec is forgotten when it ends.

Restart intensity: at most ``intensity`` (default 1) restarts within
``period`` (default 5) seconds, the window including its boundary. One more
and the supervisor stops all its children (reverse order), logs
``reached_max_restart_intensity`` (logger ``snowg``) and exits with
``'shutdown'``, which its own supervisor sees as the end of a child:
failures escalate up the tree. ``intensity=0``: the first restart ends it.
A restart whose start fails is retried through a message the supervisor
sends itself (so that it keeps answering requests meanwhile); each retry
counts as a restart.

Stopping a child (``ChildSpec.shutdown``): monitor it, ``exit(child,
'shutdown')``, wait up to ``shutdown`` seconds (default 5 for workers,
``'infinity'`` for supervisors) for it to end, then ``exit(child, 'kill')``;
``'brutal_kill'`` kills at once. A supervisor stops its children when it
ends: when its parent sends it an exit signal (with that signal's reason),
on too many restarts, or by ``auto_shutdown``:

* ``'never'`` (default);
* ``'any_significant'``: when any ``significant`` child ends and is not restarted;
* ``'all_significant'``: when the last running significant child ends so.

Reports go to the ``snowg`` logger, named as OTP's: ``child_terminated``
(ERROR for an abnormal end, INFO for a deliberate one), ``start_error``,
``shutdown_error`` (a child that did not end with the expected reason while
being stopped), ``reached_max_restart_intensity``.

Remote children (``ChildSpec(node=...)``):

* ``node='name@host'``: the child is started with a remote ``spawn_link`` of
  its ``fn``, which must be ``@spawnable`` (or be given by its registered
  name, a ``str``); ``args``/``kwargs`` must be terms that cross nodes. Its
  pid carries that node; its end arrives as an ordinary trapped exit signal
  and drives the strategy as for a local child. A restart goes to the same
  node, never silently to this one.
* ``node=['a@h', 'b@h', ...]``: candidate nodes. At every start and restart
  the child starts on the first one that can be reached, in list order; so
  when its node is lost it comes back on the next candidate (and on an
  earlier one again once that is back, at a later restart). A candidate that
  is this node starts the child here.
* Node loss: the child ends with ``'noconnection'`` (an abnormal end; restart
  types apply). A node that is not connected is connected on demand (to its
  last known address) for at most ``connect_timeout`` seconds (a flag of
  ``start_link``, default 5). When no candidate can be reached the start
  fails with reason ``'noconnection'``, and like any failed restart it is
  retried through the supervisor's mailbox, each retry counting toward
  intensity: a node that stays away ends the supervisor with ``'shutdown'``;
  a node that is back in time (e.g. restarted under the same name) gets the
  child back.
* Stopping a remote child honours its ``shutdown`` exactly as for a local one
  (monitor, ``'shutdown'``, wait for ``Down``, then ``'kill'``); a child whose
  node is gone counts as stopped at once (its ``Down`` is ``'noconnection'``).
* A remote ``GenServer`` child: the class must be ``@spawnable`` (decorate the
  class itself: a subclass does not inherit the name). The parent spawns the
  runner ``snowg.supervisor.run_gen_server`` on the node, which looks the
  class up there and runs the server in the spawned process; the child counts
  as started once ``init`` returned there (an acknowledgement to the parent).
  ``kwargs`` may hold ``name`` (registered on that node) and ``timeout``.
* A remote nested supervisor: ``child_spec(id, children, node=...)``. Its
  specs travel to the node in a wire form (each ``fn`` by its spawnable
  name, looked up there) and the runner ``snowg.supervisor.run_supervisor``
  runs the supervisor in the spawned process; it counts as started once its
  own children started (an acknowledgement to the parent). Its children
  without ``node`` run on its node; it restarts them there by its own
  strategy, and ends (stopping them) when the parent's node is lost.
  ``which_children``/``count_children``/``start_child`` work on its remote pid.
* Mixed trees (local and remote children) stop and start in exactly the
  same order as local ones under every strategy.

The dynamic API (``start_child`` ...) sends a request to the supervisor
process and waits for its answer; it raises ``NoProc`` when the supervisor
is gone. Errors follow OTP (semantics rule 19) as ``SupervisorError`` subclasses;
on a ``simple_one_for_one`` supervisor, ``restart_child`` and
``delete_child`` (and ``terminate_child`` with anything but a pid) raise
:class:`SimpleOneForOne` (OTP's ``{error, simple_one_for_one}``).
"""

from .._errors import (
    AlreadyPresent,
    AlreadyStarted,
    NotFound,
    Restarting,
    Running,
    SimpleOneForOne,
    StartError,
    SupervisorError,
)
from ._api import (
    child_spec,
    count_children,
    delete_child,
    restart_child,
    start,
    start_child,
    start_link,
    terminate_child,
    which_children,
)
from ._runners import run_gen_server, run_supervisor
from ._spec import CHILD_CONNECT_TIMEOUT, ChildSpec

__all__ = [
    "CHILD_CONNECT_TIMEOUT",
    "ChildSpec",
    "SimpleOneForOne",
    "child_spec",
    "count_children",
    "delete_child",
    "restart_child",
    "run_gen_server",
    "run_supervisor",
    "start",
    "start_child",
    "start_link",
    "terminate_child",
    "which_children",
    # the errors of the dynamic API (also importable from snowg)
    "AlreadyPresent",
    "AlreadyStarted",
    "NotFound",
    "Restarting",
    "Running",
    "StartError",
    "SupervisorError",
]
