"""`rnix apply` through the installed `rnix`: the offline planner writes a valid compose file and
runs it; an existing file is never overwritten; --dry-run writes without running; a real planner
(the loopback OpenAI-compatible server) gets one repair turn listing every problem of its proposal."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import time
from pathlib import Path
from typing import Any

from tests.cli.test_llm_path import CANARY, assert_no_canary_anywhere
from tests.conftest import RNIX, RunRnix
from tests.fakes.openai_server import OpenAIServer, Reply, Status, ToolCall

INTENT = "Review the code in src/ and summarise it"


def project(tmp_path: Path) -> Path:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "app.py").write_text("def add(a, b):\n    return a + b\n")
    return tmp_path


def test_offline_apply_writes_a_valid_file_and_runs_it(rnix: RunRnix, tmp_path: Path) -> None:
    project(tmp_path)
    result = rnix("apply", INTENT, "--yes", "--json", timeout=120)
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["ok"] is True and doc["data"]["ran"] is True
    assert doc["data"]["file"] == str(tmp_path / "compose.yaml")
    assert len(doc["data"]["plan"]["agents"]) >= 2
    run = doc["data"]["run"]
    assert run["summary"]["completed"] == run["summary"]["total"] >= 2
    assert rnix("compose", "config", "-q").returncode == 0
    assert "Traceback" not in result.stderr


def test_an_existing_compose_file_is_not_overwritten(rnix: RunRnix, tmp_path: Path) -> None:
    (tmp_path / "compose.yaml").write_text("agents: {a: {intent: mine}}\n")
    result = rnix("apply", INTENT, "--yes")
    assert result.returncode == 2
    assert "--force" in result.stderr and "Traceback" not in result.stderr
    assert (tmp_path / "compose.yaml").read_text() == "agents: {a: {intent: mine}}\n"
    forced = rnix("apply", INTENT, "--force", "--dry-run")
    assert forced.returncode == 0, forced.stderr
    assert "code-analyst" in (tmp_path / "compose.yaml").read_text()


def test_dry_run_writes_and_does_not_run(rnix: RunRnix, tmp_path: Path, rnix_home: Path) -> None:
    result = rnix("apply", INTENT, "-o", "team.yaml", "--dry-run", "--yes")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "team.yaml").exists()
    assert "LAYER" in result.stdout and "critical path" in result.stdout  # as `compose plan`
    assert "layer 1" in result.stdout  # as `compose graph --format text`
    assert "rnix compose -f team.yaml up" in result.stderr
    assert listed_agents(rnix) == []  # nothing ran
    planning = planner_log(rnix, "last")
    assert planning["runs"] == [] and [w["file"] for w in planning["wrote"]] == [str(tmp_path / "team.yaml")]


def listed_agents(rnix: RunRnix) -> list[str]:
    """The agents `rnix ps -a` lists (every run's)."""
    result = rnix("ps", "-a", "--json")
    assert result.returncode == 0, result.stderr
    return [p["agent"] for p in json.loads(result.stdout)["data"]["processes"]]


def planner_log(rnix: RunRnix, ref: str) -> Any:
    """`rnix log --planner REF --json`'s data."""
    result = rnix("log", "--planner", ref, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["data"]


def test_the_planner_call_is_recorded_and_shown_by_rnix_log(rnix: RunRnix, tmp_path: Path) -> None:
    project(tmp_path)
    result = rnix("apply", INTENT, "--yes", "--json", timeout=120)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)["data"]
    planning = data["planner"]["id"]
    assert data["planner"]["log"] == f"rnix log --planner {planning}"
    assert f"rnix log --planner {planning}" in result.stderr
    assert f"rnix log --planner {planning}" in (tmp_path / "compose.yaml").read_text()
    shown = rnix("log", "--planner", planning)
    assert shown.returncode == 0, shown.stderr
    assert f'planning {planning}: "{INTENT}"' in shown.stdout
    assert "--- call 1: ok, mock, " in shown.stdout
    assert f"> {INTENT}" in shown.stdout and "-> submit_compose {" in shown.stdout
    logged = planner_log(rnix, planning)
    (call,) = logged["calls"]
    assert call["total_tokens"] == data["planner"]["tokens_used"] > 0
    assert call["response"]["tool_calls"][0]["function"]["name"] == "submit_compose"
    assert logged["status"] == "planned"
    assert [r["run_id"] for r in logged["runs"]] == [data["run"]["run_id"]]
    assert planner_log(rnix, data["run"]["run_id"])["planning"] == planning  # found from its run too
    assert planner_log(rnix, "last")["planning"] == planning
    assert sorted(listed_agents(rnix)) == ["code-analyst", "summarizer"]  # ps lists no planner


def test_rnix_log_planner_errors(rnix: RunRnix) -> None:
    missing = rnix("log", "--planner", "plan-000000000000")
    assert missing.returncode == 1 and "no rnix apply planning" in missing.stderr
    both = rnix("log", "123", "--planner", "last")
    assert both.returncode == 2 and "Traceback" not in both.stderr
    bare = rnix("log")
    assert bare.returncode == 2 and "--planner" in bare.stderr and "Traceback" not in bare.stderr


def test_secrets_in_the_intent_are_masked_in_the_planner_log(
    rnix: RunRnix, tmp_path: Path, rnix_home: Path
) -> None:
    result = rnix("apply", f"Review the code, key {CANARY}", "--dry-run", env={"OPENAI_API_KEY": CANARY})
    assert result.returncode == 0, result.stderr
    shown = rnix("log", "--planner", "last", env={"OPENAI_API_KEY": CANARY})
    assert shown.returncode == 0 and "Review the code, key ***" in shown.stdout
    assert_no_canary_anywhere(rnix_home, shown.stdout, rnix("log", "--planner", "last", "--json").stdout)


def test_a_planner_call_that_would_exceed_the_budget_stops_planning(rnix: RunRnix, tmp_path: Path) -> None:
    project(tmp_path)
    result = rnix("apply", INTENT, "--yes", "--budget", "1000")
    assert result.returncode == 1
    error, hint = result.stderr.strip().splitlines()[-2:]
    assert error.startswith("rnix: error: the planner's next call would exceed its budget: it needs about ")
    assert error.endswith("tokens and 1,000 of --budget 1,000 are left (0 calls made)")
    assert hint.startswith("hint: raise --budget") and "rnix log --planner plan-" in hint
    assert "Traceback" not in result.stderr and not (tmp_path / "compose.yaml").exists()
    logged = planner_log(rnix, "last")
    assert logged["status"] == "failed" and logged["tokens_used"] == 0
    assert [c["status"] for c in logged["calls"]] == ["budget_exceeded"]
    assert listed_agents(rnix) == []


def test_an_existing_replan_file_is_not_overwritten(rnix: RunRnix, tmp_path: Path) -> None:
    (tmp_path / "compose.replan-1.yaml").write_text("mine\n")
    result = rnix("apply", INTENT, "--yes")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "compose.replan-1.yaml already exists" in result.stderr and "--force" in result.stderr
    assert (tmp_path / "compose.replan-1.yaml").read_text() == "mine\n"
    assert not (tmp_path / "compose.yaml").exists()  # refused before planning: nothing spent
    assert rnix("log", "--planner", "last").returncode == 1
    without_replans = rnix("apply", INTENT, "--dry-run", "--max-replans", "0")
    assert without_replans.returncode == 0, without_replans.stderr  # it would not write that file
    assert (tmp_path / "compose.replan-1.yaml").read_text() == "mine\n"


def test_without_a_terminal_or_yes_it_writes_and_does_not_run(rnix: RunRnix, tmp_path: Path) -> None:
    result = rnix("apply", INTENT, "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["data"]["ran"] is False
    assert "no --yes" in result.stderr


BAD = {
    "agents": {
        "scan": {"intent": "scan the code", "depends_on": ["report"], "colour": "blue"},
        "report": {"intent": "write the report", "depends_on": ["scan"]},
    }
}
GOOD = {
    "agents": {
        "scan": {"intent": "scan the code"},
        "report": {"intent": "write the report", "depends_on": ["scan"]},
    }
}


def apply_with(rnix: RunRnix, server: OpenAIServer, *extra: str, as_json: bool = True) -> Any:
    """`rnix apply --yes [--json] EXTRA...` with the loopback server as the planner's (and agents')
    model."""
    return rnix(
        "apply",
        "Scan the code and report",
        "--model",
        "openai/test-model",
        "--api-base",
        server.base_url,
        "--yes",
        *(["--json"] if as_json else []),
        *extra,
        env={"OPENAI_API_KEY": CANARY},
        timeout=120,
    )


def tool_messages(body: Any) -> list[str]:
    return [str(m.get("content")) for m in body["messages"] if m.get("role") == "tool"]


def test_a_real_planner_gets_one_repair_turn_with_every_problem(rnix: RunRnix, tmp_path: Path) -> None:
    with OpenAIServer() as server:
        server.script([ToolCall("submit_compose", BAD), ToolCall("submit_compose", GOOD, call_id="call_2")])
        result = apply_with(rnix, server)
        bodies = [r.body for r in server.requests]
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["data"]["run"]["summary"]["completed"] == 2
    planner_calls = [
        b for b in bodies if any(t["function"]["name"] == "submit_compose" for t in b.get("tools") or [])
    ]
    assert len(planner_calls) == 2  # one proposal, one repair
    assert tool_messages(planner_calls[0]) == []
    (repair,) = tool_messages(planner_calls[1])
    assert "agents.scan.colour: unknown key" in repair
    assert "dependency cycle: report -> scan -> report" in repair
    assert len(bodies) == 4  # then the two agents, on the planner's model
    written = (tmp_path / "compose.yaml").read_text()
    assert "openai/test-model" in written and "colour" not in written
    logged = planner_log(rnix, doc["data"]["planner"]["id"])
    assert [(c["status"], c["model"], c["total_tokens"]) for c in logged["calls"]] == [
        ("ok", "openai/test-model", 10),
        ("ok", "openai/test-model", 10),
    ]
    repair_request = logged["calls"][1]["request"]  # only what the repair turn added is kept
    assert repair_request["from"] == 2 and [m["role"] for m in repair_request["messages"]] == [
        "assistant",
        "tool",
    ]
    assert "dependency cycle: report -> scan -> report" in repair_request["messages"][1]["content"]
    assert_no_canary_anywhere(tmp_path, result.stdout, result.stderr)


def test_a_planner_that_never_repairs_fails_listing_the_problems(rnix: RunRnix, tmp_path: Path) -> None:
    with OpenAIServer() as server:
        server.script([ToolCall("submit_compose", BAD, call_id=f"call_{i}") for i in range(4)])
        result = apply_with(rnix, server, as_json=False)
        calls = len(server.requests)
    assert result.returncode == 1 and calls == 4  # the proposal and 3 repair turns
    assert "colour" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "compose.yaml").exists()


def test_a_model_name_without_provider_is_a_usage_error(rnix: RunRnix, tmp_path: Path) -> None:
    result = rnix("apply", INTENT, "--model", "gpt4", "--yes")
    assert result.returncode == 2 and "rnix models" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "compose.yaml").exists()


