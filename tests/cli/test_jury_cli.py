"""Juries through the installed `rnix compose up`: candidates are project agent definitions whose
`mock` models answer from scripts (`mock?script=FILE`), so each candidate's answer is known."""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

from tests.conftest import RunRnix
from tests.procs import alive, marked_pids, wait_gone


def candidate(root: Path, name: str, answer: str, latency: str | None = None) -> None:
    folder = root / "agents" / name
    folder.mkdir(parents=True)
    script = root / f"{name}.json"
    script.write_text(json.dumps([{"answer": answer}]))
    model = f"mock?script={script}" + (f"&latency={latency}" if latency else "")
    (folder / "agent.yaml").write_text(
        f"name: {name}\ndescription: answers {answer}\nmodel: {json.dumps(model)}\n"
    )
    (folder / "instructions.md").write_text("Answer the question.\n")


def jury_file(root: Path, aggregate: str, extra: str = "") -> None:
    (root / "compose.yaml").write_text(
        "agents:\n"
        "  review:\n"
        "    intent: is it A or B\n"
        "    candidates: [alpha, beta, gamma]\n"
        f"    aggregate: {aggregate}\n"
        f"{extra}"
        "  report:\n"
        "    intent: report\n"
        "    depends_on: [review]\n"
    )


def up(rnix: RunRnix, env: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    result = rnix("compose", "up", "--json", env=env, timeout=120)
    return result.returncode, {a["name"]: a for a in json.loads(result.stdout)["data"]["agents"]}


def test_vote_of_three_scripted_candidates_picks_the_majority(rnix: RunRnix, tmp_path: Path) -> None:
    candidate(tmp_path, "alpha", "A")
    candidate(tmp_path, "beta", "B")
    candidate(tmp_path, "gamma", "A")
    jury_file(tmp_path, "vote")
    plan = rnix("compose", "plan").stdout
    assert "review[*]" in plan and "runs every candidate (alpha, beta, gamma): vote" in plan
    code, agents = up(rnix)
    assert code == 0
    assert agents["review"]["status"] == "completed" and agents["review"]["result"].strip() == "A"
    members = [agents[f"review[{i}]"] for i in range(3)]
    assert [(m["label"], m["definition"], m["result"].strip()) for m in members] == [
        ("alpha", "alpha", "A"),
        ("beta", "beta", "B"),
        ("gamma", "gamma", "A"),
    ]
    # The ledger: one record per candidate execution, under the candidate's definition.
    scores = json.loads(rnix("reputation", "--json").stdout)["data"]["definitions"]
    records = {s["definition"]: s["records"] for s in scores}
    assert {d: records.get(d) for d in ("alpha", "beta", "gamma")} == {"alpha": 1, "beta": 1, "gamma": 1}


def test_first_stops_the_slower_candidates(rnix: RunRnix, tmp_path: Path) -> None:
    candidate(tmp_path, "alpha", "slow one", latency="60s")
    candidate(tmp_path, "beta", "fast one")
    candidate(tmp_path, "gamma", "slow two", latency="60s")
    jury_file(tmp_path, "first", "    stop_grace_period: 2s\n")
    marker = uuid.uuid4().hex
    started = time.monotonic()
    code, agents = up(rnix, env={**os.environ, "RNIX_TEST_MARKER": marker})
    assert time.monotonic() - started < 30  # nobody waited for the slow ones
    assert code == 0
    assert agents["review"]["status"] == "completed" and agents["review"]["result"].strip() == "fast one"
    assert [agents[f"review[{i}]"]["status"] for i in range(3)] == ["cancelled", "completed", "cancelled"]
    assert "jury 'review' decided" in agents["review[0]"]["error"]
    slow = [agents[f"review[{i}]"]["pid"] for i in (0, 2)]
    assert all(isinstance(pid, int) for pid in slow)
    assert not any(alive(pid) for pid in slow)  # stopped: their processes are gone
    assert wait_gone(marked_pids(marker), 5) == []  # and nothing of the run is left
    scores = json.loads(rnix("reputation", "--json").stdout)["data"]["definitions"]
    assert {s["definition"] for s in scores} & {"alpha", "beta", "gamma"} == {"beta"}  # stopped: no verdict
