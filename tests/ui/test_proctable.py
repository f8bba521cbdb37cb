"""The process table: a rate-limited agent reads `running (rate_limited)`; --json has the flag; a
NODE column only when an agent runs on another cluster node, `cluster_node` in --json always."""

from __future__ import annotations

import dataclasses
import re

from rnix.store.db import ProcessRow
from rnix.ui.proctable import PROCESS_FIELDS, process_dict, table_lines


def row(**changes: object) -> ProcessRow:
    base = ProcessRow(
        run_id="r1", agent="writer", project="p", layer=0, state="running", pid=4321,
        pid_start_time=None, ppid=1, attempt=1, budget=1000, tokens_used=10, model="mock", kind=None,
        priority=None, intent="write", depends_on=(), started_at=None, ended_at=None, elapsed_ms=None,
        exit_code=None, signal=None, result=None, error=None, log_path=None, out_path=None,
        paused_at=None, paused_ms=0, updated_at=None,
    )  # fmt: skip
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def test_a_waiting_agent_says_so_in_state_and_json() -> None:
    waiting, other = row(rate_limited=True), row(agent="reviewer", pid=4322)
    header, first, second = (
        re.split(r" {3,}", line.strip())
        for line in table_lines([waiting, other], with_project=False, truncate=False)
    )
    state = header.index("STATE")
    assert (first[state], second[state]) == ("running (rate_limited)", "running")
    assert process_dict(waiting)["state"] == "running" and process_dict(waiting)["rate_limited"] is True
    assert process_dict(other)["rate_limited"] is False
    assert tuple(process_dict(waiting)) == PROCESS_FIELDS


def test_a_compensated_agent_says_so_in_reason_and_json() -> None:
    from rnix.ui.proctable import compensation_notes

    rows = [
        row(agent="deploy", state="completed"),
        row(agent="fix", state="completed"),
        row(agent="fix@1", state="completed"),
        row(agent="check", state="failed", error="exit status 1"),
        row(agent="fix:undo", state="completed"),
        row(agent="deploy:undo", state="failed", error="exit status 5"),
    ]
    notes = compensation_notes(rows)
    assert notes == {("r1", "fix@1"): "compensated", ("r1", "deploy"): "compensation failed: exit status 5"}
    lines = [
        re.split(r" {3,}", line.strip())
        for line in table_lines(rows, with_project=False, truncate=False, notes=notes)
    ]
    reason = lines[0].index("REASON")
    assert [line[reason] for line in lines[1:4]] == ["compensation failed: exit status 5", "-", "compensated"]
    assert process_dict(rows[2], notes.get(("r1", "fix@1")))["compensation"] == "compensated"


def test_node_appears_only_when_an_agent_runs_on_another_node_and_json_always_says() -> None:
    here, there = row(), row(agent="reviewer", pid=4322, node="worker-1", ppid=None)
    lines = [
        re.split(r" {3,}", line.strip()) for line in table_lines([here], with_project=False, truncate=False)
    ]
    assert "NODE" not in lines[0] and lines[0][:3] == ["PID", "PPID", "AGENT"]
    header, first, second = (
        re.split(r" {3,}", line.strip())
        for line in table_lines([here, there], with_project=True, truncate=False)
    )
    assert header[:4] == ["PID", "PPID", "NODE", "PROJECT"]
    assert (first[:4], second[:4]) == (["4321", "1", "-", "p"], ["4322", "-", "worker-1", "p"])
    assert (process_dict(here)["cluster_node"], process_dict(there)["cluster_node"]) == (None, "worker-1")
    assert process_dict(there)["node"] == "reviewer"  # `node` stays the compose node
