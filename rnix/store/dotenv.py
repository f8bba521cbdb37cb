"""Parsing a `.env` file: `KEY=VALUE` lines -> a dict, and a problem for every line that is not one.

Accepted, one per line: blank lines and `# comments`; `KEY=VALUE` with an optional `export ` prefix;
KEY matching `[A-Za-z_][A-Za-z0-9_]*`; unquoted values are stripped and end at ` #` (an inline
comment); 'single-quoted' values are literal; "double-quoted" values understand \\n \\t \\" and \\\\.
A later line wins over an earlier one. Problems never quote a value: `.env` files hold secrets.
"""

from __future__ import annotations

import re

from rnix.core.problems import Problem

_LINE = re.compile(r"^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=(.*)$")
_INLINE_COMMENT = re.compile(r"\s#")
_ESCAPES = {"n": "\n", "t": "\t", '"': '"', "\\": "\\"}
_NOT_KEY_VALUE = "invalid line: expected KEY=VALUE"


class _BadValue(Exception):
    """The value part of a line is malformed; the message names the fault, never the value."""


def parse_dotenv(text: str, file: str) -> tuple[dict[str, str], tuple[Problem, ...]]:
    """Parse `.env` text; `file` is the name used in problems (e.g. `project/.env`)."""
    values: dict[str, str] = {}
    problems: list[Problem] = []
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        match = _LINE.match(stripped)
        if match is None:
            problems.append(Problem(file, number, "", _NOT_KEY_VALUE))
            continue
        key, raw = match.groups()
        try:
            values[key] = _value(raw)
        except _BadValue as exc:
            problems.append(Problem(file, number, "", f"invalid line: {exc}"))
    return values, tuple(problems)


def _value(raw: str) -> str:
    text = raw.lstrip()
    if text.startswith("'"):
        end = text.find("'", 1)
        if end == -1:
            raise _BadValue("the single quote is not closed")
        _expect_end(text[end + 1 :])
        return text[1:end]
    if text.startswith('"'):
        value, rest = _double_quoted(text)
        _expect_end(rest)
        return value
    # Only a `#` after whitespace starts a comment, so `KEY=a#b` keeps its `#`.
    comment = _INLINE_COMMENT.search(raw)
    return (raw[: comment.start()] if comment else raw).strip()


def _double_quoted(text: str) -> tuple[str, str]:
    """Split `"..."rest` into the unescaped value and the rest of the line."""
    out: list[str] = []
    index = 1
    while index < len(text):
        char = text[index]
        if char == '"':
            return "".join(out), text[index + 1 :]
        if char == "\\" and index + 1 < len(text):
            following = text[index + 1]
            # Unknown escapes keep their backslash, as a shell would.
            out.append(_ESCAPES.get(following, "\\" + following))
            index += 2
            continue
        out.append(char)
        index += 1
    raise _BadValue("the double quote is not closed")


def _expect_end(rest: str) -> None:
    """After a closing quote only whitespace and a comment may follow."""
    rest = rest.strip()
    if rest and not rest.startswith("#"):
        raise _BadValue("unexpected text after the closing quote")
