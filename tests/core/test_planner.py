"""The offline planner is deterministic and picks definitions by the intent's keywords; the planner
model's prompt, tool and repair message carry what it needs."""

from __future__ import annotations

from rnix.core import planner
from rnix.core.planner import Available, mock_plan

LIBRARY = [
    Available(name, f"{name} does things", ("cap one",), ("read_file",))
    for name in ("code-analyst", "doc-writer", "planner", "researcher", "summarizer", "test-writer")
]


def deps(doc: dict[str, object], name: str) -> list[str]:
    agents = doc["agents"]
    assert isinstance(agents, dict)
    return list(agents[name].get("depends_on", []))


def test_review_and_summarise_chains_the_analyst_into_the_summarizer() -> None:
    intent = "Review the code in src/ and summarise it"
    doc = mock_plan(intent, LIBRARY)
    assert list(doc["agents"]) == ["code-analyst", "summarizer"]
    assert deps(doc, "summarizer") == ["code-analyst"]
    assert all(intent in a["intent"] for a in doc["agents"].values())
    assert doc == mock_plan(intent, LIBRARY)  # deterministic


def test_producers_follow_gatherers_and_the_summarizer_comes_last() -> None:
    doc = mock_plan("Research the API, write docs and tests, then summarize", LIBRARY)
    assert list(doc["agents"]) == ["researcher", "test-writer", "doc-writer", "summarizer"]
    assert deps(doc, "doc-writer") == ["researcher"] and deps(doc, "test-writer") == ["researcher"]
    assert deps(doc, "summarizer") == ["researcher", "test-writer", "doc-writer"]


def test_an_intent_without_keywords_still_gets_two_agents() -> None:
    doc = mock_plan("hello there", LIBRARY)
    assert list(doc["agents"]) == ["researcher", "summarizer"]
    one = mock_plan("write the docs", LIBRARY)
    assert list(one["agents"]) == ["researcher", "doc-writer"]


def test_only_definitions_in_the_library_are_named() -> None:
    doc = mock_plan("review the code", [Available("summarizer", "s"), Available("code-analyst", "c")])
    assert {a["agent"] for a in doc["agents"].values()} == {"code-analyst", "summarizer"}


def test_prompt_tool_and_repair_message() -> None:
    prompt = planner.system_prompt(LIBRARY)
    assert "code-analyst: code-analyst does things" in prompt and "read_file" in prompt
    tool = planner.submit_tool({"type": "object"})
    assert tool["function"]["name"] == "submit_compose"
    assert tool["function"]["parameters"] == {"type": "object"}
    message = planner.repair_message(["one", "two"])
    assert "- one\n- two" in message and "2 problems" in message


def test_proposal_arguments() -> None:
    assert planner.proposal_of('{"agents": {}}') == ({"agents": {}}, None)
    assert planner.proposal_of("[1]")[1] is not None
    assert planner.proposal_of("{not json")[1] is not None


DOC = {
    "version": "1.0",
    "agents": {
        "scan": {"intent": "scan"},
        "report": {"intent": "report", "depends_on": ["scan"]},
        "publish": {"intent": "publish", "depends_on": ["report"]},
    },
}


def test_merge_keeps_completed_agents_and_replaces_the_rest() -> None:
    proposal = {"model": "ignored", "agents": {"report2": {"intent": "r", "depends_on": ["scan"]}}}
    merged, problems = planner.merge_replacement(DOC, ["scan"], proposal)
    assert problems == []
    assert merged["agents"] == {
        "scan": {"intent": "scan"},
        "report2": {"intent": "r", "depends_on": ["scan"]},
    }
    assert merged["version"] == "1.0" and "model" not in merged


def test_merge_refuses_a_completed_name_or_an_empty_replacement() -> None:
    _, problems = planner.merge_replacement(DOC, ["scan"], {"agents": {"scan": {"intent": "x"}}})
    assert any("agents.scan" in p for p in problems)
    _, problems = planner.merge_replacement(DOC, ["scan"], {"agents": {}})
    assert problems


def test_mock_replan_retries_the_failed_agents_with_their_error() -> None:
    failed = [planner.Settled("report", False, "timeout"), planner.Settled("publish", False, "skipped")]
    proposal = planner.mock_replan(DOC, failed)
    assert list(proposal["agents"]) == ["report", "publish"]
    assert "timeout" in proposal["agents"]["report"]["intent"]
    assert proposal["agents"]["report"]["depends_on"] == ["scan"]


def test_replan_message_lists_failures_and_completed_results() -> None:
    settled = [planner.Settled("scan", True, result="found it"), planner.Settled("report", False, "boom")]
    text = planner.replan_message("goal", "agents: {}\n", settled)
    assert "- report: boom" in text and "found it" in text and "goal" in text
