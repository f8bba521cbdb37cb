"""`rnix log PID --llm`: an agent's model calls as recorded, on the offline `mock` model."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

from tests.conftest import RunRnix

COMPOSE = """
agents:
  scout:
    agent: code-analyst
    intent: look around the workspace
    model: "mock?fail=1"
  writer:
    intent: write it up
    model: mock
    depends_on: [scout]
"""


def processes(rnix: RunRnix, folder: Path) -> dict[str, dict[str, Any]]:
    doc = json.loads(rnix("compose", "ps", "-a", "--json", cwd=folder).stdout)
    return {p["agent"]: p for p in doc["data"]["processes"]}


def team(tmp_path: Path, extra: str = "") -> Path:
    folder = tmp_path / "team"
    folder.mkdir()
    (folder / "notes.py").write_text("print('notes')\n")
    (folder / "compose.yaml").write_text(COMPOSE + extra)
    return folder


def test_log_llm_shows_each_call_its_usage_response_and_tool_results(rnix: RunRnix, tmp_path: Path) -> None:
    folder = team(tmp_path)
    assert rnix("compose", "up", cwd=folder).returncode == 0
    pid = processes(rnix, folder)["scout"]["pid"]
    shown = rnix("log", str(pid), "--llm")
    assert shown.returncode == 0, shown.stderr
    headers = [line for line in shown.stdout.splitlines() if line.startswith("--- call ")]
    assert len(headers) >= 2
    # the first call failed once (mock?fail=1) and was retried: one call, two tries, both charged
    assert re.fullmatch(
        r"--- call 1: ok, mock\?fail=1, \d+ tokens \(\d+ prompt \+ \d+ completion\), [\d.]+ ms, 2 tries ---",
        headers[0],
    )
    assert '-> list_dir {"path": "."}' in shown.stdout
    assert "<- ok: list_dir . -> " in shown.stdout
    assert "mock answer to 'look around the workspace'" in shown.stdout
    # what was asked: the first call's messages, then only what each later call added
    assert "> [user]" in shown.stdout and "look around the workspace" in shown.stdout
    assert re.search(r"^> \(\d+ earlier messages\)$", shown.stdout, re.MULTILINE)
    assert "> [tool]" in shown.stdout

    doc = json.loads(rnix("log", str(pid), "--llm", "--json").stdout)
    calls = doc["data"]["calls"]
    assert doc["ok"] is True and doc["data"]["agent"] == "scout"
    assert [c["number"] for c in calls] == list(range(1, len(calls) + 1))
    first = calls[0]
    assert (first["status"], first["tries"], first["request"]["from"]) == ("ok", 2, 0)
    roles = [m["role"] for m in first["request"]["messages"]]
    assert roles[-1] == "user" and "look around the workspace" in first["request"]["messages"][-1]["content"]
    second = calls[1]["request"]
    assert second["from"] == len(roles) and [m["role"] for m in second["messages"]] == ["assistant", "tool"]
    assert first["total_tokens"] == first["prompt_tokens"] + first["completion_tokens"] > 0
    assert len(first["request_hash"]) == 64
    assert first["response"]["tool_calls"][0]["function"]["name"] == "list_dir"
    assert "notes.py" in first["tool_results"][0]["output"]
    assert calls[-1]["response"]["finish_reason"] == "stop"
    total = sum(p["tokens_used"] for p in processes(rnix, folder).values() if p["agent"] == "scout")
    assert sum(c["total_tokens"] for c in calls) == total


def test_log_llm_of_an_agent_without_model_calls_and_bad_combinations(rnix: RunRnix, tmp_path: Path) -> None:
    folder = tmp_path / "cmd"
    folder.mkdir()
    command = json.dumps([sys.executable, "-c", "print('hi')"])
    (folder / "compose.yaml").write_text(f"agents:\n  plain: {{intent: say hi, command: {command}}}\n")
    assert rnix("compose", "up", cwd=folder).returncode == 0
    pid = processes(rnix, folder)["plain"]["pid"]
    shown = rnix("log", str(pid), "--llm")
    assert (shown.returncode, shown.stdout) == (0, "")
    assert "made no model calls" in shown.stderr
    assert json.loads(rnix("log", str(pid), "--llm", "--json").stdout)["data"]["calls"] == []
    both = rnix("log", str(pid), "--llm", "-f")
    assert both.returncode == 2 and "--llm cannot be combined" in both.stderr
    assert rnix("log", "999999", "--llm").returncode == 1


def test_log_llm_of_a_reused_agent_is_found_by_the_pid_that_ran_it(rnix: RunRnix, tmp_path: Path) -> None:
    crash = json.dumps([sys.executable, "-c", "import sys; sys.exit(1)"])
    folder = team(tmp_path, f"  boom: {{intent: crash, command: {crash}}}\n")
    assert rnix("compose", "up", cwd=folder).returncode == 1
    first = processes(rnix, folder)["scout"]
    assert rnix("compose", "up", cwd=folder).returncode == 1  # resumes: scout is reused, no new PID
    again = processes(rnix, folder)["scout"]
    assert again["reused_from"] == first["run_id"] != again["run_id"] and again["pid"] is None
    doc = json.loads(rnix("log", str(first["pid"]), "--llm", "--json").stdout)["data"]
    assert doc["run_id"] == first["run_id"] and len(doc["calls"]) >= 2
