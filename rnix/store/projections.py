"""The SQL projection of the event log: how each event updates the `runs`, `processes` and `ledger`.

Contract:
- One function per event type (`PROJECTIONS`); each takes the connection and one `Record` (a typed
  event of `rnix.core.events` with its run and time) and only issues SQL. The tables follow the same
  events as the fold (`rnix.core.fold`), so `ps`/`top` and `up` agree.
- `append(conn, records)` inserts the records into `events` and then applies them in order, inside the
  caller's transaction: it never begins, commits or rolls back, so a failure leaves nothing behind
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
from rnix.core.events import Record
from rnix.core.lifecycle import TERMINAL, AgentState, RunStatus

Projection = Callable[[sqlite3.Connection, Record, Any], None]

# Terminal agent states as SQL parameters (for `state NOT IN (...)`).
TERMINAL_STATES = tuple(sorted(state.value for state in TERMINAL))


def append(conn: sqlite3.Connection, records: Sequence[Record]) -> None:
    """Insert `records` into the log and project each, in order, inside the caller's transaction."""
    conn.executemany(
        "INSERT INTO events (run_id, agent, ts, kind, data) VALUES (?, ?, ?, ?, ?)",
        [(r.run_id, r.agent, r.ts, r.kind, _json(r.data)) for r in records],
    )
    for record in records:
        project = PROJECTIONS.get(type(record.event))
        if project is not None:
            project(conn, record, record.event)


def _run_started(conn: sqlite3.Connection, r: Record, e: ev.RunStarted) -> None:
    conn.execute(
        "INSERT INTO runs (id, project, compose_file, cwd, status, supervisor_pid, supervisor_start_time,"
        " supervisor_start_ticks, detached, started_at, plan_json, resumed_from, control_socket)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
        (
            r.run_id,
            e.project or "",
            _scalar(e.compose_file),
            _scalar(e.cwd),
            RunStatus.RUNNING.value,
            _scalar(e.supervisor_pid),
            _scalar(e.supervisor_start_time),
            _scalar(e.supervisor_start_ticks),
            int(bool(e.detached)),
            r.ts,
            None if e.plan is None else _json(e.plan),
            e.resumed_from,
            e.control_socket,
        ),
    )


def _agent_planned(conn: sqlite3.Connection, r: Record, e: ev.InstancePlanned) -> None:
    conn.execute(
        "INSERT INTO processes (run_id, agent, project, state, layer, depends_on, model, budget, priority,"
        " intent, kind, spec_hash, updated_at) SELECT id, ?, project, ?, ?, ?, ?, ?, ?, ?, ?, ?, ? FROM runs"
        " WHERE id = ? ON CONFLICT (run_id, agent) DO UPDATE SET layer = excluded.layer,"
        " depends_on = excluded.depends_on, model = excluded.model, budget = excluded.budget,"
        " priority = excluded.priority, intent = excluded.intent, kind = excluded.kind,"
        " spec_hash = excluded.spec_hash, updated_at = excluded.updated_at",
        (
            r.agent,
            AgentState.PENDING.value,
            _scalar(e.layer),
            _json(list(e.depends_on)),
            *map(_scalar, (e.model, e.budget, e.priority, e.intent, e.kind, e.spec_hash)),
            r.ts,
            r.run_id,
        ),
    )


def _agent_reused(conn: sqlite3.Connection, r: Record, e: ev.InstanceReused) -> None:
    _update_process(
        conn,
        r,
        "state = ?, result = ?, reused_from = ?, elapsed_ms = ?, ended_at = ?, tokens_used = 0, sla = ?",
        (
            AgentState.COMPLETED.value,
            e.result,
            e.from_run,
            e.elapsed_ms,
            r.ts,
            None if e.sla is None else _json(e.sla),
        ),
    )


