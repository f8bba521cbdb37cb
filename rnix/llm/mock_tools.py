"""How the `mock` model uses tools, so the agent loop runs offline: a script, or a short exploration.

- `mock?script=FILE`: FILE (absolute, or relative to the supervisor's working directory) holds a JSON
  list of steps. Step N answers the model's N-th turn (counted by the assistant tool-call turns already
  in the conversation): `{"tool": NAME, "arguments": {...}}` calls one tool, a list of those calls
  several at once, `{"answer": TEXT}` ends with that final answer. After the last step the mock answers
  as usual. A script is read on every call, so tests may write it just before the run.
- When `submit_result` is offered (an agent with an `output_schema`), the mock's last step is a call
  to it whose arguments are `rnix.core.structured.sample` of its parameters: valid, deterministic.
- Otherwise, when tools are offered, the mock explores like a careful agent would and then answers:
  it lists the workspace (`list_dir` or `glob`), reads up to `READS` of the files it saw
  (`read_file`), and its final answer names the files it read. With `mode=tools` and none of those
  tools offered it calls the first tool once with no arguments.

Pure apart from reading the script file; the caller counts the usage.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from rnix.core.structured import SUBMIT_TOOL

READS = 2  # files the exploring mock reads before it answers
# A regular file in list_dir's output: `name  1,204 bytes` (rnix.agent.tools.files).
_LISTED_FILE = re.compile(r"^(\S.*?)  [\d,]+ bytes?$", re.MULTILINE)


class ScriptError(ValueError):
    """The script file is missing or malformed; the message says which and where."""


def tool_names(tools: list[Any] | None) -> list[str]:
    names = []
    for tool in tools or []:
        function = tool.get("function") if isinstance(tool, dict) else None
        if isinstance(function, dict) and isinstance(function.get("name"), str):
            names.append(function["name"])
    return names


def _turns(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [m for m in messages if m.get("role") == "assistant" and m.get("tool_calls")]


def _call(turn: int, index: int, name: str, arguments: Any) -> dict[str, Any]:
    return {
        "id": f"call_mock_{turn}_{index}",
        "type": "function",
        "function": {"name": name, "arguments": json.dumps(arguments if arguments is not None else {})},
    }


def load_script(path: str) -> list[Any]:
    try:
        steps = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ScriptError(f"mock script {path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise ScriptError(f"mock script {path}: not JSON: {exc}") from None
    if not isinstance(steps, list):
        raise ScriptError(f"mock script {path}: must be a JSON list of steps")
    return steps


def scripted(
    steps: list[Any], messages: list[dict[str, Any]], path: str
) -> str | list[dict[str, Any]] | None:
    """The scripted reply for this turn: tool calls, a final answer (str), or None past the script."""
    turn = len(_turns(messages))
    if turn >= len(steps):
        return None
    step = steps[turn]
    if isinstance(step, dict) and isinstance(step.get("answer"), str):
        return str(step["answer"])
    calls = step if isinstance(step, list) else [step]
    out = []
    for index, call in enumerate(calls):
        if not isinstance(call, dict) or not isinstance(call.get("tool"), str):
            raise ScriptError(f"mock script {path}: step {turn + 1} needs `tool` (a name) or `answer` (text)")
        out.append(_call(turn, index, call["tool"], call.get("arguments")))
    return out


def _tool_results(messages: list[dict[str, Any]]) -> list[str]:
    return [str(m.get("content") or "") for m in messages if m.get("role") == "tool"]


def _read_paths(messages: list[dict[str, Any]]) -> list[str]:
    paths = []
    for turn in _turns(messages):
        for call in turn["tool_calls"]:
            function = call.get("function") or {}
            if function.get("name") == "read_file":
                try:
                    arguments = json.loads(function.get("arguments") or "{}")
                except ValueError:
                    continue
                if isinstance(arguments, dict) and isinstance(arguments.get("path"), str):
                    paths.append(arguments["path"])
    return paths


def explore(names: list[str], messages: list[dict[str, Any]], mode: str) -> list[dict[str, Any]] | None:
    """The exploring mock's next tool calls, or None when it is ready to answer."""
    turn = len(_turns(messages))
    if turn == 0:
        if "list_dir" in names:
            return [_call(0, 0, "list_dir", {"path": "."})]
        if "glob" in names:
            return [_call(0, 0, "glob", {"pattern": "*"})]
        if mode == "tools" and names:
            return [_call(0, 0, names[0], {})]
        return None
    if "read_file" not in names:
        return None
    listing = _tool_results(messages)[0] if _tool_results(messages) else ""
    seen = _read_paths(messages)
    candidates = [p for p in dict.fromkeys(_LISTED_FILE.findall(listing)) if p not in seen]
    if len(seen) >= READS or not candidates:
        return None
    return [_call(turn, 0, "read_file", {"path": candidates[0]})]


def files_read(messages: list[dict[str, Any]]) -> list[str]:
    """The files the conversation read, for the exploring mock's final answer."""
    return _read_paths(messages)


def submission(tools: list[Any] | None, messages: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
    """A `submit_result` call with a sample of its parameters, or None when it is not offered."""
    for tool in tools or []:
        function = tool.get("function") if isinstance(tool, dict) else None
        if isinstance(function, dict) and function.get("name") == SUBMIT_TOOL:
            from rnix.core.structured import sample

            parameters = function.get("parameters")
            arguments = sample(parameters if isinstance(parameters, dict) else {})
            return [_call(len(_turns(messages)), 0, SUBMIT_TOOL, arguments)]
    return None
