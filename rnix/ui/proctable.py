"""Process listings (`ps`, `compose ps`): aligned lines for people, dictionaries for `--json`.

Contract:
- `table_lines` lays the rows out as plain text, one agent per line whatever the terminal width:
  columns are padded to their widest cell and separated by three spaces, like `docker ps`. Text an
  agent or a file controls is made inert (one line, no control characters).
- Free-text cells (INTENT, REASON) are cut to `TRUNCATE` characters only when `truncate` is true
  (a terminal without --no-trunc); piped output is never cut, so `rnix ps -a | grep` sees every word.
- A RUN column appears when the rows come from more than one run; PROJECT when asked for; NODE
  (after PPID) when an agent runs on another cluster node (`-` for the supervisor's machine), so a
  listing of agents that all run here looks as it always did. `--json` always has `cluster_node`
  (null: the supervisor's machine); `node` there is the agent's compose node, as before.
- STATE reads `running (rate_limited)` while one of the agent's model calls waits for its model's
  limits (max_concurrency, rpm) or for a retry after HTTP 429; `--json` has `rate_limited` for it.
- REASON of an agent undone by its compensation (`<agent>:undo`, rnix.core.saga) adds `compensated`
  (or `compensating`, `compensation failed: ...`); `--json` has it as `compensation`.
- TOKENS is `used/funded`: what the agent spent of the budget it was given when it started. A budget
  pool lends unspent tokens to later agents, so the funded column can add up to more than the pool;
  `pool_lines` says how much of each run's pool was used.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from rnix.ui.runview import sla_word
from rnix.ui.text import align, duration, inert, tokens

if TYPE_CHECKING:
    from rnix.store.db import ProcessRow, RunRow

TRUNCATE = 40
# The keys of `process_dict`: the --json fields, and what a --format template may name.
PROCESS_FIELDS = (
    "pid", "ppid", "project", "run_id", "agent", "node", "index", "iteration", "state", "layer",
    "attempt", "tokens_used", "budget", "elapsed_ms", "exit_code", "intent", "error", "sla", "reused_from",
    "rate_limited", "compensation", "cluster_node",
)  # fmt: skip


def elapsed_ms(row: ProcessRow, now: float | None = None) -> int:
    """Wall time of the agent, paused time excluded; frozen while it is paused."""
    if row.elapsed_ms is not None and row.ended_at is not None:
        return row.elapsed_ms
    if row.started_at is None:
        return 0
    end = row.paused_at or now or time.time()
    return max(0, int((end - row.started_at) * 1000) - row.paused_ms)


def _instance(agent: str) -> dict[str, Any]:
    """`fix[2]@1` -> node fix, index 2, iteration 1 (index null unless a for_each item)."""
    from rnix.core.events import InstanceKey

    key = InstanceKey.parse(agent)
    return {"node": key.node, "index": key.index, "iteration": key.iteration}


def process_dict(row: ProcessRow, compensation: str | None = None) -> dict[str, Any]:
    """The row as `--json` shows it (keys: `PROCESS_FIELDS`); `compensation`: see
    `compensation_notes`."""
    return {
        "pid": row.pid,
        "ppid": row.ppid,
        "project": row.project,
        "run_id": row.run_id,
        "agent": row.agent,
        **_instance(row.agent),
        "state": row.state,
        "layer": row.layer,
        "attempt": row.attempt,
        "tokens_used": row.tokens_used,
        "budget": row.budget,
        "elapsed_ms": elapsed_ms(row),
        "exit_code": row.exit_code,
        "intent": row.intent,
        "error": row.error,
        "sla": row.sla,
        "reused_from": row.reused_from,
        "rate_limited": row.rate_limited,
        "compensation": compensation,
        "cluster_node": row.node,  # where `pid` lives; None: the supervisor's machine
    }


def compensation_notes(rows: Sequence[ProcessRow]) -> dict[tuple[str, str], str]:
    """Where each compensated agent's compensation is (rnix.core.saga), by (run, agent): read from
    the rows of the compensations (`<agent>:undo`), shown on the agent's last completed instance:
    `compensated`, `compensating`, or `compensation failed: <reason>`."""
    from rnix.core.events import InstanceKey
    from rnix.core.saga import SUFFIX

    notes: dict[tuple[str, str], str] = {}
    comps = [r for r in rows if r.agent.endswith(SUFFIX)]
    for comp in comps:
        node = comp.agent[: -len(SUFFIX)]
        undone = [
            r
            for r in rows
            if r.run_id == comp.run_id
            and r.state == "completed"
            and (key := InstanceKey.parse(r.agent)).node == node
            and key.index is None
        ]
        if not undone:
            continue
        last = max(undone, key=lambda r: InstanceKey.parse(r.agent).iteration)
        if comp.state == "completed":
            word = "compensated"
        elif comp.state in ("pending", "running", "paused", "backoff"):
            word = "compensating"
        else:
            word = f"compensation {comp.state}" + (f": {comp.error}" if comp.error else "")
        notes[(last.run_id, last.agent)] = word
    return notes


def table_lines(
    rows: Sequence[ProcessRow],
    *,
    with_project: bool,
    truncate: bool,
    notes: dict[tuple[str, str], str] | None = None,
) -> list[str]:
    """The header and one line per row (see the module contract); `notes`: compensations, added to
    REASON (`compensation_notes`)."""
    notes = notes or {}
    with_run = len({row.run_id for row in rows}) > 1
    with_node = any(row.node is not None for row in rows)
    header = [
        "PID",
        "PPID",
        *(["NODE"] if with_node else []),
        *(["PROJECT"] if with_project else []),
        *(["RUN"] if with_run else []),
        "AGENT",
        "STATE",
        "TOKENS",
        "ELAPSED",
        "EXIT",
        "SLA",
        "REASON",
        "INTENT",
    ]
    table = [header]
    for row in rows:
        table.append(
            [
                str(row.pid or "-"),
                str(row.ppid or "-"),
                *([inert(row.node or "-")] if with_node else []),
                *([inert(row.project)] if with_project else []),
                *([row.run_id] if with_run else []),
                inert(row.agent),
                state_word(row),
                f"{tokens(row.tokens_used)}/{tokens(row.budget)}",
                duration(round(elapsed_ms(row) / 1000, 1)) if row.started_at else "-",
                "-" if row.exit_code is None else str(row.exit_code),
                sla_word(row.sla),
                _cut(inert(_reason(row.error, notes.get((row.run_id, row.agent)))) or "-", truncate),
                _cut(inert(row.intent or "") or "-", truncate),
            ]
        )
    return align(table)


def _reason(error: str | None, note: str | None) -> str:
    return "; ".join(text for text in (error, note) if text)


def state_word(row: ProcessRow) -> str:
    """STATE: the lifecycle state, with `(rate_limited)` while a model call waits for the provider's
    limits (as docker ps adds `(healthy)`)."""
    return f"{row.state} (rate_limited)" if row.rate_limited else row.state


def pool_lines(runs: Sequence[RunRow]) -> list[str]:
    """`run 1a2b3c (project team): 48,211 of the 120,000-token pool used`, for runs that had a pool."""
    lines = []
    for run in runs:
        plan = run.plan if isinstance(run.plan, dict) else {}
        total = (plan.get("budget_pool") or {}).get("total")
        if total:
            lines.append(
                f"run {run.id} (project {inert(run.project)}): "
                f"{tokens(run.tokens_used)} of the {tokens(total)}-token pool used"
            )
    return lines


def _cut(text: str, truncate: bool) -> str:
    return text[: TRUNCATE - 1] + "…" if truncate and len(text) > TRUNCATE else text
