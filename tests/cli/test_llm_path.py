"""The real LLM path: `compose up` -> gateway -> the lean client (or litellm) -> an OpenAI-compatible
server on 127.0.0.1.

`openai/*` models go through the lean client; tests marked with the `client` fixture run once more
with RNIX_LLM_CLIENT=litellm. A canary API key is set in rnix's environment; it must reach the server
(the real HTTP path) and nowhere else: not stdout, stderr, --json, logs, task files, the database, or
any agent's environment.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import RunRnix
from tests.fakes.openai_server import OpenAIServer, Raw, Reply, Slow, Status

CANARY = "sk-canary-7f3a9c21e4b8d605"


@pytest.fixture(params=["openai", "litellm"])
def client(request: pytest.FixtureRequest) -> dict[str, str]:
    """The environment that picks a client: the lean one (the default), or litellm."""
    return {"RNIX_LLM_CLIENT": "auto" if request.param == "openai" else "litellm"}


def compose(tmp_path: Path, server: OpenAIServer, agents: str) -> None:
    (tmp_path / "compose.yaml").write_text(
        f"model: openai/test-model\napi_base: {server.base_url}\nagents:\n{agents}"
    )


def up(rnix: RunRnix, *args: str, env: dict[str, str] | None = None) -> tuple[int, dict[str, Any], str, str]:
    environ = {"OPENAI_API_KEY": CANARY, **(env or {})}
    result = rnix("compose", "up", "--json", *args, env=environ, timeout=120)
    return result.returncode, json.loads(result.stdout), result.stdout, result.stderr


def agents_of(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {a["name"]: a for a in doc["data"]["agents"]}


def llm_calls(home: Path, agent: str) -> list[dict[str, Any]]:
    db = sqlite3.connect(home / "rnix.db")
    rows = db.execute("select data from events where kind='llm_call' and agent=? order by id", (agent,))
    return [json.loads(data) for (data,) in rows]


def assert_no_canary_anywhere(home: Path, *texts: str) -> None:
    for text in texts:
        assert CANARY not in text
    for path in home.rglob("*"):
        if path.is_file():
            assert CANARY.encode() not in path.read_bytes(), path


def test_success_usage_canary_and_agent_environment(
    rnix: RunRnix, tmp_path: Path, rnix_home: Path, client: dict[str, str]
) -> None:
    with OpenAIServer() as server:
        server.script([Reply("the provider's answer", prompt_tokens=11, completion_tokens=7)])
        compose(
            tmp_path,
            server,
            "  writer: {intent: write}\n"
            "  env_dump: {intent: show env, command: [sh, -c, 'env; rnix llm \"hi from a command agent\"'],"
            " depends_on: [writer]}\n",
        )
        code, doc, stdout, stderr = up(rnix, env=client)
        requests = list(server.requests)
    assert code == 0, stderr
    agents = agents_of(doc)
    assert agents["writer"]["result"] == "the provider's answer\n"
    assert agents["writer"]["tokens_used"] == 18  # the provider's usage, charged
    assert len(requests) == 2
    assert all(r.headers["authorization"] == f"Bearer {CANARY}" for r in requests)
    assert requests[0].body["model"] == "test-model"
    assert requests[0].body["max_tokens"] <= 50_000 - 11
    fenced = [m["content"] for m in requests[1].body["messages"] if "rnix:upstream" in m["content"]]
    assert fenced == []  # `rnix llm` sends only its own prompt
    env_dump = agents["env_dump"]["result"]
    assert "RNIX_GATEWAY=" in env_dump and "OPENAI_API_KEY" not in env_dump
    assert "hi from a command agent" in env_dump  # the loopback server echoed the `rnix llm` prompt
    assert agents["env_dump"]["tokens_used"] > 0
    assert_no_canary_anywhere(rnix_home, stdout, stderr)
    log = rnix("log", str(agents["writer"]["pid"]))
    assert CANARY not in log.stdout + log.stderr


def test_429_with_retry_after_then_success(
    rnix: RunRnix, tmp_path: Path, rnix_home: Path, client: dict[str, str]
) -> None:
    with OpenAIServer() as server:
        server.script([Status(429, retry_after=1), Reply("after the rate limit")])
        compose(tmp_path, server, "  a: {intent: x}\n")
        code, doc, _, stderr = up(rnix, env=client)
        arrivals = [r.at for r in server.requests]
    assert code == 0, stderr
    assert agents_of(doc)["a"]["result"] == "after the rate limit\n"
    assert len(arrivals) == 2 and arrivals[1] - arrivals[0] >= 0.9  # Retry-After honoured
    assert [c["status"] for c in llm_calls(rnix_home, "a")] == ["retry", "ok"]


def test_500_fails_the_agent_after_retries(rnix: RunRnix, tmp_path: Path, rnix_home: Path) -> None:
    with OpenAIServer() as server:
        server.script([Status(500)] * 10)
        compose(tmp_path, server, "  a: {intent: x}\n  b: {intent: y, depends_on: [a]}\n")
        code, doc, stdout, stderr = up(rnix)
        attempts = len(server.requests)
    agents = agents_of(doc)
    assert code == 1
    assert agents["a"]["status"] == "failed" and agents["a"]["exit_code"] == 1
    assert "provider_error" in agents["a"]["error"] or "500" in agents["a"]["error"]
    assert agents["b"]["status"] == "skipped"
    assert attempts == 4 and len(llm_calls(rnix_home, "a")) == 4  # every attempt recorded
    assert_no_canary_anywhere(rnix_home, stdout, stderr)


def test_slow_provider_hits_the_agent_timeout(rnix: RunRnix, tmp_path: Path) -> None:
    with OpenAIServer() as server:
        server.script([Slow(30)])
        compose(tmp_path, server, "  a: {intent: x, timeout: 2s, stop_grace_period: 1s}\n")
        code, doc, _, stderr = up(rnix)
    a = agents_of(doc)["a"]
    assert code == 1 and a["status"] == "timeout", stderr
    assert a["elapsed_ms"] < 6000


def test_budget_refusal_sends_nothing(rnix: RunRnix, tmp_path: Path) -> None:
    with OpenAIServer() as server:
        compose(tmp_path, server, "  a: {intent: write a very long essay about everything, budget: 25}\n")
        code, doc, _, _ = up(rnix)
        sent = len(server.requests)
    a = agents_of(doc)["a"]
    assert code == 1 and a["status"] == "budget_exceeded" and a["exit_code"] == 2
    assert sent == 0 and a["tokens_used"] == 0


def test_unreachable_endpoint_is_a_clear_failure(rnix: RunRnix, tmp_path: Path) -> None:
    (tmp_path / "compose.yaml").write_text(
        "model: openai/test-model\napi_base: http://127.0.0.1:9/v1\nagents:\n  a: {intent: x}\n"
    )
    code, doc, _, stderr = up(rnix)
    a = agents_of(doc)["a"]
    assert code == 1 and a["status"] == "failed"
    assert "\n" not in a["error"] and "Traceback" not in stderr


def test_a_secret_passed_to_an_agent_is_masked_in_its_output(
    rnix: RunRnix, tmp_path: Path, rnix_home: Path
) -> None:
    (tmp_path / "compose.yaml").write_text(
        "agents:\n  leaky:\n    intent: print the key\n    environment: {OPENAI_API_KEY: }\n"
        '    command: [sh, -c, \'echo "key=$OPENAI_API_KEY"; echo "err $OPENAI_API_KEY" >&2\']\n'
    )
    code, doc, stdout, stderr = up(rnix)
    assert code == 0
    assert agents_of(doc)["leaky"]["result"] == "key=***\n"  # it did get the key, and it is masked
    logs = rnix("compose", "logs", env={"OPENAI_API_KEY": CANARY})
    assert "leaky | err ***" in logs.stdout
    for text in (stdout, stderr, logs.stdout):
        assert CANARY not in text
    database = [p for p in rnix_home.glob("rnix.db*") if p.is_file()]
    assert database and all(CANARY.encode() not in p.read_bytes() for p in database)  # incl. the WAL


def test_an_unreachable_provider_is_recorded_as_infrastructure_and_never_lowers_reputation(
    rnix: RunRnix, tmp_path: Path, rnix_home: Path
) -> None:
    (tmp_path / "compose.yaml").write_text(
        "model: openai/test-model\napi_base: http://127.0.0.1:9/v1\nagents:\n"
        "  a: {intent: x}\n"
        "  broken: {intent: y, command: [sh, -c, 'exit 3']}\n"
    )
    code, doc, _, _ = up(rnix)
    assert code == 1 and agents_of(doc)["a"]["status"] == "failed"
    db = sqlite3.connect(rnix_home / "rnix.db")
    rows = dict(db.execute("SELECT agent, infra FROM ledger").fetchall())
    assert rows["a"] is not None and "127.0.0.1:9" in rows["a"]  # the provider's failure, kept
    assert rows["broken"] is None  # the agent's own failure
    scored = json.loads(rnix("reputation", "--json").stdout)["data"]["definitions"]
    names = {d["definition"] for d in scored}
    assert "command:sh -c 'exit 3'" in names and "builtin:openai/test-model" not in names


def test_a_key_in_dotenv_reaches_the_provider_only_as_the_authorization_header(
    rnix: RunRnix, tmp_path: Path, rnix_home: Path
) -> None:
    from tests.fakes.openai_server import ToolCall

    opener = tmp_path / "agents" / "opener"
    opener.mkdir(parents=True)
    (opener / "agent.yaml").write_text(
        "name: opener\ndescription: may read secret files\ntools:\n  read_file: {allow_secrets: true}\n"
    )
    (opener / "instructions.md").write_text("Read what you are asked to.\n")
    with OpenAIServer() as server:
        # Each agent's model asks to read .env; the next request carries what the tool returned.
        read_env = ToolCall("read_file", {"path": ".env"})
        server.script([read_env, Reply("done"), read_env, Reply("done")])
        compose(
            tmp_path,
            server,
            "  snoop: {intent: look around, agent: code-analyst}\n"
            "  opener: {intent: open it, agent: opener, depends_on: [snoop]}\n"
            "  env_dump: {intent: show env, command: [sh, -c, 'env'], depends_on: [opener]}\n",
        )
        (tmp_path / ".env").write_text(f"OPENAI_API_KEY={CANARY}\n")
        result = rnix("compose", "up", "--json", env={"OPENAI_API_KEY": ""}, timeout=120)
        requests = list(server.requests)
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert len(requests) == 4
    assert all(r.headers["authorization"] == f"Bearer {CANARY}" for r in requests)
    assert all(CANARY not in json.dumps(r.body) for r in requests)
    assert "allow_secrets" in json.dumps(requests[1].body)  # code-analyst's read_file was refused
    assert "OPENAI_API_KEY=***" in json.dumps(requests[3].body)  # allowed: read, and masked on the way out
    assert "OPENAI_API_KEY" not in agents_of(doc)["env_dump"]["result"]  # agents never get it
    assert_no_canary_anywhere(rnix_home, result.stdout, result.stderr)


def test_a_long_retry_after_shows_its_cap_and_the_attempts_everywhere(
    rnix: RunRnix, tmp_path: Path, rnix_home: Path, client: dict[str, str]
) -> None:
    limits = {"RNIX_LLM_MAX_ATTEMPTS": "3", "RNIX_LLM_MAX_RETRY_AFTER": "0.2", **client}
    with OpenAIServer() as server:
        server.script([Status(429, retry_after=600)] * 3)
        compose(tmp_path, server, "  a: {intent: x}\n")
        code, doc, _, stderr = up(rnix, env=limits)
        arrivals = [r.at for r in server.requests]
    assert code == 1, stderr
    assert len(arrivals) == 3 and arrivals[-1] - arrivals[0] < 5  # waited 0.2 s, not 600
    said = "; gave up after 3 attempts, Retry-After 600s capped at 0.2s"
    a = agents_of(doc)["a"]
    assert a["error"].startswith("exit status 1: rnix-agent: provider_error: HTTP 429 from openai/test-model")
    assert a["error"].endswith(said)
    log = rnix("log", str(a["pid"]))
    assert said in log.stdout + log.stderr
    calls = json.loads(rnix("log", str(a["pid"]), "--llm", "--json").stdout)["data"]["calls"]
    assert [(c["tries"], c["status"]) for c in calls] == [(3, "provider_error")]
    assert calls[0]["error"].endswith(said)
    tries = [c["error"] for c in llm_calls(rnix_home, "a")]
    assert tries[0].endswith("; retry 2 of 3 in 0.2s, Retry-After 600s capped at 0.2s")


def test_a_200_that_is_not_json_is_reported_as_such(
    rnix: RunRnix, tmp_path: Path, rnix_home: Path, client: dict[str, str]
) -> None:
    with OpenAIServer() as server:
        server.script([Raw(200, "<html><title>Open WebUI</title></html>", "text/html")] * 4)
        compose(tmp_path, server, "  a: {intent: x}\n")
        code, doc, _, stderr = up(rnix, env=client)
        sent = len(server.requests)
    error = agents_of(doc)["a"]["error"]
    assert code == 1 and sent == 1, stderr  # the same URL would give the same page: not retried
    assert f"HTTP 200 from openai/test-model at {server.base_url} but the body is not JSON" in error
    assert "Open WebUI" in error and "HTTP 500" not in error and error.endswith("; not retried")


def test_a_run_of_openai_protocol_models_never_imports_litellm(
    rnix: RunRnix, tmp_path: Path, client: dict[str, str]
) -> None:
    """The supervisor (and so the gateway) runs in the `rnix compose up` process: its -X importtime
    report on stderr lists every module it imported."""
    with OpenAIServer() as server:
        compose(tmp_path, server, "  a: {intent: x}\n  b: {intent: y, depends_on: [a]}\n")
        code, doc, _, stderr = up(rnix, env={"PYTHONPROFILEIMPORTTIME": "1", **client})
    assert code == 0 and agents_of(doc)["b"]["result"].startswith("echo: ")
    imported = {
        line.rsplit("|", 1)[-1].strip() for line in stderr.splitlines() if line.startswith("import time:")
    }
    packages = {name.split(".")[0] for name in imported}
    assert "rnix.supervisor.gateway" in imported
    if client["RNIX_LLM_CLIENT"] == "litellm":
        assert "litellm" in packages
    else:
        assert "aiohttp" in packages and not {"litellm", "openai", "httpx"} & packages
