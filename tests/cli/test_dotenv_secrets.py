"""A provider key in the project's `.env`: the gateway uses it, agents and models never see it."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.cli.test_agent_loop import project, tool_messages
from tests.cli.test_llm_path import CANARY, agents_of, assert_no_canary_anywhere
from tests.conftest import RunRnix
from tests.fakes.openai_server import OpenAIServer, Reply, ToolCall

PRINT_ENV = f"[{sys.executable}, -c, 'import os, json; print(json.dumps(dict(os.environ)))']"


def test_a_dotenv_key_reaches_only_the_authorization_header(
    rnix: RunRnix, tmp_path: Path, rnix_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    (tmp_path / ".env").write_text(f"OPENAI_API_KEY={CANARY}\n")
    with OpenAIServer() as server:
        server.script([ToolCall("read_file", {"path": ".env"}), Reply("I may not read it.")])
        project(
            tmp_path,
            server,
            "  analyst: {agent: file-analyst, intent: Read .env}\n"
            f"  printer: {{intent: print the environment, command: {PRINT_ENV}}}\n",
        )
        result = rnix("compose", "up", "--json", timeout=120)
        requests = list(server.requests)
    doc = json.loads(result.stdout)
    agents = agents_of(doc)
    assert result.returncode == 0, result.stderr
    assert len(requests) == 2
    assert all(r.headers["authorization"] == f"Bearer {CANARY}" for r in requests)
    for request in requests:
        assert CANARY not in json.dumps(request.body)
    denial = tool_messages(requests[1].body)[0]
    assert "holds secrets" in denial and "allow_secrets" in denial
    assert "OPENAI_API_KEY" not in json.loads(agents["printer"]["result"])
    assert_no_canary_anywhere(rnix_home, result.stdout, result.stderr)


def test_the_real_environment_wins_over_dotenv(
    rnix: RunRnix, tmp_path: Path, rnix_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    (tmp_path / ".env").write_text("OPENAI_API_KEY=sk-from-dotenv-000000\n")
    with OpenAIServer() as server:
        server.script([Reply("ok")])
        project(tmp_path, server, "  analyst: {agent: file-analyst, intent: Say ok}\n")
        result = rnix("compose", "up", "--json", env={"OPENAI_API_KEY": CANARY}, timeout=120)
        requests = list(server.requests)
    assert result.returncode == 0, result.stderr
    assert [r.headers["authorization"] for r in requests] == [f"Bearer {CANARY}"]


def test_a_secret_a_tool_read_is_masked_before_the_provider(
    rnix: RunRnix, tmp_path: Path, rnix_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Even an agent allowed to read secrets never sends a known key's value to the model."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    (tmp_path / ".env").write_text(f"OPENAI_API_KEY={CANARY}\n")
    (tmp_path / "leak.txt").write_text(f"the key is {CANARY}\n")
    with OpenAIServer() as server:
        server.script([ToolCall("read_file", {"path": "leak.txt"}), Reply("done")])
        project(tmp_path, server, "  analyst: {agent: file-analyst, intent: Read leak.txt}\n")
        result = rnix("compose", "up", "--json", timeout=120)
        requests = list(server.requests)
    assert result.returncode == 0, result.stderr
    assert "the key is ***" in tool_messages(requests[1].body)[0]
    assert all(CANARY not in json.dumps(r.body) for r in requests)