REPLACEMENT = {"agents": {"report": {"intent": "write the report again, shorter", "depends_on": ["scan"]}}}


def test_a_failed_agent_is_replanned_and_the_completed_one_reused(rnix: RunRnix, tmp_path: Path) -> None:
    with OpenAIServer() as server:
        server.script(
            [
                ToolCall("submit_compose", GOOD),
                Reply("scan found two bugs"),
                Status(400, message="scripted refusal"),
                ToolCall("submit_compose", REPLACEMENT, call_id="call_2"),
                Reply("the report, shorter"),
            ]
        )
        result = apply_with(rnix, server)
        bodies = [r.body for r in server.requests]
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)["data"]
    first = {a["name"]: a for a in data["run"]["agents"]}
    assert first["scan"]["status"] == "completed" and first["report"]["status"] == "failed"
    (replan,) = data["replans"]
    assert replan["replaced"] == ["report"] and replan["file"] == str(tmp_path / "compose.replan-1.yaml")
    again = {a["name"]: a for a in replan["run"]["agents"]}
    assert again["scan"]["reused_from"] == data["run"]["run_id"] and again["scan"]["pid"] is None
    assert again["report"]["status"] == "completed" and again["report"]["result"] == "the report, shorter\n"
    assert len(bodies) == 5  # plan, scan, report (refused), replan, report: scan was not asked again
    task = bodies[3]["messages"][1]["content"]
    assert "report: " in task and "scan found two bugs" in task
    written = (tmp_path / "compose.replan-1.yaml").read_text()
    assert "write the report again, shorter" in written
    assert data["planner"]["calls"] == 2
    assert_no_canary_anywhere(tmp_path, result.stdout, result.stderr)


