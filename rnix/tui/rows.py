"""The rows of `top`: runs -> agents -> child processes, as cells of text with a style each.

Contract:
- `table_rows(snapshot, now, ...)` is the tree the full-screen view and `top --once` both show,
  filtered and with finished agents hidden unless asked for; `header_text` is the counts line.
  Pure: no I/O, no clock (`now` is passed in).
- Every string an agent or a file controls has gone through `inert`, so a cell is text, never
  markup or a terminal escape; widgets must still draw it as plain text (no markup parsing).
- NODE is the cluster node an agent runs on, blank for the supervisor's machine; the column is
  drawn only when some row has one (`OPTIONAL`), so a view of local agents looks as it always did.
- Row keys are stable across refreshes (`run:<id>`, `agent:<run>:<name>`, `proc:<pid>:<start>`),
  so a view keeps its selection on the same run, agent or process.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING, Any, NamedTuple

from rnix.tui.snapshot import (
    STATE_STYLE,
    AgentView,
    ChildView,
    RunView,
    Snapshot,
    clock,
    short_tokens,
    size,
    summary,
    tokens_hot,
)
from rnix.ui.proctable import elapsed_ms
from rnix.ui.text import inert as _inert

if TYPE_CHECKING:
    from rnix.tui.procstat import ProcInfo

inert = lru_cache(maxsize=16384)(_inert)  # the same names and intents, every second


class Cell(NamedTuple):  # tuples, not dataclasses: a refresh makes ten thousand of them
    text: str
    style: str = ""


class TableRow(NamedTuple):
    key: str  # stable across refreshes: keeps the selection on the same run, agent or process
    kind: str  # "run", "agent" or "process"
    cells: tuple[Cell, ...]
    run_id: str
    agent: str | None = None
    pid: int | None = None  # for agent and process rows: the agent's PID (what K, 9 and s signal)
    parent: str | None = None  # the key of the row this one hangs from


COLUMNS = (  # name, width (None: fit the content), right-aligned
    ("PID", 7, True),
    ("PPID", 7, True),
    ("NODE", None, False),
    ("PROJECT", None, False),
    ("AGENT", None, False),
    ("STATE", 15, False),
    ("TOKENS", 13, True),
    ("CPU%", 6, True),
    ("RSS", 7, True),
    ("ELAPSED", 8, True),
    ("INTENT", None, False),
)

OPTIONAL = frozenset({"NODE"})  # columns drawn only when a row has text in them


def shown_columns(rows: list[TableRow]) -> tuple[bool, ...]:
    """Per column of `COLUMNS`: whether to draw it (an `OPTIONAL` one only when a cell has text)."""
    return tuple(
        name not in OPTIONAL or any(row.cells[i].text for row in rows)
        for i, (name, _, _) in enumerate(COLUMNS)
    )


Memo = dict[str, tuple[Any, tuple[Cell, ...]]]


def table_rows(
    snapshot: Snapshot, now: float, *, show_all: bool, text_filter: str = "", memo: Memo | None = None
) -> list[TableRow]:
    """The rows of the view, in tree order (see the module docstring).

    `memo` (kept by the caller from one refresh to the next) spares re-formatting the cells that did
    not change: a refresh of 500 agents re-formats only their CPU, RSS and elapsed time.
    """
    needle = text_filter.strip().lower()
    memo = {} if memo is None else memo
    rows: list[TableRow] = []
    for run in snapshot.runs:
        run_matches = not needle or _matches(needle, run.run.id, run.run.project, run.status)
        agents = [a for a in run.agents if show_all or not a.finished]
        if needle and not run_matches:
            agents = [a for a in agents if _agent_matches(needle, a)]
        if not agents and not run_matches:
            continue
        rows.append(_run_row(run, now))
        depths: list[int] = []
        for agent in agents:
            depths.append(1)
            depths.extend(1 + c.depth for c in agent.children)
            if agent.unlisted:
                depths.append(2)
        prefixes = iter(_tree_prefixes(depths))
        for agent in agents:
            rows.append(_agent_row(agent, now, next(prefixes), memo))
            rows.extend(_process_row(run, agent, c, now, next(prefixes), memo) for c in agent.children)
            if agent.unlisted:
                rows.append(_unlisted_row(run, agent, next(prefixes)))
    if len(memo) > 2 * len(rows) + 256:
        live = {row.key for row in rows}
        for key in [k for k in memo if k not in live]:
            del memo[key]
    return rows


def header_text(snapshot: Snapshot, now: float) -> list[Cell]:
    """The counts line: `2 runs · 7 agents: 3 running, 1 paused, 3 completed · tokens ... · elapsed`."""
    s = summary(snapshot, now)
    parts = [Cell("rnix top", "bold"), Cell(f"  {_clock_time(now)}", "dim")]
    if snapshot.project is not None:
        parts.append(Cell(f" · project {inert(snapshot.project)}"))
    plural = "s" if s["runs"] != 1 else ""
    parts.append(Cell(f" · {s['runs']} run{plural} · {s['agents']} agent{'s' * (s['agents'] != 1)}"))
    for i, (state, count) in enumerate(s["by_state"].items()):
        parts.append(Cell(": " if i == 0 else ", "))
        parts.append(Cell(f"{count} {state}", STATE_STYLE.get(state, "red")))
    used, budget = s["tokens_used"], s["tokens_budget"]
    parts.append(Cell(f" · tokens {used:,}/{budget:,}", _tokens_style(used, budget)))
    parts.append(Cell(f" · elapsed {clock(s['elapsed_ms'])}"))
    return parts


def _tokens_cell(used: int, budget: int | None) -> Cell:
    text = f"{short_tokens(used)}/{short_tokens(budget) if budget else '-'}"
    return Cell(text, _tokens_style(used, budget))


def _tokens_style(used: int, budget: int | None) -> str:
    return "bold red" if tokens_hot(used, budget) else ""


def _clock_time(ts: float) -> str:
    import time

    return time.strftime("%H:%M:%S", time.localtime(ts))


def _cpu(info: ProcInfo | None) -> Cell:
    if info is None:
        return Cell("-", "dim")
    return Cell("-" if info.cpu_percent is None else f"{info.cpu_percent:.1f}")


def _rss(info: ProcInfo | None) -> Cell:
    return Cell("-", "dim") if info is None else Cell(size(info.rss))


_BLANK, _DASH = Cell(""), Cell("-", "dim")


def _pid(pid: int | None) -> Cell:
    return Cell("-", "dim") if pid is None else Cell(str(pid))


def _run_row(run: RunView, now: float) -> TableRow:
    r = run.run
    status = run.status
    cells = (
        _pid(r.supervisor_pid),
        _pid(run.proc.ppid if run.proc else None),
        _BLANK,
        Cell(inert(r.project), "bold"),
        Cell(f"run {r.id}", "bold"),
        Cell(status, STATE_STYLE.get(status, "red")),
        _tokens_cell(r.tokens_used, run.budget),
        _cpu(run.proc),
        _rss(run.proc),
        Cell(clock(int(((r.ended_at or now) - r.started_at) * 1000))),
        Cell(inert(r.compose_file or ""), "dim"),
    )
    return TableRow(f"run:{r.id}", "run", cells, r.id)


def _agent_row(agent: AgentView, now: float, prefix: str, memo: Memo) -> TableRow:
    row = agent.row
    key = f"agent:{row.run_id}:{row.agent}"
    dim = "dim" if agent.finished else ""
    known = memo.get(key)
    if known is not None and (known[0][0] is row or known[0][0] == row) and known[0][1] == prefix:
        fixed = known[1]
    else:
        fixed = (
            _pid(row.pid),
            _pid(row.ppid),
            Cell(inert(row.node), dim) if row.node else _BLANK,
            Cell(inert(row.project), dim),
            Cell(prefix + inert(row.agent), dim or "bold"),
            Cell(
                f"{row.state} (rate_limited)" if row.rate_limited else row.state,
                STATE_STYLE.get(row.state, "red"),
            ),
            _tokens_cell(row.tokens_used, row.budget),
            Cell(inert(row.intent or ""), dim),
        )
        memo[key] = ((row, prefix), fixed)
    live = agent.proc is not None or not agent.finished
    started = row.started_at is not None
    cells = (
        *fixed[:7],
        _cpu(agent.proc) if live else _BLANK,
        _rss(agent.proc) if live else _BLANK,
        Cell(clock(elapsed_ms(row, now)), dim) if started else _DASH,
        fixed[7],
    )
    return TableRow(key, "agent", cells, row.run_id, row.agent, row.pid, f"run:{row.run_id}")


def _process_row(
    run: RunView, agent: AgentView, child: ChildView, now: float, prefix: str, memo: Memo
) -> TableRow:
    info = child.info
    key = f"proc:{info.pid}:{info.start_ticks}"
    signature = (info.ppid, info.name, info.state, child.command, agent.row.project, prefix)
    known = memo.get(key)
    if known is not None and known[0] == signature:
        fixed = known[1]
    else:
        state_style = "yellow" if info.state in "Tt" else "red" if info.state == "Z" else "dim"
        fixed = (
            _pid(info.pid),
            _pid(info.ppid),
            _BLANK,
            Cell(inert(agent.row.project), "dim"),
            Cell(prefix + inert(info.name)),
            Cell(info.state_word, state_style),
            _BLANK,
            Cell(inert(child.command), "dim"),
        )
        memo[key] = (signature, fixed)
    cells = (
        *fixed[:7],
        _cpu(info),
        _rss(info),
        Cell(clock(max(0, int((now - info.start_time) * 1000)))),
        fixed[7],
    )
    parent = f"agent:{run.run.id}:{agent.row.agent}"
    return TableRow(key, "process", cells, run.run.id, agent.row.agent, agent.row.pid, parent)


def _unlisted_row(run: RunView, agent: AgentView, prefix: str) -> TableRow:
    text = Cell(f"{prefix}… {agent.unlisted} more processes", "dim")
    cells = (_BLANK, _BLANK, _BLANK, _BLANK, text, *[_BLANK] * 6)
    parent = f"agent:{run.run.id}:{agent.row.agent}"
    key = f"more:{run.run.id}:{agent.row.agent}"
    return TableRow(key, "more", cells, run.run.id, agent.row.agent, agent.row.pid, parent)


def _tree_prefixes(depths: list[int]) -> list[str]:
    """The branch drawn before each row of a depth-first list (`├─ `, `│  └─ `, ...)."""
    last = [False] * len(depths)
    following: list[bool] = []  # following[d]: a later row at depth d shares the current parent
    for i in range(len(depths) - 1, -1, -1):
        depth = depths[i]
        following = following[: depth + 1] + [False] * (depth + 1 - len(following))
        last[i] = not following[depth]
        following[depth] = True
    out: list[str] = []
    open_levels: list[bool] = []  # open_levels[d]: the ancestor at depth d has siblings below
    for depth, is_last in zip(depths, last, strict=True):
        open_levels = [*open_levels[: depth - 1], not is_last]
        trunk = "".join("│  " if more else "   " for more in open_levels[:-1])
        out.append(trunk + ("└─ " if is_last else "├─ "))
    return out


def _matches(needle: str, *values: object) -> bool:
    return any(needle in str(v).lower() for v in values if v is not None)


def _agent_matches(needle: str, agent: AgentView) -> bool:
    row = agent.row
    if _matches(needle, row.agent, row.project, row.state, row.intent, row.model, row.pid, row.node):
        return True
    return any(_matches(needle, c.command, c.info.pid) for c in agent.children)
