"""Contracts, the reputation ledger and candidate choice through the installed `rnix`."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.conftest import RNIX, RunRnix
from tests.fakes.openai_server import OpenAIServer, Reply

PY = sys.executable


def up(rnix: RunRnix, *args: str, env: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    result = rnix("compose", "up", "--json", *args, env=env, timeout=120)
    return result.returncode, json.loads(result.stdout)


def slas(doc: dict[str, Any]) -> dict[str, Any]:
    return {a["name"]: a["sla"] for a in doc["data"]["agents"]}


def checks(verdict: dict[str, Any]) -> dict[str, bool]:
    return {c["name"]: c["passed"] for c in verdict["checks"]}


def test_contract_checks_pass_and_fail_without_changing_exit_status(rnix: RunRnix, tmp_path: Path) -> None:
    echo = lambda text: json.dumps([PY, "-c", f"print({text!r})"])  # noqa: E731
    (tmp_path / "compose.yaml").write_text(
        f"""agents:
  json_ok: {{intent: a, command: {echo('{"a": 1}')}, contract: {{output_format: json, sla_level: gold}}}}
  json_bad: {{intent: b, command: {echo("not json")}, contract: {{output_format: json}}}}
  regex_ok: {{intent: c, command: {echo("STATUS: ok")}, contract: {{output_quality: "^STATUS: (ok|done)$"}}}}
  regex_bad: {{intent: d, command: {echo("STATUS: broken")}, contract: {{output_quality: "^STATUS: ok$"}}}}
  md: {{intent: e, command: {echo("# Report")}, contract: {{output_format: markdown, sla_level: silver}}}}
  tokens_bad: {{intent: write a long answer, contract: {{max_tokens: 10}}}}
  slow_bad: {{intent: g, command: [sleep, "0.6"], contract: {{timeout: 0.2s}}}}
  crashed: {{intent: h, command: [sh, -c, "exit 3"], contract: {{output_format: text}}}}
