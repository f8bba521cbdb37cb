"""`mock`: the built-in offline, deterministic model, for examples, demos and tests.

Model string: `mock` or `mock?latency=200ms&words=60&fail=2&mode=json`.

- `latency` (a duration, default 0): how long each call takes (asyncio sleep; injectable).
- `words` (default 40): length of the answer in words.
- `fail=N` (default 0): the first N calls *per agent* fail with a retryable ProviderError(500).
- `mode`: `text` (default; a task that mentions JSON is answered with JSON); `json` answers one
  JSON object; `tools` also calls a tool the mock does not know (the first offered, no arguments).
- Instructions (system messages) that ask for Markdown get a heading and a list item; instructions
  that ask for a `VERDICT: PASS|FAIL` line get `VERDICT: PASS` first, so contracts pass offline.
- `script=FILE`: scripted tool calls and answers. Without a script, a mock offered tools explores
  the workspace first (list, read two files) and names what it read; see rnix.llm.mock_tools.
- Offered `submit_result` (an agent with an `output_schema`), it ends by calling it with a sample
  of the tool's parameters (rnix.core.structured.sample), after its exploring or its script.

The same messages always give the same answer. It states the task (the text after "Your task: " in
the last user message) and names every upstream agent whose fenced result it received, then pads
with filler words chosen by a hash of the messages. It never exceeds `max_tokens` (the answer is cut,
finish_reason "length"). Usage is counted with the real tokenizer, exactly as the gateway counts.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from rnix.core.structured import SUBMIT_TOOL
from rnix.core.types import parse_duration
from rnix.llm import mock_tools, tokens
from rnix.llm.backend import CALLER, CallTimeout, Completion, ProviderError, Usage

NAME = "mock"
MODES = ("text", "json", "tools")
TASK_MARKER = "Your task: "
TASK_PREVIEW = 60  # characters of the task quoted in the answer
_FENCE = re.compile(r'<<<rnix:upstream agent="([^"]*)">>>')
_FILLER_WORDS = (
    "analysis evidence summary context detail result finding source claim point reason example "
    "section draft review note outline theme answer method insight figure table item step"
)
_FILLER = tuple(_FILLER_WORDS.split())


@dataclass(frozen=True)
class MockOptions:
    latency: float = 0.0
    words: int = 40
    fail: int = 0
    mode: str = "text"
    script: str | None = None  # a JSON file of scripted tool calls and answers (rnix.llm.mock_tools)


def parse_model(model: str) -> MockOptions:
    """The options of a `mock?...` model string; ValueError says what is wrong."""
    base, _, query = model.partition("?")
    if base != NAME:
        raise ValueError(f"not a mock model: {model!r}")
    values: dict[str, Any] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key == "latency":
            seconds = parse_duration(value)
            if seconds is None:
                raise ValueError(f"mock option latency must be a duration such as 200ms, not {value!r}")
            values["latency"] = seconds
        elif key in ("words", "fail"):
            if not value.isdigit():
                raise ValueError(f"mock option {key} must be a whole number, not {value!r}")
            values[key] = int(value)
        elif key == "mode":
            if value not in MODES:
                raise ValueError(f"mock option mode must be one of {', '.join(MODES)}, not {value!r}")
            values["mode"] = value
        elif key == "script":
            if not value:
                raise ValueError("mock option script must name a JSON file")
            values["script"] = value
        else:
            raise ValueError(f"unknown mock option {key!r} (known: latency, words, fail, mode, script)")
    return MockOptions(**values)


def _text(content: Any) -> str:
    return content if isinstance(content, str) else json.dumps(content, sort_keys=True, default=str)


def task_of(messages: list[dict[str, Any]]) -> str:
    """The task stated in the last user message, whitespace-collapsed and cut for quoting."""
    users = [_text(m.get("content")) for m in messages if m.get("role") == "user"]
    last = users[-1] if users else ""
    task = last.split(TASK_MARKER, 1)[1] if TASK_MARKER in last else last
    task = " ".join(task.split())
    return task if len(task) <= TASK_PREVIEW else task[: TASK_PREVIEW - 3] + "..."


def upstream_names(messages: list[dict[str, Any]]) -> list[str]:
    """Agents whose fenced results appear in the messages, in order of first appearance."""
    names: list[str] = []
    for message in messages:
        for name in _FENCE.findall(_text(message.get("content"))):
            if name not in names:
                names.append(name)
    return names


def _filler(seed: bytes, count: int) -> list[str]:
    words = []
    for i in range(count):
        digest = hashlib.sha256(seed + i.to_bytes(4, "big")).digest()
        words.append(_FILLER[int.from_bytes(digest[:4], "big") % len(_FILLER)])
    return words


def answer(messages: list[dict[str, Any]], options: MockOptions) -> str:
    """The full (untruncated) deterministic answer to `messages`."""
    task, names = task_of(messages), upstream_names(messages)
    sources = f"using results from: {', '.join(names)}." if names else "with no upstream results."
    seed = hashlib.sha256(json.dumps(messages, sort_keys=True, default=str).encode()).digest()
    # A task that asks for JSON gets JSON, so contracts with `output_format: json` work offline.
    if options.mode == "json" or re.search(r"\bJSON\b", task):
        filler = " ".join(_filler(seed, max(0, options.words)))
        return json.dumps({"task": task, "upstream": names, "answer": filler}, ensure_ascii=False)
    head = f"mock answer to '{task}' {sources}"
    padding = _filler(seed, max(0, options.words - len(head.split())))
    text = " ".join([head, *padding]) + ("." if padding else "")
    return _in_requested_format(text, task, messages)


def _in_requested_format(text: str, task: str, messages: list[dict[str, Any]]) -> str:
    """Follow the two answer formats agent instructions commonly ask for, so contracts can pass offline:
    Markdown (a heading, the answer as a list item) and a first line `VERDICT: PASS`."""
    system = " ".join(_text(m.get("content")) for m in messages if m.get("role") == "system")
    if re.search(r"\bmarkdown\b", system, re.IGNORECASE):
        text = f"## {task or 'Answer'}\n\n- {text}"
    if re.search(r"VERDICT: ?PASS", system):
        text = f"VERDICT: PASS\n\n{text}"
    return text


def _tool_step(
    options: MockOptions, messages: list[dict[str, Any]], tools: list[Any] | None
) -> str | list[dict[str, Any]] | None:
    """Tool calls to make now, a scripted final answer, or None to answer as usual."""
    if options.script:
        steps = mock_tools.load_script(options.script)
        step = mock_tools.scripted(steps, messages, options.script)
        return step if step is not None else mock_tools.submission(tools, messages)
    if not tools:
        return None
    names = [n for n in mock_tools.tool_names(tools) if n != SUBMIT_TOOL]
    calls = mock_tools.explore(names, messages, options.mode)
    if calls is not None:
        return calls
    submitted = mock_tools.submission(tools, messages)
    if submitted is not None:
        return submitted
    read = mock_tools.files_read(messages)
    if read:
        return answer(messages, options).rstrip(".") + f"; files read: {', '.join(read)}."
    return None


class MockBackend:
    """The Backend for `mock`. `sleep` is injectable so tests need not wait for `latency`."""

    def __init__(self, sleep: Callable[[float], Awaitable[object]] = asyncio.sleep) -> None:
        self._sleep = sleep
        self._calls: dict[str, int] = {}  # agent -> calls so far, for fail=N

    async def complete(
        self,
        *,
        model: str,
        messages: list[dict[str, Any]],
        max_tokens: int,
        api_base: str | None,
        timeout: float,
        tools: list[Any] | None = None,
        temperature: float | None = None,
    ) -> Completion:
        try:
            options = parse_model(model)
        except ValueError as exc:
            raise ProviderError(str(exc), status=400) from None
        if options.latency > timeout:
            await self._sleep(timeout)
            raise CallTimeout(f"mock: no answer within the timeout of {timeout:g}s")
        if options.latency:
            await self._sleep(options.latency)
        caller = CALLER.get() or ""
        calls = self._calls[caller] = self._calls.get(caller, 0) + 1
        if calls <= options.fail:
            raise ProviderError(f"mock: scripted failure {calls} of {options.fail}", status=500)
        prompt_tokens = tokens.count_prompt(messages, model, tools)
        try:
            step = _tool_step(options, messages, tools)
        except mock_tools.ScriptError as exc:
            raise ProviderError(str(exc), status=400) from None
        if isinstance(step, list):
            usage = Usage.of(prompt_tokens, tokens.count_text(json.dumps(step), model))
            return Completion("", usage, "tool_calls", step)
        full = step or judge_answer(messages) or answer(messages, options)
        content = tokens.truncate_text(full, max_tokens, model)
        finish = "stop" if content == full else "length"
        return Completion(content, Usage.of(prompt_tokens, tokens.count_text(content, model)), finish)


def judge_answer(messages: list[dict[str, Any]]) -> str | None:
    """When asked to judge an SLA contract (rnix.core.sla.judge_messages), answer like a judge would.

    The mock cannot read criteria: it passes any result that is not empty and says so in its reason,
    so contracts with a judge work offline; tests that need a failing verdict use a scripted server.
    """
    from rnix.core.sla import JUDGE_SYSTEM

    if not messages or messages[0].get("content") != JUDGE_SYSTEM:
        return None
    user = str(messages[-1].get("content") or "")
    match = re.search(r"between the fences\):\n(`{3,})\n(.*)\n\1\n", user, re.DOTALL)
    result = match.group(2) if match else ""
    if result.strip():
        return json.dumps(
            {"pass": True, "reason": "mock judge: the result is not empty (the mock does not read criteria)"}
        )
    return json.dumps({"pass": False, "reason": "mock judge: the result is empty"})
