"""The built-in agent's multi-step loop: think -> tool calls -> observe -> ... -> final answer.

Used when the task gives the agent tools (`task["tools"]`, from its definition; upstream results can
never add any). Each step sends the conversation and the tool schemas to the gateway; a reply with
tool calls has each call run by `rnix.agent.tools` inside the agent's workspace and its result
appended as a `tool` message; a reply without tool calls is the final answer. The loop ends:

- with the final answer on stdout (exit 0);
- at `max_steps` steps without one (exit 1, reason on stderr);
- when the gateway refuses a step for the budget (exit 2, raised as GatewayError to the runtime).

Every step is logged on stderr with a category prefix, one line each (docs/agent-protocol.md):
`[think]` the model's text next to its tool calls, `[tool]` a call and a short result, `[warn]` a
denied call or a malformed reply. `rnix log --filter` selects by these prefixes.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

THINK, TOOL, WARN, OUTPUT = "think", "tool", "warn", "output"
CATEGORIES = (THINK, TOOL, WARN, OUTPUT)
LOG_LINE_MAX = 400  # characters of one log line's text; the full text stays in the conversation


class Completer(Protocol):
    def complete(self, messages: list[dict[str, Any]], **options: Any) -> dict[str, Any]: ...


class StepLimit(Exception):
    """`max_steps` steps passed without a final answer."""


@dataclass(frozen=True)
class Outcome:
    answer: str
    steps: int


def log_line(category: str, text: str) -> str:
    """One categorized log line: `[tool] read_file a.py -> 120 bytes` (whitespace collapsed, capped)."""
    flat = " ".join("".join(ch if ch.isprintable() else " " for ch in text).split())  # no escapes
    if len(flat) > LOG_LINE_MAX:
        flat = flat[: LOG_LINE_MAX - 3] + "..."
    return f"[{category}] {flat}"


def _calls(reply: dict[str, Any]) -> list[dict[str, Any]]:
    calls = reply.get("tool_calls")
    return [c for c in calls if isinstance(c, dict)] if isinstance(calls, list) else []


def _call_parts(call: dict[str, Any], step: int, index: int) -> tuple[str, str, str]:
    """(id, tool name, arguments JSON text) of one tool call, tolerating sloppy providers."""
    raw_function = call.get("function")
    function: dict[str, Any] = raw_function if isinstance(raw_function, dict) else {}
    raw_name = function.get("name")
    name = raw_name if isinstance(raw_name, str) else ""
    arguments = function.get("arguments")
    if not isinstance(arguments, str):
        arguments = json.dumps(arguments if arguments is not None else {})
    raw_id = call.get("id")
    call_id = raw_id if isinstance(raw_id, str) and raw_id else f"call_{step}_{index}"
    return call_id, name, arguments


def run_loop(
    client: Completer,
    messages: list[dict[str, Any]],
    policy: Any,
    max_steps: int,
    log: Callable[[str], None],
) -> Outcome:
    """Run the loop on a copy of `messages`; raises StepLimit, or GatewayError from the client."""
    from rnix.agent import tools

    schemas = tools.schemas(policy)
    conversation = list(messages)
    for step in range(1, max_steps + 1):
        reply = client.complete(conversation, tools=schemas)
        content = reply.get("content") or ""
        calls = _calls(reply)
        if not calls:
            return Outcome(content, step)
        if content.strip():
            log(log_line(THINK, content))
        parts = [_call_parts(call, step, index) for index, call in enumerate(calls)]
        normalised = [
            {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
            for call_id, name, arguments in parts
        ]
        conversation.append({"role": "assistant", "content": content or None, "tool_calls": normalised})
        for call_id, name, arguments in parts:
            result = tools.execute(policy, name, arguments)
            log(log_line(WARN if result.denied else TOOL, f"step {step}: {result.summary}"))
            conversation.append({"role": "tool", "tool_call_id": call_id, "content": result.output})
    raise StepLimit(f"max_steps ({max_steps}) reached without a final answer")