def test_offline_a_failed_agent_is_replanned_and_the_completed_one_reused(
    rnix: RunRnix, tmp_path: Path
) -> None:
    project(tmp_path)
    definition = tmp_path / "agents" / "summarizer"  # shadows the shipped one; its model always fails
    definition.mkdir(parents=True)
    (definition / "agent.yaml").write_text(
        "name: summarizer\ndescription: Summarises, on a model that fails\nmodel: mock?fail=1\nmax_steps: 1\n"
    )
    (definition / "instructions.md").write_text("Summarise the upstream results.\n")
    result = rnix("apply", INTENT, "--yes", "--json", env={"RNIX_LLM_MAX_ATTEMPTS": "1"}, timeout=120)
    assert result.returncode == 1, result.stderr  # the replan ran and failed again: the last run's status
    data = json.loads(result.stdout)["data"]
    first = {a["name"]: a for a in data["run"]["agents"]}
    assert first["code-analyst"]["status"] == "completed" and first["summarizer"]["status"] == "failed"
    assert "summarizer did not complete; replanning (1 of 1)" in result.stderr
    (replan,) = data["replans"]
    assert replan["replaced"] == ["summarizer"]
    assert replan["file"] == str(tmp_path / "compose.replan-1.yaml")
    again = {a["name"]: a for a in replan["run"]["agents"]}
    assert (
        again["code-analyst"]["reused_from"] == data["run"]["run_id"] and again["code-analyst"]["pid"] is None
    )
    assert again["summarizer"]["pid"] not in (None, first["summarizer"]["pid"])  # it ran again
    written = (tmp_path / "compose.replan-1.yaml").read_text()
    assert "Try again (the last attempt ended: exit status 1" in written
    assert data["planner"]["calls"] == 2
    logged = planner_log(rnix, data["planner"]["id"])
    assert [c["status"] for c in logged["calls"]] == ["ok", "ok"]
    assert [w["replan"] for w in logged["wrote"]] == [0, 1]
    assert [r["exit_code"] for r in logged["runs"]] == [1, 1]
    assert sum(c["total_tokens"] for c in logged["calls"]) == data["planner"]["tokens_used"]


