"""Smaller first-hour fixes: `rnix run` option errors, --api-base, `1 agent in 1 layer`, a tab-indented
file, a top-level `services:`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import RunRnix
from tests.fakes.openai_server import OpenAIServer, Reply


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--timeout", "5x"], "--timeout: must be a positive duration"),
        (["--budget", "-5"], "--budget: must be a positive whole number, not -5"),
        (["--agent", "nope"], "--agent: unknown agent definition 'nope'"),
        (["--api-base", "not a url"], "--api-base: "),
    ],
)
def test_run_option_errors_name_the_option(rnix: RunRnix, args: list[str], says: str) -> None:
    result = rnix("run", "hi", *args)
    assert result.returncode == 2
    assert says in result.stderr and "not a valid compose file" not in result.stderr
    assert "<command line>" not in result.stderr and result.stdout == ""


def test_run_empty_intent_and_several_problems_at_once(rnix: RunRnix) -> None:
    result = rnix("run", "", "--budget", "0")
    assert result.returncode == 2
    assert "INTENT: must not be empty" in result.stderr and "--budget:" in result.stderr


def test_run_api_base_reaches_the_server(rnix: RunRnix) -> None:
    with OpenAIServer() as server:
        server.script([Reply("from the loopback server")])
        result = rnix(
            "run", "say hi", "--model", "openai/test-model", "--api-base", server.base_url,
            env={"OPENAI_API_KEY": "sk-test"},
        )  # fmt: skip
        requests = list(server.requests)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "from the loopback server\n" and len(requests) == 1


def test_plan_says_one_layer(rnix: RunRnix, tmp_path: Path) -> None:
    (tmp_path / "compose.yaml").write_text("agents:\n  a: {intent: x}\n")
    assert "· 1 agent in 1 layer ·" in rnix("compose", "plan").stdout


def test_a_tab_indented_file_gets_one_clear_line(rnix: RunRnix, tmp_path: Path) -> None:
    (tmp_path / "compose.yaml").write_text("agents:\n\ta: {intent: x}\n")
    result = rnix("compose", "config", "-q")
    assert result.returncode == 2
    problems = [line for line in result.stderr.splitlines() if line.startswith("compose.yaml")]
    assert problems == ["compose.yaml:2: invalid YAML: indented with a tab; YAML indents with spaces only"]


def test_services_points_to_agents(rnix: RunRnix, tmp_path: Path) -> None:
    (tmp_path / "compose.yaml").write_text("services:\n  a: {intent: x}\n")
    result = rnix("compose", "config", "-q", "--json")
    assert result.returncode == 2
    problems = json.loads(result.stdout)["error"]["problems"]
    assert [(p["line"], p["key"], p["message"]) for p in problems] == [
        (1, "services", "rnix names this key 'agents': rename it")
    ]  # and no second 'missing required key agents'
