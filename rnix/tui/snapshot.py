"""What `top` shows, as plain data: one snapshot of runs, agents and their processes.

Contract:
- `Snapshot` is what `rnix.tui.collect.Collector` read at one moment: runs (newest first) with all
  their agents (in layer order) and, for each agent whose process is alive, that process and its
  descendants (depth-first). Nothing here reads the store, /proc or a clock: `now` is passed in.
- `summary(...)` counts the agents by state and adds up tokens and time; `document(...)` is the
  `top --json` document (docs/top.md describes its shape). `rnix.tui.rows` turns a snapshot into
  the rows of the table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

from rnix.core.lifecycle import AgentState
from rnix.ui.proctable import elapsed_ms, process_dict

if TYPE_CHECKING:
    from rnix.store.db import ProcessRow, RunRow
    from rnix.tui.procstat import ProcInfo

HOT_TOKENS = 0.9  # the TOKENS cell is highlighted from this share of the budget on
_TERMINAL = frozenset(state.value for state in AgentState if state.terminal)
STATE_STYLE = {
    "running": "cyan",
    "paused": "bold yellow",
    "pending": "dim",
    "completed": "green",
    "skipped": "yellow",
    "cancelled": "yellow",
    "waiting_approval": "bold magenta",
    "rejected": "yellow",
    "lost": "bold red",
}


class ChildView(NamedTuple):
    info: ProcInfo
    command: str
    depth: int  # 1: a child of the agent's process, 2: a grandchild, ...


class AgentView(NamedTuple):
    row: ProcessRow
    proc: ProcInfo | None  # the agent's process while it is alive (its start time checked)
    children: tuple[ChildView, ...] = ()
    unlisted: int = 0  # descendants beyond the per-agent cap

    @property
    def finished(self) -> bool:
        return self.row.state in _TERMINAL


@dataclass(frozen=True)
class RunView:
    run: RunRow
    proc: ProcInfo | None  # the supervisor, while it is alive
    agents: tuple[AgentView, ...]

    @property
    def status(self) -> str:
        """The run's status; 'lost' for a running run whose supervisor is gone (`ps` records it)."""
        return "lost" if self.run.active and self.proc is None else self.run.status

    @property
    def budget(self) -> int:
        """The run's budget: its pool when it has one, else the sum of its agents' budgets.

        Agents funded from a pool can add up to more than the pool (what one leaves is lent to the
        next), so their sum would claim tokens the run never had.
        """
        plan = self.run.plan if isinstance(self.run.plan, dict) else {}
        pool = (plan.get("budget_pool") or {}).get("total")
        return int(pool) if pool else sum(a.row.budget or 0 for a in self.agents)


@dataclass(frozen=True)
class Snapshot:
    taken_at: float  # seconds since the epoch
    runs: tuple[RunView, ...]
    project: str | None = None
    show_all: bool = False
    note: str | None = None  # why the data may be stale (the state database was busy)
    db_exists: bool = True


def summary(snapshot: Snapshot, now: float) -> dict[str, Any]:
    """Counts by state, tokens and elapsed time over every agent of the runs in the snapshot."""
    by_state: dict[str, int] = {}
    for run in snapshot.runs:
        for agent in run.agents:
            by_state[agent.row.state] = by_state.get(agent.row.state, 0) + 1
    starts = [r.run.started_at for r in snapshot.runs]
    active = any(r.run.active for r in snapshot.runs)
    end = now if active else max((r.run.ended_at or now for r in snapshot.runs), default=now)
    return {
        "runs": len(snapshot.runs),
        "agents": sum(by_state.values()),
        "by_state": dict(sorted(by_state.items(), key=lambda kv: _STATE_ORDER.get(kv[0], 99))),
        "tokens_used": sum(r.run.tokens_used for r in snapshot.runs),
        "tokens_budget": sum(r.budget for r in snapshot.runs),
        "elapsed_ms": int((end - min(starts)) * 1000) if starts else 0,
    }


def document(snapshot: Snapshot, now: float, cpu_window_ms: int) -> dict[str, Any]:
    """The `data` of `rnix top --once --json` (docs/top.md)."""
    return {
        "taken_at": round(snapshot.taken_at, 3),
        "cpu_window_ms": cpu_window_ms,
        "project": snapshot.project,
        "all": snapshot.show_all,
        "summary": summary(snapshot, now),
        "runs": [_run_document(run, now, snapshot.show_all) for run in snapshot.runs],
    }


# -- formatting ------------------------------------------------------------------------------------


def clock(ms: int) -> str:
    """Elapsed time in at most 8 characters: 850ms, 12.3s, 4m05s, 2h07m, 3d04h."""
    if ms < 1000:
        return f"{ms}ms"
    seconds = ms / 1000
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h"


def size(count: int) -> str:
    """Bytes in at most 6 characters: 812K, 12.3M, 1.2G."""
    for unit, scale in (("G", 1 << 30), ("M", 1 << 20)):
        if count >= scale:
            value = count / scale
            return f"{value:.1f}{unit}" if value < 100 else f"{value:.0f}{unit}"
    return f"{count >> 10}K"


def tokens_hot(used: int, budget: int | None) -> bool:
    """Whether an agent has used HOT_TOKENS (90 %) of its budget or more."""
    return bool(budget) and used >= HOT_TOKENS * (budget or 0)


def short_tokens(count: int) -> str:
    """Token counts in at most 6 characters: 12,345, 123k, 1.23M."""
    if count < 100_000:
        return f"{count:,}"
    if count < 1_000_000:
        return f"{count // 1000}k"
    return f"{count / 1_000_000:.3g}M"


# -- rows --------------------------------------------------------------------------------------------

_STATE_ORDER = {s: i for i, s in enumerate(("running", "paused", "pending", *sorted(_TERMINAL)))}


# -- the JSON document -------------------------------------------------------------------------------


def _run_document(run: RunView, now: float, show_all: bool) -> dict[str, Any]:
    r = run.run
    return {
        "run_id": r.id,
        "project": r.project,
        "status": run.status,
        "pid": r.supervisor_pid,
        "compose_file": r.compose_file,
        "started_at": r.started_at,
        "ended_at": r.ended_at,
        "elapsed_ms": int(((r.ended_at or now) - r.started_at) * 1000),
        "tokens_used": r.tokens_used,
        "budget": run.budget,
        **_proc_fields(run.proc),
        "agents": [_agent_document(a, now) for a in run.agents if show_all or not a.finished],
    }


def _agent_document(agent: AgentView, now: float) -> dict[str, Any]:
    row = agent.row
    doc = process_dict(row)
    doc["elapsed_ms"] = elapsed_ms(row, now)
    doc.update(
        model=row.model,
        depends_on=list(row.depends_on),
        tokens_hot=tokens_hot(row.tokens_used, row.budget),
        **_proc_fields(agent.proc),
        processes=[
            {
                "pid": c.info.pid,
                "ppid": c.info.ppid,
                "depth": c.depth,
                "name": c.info.name,
                "command": c.command,
                "state": c.info.state_word,
                "cpu_percent": c.info.cpu_percent,
                "rss_bytes": c.info.rss,
                "elapsed_ms": max(0, int((now - c.info.start_time) * 1000)),
            }
            for c in agent.children
        ],
        unlisted_processes=agent.unlisted,
    )
    return doc


def _proc_fields(info: ProcInfo | None) -> dict[str, Any]:
    return {
        "alive": info is not None,
        "cpu_percent": info.cpu_percent if info else None,
        "rss_bytes": info.rss if info else None,
    }
