"""The tool loop with an output_schema: the result comes through submit_result, validated, with two
repair turns (rnix.agent.submit), against a scripted model (a plain Python fake)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from rnix.agent.loop import run_loop
from rnix.agent.submit import INSTRUCTION, OutputInvalid, Submission
from rnix.agent.tools.policy import ToolPolicy
from tests.agent.test_loop import TASK, Model, call

VERDICT = {
    "type": "object",
    "properties": {"verdict": {"enum": ["pass", "fail"]}, "issues": {"type": "array"}},
    "required": ["verdict"],
}


def submit(**arguments: Any) -> dict[str, Any]:
    return {"content": None, "tool_calls": [call("submit_result", **arguments)]}


def loop(tmp_path: Path, model: Model, schema: dict[str, Any] = VERDICT, tools: Any = None) -> Any:
    logged: list[str] = []
    policy = ToolPolicy.from_json(tools, str(tmp_path))
    outcome = run_loop(model, TASK, policy, max_steps=10, log=logged.append, submit=Submission(schema))
    return outcome, logged


def test_a_valid_submission_is_the_canonical_json_result(tmp_path: Path) -> None:
    model = Model(submit(verdict="pass", issues=[]))
    outcome, logged = loop(tmp_path, model)
    assert (outcome.answer, outcome.steps) == ('{"issues":[],"verdict":"pass"}', 1)
    (messages, options) = model.sent[0]
    assert messages[-1] == {"role": "user", "content": INSTRUCTION}  # after the task
    (tool,) = options["tools"]
    assert tool["function"]["name"] == "submit_result" and tool["function"]["parameters"] == VERDICT
    assert logged == ["[tool] step 1: submit_result -> valid"]


def test_the_errors_go_back_to_the_model_which_repairs(tmp_path: Path) -> None:
    model = Model(submit(verdict="maybe"), submit(verdict="fail"))
    outcome, logged = loop(tmp_path, model)
    assert outcome.answer == '{"verdict":"fail"}'
    repair = model.sent[1][0][-1]
    assert (
        repair["role"] == "tool" and "$.verdict: 'maybe' is not one of ['pass', 'fail']" in repair["content"]
    )
    assert logged[0].startswith("[warn] step 1: submit_result -> $.verdict:")


def test_a_plain_text_answer_is_a_failed_turn(tmp_path: Path) -> None:
    model = Model({"content": "It passes.", "tool_calls": None}, submit(verdict="pass"))
    outcome, _ = loop(tmp_path, model)
    assert outcome.answer == '{"verdict":"pass"}'
    asked = model.sent[1][0]
    assert asked[-2] == {"role": "assistant", "content": "It passes."}
    assert asked[-1]["role"] == "user" and "Call `submit_result`" in asked[-1]["content"]


def test_after_two_repair_turns_the_last_errors_end_the_loop(tmp_path: Path) -> None:
    model = Model(
        submit(verdict="maybe"), {"content": "pass", "tool_calls": None}, submit(issues=[]), submit()
    )
    with pytest.raises(OutputInvalid) as caught:
        loop(tmp_path, model)
    assert len(model.sent) == 3  # the first answer and two repairs
    assert caught.value.errors == ["$: 'verdict' is a required property"]


def test_other_tools_still_work_and_do_not_count_as_failures(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("fine\n")
    model = Model(
        {"content": None, "tool_calls": [call("read_file", path="a.txt")]},
        {"content": None, "tool_calls": [call("read_file", path="a.txt")]},
        {"content": None, "tool_calls": [call("read_file", path="a.txt")]},
        submit(verdict="pass"),
    )
    outcome, _ = loop(tmp_path, model, tools={"read_file": {}})
    assert outcome.answer == '{"verdict":"pass"}' and outcome.steps == 4
    assert [t["function"]["name"] for t in model.sent[0][1]["tools"]] == ["read_file", "submit_result"]


def test_a_schema_that_is_not_an_object_is_wrapped_and_unwrapped(tmp_path: Path) -> None:
    schema = {"type": "array", "items": {"type": "integer"}}
    model = Model(submit(result=["x"]), submit(result=[3, 1]))
    outcome, _ = loop(tmp_path, model, schema)
    assert outcome.answer == "[3,1]"
    parameters = model.sent[0][1]["tools"][0]["function"]["parameters"]
    assert parameters == {"type": "object", "properties": {"result": schema}, "required": ["result"]}
    assert "$.result[0]: 'x' is not of type 'integer'" in model.sent[1][0][-1]["content"]


def test_arguments_that_are_not_json_are_an_error_for_the_model(tmp_path: Path) -> None:
    bad = {"id": "c1", "type": "function", "function": {"name": "submit_result", "arguments": "{verdict"}}
    model = Model({"content": None, "tool_calls": [bad]}, submit(verdict="pass"))
    outcome, _ = loop(tmp_path, model)
    assert outcome.answer == '{"verdict":"pass"}'
    assert "the result is not JSON" in model.sent[1][0][-1]["content"]
    assert json.loads(outcome.answer) == {"verdict": "pass"}
