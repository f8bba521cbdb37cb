"""Making untrusted text inert and formatting numbers and durations for people."""

from __future__ import annotations

import re
from collections.abc import Sequence

# C0/C1 control characters (ESC starts ANSI/OSC sequences); tab and newline are handled by callers.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def inert(text: str, *, one_line: bool = True) -> str:
    """Text an agent or a file controls, safe to print: control characters become `?`.

    Rich markup is not interpreted as long as the result is wrapped in `rich.text.Text`.
    """
    if one_line:
        text = text.replace("\r\n", " ").replace("\n", " ").replace("\t", " ")
    return _CONTROL.sub("?", text)


def duration(seconds: float) -> str:
    """600 -> '10m', 5400 -> '1h30m', 0.25 -> '250ms', 90.5 -> '1m30.5s'."""
    if seconds < 1 and seconds != 0:
        return f"{seconds * 1000:g}ms"
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    parts = []
    if hours:
        parts.append(f"{int(hours)}h")
    if minutes:
        parts.append(f"{int(minutes)}m")
    if secs or not parts:
        parts.append(f"{secs:g}s")
    return "".join(parts)


def tokens(count: int | None) -> str:
    return "-" if count is None else f"{count:,}"


def align(table: Sequence[Sequence[str]], gap: str = "   ") -> list[str]:
    """Rows of cells as lines, each column padded to its widest cell (docker's plain table layout)."""
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))] if table else []
    return [gap.join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in table]


def with_condition(name: str, condition: str) -> str:
    """A dependency as listed: `build`, or `build (failed)` when its condition is not `completed`."""
    return name if condition == "completed" else f"{name} ({condition})"


def shorten(text: str, limit: int) -> str:
    """`text` cut to `limit` characters, ending in `...` when it was longer."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def node_name(name: str, for_each: str | None) -> str:
    """An agent as drawn: `fix[*]` for a fan-out (its instances are fix[0], fix[1], ...)."""
    return f"{name}[*]" if for_each is not None else name