def on_terminal(cwd: Path, answer: bytes, *args: str, timeout: float = 120) -> tuple[int, str]:
    """The installed `rnix` with a pseudo-terminal as stdin, stdout and stderr: `answer` and a
    newline are typed once it asks. Its exit status and everything it wrote."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [RNIX, *args], stdin=slave, stdout=slave, stderr=slave, cwd=cwd, start_new_session=True
    )
    os.close(slave)
    output, answered = b"", False
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if not ready:
                continue
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: the last process holding the terminal closed it
                break
            if not chunk:
                break
            output += chunk
            if not answered and b"Run this plan now?" in output:
                os.write(master, answer + b"\n")
                answered = True
        code = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    assert answered, output.decode(errors="replace")
    return code, output.decode(errors="replace")


def test_on_a_terminal_it_asks_and_runs_only_after_yes(rnix: RunRnix, tmp_path: Path) -> None:
    project(tmp_path)
    code, output = on_terminal(tmp_path, b"n", "apply", INTENT)
    assert code == 0, output
    assert "not run; run it with `rnix compose -f compose.yaml up`" in output
    assert (tmp_path / "compose.yaml").exists() and listed_agents(rnix) == []
    code, output = on_terminal(tmp_path, b"y", "apply", INTENT, "-o", "again.yaml")
    assert code == 0, output
    assert "compose | completed | 2/2 agents" in output
    assert sorted(listed_agents(rnix)) == ["code-analyst", "summarizer"]


def test_a_real_planner_is_stopped_when_its_next_call_would_exceed_the_budget(
    rnix: RunRnix, tmp_path: Path
) -> None:
    with OpenAIServer() as server:
        # the first proposal costs 3,000 tokens; its repair turn's prompt (the schema alone is
        # over 4,000 tokens) then no longer fits in --budget 8,000, so it is never sent
        server.script(
            [ToolCall("submit_compose", BAD, prompt_tokens=2_997), ToolCall("submit_compose", GOOD)]
        )
        result = apply_with(rnix, server, "--budget", "8000", as_json=False)
        calls = len(server.requests)
    assert result.returncode == 1 and calls == 1
    error = [line for line in result.stderr.splitlines() if line.startswith("rnix: error:")]
    assert len(error) == 1  # one line, then the hint
    assert (
        "would exceed its budget" in error[0] and "5,000 of --budget 8,000 are left (1 call made)" in error[0]
    )
    assert "Traceback" not in result.stderr and not (tmp_path / "compose.yaml").exists()
    logged = planner_log(rnix, "last")
    assert [c["status"] for c in logged["calls"]] == ["ok", "budget_exceeded"]
    assert logged["calls"][0]["total_tokens"] == 3_000 and logged["tokens_used"] == 3_000
    request = logged["calls"][0]["request"]
    assert request["from"] == 0 and [m["role"] for m in request["messages"]] == ["system", "user"]
    assert_no_canary_anywhere(tmp_path, result.stdout, result.stderr)


def test_a_planner_model_failure_is_recorded_and_nothing_is_written(rnix: RunRnix, tmp_path: Path) -> None:
    with OpenAIServer() as server:
        server.script([Status(400, message=f"scripted refusal {CANARY}")])
        result = apply_with(rnix, server, as_json=False)
    assert result.returncode == 1 and "scripted refusal ***" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "compose.yaml").exists()
    logged = planner_log(rnix, "last")
    assert logged["status"] == "failed" and [c["status"] for c in logged["calls"]] == ["provider_error"]
    assert "scripted refusal ***" in logged["calls"][0]["error"]
    assert_no_canary_anywhere(tmp_path, result.stdout, result.stderr)
