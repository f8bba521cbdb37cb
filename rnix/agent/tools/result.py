"""What a tool call gives back: `ToolResult`, and the three ways to make one.

Contract: `output` is what the model reads (plain words, already capped by the tool), `summary` is one
short line for the agent's log (`read_file src/app.py -> 1,204 bytes`, `DENIED shell sh -c ...: ...`).
`denied` means the sandbox or the agent's permissions refused the call and nothing was run or opened;
a call that ran and failed (missing file, non-zero exit, timeout) has `ok` False and `denied` False.
Both strings are always encodable as UTF-8, so they can go straight into the gateway protocol.
"""

from __future__ import annotations

from dataclasses import dataclass

SUMMARY_MAX = 200  # characters of one log line


class Denied(Exception):
    """Raised inside a tool: the call is refused (nothing has been run); the message says why."""


class Failed(Exception):
    """Raised inside a tool: the call was allowed but did not work; the message says what went wrong."""


@dataclass(frozen=True)
class ToolResult:
    ok: bool
    denied: bool
    output: str
    summary: str


def clean(text: str) -> str:
    """Text that encodes as UTF-8: lone surrogates (undecodable file names) become `\\udcxx`."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def one_line(text: str, limit: int = SUMMARY_MAX) -> str:
    """`text` on one line (control characters shown escaped), at most `limit` characters."""
    line = "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in clean(text))
    return line if len(line) <= limit else line[: limit - 3] + "..."


def success(output: str, summary: str) -> ToolResult:
    return ToolResult(ok=True, denied=False, output=clean(output), summary=one_line(summary))


def failure(message: str, summary: str) -> ToolResult:
    """The call was allowed and attempted, and did not work: the model sees `error: <message>`."""
    return ToolResult(ok=False, denied=False, output=clean(f"error: {message}"), summary=one_line(summary))


def denial(reason: str, call: str) -> ToolResult:
    """The call was refused before anything ran; `call` names it for the log (`shell sh -c x`)."""
    output = (
        f"denied: {reason}\nNothing was run. This is a permission limit of this agent, not a transient error."
    )
    return ToolResult(
        ok=False, denied=True, output=clean(output), summary=one_line(f"DENIED {call}: {reason}")
    )


def count(n: int, singular: str, plural: str | None = None) -> str:
    """`1 match`, `1,204 bytes`: a number with thousands separators and a noun that agrees."""
    return f"{n:,} {singular if n == 1 else plural or singular + 's'}"
