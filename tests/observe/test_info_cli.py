"""``snowg info NODE``: a real peer node, the real command in its own OS process, its exact tables."""

from __future__ import annotations

import json
import os
import sys
from typing import List, Tuple

import gevent.subprocess
import pytest

import infofuncs
from snowg.observe import _info_cli
from snowg.observe._info_cli import format_snapshot

pytestmark = pytest.mark.timeout(90)


def run_info(config, *args: str) -> Tuple[int, str, str]:
    """``python -m snowg info ARGS`` with the test cluster's cookie and certificates; (status, out, err)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.getcwd(), *sys.path]))
    cmd = [sys.executable, "-m", "snowg", "info", *args, "--cookie", config.cookie, "--certs", config.certs]
    proc = gevent.subprocess.Popen(
        cmd, stdout=gevent.subprocess.PIPE, stderr=gevent.subprocess.PIPE, env=env, text=True
    )
    out, err = proc.communicate(timeout=60)  # cooperative: this node answers the command meanwhile
    return proc.returncode, out, err


def section(out: str, title: str) -> List[List[str]]:
    """The rows (split on runs of two spaces or more) of the table under the line starting with ``title``."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(title))
    rows = []
    for line in lines[start + 1 :]:
        if not line:
            break
        rows.append([cell.strip() for cell in line.strip().split("  ") if cell.strip()])
    return rows


def test_info_prints_a_peer_s_processes_sessions_and_supervisors(peers, snowg_cluster_config, snowg_node):
    peer = peers.start(modules=["infofuncs"])
    sup, box = peer.rpc(infofuncs.setup)
    status, out, err = run_info(snowg_cluster_config, peer.name, "--top", "3")
    assert status == 0, err
    first = out.splitlines()[0]
    assert first.startswith(f"node {peer.name}: ")
    assert first.endswith("crashes 1, restarts 1, supervisors that gave up 0")
    assert f"({snowg_node.name}" in first or f", {snowg_node.name}" in first  # its peers: this node, the command's
    procs = section(out, "Top processes by message queue length")
    assert procs[0] == ["PID", "NAME", "STARTED WITH", "STATUS", "QUEUE", "SUPERVISOR"]
    assert procs[1] == [str(box), "busy_box", "infofuncs.never_reads", "waiting", str(infofuncs.QUEUED), "-"]
    assert len(procs) == 1 + 3
    sessions = section(out, "Sessions (")
    assert sessions[0] == ["NODE", "ADDRESS", "BYTES IN", "BYTES OUT", "QUEUED", "SUSPENDED", "LAST HEARD (s)"]
    assert snowg_node.name in [row[0] for row in sessions[1:]]
    sups = section(out, "Supervisors (")
    assert sups[0] == ["SUPERVISOR / CHILD", "PID", "TYPE", "STRATEGY / NODE", "STATUS", "RESTARTS"]
    row = next(r for r in sups if r[0] == "info_sup")
    assert row == ["info_sup", str(sup), "supervisor", "one_for_one", "running", "1 (1 recent)"]
    child = sups[sups.index(row) + 1]
    assert child[0] == "worker" and child[2:] == ["worker", peer.name]


def test_info_as_json(peers, snowg_cluster_config):
    peer = peers.start(modules=["infofuncs"])
    sup, box = peer.rpc(infofuncs.setup)
    status, out, err = run_info(snowg_cluster_config, peer.name, "--json", "--top", "1")
    assert status == 0, err
    snap = json.loads(out)
    assert snap["node"] == peer.name
    assert [(p["pid"], p["name"], p["message_queue_len"]) for p in snap["processes"]] == [
        (str(box), "busy_box", infofuncs.QUEUED)
    ]
    assert snap["counts"] == {"crashes": 1, "restarts": 1, "give_ups": 0}


def test_info_on_a_node_that_is_not_there(snowg_cluster_config):
    status, out, err = run_info(snowg_cluster_config, "nobody@127.0.0.1:1", "--timeout", "5")
    assert (status, out) == (1, "")
    assert "snowg info: cannot connect to nobody@127.0.0.1:1" in err


def test_the_tables_of_a_snapshot():
    snap = {
        "node": "a@h",
        "nodes": ["b@h"],
        "process_count": 3,
        "processes": [
            {
                "pid": "<a@h.1.1>",
                "name": None,
                "initial_call": "m.f",
                "status": "waiting",
                "message_queue_len": 0,
                "supervisor": None,
            },
            {
                "pid": "<a@h.2.1>",
                "name": "box",
                "initial_call": "m.g",
                "status": "runnable",
                "message_queue_len": 12,
                "supervisor": "<a@h.3.1>",
            },
        ],
        "sessions": [
            {
                "node": "b@h",
                "address": "127.0.0.1:9100",
                "bytes_in": 2048,
                "bytes_out": 100,
                "queued": 0,
                "suspended_senders": 0,
                "last_heard": 0.25,
            },
        ],
        "supervisors": [
            {
                "pid": "<a@h.3.1>",
                "name": "top",
                "status": "running",
                "strategy": "one_for_all",
                "restarts": 2,
                "recent_restarts": 1,
                "children": [
                    {"id": "box", "pid": "<a@h.2.1>", "type": "worker", "node": "a@h"},
                    {
                        "id": "sub",
                        "pid": "<a@h.4.1>",
                        "type": "supervisor",
                        "node": "a@h",
                        "tree": {
                            "pid": "<a@h.4.1>",
                            "name": None,
                            "status": "running",
                            "strategy": "one_for_one",
                            "restarts": 0,
                            "recent_restarts": 0,
                            "children": [{"id": "far", "pid": "restarting", "type": "worker", "node": None}],
                        },
                    },
                ],
            },
        ],
        "counts": {"crashes": 4, "restarts": 2, "give_ups": 0},
    }
    assert format_snapshot(snap, top=5) == (
        "node a@h: 3 processes, 1 connected node (b@h); crashes 4, restarts 2, supervisors that gave up 0\n"
        "\n"
        "Top processes by message queue length (2 of 3)\n"
        "PID        NAME  STARTED WITH  STATUS    QUEUE  SUPERVISOR\n"
        "<a@h.2.1>  box   m.g           runnable     12  <a@h.3.1>\n"
        "<a@h.1.1>  -     m.f           waiting       0  -\n"
        "\n"
        "Sessions (1)\n"
        "NODE  ADDRESS         BYTES IN  BYTES OUT  QUEUED  SUSPENDED  LAST HEARD (s)\n"
        "b@h   127.0.0.1:9100   2.0 KiB      100 B     0 B          0            0.25\n"
        "\n"
        "Supervisors (1 tree)\n"
        "SUPERVISOR / CHILD  PID         TYPE        STRATEGY / NODE  STATUS   RESTARTS\n"
        "top                 <a@h.3.1>   supervisor  one_for_all      running  2 (1 recent)\n"
        "  box               <a@h.2.1>   worker      a@h\n"
        "  sub               <a@h.4.1>   supervisor  one_for_one      running  0 (0 recent)\n"
        "    far             restarting  worker      -\n"
    )


def test_bad_options_are_a_usage_error(capsys):
    assert _info_cli.info_main(["a@h", "--top", "-1"]) == 2
    assert "--top must be 0 or more" in capsys.readouterr().err
