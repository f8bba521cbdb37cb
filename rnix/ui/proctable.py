"""Process listings (`ps`, `compose ps`) as rows for people and as dictionaries for `--json`."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from rnix.ui.runview import sla_word
from rnix.ui.text import duration, inert, tokens

if TYPE_CHECKING:
    from rnix.env import Env
    from rnix.store.db import ProcessRow


def elapsed_ms(row: ProcessRow, now: float | None = None) -> int:
    """Wall time of the agent, paused time excluded; frozen while it is paused."""
    if row.elapsed_ms is not None and row.ended_at is not None:
        return row.elapsed_ms
    if row.started_at is None:
        return 0
    end = row.paused_at or now or time.time()
    return max(0, int((end - row.started_at) * 1000) - row.paused_ms)


def process_dict(row: ProcessRow) -> dict[str, Any]:
    return {
        "pid": row.pid,
        "ppid": row.ppid,
        "project": row.project,
        "run_id": row.run_id,
        "agent": row.agent,
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
    }


def render_processes(env: Env, rows: list[ProcessRow], with_project: bool) -> None:
    from rich.table import Table
    from rich.text import Text

    from rnix.ui.render import console

    table = Table(box=None, pad_edge=False, header_style="bold")
    columns = [
        "PID",
        "PPID",
        *(["PROJECT"] if with_project else []),
        "AGENT",
        "STATE",
        "TOKENS",
        "ELAPSED",
        "EXIT",
        "SLA",
        "INTENT",
    ]
    for column in columns:
        table.add_column(
            column,
            no_wrap=column != "INTENT",
            overflow="ellipsis",
            max_width=60 if column == "INTENT" else None,
        )
    for row in rows:
        cells: list[str | Text] = [
            str(row.pid or "-"),
            str(row.ppid or "-"),
            *([Text(inert(row.project))] if with_project else []),
            Text(inert(row.agent)),
            row.state,
            f"{tokens(row.tokens_used)}/{tokens(row.budget)}",
            duration(round(elapsed_ms(row) / 1000, 1)) if row.started_at else "-",
            "-" if row.exit_code is None else str(row.exit_code),
            sla_word(row.sla),
            Text(inert(row.intent or "")),
        ]
        table.add_row(*cells)
    console(env).print(table)
