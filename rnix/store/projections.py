"""The projections of the event log: how each event kind updates the `runs` and `processes` tables.

Contract:
- One function per event kind (`PROJECTIONS`), following the table in `rnix.core.events`; each takes
  the connection and one event and only issues SQL.
- `append(conn, events)` inserts the events into `events` and then applies them in event order, inside
  the caller's transaction: it never begins, commits or rolls back, so a failure leaves nothing behind
  once the caller rolls back (`rnix.store.db.Store` opens a `BEGIN IMMEDIATE` for it).
- Unknown kinds, and events about a run or an agent the tables do not know, are stored but not
  projected; they never raise.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Sequence
from typing import Any

from rnix.core import events as ev
from rnix.core.events import Event
from rnix.core.lifecycle import TERMINAL, AgentState, RunState

Projection = Callable[[sqlite3.Connection, Event], None]

# Terminal agent states as SQL parameters (for `state NOT IN (...)`).
TERMINAL_STATES = tuple(sorted(state.value for state in TERMINAL))


def append(conn: sqlite3.Connection, events: Sequence[Event]) -> None:
    """Insert `events` into the log and project each, in order, inside the caller's transaction."""
    conn.executemany(
        "INSERT INTO events (run_id, agent, ts, kind, data) VALUES (?, ?, ?, ?, ?)",
        [(e.run_id, e.agent, e.ts, e.kind, _json(e.data)) for e in events],
    )
    for event in events:
        project = PROJECTIONS.get(event.kind)
        if project is not None and (event.agent is not None or event.kind in _RUN_KINDS):
            project(conn, event)


def _run_started(conn: sqlite3.Connection, e: Event) -> None:
    d = e.data
    plan = d.get("plan")
    conn.execute(
        "INSERT INTO runs (id, project, compose_file, cwd, status, supervisor_pid, supervisor_start_time,"
        " detached, started_at, plan_json) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
        (
            e.run_id,
            str(d.get("project") or ""),
            _scalar(d.get("compose_file")),
            _scalar(d.get("cwd")),
            RunState.RUNNING.value,
            _scalar(d.get("supervisor_pid")),
            _scalar(d.get("supervisor_start_time")),
            int(bool(d.get("detached"))),
            e.ts,
            None if plan is None else _json(plan),
        ),
    )


def _agent_planned(conn: sqlite3.Connection, e: Event) -> None:
    d = e.data
    conn.execute(
        "INSERT INTO processes (run_id, agent, project, state, layer, depends_on, model, budget, priority,"
        " intent, kind, updated_at) SELECT id, ?, project, ?, ?, ?, ?, ?, ?, ?, ?, ? FROM runs WHERE id = ?"
        " ON CONFLICT (run_id, agent) DO UPDATE SET layer = excluded.layer,"
        " depends_on = excluded.depends_on, model = excluded.model, budget = excluded.budget,"
        " priority = excluded.priority, intent = excluded.intent, kind = excluded.kind,"
        " updated_at = excluded.updated_at",
        (
            e.agent,
            AgentState.PENDING.value,
            *_values(d, "layer"),
            _json(list(d.get("depends_on") or ())),
            *_values(d, "model", "budget", "priority", "intent", "kind"),
            e.ts,
            e.run_id,
        ),
    )


def _agent_started(conn: sqlite3.Connection, e: Event) -> None:
    # started_at is the start of the latest attempt, so elapsed time and `top` describe that attempt.
    _update_process(
        conn,
        e,
        "state = ?, pid = ?, pid_start_time = ?, ppid = (SELECT supervisor_pid FROM runs WHERE id = ?),"
        " attempt = COALESCE(?, attempt), budget = COALESCE(?, budget), started_at = ?, log_path = ?,"
        " out_path = ?, ended_at = NULL, exit_code = NULL, signal = NULL, error = NULL, result = NULL,"
        " elapsed_ms = NULL, paused_at = NULL, paused_ms = 0",
        (
            AgentState.RUNNING.value,
            *_values(e.data, "pid", "pid_start_time"),
            e.run_id,
            *_values(e.data, "attempt", "budget"),
            e.ts,
            *_values(e.data, "log_path", "out_path"),
        ),
    )


def _llm_call(conn: sqlite3.Connection, e: Event) -> None:
    if e.data.get("used") is not None:
        _update_process(conn, e, "tokens_used = ?", _values(e.data, "used"))
        _sum_run_tokens(conn, e.run_id)


def _agent_paused(conn: sqlite3.Connection, e: Event) -> None:
    sets = "state = ?, paused_at = ?"
    _update_process(conn, e, sets, (AgentState.PAUSED.value, e.ts), only_state=AgentState.RUNNING)


def _agent_resumed(conn: sqlite3.Connection, e: Event) -> None:
    sets = f"state = ?, {_UNPAUSE}"
    _update_process(conn, e, sets, (AgentState.RUNNING.value, e.ts), only_state=AgentState.PAUSED)


def _agent_exited(conn: sqlite3.Connection, e: Event) -> None:
    # An agent killed while paused stops its pause clock too. The supervisor reports wall time;
    # the table keeps time spent running, like the live clock of ps/top (SET sees the old row).
    _update_process(
        conn,
        e,
        "state = COALESCE(?, state), exit_code = ?, signal = ?, tokens_used = COALESCE(?, tokens_used),"
        f" elapsed_ms = MAX(0, ? - paused_ms - {_PAUSED_NOW}), result = ?, error = ?, ended_at = ?,"
        f" {_UNPAUSE}",
        (
            *_values(e.data, "state", "exit_code", "signal", "tokens_used", "elapsed_ms"),
            e.ts,
            *_values(e.data, "result", "error"),
            e.ts,
            e.ts,
        ),
    )
    _sum_run_tokens(conn, e.run_id)


