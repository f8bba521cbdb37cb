"""`rnix apply`'s planning log in the state database: its events and its planner's journal.

Contract:
- A planning has its own id, `plan-` and 12 hex characters (`new_planning_id`), used where a run's
  id goes: the `events.run_id` and `journal.run_id` columns. It has no `runs` row, so `ps`, `top`
  and `compose ps` never see it; its events are stored, not projected (rnix.store.projections).
- `append(store, planning, events)` stores events of the planning (`Planning*` and the planner's
  `LlmCall`s, agent `planner`), and with `entry` the journal entry of an answered call (instance
  `planner`, attempt 1), all in one transaction.
- `resolve(store, ref)` is the planning `ref` names: its id, `last` (the newest planning), or the
  id of a compose run it started; None when there is none.
- `read(store, planning)` is its typed events, oldest first, and its journal entries in order.
"""

from __future__ import annotations

import json
import secrets as _random
from collections.abc import Sequence

from rnix.core import events as ev
from rnix.core.events import Event, Record
from rnix.core.journal import JournalEntry
from rnix.core.llmcalls import Entry
from rnix.store import projections
from rnix.store.db import Store

PREFIX = "plan-"
PLANNER = "planner"  # the agent name of the planner's calls, and its journal instance
LAST = "last"


def new_planning_id() -> str:
    return PREFIX + _random.token_hex(6)


def append(
    store: Store, planning: str, ts: float, events: Sequence[Event], entry: JournalEntry | None = None
) -> None:
    """Store `events` (and the journal `entry` of an answered call) in one transaction."""
    with store.transaction() as conn:
        projections.append(conn, [Record(planning, ts, e) for e in events])
        if entry is not None:
            conn.execute(
                "INSERT INTO journal (run_id, instance, attempt, seq, kind, key, response, prompt_tokens,"
                " completion_tokens, total_tokens, replayed, ts, request)"
                " VALUES (?, ?, 1, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?)",
                (
                    planning,
                    PLANNER,
                    entry.seq,
                    entry.kind,
                    entry.key,
                    _json(entry.response),
                    entry.prompt_tokens,
                    entry.completion_tokens,
                    entry.total_tokens,
                    ts,
                    None if entry.request is None else _json(entry.request),
                ),
            )


def resolve(store: Store, ref: str) -> str | None:
    """The id of the planning `ref` names (see the module docstring)."""
    started = ev.PlanningStarted.KIND
    if ref == LAST:
        rows = store.query("SELECT run_id FROM events WHERE kind = ? ORDER BY id DESC LIMIT 1", (started,))
        return str(rows[0]["run_id"]) if rows else None
    rows = store.query("SELECT 1 FROM events WHERE run_id = ? AND kind = ? LIMIT 1", (ref, started))
    if rows:
        return ref
    for row in store.query(
        "SELECT run_id, data FROM events WHERE kind = ? ORDER BY id DESC", (ev.PlanningRan.KIND,)
    ):
        try:
            data = json.loads(row["data"])
        except ValueError:
            continue
        ran = ev.decode(ev.PlanningRan.KIND, data) if isinstance(data, dict) else None
        if isinstance(ran, ev.PlanningRan) and ran.compose_run == ref:
            return str(row["run_id"])
    return None


def read(store: Store, planning: str) -> tuple[list[Event], list[Entry]]:
    """The planning's typed events and its planner's journal entries (rnix.store.journal)."""
    from rnix.store.journal import recorded_entries

    with store.reading():
        events = [row.to_record().event for row in store.events(planning)]
        entries = recorded_entries(store, planning, PLANNER)
    return events, entries


def _json(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
