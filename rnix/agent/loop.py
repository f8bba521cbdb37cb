"""The built-in agent's multi-step loop: think -> tool calls -> observe -> ... -> final answer.

Used when the task gives the agent tools (`task["tools"]`, from its definition; upstream results can
never add any). Each step sends the conversation and the tool schemas to the gateway; a reply with
tool calls has each call run by `rnix.agent.tools` inside the agent's workspace and its result
appended as a `tool` message; a reply without tool calls is the final answer. The loop ends:

- with the final answer on stdout (exit 0);
- at `max_steps` steps without one (exit 1, reason on stderr);
- when the gateway refuses a step for the budget (exit 2, raised as GatewayError to the runtime).

Resuming (rnix.core.journal): given a `journal` (the gateway client), the loop asks it before each
tool call whether an earlier attempt of this agent recorded that call's result, and uses the recorded
output instead of running the tool again (a resumed agent does not re-run a command it already ran);
otherwise it runs the tool and records the result. A call is keyed by `tool_key` of the reply's
`request_hash`, the call's index and its name and arguments: replaying the same conversation gives
the same keys. A reply without `request_hash` (an older gateway, a test fake) is not journalled.

Every step is logged on stderr with a category prefix, one line each (docs/agent-protocol.md):
`[think]` the model's text next to its tool calls, `[tool]` a call and a short result, `[warn]` a
denied call or a malformed reply. A tool result taken from the journal ends in `(replayed)`.
`rnix log --filter` selects by these prefixes.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from rnix.core.journal import tool_key
from rnix.core.structured import SUBMIT_TOOL

if TYPE_CHECKING:
    from rnix.agent.submit import Submission
    from rnix.agent.tools.policy import ToolPolicy
    from rnix.agent.tools.result import ToolResult

THINK, TOOL, WARN, OUTPUT = "think", "tool", "warn", "output"
CATEGORIES = (THINK, TOOL, WARN, OUTPUT)
LOG_LINE_MAX = 400  # characters of one log line's text; the full text stays in the conversation


class Completer(Protocol):
    def complete(self, messages: list[dict[str, Any]], **options: Any) -> dict[str, Any]: ...


class ToolJournal(Protocol):
    def tool_replay(self, key: str) -> dict[str, Any] | None: ...

    def tool_record(self, key: str, output: dict[str, Any]) -> None: ...


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


def _recorded(output: dict[str, Any] | None) -> ToolResult | None:
    """The ToolResult an earlier attempt recorded, or None when there is none (or it is malformed)."""
    from rnix.agent.tools.result import ToolResult

    if output is None:
        return None
    ok, denied, text, summary = (output.get(k) for k in ("ok", "denied", "output", "summary"))
    if not (isinstance(ok, bool) and isinstance(denied, bool)):
        return None
    if not (isinstance(text, str) and isinstance(summary, str)):
        return None
    return ToolResult(ok=ok, denied=denied, output=text, summary=summary)


def _run_tool(
    policy: ToolPolicy, name: str, arguments: str, journal: ToolJournal | None, key: str | None
) -> tuple[ToolResult, bool]:
    """(the call's result, whether it came from the journal)."""
    from rnix.agent import tools

    if journal is None or key is None:
        return tools.execute(policy, name, arguments), False
    recorded = _recorded(journal.tool_replay(key))
    if recorded is not None:
        return recorded, True
    result = tools.execute(policy, name, arguments)
    output = {"ok": result.ok, "denied": result.denied, "output": result.output, "summary": result.summary}
    journal.tool_record(key, output)
    return result, False


def run_loop(
    client: Completer,
    messages: list[dict[str, Any]],
    policy: Any,
    max_steps: int,
    log: Callable[[str], None],
    journal: ToolJournal | None = None,
    submit: Submission | None = None,
) -> Outcome:
    """Run the loop on a copy of `messages`; raises StepLimit, or GatewayError from the client.
    With `journal`, tool results are taken from it and recorded in it (see the module docstring).
    With `submit`, the answer is what the model submits through `submit_result` (rnix.agent.submit),
    and submit.OutputInvalid is raised when it has not submitted a valid result after the repair turns."""
    from rnix.agent import tools

    schemas = tools.schemas(policy)
    conversation = list(messages)
    if submit is not None:
        schemas.append(submit.tool)
        conversation.append(submit.instruction())
    for step in range(1, max_steps + 1):
        reply = client.complete(conversation, tools=schemas)
        content = reply.get("content") or ""
        calls = _calls(reply)
        if not calls and submit is None:
            return Outcome(content, step)
        if not calls and submit is not None:
            log(log_line(WARN, f"step {step}: a plain text answer instead of {SUBMIT_TOOL}"))
            conversation += [{"role": "assistant", "content": content}, submit.plain_answer()]
            submit.failed_turn()
            continue
        if content.strip():
            log(log_line(THINK, content))
        parts = [_call_parts(call, step, index) for index, call in enumerate(calls)]
        normalised = [
            {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
            for call_id, name, arguments in parts
        ]
        conversation.append({"role": "assistant", "content": content or None, "tool_calls": normalised})
        request_hash = reply.get("request_hash")
        failed = False
        for index, (call_id, name, arguments) in enumerate(parts):
            if submit is not None and name == SUBMIT_TOOL:
                answer, message = submit.check(arguments)
                if answer is not None:
                    log(log_line(TOOL, f"step {step}: {SUBMIT_TOOL} -> valid"))
                    return Outcome(answer, step)
                log(log_line(WARN, f"step {step}: {SUBMIT_TOOL} -> {'; '.join(submit.errors)}"))
                conversation.append({"role": "tool", "tool_call_id": call_id, "content": message})
                failed = True
                continue
            key = tool_key(request_hash, index, name, arguments) if isinstance(request_hash, str) else None
            result, replayed = _run_tool(policy, name, arguments, journal, key)
            note = " (replayed)" if replayed else ""
            log(log_line(WARN if result.denied else TOOL, f"step {step}: {result.summary}{note}"))
            conversation.append({"role": "tool", "tool_call_id": call_id, "content": result.output})
        if failed and submit is not None:
            submit.failed_turn()
    raise StepLimit(f"max_steps ({max_steps}) reached without a final answer")
