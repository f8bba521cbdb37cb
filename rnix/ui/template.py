"""`--format TEMPLATE` for listings: docker's `{{.Field}}` placeholders over a row's `--json` fields.

Contract:
- A placeholder is `{{.name}}` (spaces allowed inside the braces); `name` is a key of the row's JSON
  object, matched ignoring case and underscores, so `{{.RunId}}`, `{{.run_id}}` and `{{.PID}}` work.
- `\\t` and `\\n` written in the template become a tab and a newline (shells pass them literally).
- A template starting with `table ` prints a header line first: each placeholder's name in capitals.
- Values are made inert (one line, no control characters); `None` renders as `-`; dicts and lists
  as compact JSON. An unknown name raises `UsageError` that
  lists the known ones, before anything is printed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from typing import Any

from rnix.errors import UsageError
from rnix.ui.text import inert

_PLACEHOLDER = re.compile(r"\{\{\s*\.(\w+)\s*\}\}")


def _key(name: str) -> str:
    return name.replace("_", "").lower()


def render(template: str, rows: Sequence[dict[str, Any]], fields: Iterable[str]) -> list[str]:
    """One line per row (plus a header for `table ...`); `fields` are the names a row may have."""
    known = {_key(f): f for f in fields}
    text = template.replace("\\t", "\t").replace("\\n", "\n")
    header = text.startswith("table ")
    if header:
        text = text[len("table ") :]
    for name in _PLACEHOLDER.findall(text):
        if _key(name) not in known:
            raise UsageError(
                f"--format: unknown field '{name}'",
                "fields: " + ", ".join("{{." + f + "}}" for f in known.values()),
            )

    def fill(row: dict[str, Any]) -> str:
        return _PLACEHOLDER.sub(lambda m: _cell(row.get(known[_key(m.group(1))])), text)

    lines = [_PLACEHOLDER.sub(lambda m: m.group(1).upper(), text)] if header else []
    return lines + [fill(row) for row in rows]


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return inert(str(value))
