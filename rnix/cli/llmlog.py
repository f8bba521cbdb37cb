"""`rnix log PID --llm`: an agent's model calls as recorded (rnix.core.llmcalls), like `llm logs`.

Contract: reads the store read-only (an agent reused by a resumed run has no PID there: the PID it
ran with, in the earlier run, shows its calls). Per call it prints a header line
`--- call N: STATUS, MODEL, T tokens (P prompt + C completion), L ms[, K tries] ---`, then the
messages the request added to the conversation, quoted with `> ` (`> [ROLE]` then its lines; the
messages sent before are not repeated: `> (N earlier messages)`), then the response's content lines,
`-> NAME ARGUMENTS` for each tool call in it and `<- NAME: SUMMARY` for each tool result the agent sent
back. A call answered before rnix recorded requests shows no `> ` lines. Everything printed is masked
with the secret values of this environment; lines an agent controls are made inert (no control
characters).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rnix.core.llmcalls import ModelCall, join
from rnix.env import Env
from rnix.errors import ExitCode
from rnix.store.db import ProcessRow, Store
from rnix.ui import jsonout


def model_calls(env: Env, row: ProcessRow) -> list[ModelCall]:
    from rnix.store.journal import recorded_entries

    with Store.open(env.home, readonly=True) as store, store.reading():
        events = store.events(row.run_id, agent=row.agent, kinds=("llm_call",))
        entries = recorded_entries(store, row.run_id, row.agent)
    return join([e.data for e in events], entries)


def show(env: Env, pid: int, row: ProcessRow, as_json: bool) -> int:
    from rnix.core.secrets import mask, secret_values

    secrets = secret_values(env.environ)
    calls = model_calls(env, row)
    if as_json:
        data = {
            "pid": pid,
            "agent": row.agent,
            "run_id": row.run_id,
            "calls": [call.as_dict() for call in calls],
        }
        jsonout.write_ok(env.stdout, mask(data, secrets))
        return ExitCode.OK
    if not calls:
        env.stderr.write(f"rnix: agent {row.agent} (PID {pid}) made no model calls\n")
    for call in calls:
        for line in render(call):
            env.stdout.write(mask_line(line, secrets) + "\n")
    env.stdout.flush()
    return ExitCode.OK


def mask_line(line: str, secrets: tuple[str, ...]) -> str:
    from rnix.core.secrets import mask_text
    from rnix.ui.text import inert

    return inert(mask_text(line, secrets))


def render(call: ModelCall) -> list[str]:
    tries = f", {call.tries} tries" if call.tries > 1 else ""
    usage = f"{call.total_tokens} tokens ({call.prompt_tokens} prompt + {call.completion_tokens} completion)"
    parts = [call.status, call.model or "model ?", usage, f"{call.latency_ms:g} ms{tries}"]
    lines = [f"--- call {call.number}: {', '.join(parts)} ---"]
    if call.error:
        lines.append(f"error: {call.error}")
    lines.extend(_request(call.request))
    response = call.response or {}
    content = response.get("content")
    if isinstance(content, str) and content:
        lines.extend(content.splitlines())
    for tool_call in response.get("tool_calls") or []:
        name, arguments = _tool_call(tool_call)
        lines.append(f"-> {name} {arguments}")
    for result in call.tool_results:
        lines.append(f"<- {_tool_result(result)}")
    return lines


def _tool_call(tool_call: Any) -> tuple[str, str]:
    if not isinstance(tool_call, Mapping):
        return "?", str(tool_call)
    function = tool_call.get("function")
    source = function if isinstance(function, Mapping) else tool_call
    return str(source.get("name") or "?"), str(source.get("arguments") or "")


def _tool_result(result: Mapping[str, Any]) -> str:
    state = "denied" if result.get("denied") else "ok" if result.get("ok") else "error"
    summary = str(result.get("summary") or "")
    return f"{state}: {summary}" if summary else state


def _request(request: Mapping[str, Any] | None) -> list[str]:
    """The quoted messages a request added (see the module docstring)."""
    if not request:
        return []
    earlier = request.get("from")
    lines = [f"> ({earlier} earlier messages)"] if isinstance(earlier, int) and earlier > 0 else []
    messages = request.get("messages")
    for message in messages if isinstance(messages, list) else ():
        if not isinstance(message, Mapping):
            continue
        label = str(message.get("role") or "?")
        if message.get("name"):
            label += f" {message['name']}"
        lines.append(f"> [{label}]")
        lines.extend(f"> {line}" for line in _text(message.get("content")).splitlines())
        for tool_call in message.get("tool_calls") or []:
            name, arguments = _tool_call(tool_call)
            lines.append(f"> -> {name} {arguments}")
    return lines


def _text(content: Any) -> str:
    """A message's content: a string, or the text parts of a list of parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p.get("text") for p in content if isinstance(p, Mapping)]
        return "\n".join(p for p in parts if isinstance(p, str))
    return ""