def _agent_started(conn: sqlite3.Connection, r: Record, e: ev.InstanceStarted) -> None:
    # started_at is the start of the latest attempt, so elapsed time and `top` describe that attempt.
    # An agent on another node is not the supervisor's child: no PPID then.
    _update_process(
        conn,
        r,
        "state = ?, pid = ?, pid_start_time = ?, pid_start_ticks = ?, node = ?,"
        " ppid = (SELECT supervisor_pid FROM runs WHERE id = ? AND ? IS NULL),"
        " attempt = COALESCE(?, attempt), budget = COALESCE(?, budget), started_at = ?, log_path = ?,"
        " out_path = ?, ended_at = NULL, exit_code = NULL, signal = NULL, error = NULL, result = NULL,"
        " elapsed_ms = NULL, paused_at = NULL, paused_ms = 0, rate_limited = 0",
        (
            AgentState.RUNNING.value,
            _scalar(e.pid),
            _scalar(e.pid_start_time),
            _scalar(e.pid_start_ticks),
            _scalar(e.node),
            r.run_id,
            _scalar(e.node),
            _scalar(e.attempt),
            _scalar(e.budget),
            r.ts,
            _scalar(e.log_path),
            _scalar(e.out_path),
        ),
    )


def _llm_call(conn: sqlite3.Connection, r: Record, e: ev.LlmCall) -> None:
    if e.used is not None:
        _update_process(conn, r, "tokens_used = ?", (_scalar(e.used),))
        _sum_run_tokens(conn, r.run_id)


def _agent_paused(conn: sqlite3.Connection, r: Record, e: ev.InstancePaused) -> None:
    sets = "state = ?, paused_at = ?"
    _update_process(conn, r, sets, (AgentState.PAUSED.value, r.ts), only_state=AgentState.RUNNING)


def _agent_resumed(conn: sqlite3.Connection, r: Record, e: ev.InstanceResumed) -> None:
    sets = f"state = ?, {_UNPAUSE}"
    _update_process(conn, r, sets, (AgentState.RUNNING.value, r.ts), only_state=AgentState.PAUSED)


def _agent_exited(conn: sqlite3.Connection, r: Record, e: ev.InstanceExited) -> None:
    # An agent killed while paused stops its pause clock too. The supervisor reports wall time;
    # the table keeps time spent running, like the live clock of ps/top (SET sees the old row).
    _update_process(
        conn,
        r,
        "state = COALESCE(?, state), exit_code = ?, signal = ?, tokens_used = COALESCE(?, tokens_used),"
        f" elapsed_ms = MAX(0, ? - paused_ms - {_PAUSED_NOW}), result = ?, error = ?, ended_at = ?,"
        f" rate_limited = 0, {_UNPAUSE}",
        (
            e.state,
            _scalar(e.exit_code),
            _scalar(e.signal),
            _scalar(e.tokens_used),
            _scalar(e.elapsed_ms),
            r.ts,
            _scalar(e.result),
            _scalar(e.error),
            r.ts,
            r.ts,
        ),
    )
    _sum_run_tokens(conn, r.run_id)


def _settled(state: AgentState) -> Projection:
    def project(conn: sqlite3.Connection, r: Record, e: Any) -> None:
        if isinstance(e, ev.InstanceUnfunded):
            reason: str | None = f"the budget pool cannot fund it ({e.available:,} tokens left)"
        else:
            reason = _scalar(e.reason)
        sets = f"state = ?, error = ?, ended_at = ?, rate_limited = 0, {_UNPAUSE}"
        _update_process(conn, r, sets, (state.value, reason, r.ts, r.ts))

    return project


def _agent_settled(conn: sqlite3.Connection, r: Record, e: ev.InstanceSettled) -> None:
    sets = f"state = ?, result = ?, error = ?, ended_at = ?, {_UNPAUSE}"
    _update_process(conn, r, sets, (e.state, _scalar(e.result), _scalar(e.error), r.ts, r.ts))


def _approval_requested(conn: sqlite3.Connection, r: Record, e: ev.ApprovalRequested) -> None:
    _update_process(conn, r, "state = ?", (AgentState.WAITING_APPROVAL.value,))


