"""The snapshot model and its rows (rnix.tui.snapshot, rnix.tui.rows): the tree, filtering, hiding
finished agents, counts, formats, the JSON document."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from typing import Any

import pytest

from rnix.store.db import ProcessRow, RunRow
from rnix.tui.procstat import ProcInfo
from rnix.tui.rows import COLUMNS, header_text, shown_columns, table_rows
from rnix.tui.snapshot import (
    AgentView,
    ChildView,
    RunView,
    Snapshot,
    clock,
    document,
    short_tokens,
    size,
    summary,
)

T0 = 1_700_000_000.0
C = {name: i for i, (name, _, _) in enumerate(COLUMNS)}  # a column's index in the cells


def run_row(run_id: str = "r1", **changes: Any) -> RunRow:
    base = RunRow(
        id=run_id,
        project="demo",
        compose_file="/p/compose.yaml",
        cwd="/p",
        status="running",
        supervisor_pid=100,
        supervisor_start_time=T0,
        detached=True,
        started_at=T0,
        ended_at=None,
        exit_code=None,
        tokens_used=0,
        stop_requested_at=None,
        stop_grace=None,
        plan_json=None,
    )
    return replace(base, **changes)


def agent_row(name: str, pid: int | None = None, **changes: Any) -> ProcessRow:
    base = ProcessRow(
        run_id="r1",
        agent=name,
        project="demo",
        layer=1,
        state="running" if pid else "pending",
        pid=pid,
        pid_start_time=T0 if pid else None,
        ppid=100 if pid else None,
        attempt=1,
        budget=1000,
        tokens_used=0,
        model="mock",
        kind="builtin",
        priority="normal",
        intent=f"intent of {name}",
        depends_on=(),
        started_at=T0 if pid else None,
        ended_at=None,
        elapsed_ms=None,
        exit_code=None,
        signal=None,
        result=None,
        error=None,
        log_path=None,
        out_path=None,
        paused_at=None,
        paused_ms=0,
        updated_at=T0,
    )
    return replace(base, **changes)


def proc(pid: int, ppid: int = 1, name: str = "python3", state: str = "S") -> ProcInfo:
    return ProcInfo(pid, ppid, name, state, T0, 1000 + pid, 1.5, 10 << 20, 1)


def child(pid: int, ppid: int, depth: int, command: str = "sleep 60") -> ChildView:
    return ChildView(proc(pid, ppid, command.split()[0]), command, depth)


def snap(*runs: RunView, show_all: bool = False) -> Snapshot:
    return Snapshot(T0 + 10, runs, show_all=show_all)


def names(rows: list[Any]) -> list[str]:
    return [r.cells[C["AGENT"]].text for r in rows]


def test_rows_form_a_tree_of_run_agents_and_processes() -> None:
    a = AgentView(
        agent_row("a", 200),
        proc(200, 100),
        (child(201, 200, 1, "python3 a.py"), child(202, 201, 2), child(203, 200, 1, "cat")),
    )
    b = AgentView(agent_row("b", 300), proc(300, 100), (child(301, 300, 1),))
    rows = table_rows(snap(RunView(run_row(), proc(100), (a, b))), T0 + 10, show_all=False)
    assert names(rows) == [
        "run r1",
        "├─ a",
        "│  ├─ python3",
        "│  │  └─ sleep",
        "│  └─ cat",
        "└─ b",
        "   └─ sleep",
    ]
    assert [r.kind for r in rows] == ["run", "agent", "process", "process", "process", "agent", "process"]
    assert {r.pid for r in rows[1:5]} == {200} and rows[6].pid == 300  # what K/9/s would signal
    assert rows[2].parent == "agent:r1:a" and rows[1].parent == "run:r1"
    assert [c.text for c in rows[1].cells][:2] == ["200", "100"]
    assert rows[2].cells[C["INTENT"]].text == "python3 a.py"


def test_finished_agents_are_hidden_unless_asked_for() -> None:
    done = AgentView(agent_row("done", 7, state="completed", ended_at=T0 + 2, elapsed_ms=2000), None)
    live = AgentView(agent_row("live", 8), proc(8))
    view = snap(RunView(run_row(), proc(100), (done, live)))
    assert names(table_rows(view, T0 + 10, show_all=False)) == ["run r1", "└─ live"]
    rows = table_rows(view, T0 + 10, show_all=True)
    assert names(rows) == ["run r1", "├─ done", "└─ live"]
    assert (
        rows[1].cells[C["ELAPSED"]].text == "2.0s" and rows[1].cells[C["CPU%"]].text == ""
    )  # no CPU for the dead


def test_filter_keeps_matching_agents_their_processes_or_a_whole_matching_run() -> None:
    a = AgentView(agent_row("alpha", 2), proc(2), (child(3, 2, 1, "grep needle"),))
    b = AgentView(agent_row("beta", 4, intent="write the report"), proc(4))
    view = snap(RunView(run_row(), proc(100), (a, b)), RunView(run_row("r2", project="other"), proc(101), ()))
    assert names(table_rows(view, T0, show_all=False, text_filter="REPORT")) == ["run r1", "└─ beta"]
    assert names(table_rows(view, T0, show_all=False, text_filter="needle")) == [
        "run r1",
        "└─ alpha",
        "   └─ grep",
    ]
    assert names(table_rows(view, T0, show_all=False, text_filter="4")) == ["run r1", "└─ beta"]
    assert names(table_rows(view, T0, show_all=False, text_filter="other")) == ["run r2"]
    assert table_rows(view, T0, show_all=False, text_filter="nothing like it") == []


@pytest.mark.parametrize(("used", "hot"), [(899, False), (900, True), (1000, True)])
def test_tokens_are_highlighted_from_90_percent(used: int, hot: bool) -> None:
    row = agent_row("a", 2, tokens_used=used)
    rows = table_rows(snap(RunView(run_row(), proc(100), (AgentView(row, proc(2)),))), T0, show_all=False)
    cell = rows[1].cells[C["TOKENS"]]
    assert cell.text == f"{used:,}/1,000" and (cell.style == "bold red") is hot
    assert (
        document(snap(RunView(run_row(), None, (AgentView(row, None),))), T0, 0)["runs"][0]["agents"][0][
            "tokens_hot"
        ]
        is hot
    )


def test_a_paused_agents_clock_stands_still() -> None:
    row = agent_row("a", 2, state="paused", paused_at=T0 + 4, paused_ms=1000)
    view = snap(RunView(run_row(), proc(100), (AgentView(row, proc(2, state="T")),)))
    later = [table_rows(view, T0 + t, show_all=False)[1].cells[C["ELAPSED"]].text for t in (5, 50)]
    assert later == ["3.0s", "3.0s"]


def test_summary_counts_every_agent_and_a_run_without_supervisor_is_lost() -> None:
    agents = (
        AgentView(agent_row("a", 2, tokens_used=10), None),
        AgentView(agent_row("b", 3, state="paused"), None),
        AgentView(agent_row("c"), None),
        AgentView(agent_row("d", 5, state="completed"), None),
    )
    first = RunView(run_row(tokens_used=10, started_at=T0 - 50), None, agents)
    assert first.status == "lost"
    s = summary(snap(first), T0 + 10)
    assert s["by_state"] == {"running": 1, "paused": 1, "pending": 1, "completed": 1}
    assert (s["runs"], s["agents"], s["tokens_used"], s["tokens_budget"], s["elapsed_ms"]) == (
        1,
        4,
        10,
        4000,
        60_000,
    )
    line = "".join(c.text for c in header_text(snap(first), T0 + 10))
    assert "1 run · 4 agents: 1 running, 1 paused, 1 pending, 1 completed · tokens 10/4,000" in line
    assert line.endswith("elapsed 1m00s")


def test_formats_fit_their_columns() -> None:
    assert [clock(ms) for ms in (850, 12_345, 245_000, 7_620_000, 273_600_000)] == [
        "850ms",
        "12.3s",
        "4m05s",
        "2h07m",
        "3d04h",
    ]
    assert [size(n) for n in (800 << 10, 12_900_000, 3 << 30, 200 << 30)] == ["800K", "12.3M", "3.0G", "200G"]
    assert [short_tokens(n) for n in (99_999, 250_000, 1_500_000)] == ["99,999", "250k", "1.5M"]


def test_document_lists_processes_and_finished_agents_only_with_all() -> None:
    live = AgentView(agent_row("live", 2), proc(2, 100), (child(3, 2, 1),))
    done = AgentView(agent_row("done", 9, state="failed"), None)
    view = RunView(run_row(), proc(100), (live, done))
    doc = document(snap(view), T0 + 10, 200)
    (agent,) = doc["runs"][0]["agents"]
    assert agent["agent"] == "live" and agent["alive"] is True and agent["rss_bytes"] == 10 << 20
    assert agent["processes"] == [
        {
            "pid": 3,
            "ppid": 2,
            "depth": 1,
            "name": "sleep",
            "command": "sleep 60",
            "state": "sleeping",
            "cpu_percent": 1.5,
            "rss_bytes": 10 << 20,
            "elapsed_ms": 10_000,
        }
    ]
    everything = document(snap(view, show_all=True), T0 + 10, 200)
    assert [a["agent"] for a in everything["runs"][0]["agents"]] == ["live", "done"]


def test_the_snapshot_path_does_not_load_textual() -> None:
    """`rnix top --once` / `--json` and the model stay light: textual loads only for the live view."""
    code = "import sys, rnix.cli.top, rnix.tui.collect, rnix.tui.rows; print('textual' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_a_pooled_run_never_shows_more_budget_than_its_pool() -> None:
    # A pool of 120,000 funds agents as they start, lending each what the earlier ones left: their
    # budgets add up to 226,000 here, but the run only ever had 120,000.
    agents = tuple(AgentView(agent_row(n, budget=b), None) for n, b in (("a", 120_000), ("b", 106_000)))
    pooled = RunView(run_row(plan_json='{"budget_pool": {"total": 120000}}'), proc(100), agents)
    assert pooled.budget == 120_000
    assert summary(snap(pooled), T0 + 10)["tokens_budget"] == 120_000
    assert RunView(run_row(), proc(100), agents).budget == 226_000  # no pool: the agents' own budgets


def test_node_is_shown_only_when_an_agent_runs_on_another_node() -> None:
    here = AgentView(agent_row("a", 200), proc(200, 100))
    there = AgentView(agent_row("b", 300, node="worker-1", ppid=None), None)  # nothing read from /proc
    local = table_rows(snap(RunView(run_row(), proc(100), (here,))), T0 + 10, show_all=False)
    assert not shown_columns(local)[C["NODE"]] and all(
        s for i, s in enumerate(shown_columns(local)) if i != C["NODE"]
    )
    rows = table_rows(snap(RunView(run_row(), proc(100), (here, there))), T0 + 10, show_all=False)
    assert shown_columns(rows)[C["NODE"]]
    assert [r.cells[C["NODE"]].text for r in rows] == ["", "", "worker-1"]
    assert names(
        table_rows(
            snap(RunView(run_row(), proc(100), (here, there))), T0, show_all=False, text_filter="worker"
        )
    ) == ["run r1", "└─ b"]
    doc = document(snap(RunView(run_row(), proc(100), (here, there))), T0 + 10, 0)
    assert [(a["agent"], a["cluster_node"]) for a in doc["runs"][0]["agents"]] == [
        ("a", None),
        ("b", "worker-1"),
    ]
