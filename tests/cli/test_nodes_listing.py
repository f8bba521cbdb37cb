"""`ps`, `compose ps` and `top --once` name the cluster node of an agent that runs on another one:
a NODE column only then (a listing of local agents is unchanged), `cluster_node` in --json always."""

from __future__ import annotations

import json
import os
from pathlib import Path

from rnix.ui.proctable import PROCESS_FIELDS
from tests.conftest import RunRnix
from tests.nodes import record_run


def test_ps_and_compose_ps_show_node_only_when_an_agent_runs_on_another_node(
    rnix: RunRnix, rnix_home: Path
) -> None:
    record_run(rnix_home, {"here": (os.getpid(), None)}, project="local")
    assert rnix("ps", "-a").stdout.splitlines()[0].split()[:4] == ["PID", "PPID", "PROJECT", "AGENT"]
    local = json.loads(rnix("ps", "-a", "--json").stdout)["data"]["processes"]
    assert [(p["agent"], p["node"], p["cluster_node"]) for p in local] == [("here", "here", None)]

    record_run(rnix_home, {"here": (os.getpid(), None), "there": (4242, "worker-1")}, project="spread")
    header, *lines = rnix("compose", "-p", "spread", "ps", "-a").stdout.splitlines()
    assert header.split()[:4] == ["PID", "PPID", "NODE", "AGENT"]
    rows = {line.split()[3]: line.split()[:3] for line in lines}
    assert rows == {"here": [str(os.getpid()), str(os.getpid()), "-"], "there": ["4242", "-", "worker-1"]}
    assert rnix("compose", "-p", "local", "ps", "-a").stdout.splitlines()[0].split()[2] == "AGENT"
    assert rnix("ps", "-a").stdout.splitlines()[0].split()[:5] == ["PID", "PPID", "NODE", "PROJECT", "RUN"]

    processes = json.loads(rnix("ps", "-a", "--json").stdout)["data"]["processes"]
    assert all(tuple(p) == PROCESS_FIELDS for p in processes)
    assert sorted((p["project"], p["agent"], p["cluster_node"]) for p in processes) == [
        ("local", "here", None),
        ("spread", "here", None),
        ("spread", "there", "worker-1"),
    ]
    composed = json.loads(rnix("compose", "-p", "spread", "ps", "-a", "--json").stdout)["data"]
    assert {p["agent"]: p["cluster_node"] for p in composed["processes"]} == {
        "here": None,
        "there": "worker-1",
    }
    template = rnix("compose", "-p", "spread", "ps", "-a", "--format", "{{.agent}} {{.cluster_node}}")
    assert sorted(template.stdout.splitlines()) == ["here -", "there worker-1"]


def test_top_once_shows_node_only_when_an_agent_runs_on_another_node(rnix: RunRnix, rnix_home: Path) -> None:
    record_run(rnix_home, {"here": (os.getpid(), None)}, project="local")
    assert "NODE" not in rnix("top", "--once", "-a").stdout.splitlines()[1].split()
    record_run(rnix_home, {"there": (4242, "worker-1")}, project="spread")
    lines = rnix("top", "--once", "-a", "-p", "spread").stdout.splitlines()
    assert lines[1].split()[:4] == ["PID", "PPID", "NODE", "PROJECT"]
    (there,) = [line.split() for line in lines[2:] if "there" in line]
    assert there[:4] == ["4242", "-", "worker-1", "spread"]  # no PPID: not the supervisor's child
    doc = json.loads(rnix("top", "--json", "-a").stdout)["data"]
    nodes = {(r["project"], a["agent"]): a["cluster_node"] for r in doc["runs"] for a in r["agents"]}
    assert nodes == {("local", "here"): None, ("spread", "there"): "worker-1"}
