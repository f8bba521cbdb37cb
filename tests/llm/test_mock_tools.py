"""The mock model with tools: a script of tool calls and answers, or a short exploration."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from rnix.llm.backend import ProviderError
from rnix.llm.mock import MockBackend
from tests.llm.test_mock import MESSAGES, complete


def tool(name: str) -> dict[str, Any]:
    return {"type": "function", "function": {"name": name, "parameters": {"type": "object"}}}


def answered(
    messages: list[dict[str, Any]], calls: list[dict[str, Any]], result: str
) -> list[dict[str, Any]]:
    """The conversation after the agent ran `calls` and each returned `result`."""
    out = [*messages, {"role": "assistant", "content": None, "tool_calls": calls}]
    out += [{"role": "tool", "tool_call_id": c["id"], "content": result} for c in calls]
    return out


def test_script_calls_tools_in_order_then_answers(tmp_path: Path) -> None:
    script = tmp_path / "script.json"
    steps = [
        {"tool": "read_file", "arguments": {"path": "a.txt"}},
        [{"tool": "grep", "arguments": {"pattern": "x"}}, {"tool": "list_dir", "arguments": {}}],
        {"answer": "all done"},
    ]
    script.write_text(json.dumps(steps))
    model = f"mock?script={script}"
    tools = [tool("read_file"), tool("grep"), tool("list_dir")]
    first = complete(MockBackend(), model, tools=tools)
    assert first.finish_reason == "tool_calls" and first.tool_calls is not None
    assert [json.loads(c["function"]["arguments"]) for c in first.tool_calls] == [{"path": "a.txt"}]
    messages = answered(MESSAGES, first.tool_calls, "hello")
    second = complete(MockBackend(), model, messages=messages, tools=tools)
    assert second.tool_calls is not None
    assert [c["function"]["name"] for c in second.tool_calls] == ["grep", "list_dir"]
    assert len({c["id"] for c in first.tool_calls + second.tool_calls}) == 3  # ids are unique
    third = complete(MockBackend(), model, messages=answered(messages, second.tool_calls, "ok"), tools=tools)
    assert third.content == "all done" and third.tool_calls is None and third.finish_reason == "stop"


def test_a_missing_or_malformed_script_is_a_provider_error(tmp_path: Path) -> None:
    with pytest.raises(ProviderError, match=r"mock script .*missing\.json"):
        complete(MockBackend(), f"mock?script={tmp_path / 'missing.json'}")
    bad = tmp_path / "bad.json"
    bad.write_text('[{"tool": 3}]')
    with pytest.raises(ProviderError, match="step 1 needs `tool`"):
        complete(MockBackend(), f"mock?script={bad}")


def test_exploring_mock_lists_reads_two_files_and_names_them() -> None:
    tools = [tool("list_dir"), tool("read_file"), tool("grep")]
    first = complete(MockBackend(), tools=tools)
    assert first.tool_calls is not None
    assert first.tool_calls[0]["function"]["name"] == "list_dir"
    messages = answered(
        MESSAGES,
        first.tool_calls,
        "README.md  2,048 bytes\napp.py  1 byte\nlink@ -> /etc\nsrc/\nz.txt  12 bytes",
    )
    reads = []
    for _ in range(2):
        step = complete(MockBackend(), messages=messages, tools=tools)
        assert step.tool_calls is not None and step.tool_calls[0]["function"]["name"] == "read_file"
        reads.append(json.loads(step.tool_calls[0]["function"]["arguments"])["path"])
        messages = answered(messages, step.tool_calls, "contents")
    assert reads == ["README.md", "app.py"]
    final = complete(MockBackend(), messages=messages, tools=tools)
    assert final.tool_calls is None
    assert "files read: README.md, app.py" in final.content


def test_without_tools_the_mock_answers_at_once() -> None:
    assert complete(MockBackend()).tool_calls is None


def test_answers_in_the_format_the_instructions_ask_for() -> None:
    from rnix.core.sla import looks_like_markdown

    system = {"role": "system", "content": "Answer in Markdown. Start with VERDICT: PASS or VERDICT: FAIL."}
    result = complete(MockBackend(), messages=[system, *MESSAGES[1:]])
    assert result.content.startswith("VERDICT: PASS\n") and looks_like_markdown(result.content)
    plain = complete(MockBackend())
    assert plain.content.startswith("mock answer to") and not looks_like_markdown(plain.content)


def test_offered_submit_result_the_mock_submits_a_valid_sample() -> None:
    from rnix.core.structured import tool_schema, validate_value

    schema = {
        "type": "object",
        "properties": {
            "verdict": {"enum": ["pass", "fail"]},
            "issues": {"type": "array", "items": {"type": "string"}},
        },
        "required": ["verdict", "issues"],
    }
    step = complete(MockBackend(), tools=[tool_schema(schema)])
    assert step.tool_calls is not None
    (submitted,) = step.tool_calls
    arguments = json.loads(submitted["function"]["arguments"])
    assert submitted["function"]["name"] == "submit_result"
    assert arguments == {"verdict": "pass", "issues": ["text"]} and validate_value(schema, arguments) == []
    assert complete(MockBackend(), tools=[tool_schema(schema)]).tool_calls == step.tool_calls  # deterministic


def test_an_exploring_mock_submits_after_it_has_read() -> None:
    from rnix.core.structured import tool_schema

    tools = [tool("list_dir"), tool_schema({"type": "string"})]
    first = complete(MockBackend(), tools=tools)
    assert first.tool_calls is not None and first.tool_calls[0]["function"]["name"] == "list_dir"
    messages = answered(MESSAGES, first.tool_calls, "nothing here")
    last = complete(MockBackend(), messages=messages, tools=tools)
    assert last.tool_calls is not None and last.tool_calls[0]["function"]["name"] == "submit_result"
    assert json.loads(last.tool_calls[0]["function"]["arguments"]) == {"result": "text"}