def _agent_skipped(conn: sqlite3.Connection, e: Event) -> None:
    sets = "state = ?, error = ?, ended_at = ?"
    _update_process(conn, e, sets, (AgentState.SKIPPED.value, _scalar(e.data.get("reason")), e.ts))


def _agent_assessed(conn: sqlite3.Connection, e: Event) -> None:
    d = e.data
    sla = d.get("sla")
    project = conn.execute("SELECT project FROM runs WHERE id = ?", (e.run_id,)).fetchone()
    conn.execute(
        """INSERT INTO ledger (ts, definition, run_id, agent, project, status, completed, tokens_used,
               budget, elapsed_ms, model, level, sla_passed, sla, contract_timeout_s, contract_max_tokens,
               judge_tokens)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
        (
            e.ts,
            str(d.get("definition")),
            e.run_id,
            e.agent,
            project[0] if project else None,
            str(d.get("status")),
            1 if d.get("completed") else 0,
            int(d.get("tokens_used") or 0),
            _scalar(d.get("budget")),
            int(d.get("elapsed_ms") or 0),
            _scalar(d.get("model")),
            _scalar(d.get("level")),
            None if not isinstance(sla, dict) else (1 if sla.get("passed") else 0),
            None if sla is None else _json(sla),
            _scalar(d.get("contract_timeout_s")),
            _scalar(d.get("contract_max_tokens")),
            int(d.get("judge_tokens") or 0),
        ),
    )
    if sla is not None:
        _update_process(conn, e, "sla = ?", (_json(sla),))


def _run_stop_requested(conn: sqlite3.Connection, e: Event) -> None:
    sql = "UPDATE runs SET stop_requested_at = ?, stop_grace = ? WHERE id = ?"
    conn.execute(sql, (e.ts, _scalar(e.data.get("grace")), e.run_id))


def _run_finished(conn: sqlite3.Connection, e: Event) -> None:
    # Once a run has ended nothing of it is live, whatever its supervisor managed to record.
    marks = ", ".join("?" * len(TERMINAL_STATES))
    conn.execute(
        f"UPDATE processes SET state = ?, ended_at = COALESCE(ended_at, ?), {_UNPAUSE}, updated_at = ?"
        f" WHERE run_id = ? AND state NOT IN ({marks})",
        (AgentState.CANCELLED.value, e.ts, e.ts, e.ts, e.run_id, *TERMINAL_STATES),
    )
    conn.execute(
        "UPDATE runs SET status = COALESCE(?, status), exit_code = ?, ended_at = ?,"
        " tokens_used = COALESCE(?, tokens_used) WHERE id = ?",
        (*_values(e.data, "status", "exit_code"), e.ts, _scalar(e.data.get("tokens_used")), e.run_id),
    )


# Milliseconds since paused_at (parameter: the event's ts); 0 when not paused.
_PAUSED_NOW = "COALESCE(MAX(0, CAST(ROUND((? - paused_at) * 1000) AS INTEGER)), 0)"
# Adds the time since paused_at (parameter: the event's ts) to paused_ms; a no-op when not paused.
_UNPAUSE = f"paused_ms = paused_ms + {_PAUSED_NOW}, paused_at = NULL"

PROJECTIONS: dict[str, Projection] = {
    ev.RUN_STARTED: _run_started,
    ev.AGENT_PLANNED: _agent_planned,
    ev.AGENT_STARTED: _agent_started,
    ev.LLM_CALL: _llm_call,
    ev.AGENT_PAUSED: _agent_paused,
    ev.AGENT_RESUMED: _agent_resumed,
    ev.AGENT_EXITED: _agent_exited,
    ev.AGENT_SKIPPED: _agent_skipped,
    ev.AGENT_ASSESSED: _agent_assessed,
    ev.RUN_STOP_REQUESTED: _run_stop_requested,
    ev.RUN_FINISHED: _run_finished,
}
_RUN_KINDS = frozenset({ev.RUN_STARTED, ev.RUN_STOP_REQUESTED, ev.RUN_FINISHED})


def _update_process(
    conn: sqlite3.Connection,
    e: Event,
    sets: str,
    params: Sequence[Any],
    *,
    only_state: AgentState | None = None,
) -> None:
    sql = f"UPDATE processes SET {sets}, updated_at = ? WHERE run_id = ? AND agent = ?"
    args = [*params, e.ts, e.run_id, e.agent]
    if only_state is not None:  # pause/resume reported after an exit must not revive the agent
        sql += " AND state = ?"
        args.append(only_state.value)
    conn.execute(sql, args)


def _sum_run_tokens(conn: sqlite3.Connection, run_id: str) -> None:
    conn.execute(
        "UPDATE runs SET tokens_used = (SELECT COALESCE(SUM(tokens_used), 0) FROM processes"
        " WHERE run_id = ?) WHERE id = ?",
        (run_id, run_id),
    )


# -- values -----------------------------------------------------------------------------------------


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), default=str)


def _scalar(value: Any) -> Any:
    """A value SQLite can bind: scalars as they are, anything else as JSON text."""
    if value is None or isinstance(value, (str, int, float)):
        return value
    return _json(value)


def _values(data: dict[str, Any], *keys: str) -> tuple[Any, ...]:
    return tuple(_scalar(data.get(key)) for key in keys)
