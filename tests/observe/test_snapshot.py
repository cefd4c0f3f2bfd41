"""``snowg.observe.snapshot`` asked of a real peer node over ``rpc.call``, and the spawnable introspection.

The peer is a ``snowg node`` OS process importing :mod:`observefuncs` (a
supervision tree and a lonely process) and :mod:`wsfuncs` (a WebSocket
server: a real client joins a real room there). Everything the test waits
for is a message from the peer or a snapshot it asks for again
(``wait_for``), never a sleep.
"""

pytest_plugins = ["snowg.testing"]

import json  # noqa: E402
from typing import Any, Dict, List  # noqa: E402

import pytest  # noqa: E402
import websocket  # noqa: E402

import observefuncs  # noqa: E402
import snowg  # noqa: E402
import wsfuncs  # noqa: E402
from snowg import rpc  # noqa: E402
from snowg.testing import wait_for  # noqa: E402
from support import recv, tagged  # noqa: E402

TIME_LIMIT = 90
pytestmark = pytest.mark.timeout(90)


def snapshot(node: str, **kwargs: Any) -> Dict[str, Any]:
    return rpc.call(node, "snowg.observe:snapshot", timeout=10, **kwargs)


def row(snap: Dict[str, Any], pid: snowg.Pid) -> Dict[str, Any]:
    [found] = [p for p in snap["processes"] if p["pid"] == str(pid)]
    return found


def ids(children: List[Dict[str, Any]]) -> List[Any]:
    return [c["id"] for c in children]


def test_a_peers_snapshot_holds_its_processes_tree_groups_rooms_and_sessions(peers, me):
    peer = peers.start(modules=["observefuncs", "wsfuncs"])
    roles = peer.rpc(observefuncs.start_tree, me)
    crasher = recv(tagged("crasher"))[1]
    lonely = recv(tagged("lonely"))[1]
    assert crasher == roles["crasher"] and lonely.node == peer.name

    # A real WebSocket client in a real room on the peer.
    port = peer.rpc(wsfuncs.start_server, report_to=me)
    client = websocket.create_connection(f"ws://127.0.0.1:{port}/", timeout=10)
    client.send("join lobby")
    assert client.recv() == "joined lobby"
    recv(tagged("joined"))
    assert wait_for(lambda: snapshot(peer.name)["rooms"] != [], timeout=10)

    for n in range(3):
        snowg.send(lonely, ("unread", n))
    snap = snapshot(peer.name)
    json.dumps(snap)  # plain terms only

    assert snap["node"] == peer.name
    assert snap["nodes"] == [snowg.node()]
    assert snap["process_count"] == len(snap["processes"])
    # The lonely process: found by its initial call, with its name, queue and group.
    [lone] = [p for p in snap["processes"] if p["initial_call"] == "observefuncs.lonely"]
    assert lone["pid"] == str(lonely)
    assert (lone["name"], lone["status"], lone["message_queue_len"]) == ("lonely", "waiting", 3)
    assert lone["supervisor"] is None and lone["links"] == []
    # The Counter GenServer: its class as initial call, its supervisor and links.
    counter = row(snap, roles["counter"])
    assert counter["initial_call"] == "observefuncs.Counter"
    assert counter["name"] == "obs_counter"
    assert counter["supervisor"] == str(roles["sup"]) == counter["parent"]
    assert counter["links"] == [str(roles["sup"])]
    assert row(snap, roles["sup"])["initial_call"] == "snowg.supervisor._server.Supervisor"

    # The supervision tree, nested supervisor unfolded.
    [tree] = [t for t in snap["supervisors"] if t["name"] == "obs_sup"]
    assert (tree["pid"], tree["strategy"], tree["intensity"], tree["status"]) == (
        str(roles["sup"]),
        "one_for_one",
        5,
        "running",
    )
    assert (tree["restarts"], tree["recent_restarts"]) == (0, 0)
    assert ids(tree["children"]) == ["counter", "crasher", "inner"]
    assert [c["type"] for c in tree["children"]] == ["worker", "worker", "supervisor"]
    assert all(c["node"] == peer.name for c in tree["children"])
    inner = tree["children"][2]["tree"]
    assert (inner["name"], inner["pid"]) == ("obs_inner", str(roles["inner"]))
    assert ids(inner["children"]) == ["leaf"]
    [leaf_row] = [p for p in snap["processes"] if p["initial_call"] == "observefuncs.idle"]
    assert leaf_row["supervisor"] == str(roles["inner"])
    assert inner["children"][0]["pid"] == leaf_row["pid"]
    # Only roots at the top: the nested supervisor is not listed again.
    assert [t["name"] for t in snap["supervisors"]] == ["obs_sup"]

    # Groups and rooms, with member counts.
    assert {"scope": "snowg_pg", "group": "team", "members": 1, "local_members": 1} in snap["groups"]
    assert snap["rooms"] == [{"room": "lobby", "members": 1, "local_members": 1}]

    # Its session to this node.
    [session] = snap["sessions"]
    assert session["node"] == snowg.node()
    assert session["bytes_in"] > 0 and session["bytes_out"] > 0
    assert session["queued"] >= 0 and session["busy_limit"] == 1024 * 1024
    assert session["suspended_senders"] == 0
    assert 0 <= session["last_heard"] and session["tick"] == 1.0

    assert snap["counts"] == {"crashes": 0, "restarts": 0, "give_ups": 0}
    assert snap["cpu_tracing"] is False

    # A crash and its restart, as the peer counts them.
    snowg.send(crasher, "crash now")
    restarted = recv(tagged("crasher"))[1]
    assert restarted != crasher
    snap = snapshot(peer.name)
    assert snap["counts"] == {"crashes": 1, "restarts": 1, "give_ups": 0}
    [tree] = snap["supervisors"]
    assert (tree["restarts"], tree["recent_restarts"]) == (1, 1)
    assert tree["children"][1]["pid"] == str(restarted)
    client.close()


