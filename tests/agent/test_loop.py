"""The agent loop with real tools in a temp workspace and a scripted model (a plain Python fake)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from rnix.agent.loop import StepLimit, log_line, run_loop
from rnix.agent.tools.policy import ToolPolicy

TASK = [{"role": "user", "content": "Your task: count the lines"}]


def call(name: str, **arguments: Any) -> dict[str, Any]:
    return {
        "id": f"c-{name}",
        "type": "function",
        "function": {"name": name, "arguments": json.dumps(arguments)},
    }


class Model:
    """Replies from a script; records what it was sent."""

    def __init__(self, *replies: dict[str, Any]) -> None:
        self.replies = list(replies)
        self.sent: list[tuple[list[dict[str, Any]], dict[str, Any]]] = []

    def complete(self, messages: list[dict[str, Any]], **options: Any) -> dict[str, Any]:
        self.sent.append((json.loads(json.dumps(messages)), options))
        return self.replies.pop(0)


def test_calls_tools_feeds_results_back_and_returns_the_final_answer(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("one\ntwo\nthree\n")
    policy = ToolPolicy.from_json({"read_file": {}, "list_dir": {}}, str(tmp_path))
    model = Model(
        {"content": "Let me look.", "tool_calls": [call("list_dir")]},
        {"content": None, "tool_calls": [call("read_file", path="notes.txt")]},
        {"content": "3 lines", "tool_calls": None},
    )
    logged: list[str] = []
    outcome = run_loop(model, TASK, policy, max_steps=5, log=logged.append)
    assert (outcome.answer, outcome.steps) == ("3 lines", 3)
    names = {t["function"]["name"] for t in model.sent[0][1]["tools"]}
    assert names == {"read_file", "list_dir"}  # exactly the enabled tools are offered
    last = model.sent[2][0]
    assert last[-1]["role"] == "tool" and "two" in last[-1]["content"]
    assert last[-2]["tool_calls"][0]["function"]["name"] == "read_file"
    assert [line.split("]")[0] + "]" for line in logged] == ["[think]", "[tool]", "[tool]"]
    assert TASK == [{"role": "user", "content": "Your task: count the lines"}]  # the input is not mutated


def test_stops_at_max_steps(tmp_path: Path) -> None:
    policy = ToolPolicy.from_json({"list_dir": {}}, str(tmp_path))
    model = Model(*[{"content": "", "tool_calls": [call("list_dir")]}] * 3)
    with pytest.raises(StepLimit, match=r"max_steps \(2\)"):
        run_loop(model, TASK, policy, max_steps=2, log=lambda line: None)
    assert len(model.sent) == 2


def test_a_denied_call_is_logged_as_warn_and_reported_to_the_model(tmp_path: Path) -> None:
    policy = ToolPolicy.from_json({"read_file": {}}, str(tmp_path))
    model = Model(
        {"content": "", "tool_calls": [call("read_file", path="../../etc/passwd")]},
        {"content": "could not", "tool_calls": None},
    )
    logged: list[str] = []
    run_loop(model, TASK, policy, max_steps=3, log=logged.append)
    assert logged and logged[0].startswith("[warn]")
    reported = model.sent[1][0][-1]
    assert reported["role"] == "tool" and "denied" in reported["content"].lower()
    assert "root:" not in reported["content"]  # nothing of /etc/passwd leaked back


def test_unknown_tools_and_bad_arguments_become_results_not_crashes(tmp_path: Path) -> None:
    policy = ToolPolicy.from_json({"read_file": {}}, str(tmp_path))
    bad = {"id": "x", "type": "function", "function": {"name": "read_file", "arguments": "{not json"}}
    model = Model(
        {"content": "", "tool_calls": [call("shell", argv=["ls"]), bad, {"function": None}]},
        {"content": "done", "tool_calls": None},
    )
    assert run_loop(model, TASK, policy, max_steps=3, log=lambda line: None).answer == "done"
    tool_messages = [m for m in model.sent[1][0] if m["role"] == "tool"]
    assert len(tool_messages) == 3 and len({m["tool_call_id"] for m in tool_messages}) == 3


def test_log_lines_are_one_line_and_capped() -> None:
    line = log_line("think", "a\nb\x1b[31m " + "x" * 1000)
    assert "\n" not in line and "\x1b" not in line and len(line) < 420
    assert line.startswith("[think] a b [31m x")
