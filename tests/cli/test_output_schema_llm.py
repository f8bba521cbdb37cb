"""A built-in agent with an `output_schema` against an OpenAI-compatible server on 127.0.0.1, with the
lean client and with litellm: it answers through submit_result, sees the validation errors and
repairs, or fails after exactly two repair turns."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.cli.test_llm_path import agents_of, client, compose, up
from tests.conftest import RunRnix
from tests.fakes.openai_server import OpenAIServer, Reply, ToolCall

__all__ = ["client"]  # the fixture, parametrized over the two clients

SCHEMA = {
    "type": "object",
    "properties": {
        "verdict": {"enum": ["pass", "fail"]},
        "issues": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["verdict"],
}
AGENT = f"  judge:\n    intent: Judge the change\n    output_schema: {json.dumps(SCHEMA)}\n"
ERROR = "$.verdict: 'maybe' is not one of ['pass', 'fail']"


def tool_messages(body: Any) -> list[str]:
    return [str(m.get("content")) for m in body["messages"] if m.get("role") == "tool"]


def test_the_agent_repairs_an_invalid_submission(
    rnix: RunRnix, tmp_path: Path, client: dict[str, str]
) -> None:
    with OpenAIServer() as server:
        server.script(
            [
                ToolCall("submit_result", {"verdict": "maybe"}),
                ToolCall("submit_result", {"verdict": "fail", "issues": ["no tests"]}, call_id="call_2"),
            ]
        )
        compose(tmp_path, server, AGENT)
        code, doc, _, stderr = up(rnix, env=client)
        bodies = [r.body for r in server.requests]
    judge = agents_of(doc)["judge"]
    assert code == 0 and judge["status"] == "completed", (judge, stderr)
    assert judge["result"] == '{"issues":["no tests"],"verdict":"fail"}\n'
    assert len(bodies) == 2
    (tool,) = bodies[0]["tools"]
    assert tool["function"]["name"] == "submit_result" and tool["function"]["parameters"] == SCHEMA
    assert "submit_result" in bodies[0]["messages"][-1]["content"]  # the instruction, after the task
    assert tool_messages(bodies[0]) == []
    (repair,) = tool_messages(bodies[1])
    assert ERROR in repair  # the model was told what was wrong


def test_the_agent_fails_after_two_repair_turns(
    rnix: RunRnix, tmp_path: Path, client: dict[str, str]
) -> None:
    with OpenAIServer() as server:
        server.script(
            [
                ToolCall("submit_result", {"verdict": "maybe"}),
                Reply("The verdict is pass."),  # plain text: also a failed turn
                ToolCall("submit_result", {"verdict": "maybe"}, call_id="call_3"),
                ToolCall("submit_result", {"verdict": "pass"}, call_id="call_4"),  # never asked for
            ]
        )
        compose(tmp_path, server, AGENT)
        code, doc, _, _ = up(rnix, env=client)
        bodies = [r.body for r in server.requests]
    judge = agents_of(doc)["judge"]
    assert code == 1 and judge["status"] == "failed" and judge["exit_code"] == 1
    assert len(bodies) == 3  # the answer and two repairs
    assert judge["error"] == f"exit status 1: output_schema: {ERROR}"
    assert "Call `submit_result`" in bodies[2]["messages"][-1]["content"]
    assert judge["tokens_used"] > 0  # the repair turns were paid for
