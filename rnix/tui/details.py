"""The details of one agent (`top`'s Enter / `d`), as lines of styled cells. Pure: no I/O, no textual.

Everything an agent or a file controls goes through `inert` (multi-line values keep their line
breaks, nothing else), so the lines are text to draw, never markup or escapes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from rnix.tui.rows import Cell
from rnix.tui.snapshot import STATE_STYLE, AgentView, RunView, clock, size, tokens_hot
from rnix.ui.proctable import elapsed_ms
from rnix.ui.runview import sla_word
from rnix.ui.text import inert

if TYPE_CHECKING:
    from rnix.store.db import ProcessRow

Line = list[Cell]
LABEL_WIDTH = 11
RESULT_LINES = 5


def details_lines(run: RunView, agent: AgentView, log: Sequence[str], now: float) -> list[Line]:
    row = agent.row
    lines: list[Line] = [
        [Cell(inert(row.agent), "bold"), Cell(f"  run {row.run_id} · project {inert(row.project)}", "dim")],
        [],
        _field("state", Cell(row.state, STATE_STYLE.get(row.state, "red")), Cell(_where(row, agent))),
        *_text_field("intent", row.intent or "-"),
        _field("model", Cell(inert(row.model or "-"))),
        _field("tokens", Cell(_tokens(row), "bold red" if tokens_hot(row.tokens_used, row.budget) else "")),
        _field("elapsed", Cell(_elapsed(row, now))),
    ]
    by_name = {a.row.agent: a.row for a in run.agents}
    deps = [Cell(f"{inert(d)} ({by_name[d].state if d in by_name else '?'})") for d in row.depends_on]
    lines.append(_field("depends on", *_joined(deps) or [Cell("-", "dim")]))
    upstream = _upstream(row.agent, by_name)
    lines.append(_field("upstream", Cell(", ".join(inert(n) for n in upstream) or "-")))
    downstream = [a.row.agent for a in run.agents if row.agent in a.row.depends_on]
    lines.append(_field("downstream", Cell(", ".join(inert(n) for n in downstream) or "-")))
    lines.extend(_contract(row.sla))
    if row.exit_code is not None or row.signal is not None:
        lines.append(_field("exit", Cell(f"status {_dash(row.exit_code)} · signal {_dash(row.signal)}")))
    if row.error:
        lines.extend(_text_field("error", row.error, "red"))
    if row.result:
        result = row.result.splitlines()
        more = f" (+{len(result) - RESULT_LINES} lines)" if len(result) > RESULT_LINES else ""
        lines.extend(_text_field("result", "\n".join(result[:RESULT_LINES]) + more))
    for child in agent.children:
        text = f"{'  ' * (child.depth - 1)}{child.info.pid} {inert(child.command)} ({child.info.state_word})"
        lines.append(_field("process" if child is agent.children[0] else "", Cell(text)))
    lines += [[], [Cell(f"log (last {len(log)} lines of {inert(row.log_path or '-')})", "bold")]]
    lines += [[Cell(line)] for line in log] or [[Cell("(empty)", "dim")]]
    return lines


def _field(label: str, *cells: Cell) -> Line:
    return [Cell(f"{label:<{LABEL_WIDTH}}", "dim"), *cells]


def _text_field(label: str, text: str, style: str = "") -> list[Line]:
    parts = inert(text, one_line=False).splitlines() or [""]
    return [_field(label if i == 0 else "", Cell(part, style)) for i, part in enumerate(parts)]


def _joined(cells: list[Cell]) -> list[Cell]:
    out: list[Cell] = []
    for i, cell in enumerate(cells):
        out += [Cell(", ")] if i else []
        out.append(cell)
    return out


def _where(row: ProcessRow, agent: AgentView) -> str:
    parts = [f"  PID {_dash(row.pid)} (PPID {_dash(row.ppid)})", f"layer {_dash(row.layer)}"]
    if row.node is not None:  # the PID is one of that node
        parts[0] = f"  PID {_dash(row.pid)} on node {inert(row.node)}"
    parts.append(f"attempt {row.attempt}")
    if agent.proc is not None:
        cpu = "-" if agent.proc.cpu_percent is None else f"{agent.proc.cpu_percent:.1f}%"
        parts += [f"CPU {cpu}", f"RSS {size(agent.proc.rss)}"]
    return " · ".join(parts)


def _tokens(row: ProcessRow) -> str:
    if not row.budget:
        return f"{row.tokens_used:,} used (no budget recorded)"
    return f"{row.tokens_used:,} of {row.budget:,} ({100 * row.tokens_used / row.budget:.0f}%)"


def _elapsed(row: ProcessRow, now: float) -> str:
    if row.started_at is None:
        return "not started"
    text = clock(elapsed_ms(row, now))
    paused = row.paused_ms + (int((now - row.paused_at) * 1000) if row.paused_at else 0)
    if row.paused_at is not None:
        text += " (paused: the clock is stopped)"
    if paused:
        text += f" · paused {clock(paused)} in all"
    return text


def _upstream(name: str, by_name: dict[str, ProcessRow]) -> list[str]:
    """Every agent `name` depends on, directly or not (sorted)."""
    seen: set[str] = set()
    todo = list(by_name[name].depends_on) if name in by_name else []
    while todo:
        dep = todo.pop()
        if dep not in seen:
            seen.add(dep)
            todo.extend(by_name[dep].depends_on if dep in by_name else ())
    return sorted(seen)


def _contract(sla: dict[str, Any] | None) -> list[Line]:
    if not sla:
        return [_field("contract", Cell("-", "dim"))]
    passed = bool(sla.get("passed"))
    lines = [_field("contract", Cell(inert(sla_word(sla)), "green" if passed else "red"))]
    for check in sla.get("checks", []):
        mark, style = ("✓", "green") if check.get("passed") else ("✗", "red")
        text = f"{mark} {check.get('name')}: {check.get('actual')} (limit {check.get('limit')})"
        if check.get("detail"):
            text += f" — {check.get('detail')}"
        lines.append(_field("", Cell(inert(text), style)))
    return lines


def _dash(value: object) -> str:
    return "-" if value is None else str(value)
