"""Rate limits through the installed `rnix` and the real HTTP path (the lean client and litellm)
against the loopback OpenAI-compatible server: a 429 is waited out and retried by the gateway
without failing the agent; an alias's `max_concurrency` caps the calls in flight at the server; and
while an agent waits, `ps` and `compose ps` show it rate_limited (from another process).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

from tests.cli.test_llm_path import (
    CANARY,
    agents_of,
    assert_no_canary_anywhere,
    client,
    compose,
    llm_calls,
    up,
)
from tests.conftest import RNIX, RunRnix
from tests.fakes.openai_server import OpenAIServer, Reply, Slow, Status
from tests.procs import marked_pids, wait_gone

__all__ = ["client"]  # a fixture, used by name


def test_429_without_retry_after_is_retried_with_backoff(
    rnix: RunRnix, tmp_path: Path, rnix_home: Path, client: dict[str, str]
) -> None:
    with OpenAIServer() as server:
        server.script([Status(429), Status(429), Reply("after two rate limits")])
        compose(tmp_path, server, "  a: {intent: x}\n")
        code, doc, stdout, stderr = up(rnix, env=client)
        attempts = len(server.requests)
    assert code == 0, stderr
    assert agents_of(doc)["a"]["status"] == "completed"
    assert agents_of(doc)["a"]["result"] == "after two rate limits\n"
    assert attempts == 3
    assert [c["status"] for c in llm_calls(rnix_home, "a")] == ["retry", "retry", "ok"]
    assert_no_canary_anywhere(rnix_home, stdout, stderr)


def test_max_concurrency_caps_the_calls_in_flight_at_the_provider(
    rnix: RunRnix, tmp_path: Path, client: dict[str, str]
) -> None:
    with OpenAIServer(responder=lambda body: Slow(0.3, Reply("done"))) as server:
        agents = "".join(f"  a{i}: {{intent: task {i}, model: capped}}\n" for i in range(4))
        (tmp_path / "compose.yaml").write_text(
            f"models:\n  capped: {{model: openai/test-model, api_base: '{server.base_url}',"
            f" max_concurrency: 1}}\nagents:\n{agents}"
        )
        code, doc, _, stderr = up(rnix, env=client)
        most, count = server.most_in_flight, len(server.requests)
    assert code == 0, stderr
    assert {a["status"] for a in agents_of(doc).values()} == {"completed"}
    assert count == 4 and most == 1


def test_an_agent_waiting_out_a_429_is_rate_limited_in_ps_then_completes(
    rnix: RunRnix, tmp_path: Path, rnix_home: Path
) -> None:
    marker = uuid.uuid4().hex
    with OpenAIServer() as server:
        # Five Retry-After waits of a second: long enough to be seen from a loaded machine.
        server.script([Status(429, retry_after=1)] * 5 + [Reply("patience")])
        compose(tmp_path, server, "  a: {intent: x}\n")
        (tmp_path / "compose.yaml").write_text("name: patient\n" + (tmp_path / "compose.yaml").read_text())
        environ = {
            **os.environ,
            "OPENAI_API_KEY": CANARY,
            "RNIX_LLM_MAX_ATTEMPTS": "6",
            "RNIX_TEST_MARKER": marker,
        }
        up_process = subprocess.Popen(
            [RNIX, "compose", "up", "--json"],
            cwd=tmp_path,
            env=environ,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        seen: dict[str, Any] = {}  # what showed the agent rate_limited: ps --json, ps, compose ps --json
        try:
            deadline = time.monotonic() + 30
            while len(seen) < 3 and up_process.poll() is None and time.monotonic() < deadline:
                ps_json, table, compose_json = _at_once(
                    tmp_path, ["ps", "--json"], ["ps"], ["compose", "ps", "--json"]
                )
                _keep(seen, "ps", [r for r in _processes(ps_json) if r["rate_limited"]])
                _keep(seen, "table", [x for x in table.splitlines() if "(rate_limited)" in x])
                _keep(seen, "compose", [r for r in _processes(compose_json) if r["rate_limited"]])
            stdout, stderr = up_process.communicate(timeout=60)
        finally:
            if up_process.poll() is None:
                up_process.kill()
                up_process.communicate()
    assert set(seen) == {"ps", "table", "compose"}, f"not shown rate_limited everywhere: {seen}"
    assert (seen["ps"]["agent"], seen["ps"]["state"], seen["ps"]["project"]) == ("a", "running", "patient")
    assert seen["table"].split()[2:6] == ["patient", "a", "running", "(rate_limited)"]
    assert seen["compose"]["state"] == "running"
    assert up_process.returncode == 0, stderr
    assert agents_of(json.loads(stdout))["a"]["result"] == "patience\n"
    after = json.loads(rnix("ps", "-a", "--json").stdout)["data"]["processes"]
    assert [(p["state"], p["rate_limited"]) for p in after] == [("completed", False)]
    kinds = [json.loads(d)["waiting"] for d in _events(rnix_home, "agent_throttled")]
    assert kinds and kinds[0] is True and kinds[-1] is False
    assert_no_canary_anywhere(rnix_home, stdout, stderr, json.dumps(seen))
    assert wait_gone(marked_pids(marker), 5) == []


def _at_once(cwd: Path, *commands: list[str]) -> list[str]:
    """The stdout of each `rnix COMMAND`, run side by side (they see the same moment of the run)."""
    running = [
        subprocess.Popen([RNIX, *c], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        for c in commands
    ]
    return [p.communicate(timeout=60)[0] for p in running]


def _keep(seen: dict[str, Any], name: str, found: list[Any]) -> None:
    if found:
        seen[name] = found[0]


def _processes(stdout: str) -> list[dict[str, Any]]:
    processes: list[dict[str, Any]] = json.loads(stdout)["data"]["processes"] if stdout else []
    return processes


def _events(home: Path, kind: str) -> list[str]:
    import sqlite3

    with sqlite3.connect(home / "rnix.db") as db:
        return [data for (data,) in db.execute("SELECT data FROM events WHERE kind = ? ORDER BY id", (kind,))]