"""
    )
    code, doc = up(rnix)
    verdicts = slas(doc)
    assert code == 1  # only because `crashed` failed: failed contracts do not change exit statuses
    statuses = {a["name"]: a["status"] for a in doc["data"]["agents"]}
    assert [n for n, s in statuses.items() if s != "completed"] == ["crashed"]
    assert verdicts["json_ok"]["passed"] is True and verdicts["json_ok"]["level"] == "gold"
    assert checks(verdicts["json_bad"]) == {"completed": True, "output_format": False}
    assert verdicts["regex_ok"]["passed"] is True and verdicts["regex_bad"]["passed"] is False
    assert verdicts["md"]["passed"] is True and verdicts["md"]["level"] == "silver"
    tokens = next(c for c in verdicts["tokens_bad"]["checks"] if c["name"] == "max_tokens")
    assert tokens["passed"] is False and tokens["actual"] > 10 and tokens["limit"] == 10
    timing = next(c for c in verdicts["slow_bad"]["checks"] if c["name"] == "timeout")
    assert timing["passed"] is False and timing["actual"] >= 0.6 and timing["limit"] == 0.2
    assert checks(verdicts["crashed"])["completed"] is False
    ps = json.loads(rnix("compose", "ps", "-a", "--json").stdout)["data"]["processes"]
    assert {p["agent"]: (p["sla"] or {}).get("passed") for p in ps}["regex_bad"] is False


def test_judge_verdicts_through_the_loopback_llm(rnix: RunRnix, tmp_path: Path, rnix_home: Path) -> None:
    with OpenAIServer() as server:
        server.script(
            [
                Reply("Dear colleague, thank you.", prompt_tokens=20, completion_tokens=6),
                Reply('{"pass": true, "reason": "courteous"}', prompt_tokens=90, completion_tokens=9),
            ]
        )
        (tmp_path / "compose.yaml").write_text(
            f"model: openai/judge-test\napi_base: {server.base_url}\nagents:\n"
            "  letter: {intent: write politely,\n"
            "           contract: {output_quality: {judge: 'is it polite?'}, sla_level: gold}}\n"
        )
        code, doc = up(rnix, env={"OPENAI_API_KEY": "sk-judge-test-key"})
        judge_request = server.requests[1].body
    assert code == 0
    verdict = slas(doc)["letter"]
    assert verdict["passed"] is True
    quality = next(c for c in verdict["checks"] if c["name"] == "output_quality")
    assert quality["actual"] == "courteous"
    assert "is it polite?" in judge_request["messages"][-1]["content"]
    agent = doc["data"]["agents"][0]
    assert agent["tokens_used"] == 26  # the judge's 99 tokens are not the agent's
    db = sqlite3.connect(rnix_home / "rnix.db")
    assert db.execute("select judge_tokens, sla_passed, level from ledger").fetchall() == [(99, 1, "gold")]


def test_a_failing_judge_verdict(rnix: RunRnix, tmp_path: Path) -> None:
    with OpenAIServer() as server:
        server.script([Reply("Whatever."), Reply("FAIL: rude and curt")])
        (tmp_path / "compose.yaml").write_text(
            f"model: openai/judge-test\napi_base: {server.base_url}\nagents:\n"
            "  letter: {intent: write politely, contract: {output_quality: {judge: polite}}}\n"
        )
        code, doc = up(rnix, env={"OPENAI_API_KEY": "sk-judge-test-key"})
    verdict = slas(doc)["letter"]
    assert code == 0 and verdict["passed"] is False
    assert next(c for c in verdict["checks"] if c["name"] == "output_quality")["actual"] == "rude and curt"


def test_ledger_survives_runs_and_changes_the_candidate_choice(rnix: RunRnix, tmp_path: Path) -> None:
    compose = tmp_path / "compose.yaml"
    for name in ("first-choice", "second-choice"):  # candidates must be agent definitions
        folder = tmp_path / "agents" / name
        folder.mkdir(parents=True)
        (folder / "agent.yaml").write_text(f"name: {name}\ndescription: summarises\n")
        (folder / "instructions.md").write_text("Summarise.\n")
    agent = (
        "agents:\n  pick:\n    intent: write a long summary\n    candidates: [first-choice, second-choice]\n"
    )
    no_exploring = {"RNIX_EXPLORE": "0"}
    compose.write_text(agent)
    plan = json.loads(rnix("compose", "plan", "--json", env=no_exploring).stdout)["data"]
    assert plan["agents"][0]["choice"]["chosen"] == "first-choice"  # no records yet: ties go to the first
    compose.write_text(agent + "    contract: {max_tokens: 5, sla_level: gold}\n")  # cannot be met
    code, doc = up(rnix, env=no_exploring)  # a separate process: the ledger persists after it
    assert code == 0 and doc["data"]["agents"][0]["definition"] == "first-choice"
    assert doc["data"]["agents"][0]["sla"]["passed"] is False
    scores = json.loads(rnix("reputation", "--json").stdout)["data"]["definitions"]
    assert [(s["definition"], s["records"]) for s in scores] == [("first-choice", 1)]
    assert scores[0]["score"] < 0.5 and scores[0]["success_rate"] == 0
    plan = json.loads(rnix("compose", "plan", "--json", env=no_exploring).stdout)["data"]
    choice = plan["agents"][0]["choice"]
    assert choice == {"chosen": "second-choice", "reason": "best score 0.50 (no records)"}
    compose.write_text(agent + "    contract: {max_tokens: 100000, sla_level: gold}\n")
    code, doc = up(rnix, env=no_exploring)
    assert (
        doc["data"]["agents"][0]["definition"] == "second-choice"
        and doc["data"]["agents"][0]["sla"]["passed"]
    )
    best = json.loads(rnix("reputation", "--json").stdout)["data"]["definitions"][0]
    assert best["definition"] == "second-choice" and best["score"] > 0.5
    reasons = {
        json.loads(rnix("compose", "plan", "--json", "--seed", str(seed), env={"RNIX_EXPLORE": "1"}).stdout)[
            "data"
        ]["agents"][0]["choice"]["reason"]
        for seed in range(3)
    }
    assert reasons == {"exploring"}


def test_four_composes_write_the_ledger_at_once(rnix: RunRnix, tmp_path: Path, rnix_home: Path) -> None:
    procs = []
    for i in range(4):
        directory = tmp_path / f"p{i}"
        directory.mkdir()
        agents = "".join(
            f"  a{j}: {{intent: task {j}, contract: {{sla_level: bronze}}}}\n" for j in range(10)
        )
        (directory / "compose.yaml").write_text(f"name: writer{i}\nagents:\n{agents}")
        procs.append(
            subprocess.Popen(
                [RNIX, "compose", "up", "--json"],
                cwd=directory,
                env=dict(os.environ),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    db = sqlite3.connect(rnix_home / "rnix.db")
    rows = db.execute("select project, count(*) from ledger group by project order by project").fetchall()
    assert rows == [(f"writer{i}", 10) for i in range(4)]
    scores = json.loads(rnix("reputation", "builtin:mock", "--json").stdout)["data"]
    assert scores["records"] == 40 and len(scores["recent"]) == 10


def test_a_pool_too_small_for_everyone(rnix: RunRnix, tmp_path: Path) -> None:
    (tmp_path / "compose.yaml").write_text(
        "budget_pool: {total: 450, allocation: priority}\n"
        "agents:\n"
        '  urgent: {intent: a, budget: 200, priority: high, command: ["true"]}\n'
        '  normal: {intent: b, budget: 200, command: ["true"]}\n'
        '  late: {intent: c, budget: 200, priority: low, command: ["true"]}\n'
        '  after_late: {intent: d, depends_on: [late], command: ["true"]}\n'
        '  shared: {intent: e, command: ["true"]}\n'
    )
    plan = json.loads(rnix("compose", "plan", "--json").stdout)["data"]
    assert plan["budget_pool"]["unfunded"] == ["late"]
    code, doc = up(rnix)
    agents = {a["name"]: a for a in doc["data"]["agents"]}
    assert code == 1
    assert {n: a["status"] for n, a in agents.items()} == {
        "urgent": "completed",
        "normal": "completed",
        "late": "budget_exceeded",
        "after_late": "skipped",
        "shared": "completed",
    }
    assert agents["late"]["pid"] is None and "cannot fund" in agents["late"]["error"]
    assert agents["urgent"]["budget"] == 200 and agents["shared"]["budget"] == 50
    assert agents["after_late"]["error"] == "dependency 'late' budget_exceeded"
