"""The demo node's tree counts, in this process: its telemetry handler is attached by ``start_tree`` only.

Importing ``snowg.demo.node_app`` (the launcher does, for its functions'
names) must attach nothing: a handler attached on import stayed attached for
the rest of the importing process, and made every supervisor there send
restart events to it.
"""

from __future__ import annotations

from typing import List

import snowg
from snowg import supervisor, telemetry
from snowg.demo import node_app

TIME_LIMIT = 20


def tree_handlers() -> List[str]:
    return [h.id for h in telemetry.list_handlers(("snowg", "supervisor")) if h.id == node_app.TREE_HANDLER]


def test_importing_the_node_app_attaches_no_handler_and_start_tree_counts_its_restarts(me) -> None:
    # (No test of this process starts a tree but this one, which detaches its handler at the end.)
    assert tree_handlers() == []

    try:
        sup_text = node_app.start_tree([])
        sup = snowg.whereis(node_app.SUP_NAME)
        assert sup is not None and str(sup) == sup_text
        # One entry per event: restart and give-up.
        assert tree_handlers() == [node_app.TREE_HANDLER, node_app.TREE_HANDLER]

        before = dict((cid, pid) for cid, pid, _ in supervisor.which_children(sup))["local-1"]
        ref = snowg.monitor(before)
        assert node_app.crash_child("local-1") == str(before)
        down = snowg.receive(lambda m: type(m) is snowg.Down and m.ref == ref, timeout=10)
        assert down.reason.type == "RuntimeError"
        after = dict((cid, pid) for cid, pid, _ in supervisor.which_children(sup))["local-1"]
        assert after != before
        state = node_app.tree_state()
        assert state["restarts"] == 1 and state["gave_up"] is None

        # A second start_tree while the tree runs returns it, and attaches nothing twice.
        assert node_app.start_tree([]) == sup_text
        assert len(tree_handlers()) == 2
    finally:
        running = snowg.whereis(node_app.SUP_NAME)
        if running is not None:
            ref = snowg.monitor(running)
            snowg.exit(running, "kill")
            snowg.receive(lambda m: type(m) is snowg.Down and m.ref == ref, timeout=10)
        telemetry.detach(node_app.TREE_HANDLER)