def test_limit_keeps_the_longest_queues(peers, me):
    peer = peers.start(modules=["observefuncs"])
    peer.rpc(observefuncs.start_tree, me)
    lonely = recv(tagged("lonely"))[1]
    for n in range(4):
        snowg.send(lonely, n)
    snowg.sys.suspend(("obs_counter", peer.name))
    for n in range(2):
        snowg.cast(("obs_counter", peer.name), ("add", n))
    assert snowg.sys.get_state(("obs_counter", peer.name)) == 5
    snap = snapshot(peer.name, limit=2)
    assert [(p["name"], p["message_queue_len"]) for p in snap["processes"]] == [("lonely", 4), ("obs_counter", 2)]
    assert snap["process_count"] > 2
    snowg.sys.resume(("obs_counter", peer.name))
    assert snowg.call(("obs_counter", peer.name), "get") == 6


def test_a_suspended_supervisor_still_shows_its_tree(peers, me):
    peer = peers.start(modules=["observefuncs"])
    roles = peer.rpc(observefuncs.start_tree, me)
    snowg.sys.suspend(roles["sup"])
    [tree] = snapshot(peer.name)["supervisors"]
    assert (tree["status"], ids(tree["children"])) == ("suspended", ["counter", "crasher", "inner"])
    snowg.sys.resume(roles["sup"])
    assert snowg.sys.get_status(roles["sup"])["status"] == "running"


def test_the_read_only_introspection_functions_are_spawnable(peers, me):
    peer = peers.start(modules=["observefuncs"])
    roles = peer.rpc(observefuncs.start_tree, me)
    lonely = recv(tagged("lonely"))[1]
    pids = rpc.call(peer.name, snowg.processes)
    assert lonely in pids and roles["sup"] in pids
    assert all(p.node == peer.name for p in pids)
    assert rpc.call(peer.name, snowg.whereis, "lonely") == lonely
    assert rpc.call(peer.name, snowg.is_alive, lonely) is True
    assert "obs_sup" in rpc.call(peer.name, snowg.registered)
    info = rpc.call(peer.name, snowg.process_info, lonely, ["initial_call", "registered_name", "parent"])
    assert sorted(info) == ["initial_call", "parent", "registered_name"]
    assert (info["initial_call"], info["registered_name"]) == ("observefuncs.lonely", "lonely")
    assert info["parent"].node == peer.name  # the rpc runner that ran start_tree there
    # A process spawned from this node: its parent is the caller, here.
    remote = snowg.spawn(observefuncs.idle, node=peer.name)
    assert rpc.call(peer.name, snowg.process_info, remote, ["initial_call", "parent"]) == {
        "initial_call": "observefuncs.idle",
        "parent": me,
    }
    kids = rpc.call(peer.name, snowg.supervisor.which_children, "obs_sup")
    assert [k[0] for k in kids] == ["counter", "crasher", "inner"]
    assert rpc.call(peer.name, snowg.supervisor.count_children, "obs_sup")["active"] == 3
    assert rpc.call(peer.name, snowg.sys.get_state, "obs_counter") == 5
    assert rpc.call(peer.name, snowg.sys.get_status, "obs_counter")["module"] == "observefuncs.Counter"


def test_sys_across_nodes(peers, me):
    peer = peers.start(modules=["observefuncs"])
    peer.rpc(observefuncs.start_tree, me)
    counter = ("obs_counter", peer.name)
    snowg.cast(counter, ("add", 2))
    assert snowg.sys.get_state(counter) == 7
    assert snowg.sys.get_status(counter)["module"] == "observefuncs.Counter"
    # A function cannot cross nodes: replace_state is for local servers.
    with pytest.raises(TypeError):
        snowg.sys.replace_state(counter, lambda s: s + 1)
    # A supervisor's state record cannot cross either: get_state says so, the supervisor lives on.
    with pytest.raises(TypeError):
        snowg.sys.get_state(("obs_sup", peer.name))
    assert snowg.sys.get_status(("obs_sup", peer.name))["state"]["name"] == "obs_sup"
