"""Categorized agent log lines: `[think]`, `[tool]`, `[warn]` on stderr, `[output]` for stdout.

The built-in agent's loop writes each step as one stderr line with a category prefix
(rnix.agent.loop); any command agent may do the same. A stderr line without a known prefix is plain
`log`; every stdout line is `output` (the result). `rnix log --filter` and `top` select by category.
"""

from __future__ import annotations

import re

THINK, TOOL, WARN, OUTPUT, LOG = "think", "tool", "warn", "output", "log"
CATEGORIES = (THINK, TOOL, WARN, OUTPUT, LOG)
_PREFIX = re.compile(r"^\[(think|tool|warn|output)\] ?")


def categorize(line: str) -> tuple[str, str]:
    """(category, text without its prefix) of one stderr line."""
    match = _PREFIX.match(line)
    if match is None:
        return LOG, line
    return match.group(1), line[match.end() :]
