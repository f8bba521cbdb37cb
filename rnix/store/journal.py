"""The `journal` table (migration m003_journal): what each agent attempt's calls were answered.

Contract:
- `append_entries(store, run_id, instance, attempt, entries)` writes the entries in one
  `BEGIN IMMEDIATE` transaction: when it returns they are durable (WAL), so the gateway may send the
  answer they hold to the agent. `instance` is the gateway account name (the agent's name).
- `latest_attempt_entries(store, run_id, instance)` is the journal a new attempt of that instance
  replays: the entries of its latest attempt that has any, in `seq` order, followed by the entries of
  earlier attempts that later attempts did not replay (`rnix.core.journal.carry_forward`), so a
  resume that crashed half-way through its replay still leaves the calls it did not reach.
- Responses are stored as JSON text; a row that does not decode to an entry is skipped (its request
  then goes to the provider again) rather than failing a resume.
- `recorded_entries(store, run_id, instance)` is everything journalled for the instance, every
  attempt, ordered by (attempt, seq), for showing (`rnix log PID --llm`); undecodable rows skipped.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from typing import Any

from rnix.core.journal import JournalEntry, carry_forward
from rnix.core.llmcalls import Entry
from rnix.store.db import Store

_INSERT = """
    INSERT INTO journal (run_id, instance, attempt, seq, kind, key, response, prompt_tokens,
                         completion_tokens, total_tokens, replayed, ts, request)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
"""
_SELECT = """
    SELECT attempt, seq, kind, key, response, prompt_tokens, completion_tokens, total_tokens, replayed,
           request
    FROM journal WHERE run_id = ? AND instance = ? ORDER BY attempt, seq, id
"""


def append_entries(
    store: Store,
    run_id: str,
    instance: str,
    attempt: int,
    entries: Iterable[JournalEntry],
    *,
    ts: float | None = None,
) -> None:
    """Store `entries` of one attempt in one transaction (`ts` defaults to now)."""
    now = time.time() if ts is None else ts
    rows = [
        (
            run_id,
            instance,
            attempt,
            e.seq,
            e.kind,
            e.key,
            json.dumps(e.response, ensure_ascii=False, separators=(",", ":")),
            e.prompt_tokens,
            e.completion_tokens,
            e.total_tokens,
            int(e.replayed),
            now,
            None if e.request is None else json.dumps(e.request, ensure_ascii=False, separators=(",", ":")),
        )
        for e in entries
    ]
    if rows:
        with store.transaction() as conn:
            conn.executemany(_INSERT, rows)


def latest_attempt_entries(store: Store, run_id: str, instance: str) -> list[JournalEntry]:
    """The journal a new attempt of `instance` should replay (see the module docstring)."""
    attempts: dict[int, list[JournalEntry]] = {}
    for row in store.query(_SELECT, (run_id, instance)):
        try:
            entry = JournalEntry.from_dict(
                {
                    "kind": row["kind"],
                    "key": row["key"],
                    "response": json.loads(row["response"]),
                    "prompt_tokens": row["prompt_tokens"],
                    "completion_tokens": row["completion_tokens"],
                    "total_tokens": row["total_tokens"],
                    "replayed": bool(row["replayed"]),
                    "seq": row["seq"],
                    "request": _request(row["request"]),
                }
            )
        except ValueError:  # also a JSONDecodeError
            continue
        attempts.setdefault(row["attempt"], []).append(entry)
    journal: list[JournalEntry] = []
    for attempt in sorted(attempts):
        journal = carry_forward(journal, attempts[attempt])
    return journal


def recorded_entries(store: Store, run_id: str, instance: str) -> list[Entry]:
    """Every journal row of `instance` in `run_id`, ordered by (attempt, seq)."""
    found = []
    for row in store.query(_SELECT, (run_id, instance)):
        try:
            response = json.loads(row["response"])
        except ValueError:
            continue
        if not isinstance(response, dict):
            continue
        found.append(
            Entry(
                request=_request(row["request"]),
                kind=row["kind"],
                key=row["key"],
                response=response,
                attempt=row["attempt"],
                replayed=bool(row["replayed"]),
                prompt_tokens=row["prompt_tokens"] or 0,
                completion_tokens=row["completion_tokens"] or 0,
                total_tokens=row["total_tokens"] or 0,
            )
        )
    return found


def _request(text: str | None) -> dict[str, Any] | None:
    """A stored request (`rnix.core.journal.new_messages`), None when absent or unreadable."""
    try:
        value = json.loads(text) if text else None
    except ValueError:
        return None
    return value if isinstance(value, dict) else None
