"""The process table: a rate-limited agent reads `running (rate_limited)`; --json has the flag."""

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