def _agent_assessed(conn: sqlite3.Connection, r: Record, e: ev.InstanceAssessed) -> None:
    project = conn.execute("SELECT project FROM runs WHERE id = ?", (r.run_id,)).fetchone()
    sla = e.sla
    conn.execute(
        """INSERT INTO ledger (ts, definition, run_id, agent, project, status, completed, tokens_used,
               budget, elapsed_ms, model, level, sla_passed, sla, contract_timeout_s, contract_max_tokens,
               judge_tokens, infra)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
        (
            r.ts,
            str(e.definition),
            r.run_id,
            r.agent,
            project[0] if project else None,
            str(e.status),
            1 if e.completed else 0,
            int(e.tokens_used or 0),
            _scalar(e.budget),
            int(e.elapsed_ms or 0),
            _scalar(e.model),
            _scalar(e.level),
            None if not isinstance(sla, dict) else (1 if sla.get("passed") else 0),
            None if sla is None else _json(sla),
            _scalar(e.contract_timeout_s),
            _scalar(e.contract_max_tokens),
            int(e.judge_tokens or 0),
            _scalar(e.infra),
        ),
    )
    if sla is not None:
        _update_process(conn, r, "sla = ?", (_json(sla),))


def _agent_throttled(conn: sqlite3.Connection, r: Record, e: ev.InstanceThrottled) -> None:
    # Only a live attempt waits: a report that arrives after it ended must not mark the row.
    conn.execute(
        "UPDATE processes SET rate_limited = ?, updated_at = ? WHERE run_id = ? AND agent = ?"
        " AND state IN (?, ?)",
        (
            1 if e.waiting else 0,
            r.ts,
            r.run_id,
            r.agent,
            AgentState.RUNNING.value,
            AgentState.PAUSED.value,
        ),
    )


def _run_stop_requested(conn: sqlite3.Connection, r: Record, e: ev.RunStopRequested) -> None:
    sql = "UPDATE runs SET stop_requested_at = ?, stop_grace = ? WHERE id = ?"
    conn.execute(sql, (r.ts, _scalar(e.grace), r.run_id))


def _run_finished(conn: sqlite3.Connection, r: Record, e: ev.RunFinished) -> None:
    # Once a run has ended nothing of it is live, whatever its supervisor managed to record.
    marks = ", ".join("?" * len(TERMINAL_STATES))
    conn.execute(
        f"UPDATE processes SET state = ?, ended_at = COALESCE(ended_at, ?), {_UNPAUSE}, rate_limited = 0,"
        " updated_at = ?"
        f" WHERE run_id = ? AND state NOT IN ({marks})",
        (AgentState.CANCELLED.value, r.ts, r.ts, r.ts, r.run_id, *TERMINAL_STATES),
    )
    conn.execute(
        "UPDATE runs SET status = COALESCE(?, status), exit_code = ?, ended_at = ?,"
        " tokens_used = COALESCE(?, tokens_used) WHERE id = ?",
        (_scalar(e.status), _scalar(e.exit_code), r.ts, _scalar(e.tokens_used), r.run_id),
    )


# Milliseconds since paused_at (parameter: the event's ts); 0 when not paused.
_PAUSED_NOW = "COALESCE(MAX(0, CAST(ROUND((? - paused_at) * 1000) AS INTEGER)), 0)"
# Adds the time since paused_at (parameter: the event's ts) to paused_ms; a no-op when not paused.
_UNPAUSE = f"paused_ms = paused_ms + {_PAUSED_NOW}, paused_at = NULL"

PROJECTIONS: dict[type, Projection] = {
    ev.RunStarted: _run_started,
    ev.InstancePlanned: _agent_planned,
    ev.InstanceReused: _agent_reused,
    ev.InstanceStarted: _agent_started,
    ev.LlmCall: _llm_call,
    ev.InstancePaused: _agent_paused,
    ev.InstanceResumed: _agent_resumed,
    ev.InstanceExited: _agent_exited,
    ev.InstanceSkipped: _settled(AgentState.SKIPPED),
    ev.InstanceCancelled: _settled(AgentState.CANCELLED),
    ev.InstanceUnfunded: _settled(AgentState.BUDGET_EXCEEDED),
    ev.InstanceAssessed: _agent_assessed,
    ev.InstanceSettled: _agent_settled,
    ev.ApprovalRequested: _approval_requested,
    ev.RunStopRequested: _run_stop_requested,
    ev.RunFinished: _run_finished,
    ev.InstanceThrottled: _agent_throttled,
}


def _update_process(
    conn: sqlite3.Connection,
    r: Record,
    sets: str,
    params: Sequence[Any],
    *,
    only_state: AgentState | None = None,
) -> None:
    sql = f"UPDATE processes SET {sets}, updated_at = ? WHERE run_id = ? AND agent = ?"
    args = [*params, r.ts, r.run_id, r.agent]
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
