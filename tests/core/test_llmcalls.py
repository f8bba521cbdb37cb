"""rnix.core.llmcalls.join: llm_call events and journal entries become one list of model calls."""

from __future__ import annotations

from typing import Any

from rnix.core.llmcalls import Entry, join


def event(number: int, status: str = "ok", **extra: Any) -> dict[str, Any]:
    base = {"attempt": number, "status": status, "model": "mock", "prompt_tokens": 10}
    return {**base, "completion_tokens": 5, "total_tokens": 15, "latency_ms": 1.5, **extra}


def llm(content: str, replayed: bool = False) -> Entry:
    return Entry("llm", f"key-{content}", {"content": content, "tool_calls": None}, replayed=replayed)


def test_tries_of_one_request_are_one_call_charged_for_every_try() -> None:
    calls = join([event(1, "retry", error="HTTP 500"), event(1), event(2)], [llm("a"), llm("b")])
    assert [(c.number, c.status, c.tries, c.total_tokens, c.latency_ms) for c in calls] == [
        (1, "ok", 2, 30, 3.0),
        (2, "ok", 1, 15, 1.5),
    ]
    assert [c.response["content"] for c in calls if c.response] == ["a", "b"]
    assert calls[0].error is None and calls[0].request_hash == "key-a"


def test_failed_calls_have_no_entry_and_tool_results_follow_their_answer() -> None:
    tool = Entry("tool", "t", {"ok": True, "denied": False, "summary": "list_dir . -> 2 entries"})
    calls = join([event(1), event(2, "budget_exceeded"), event(3)], [llm("a"), tool, llm("c")])
    assert [(c.status, c.response and c.response["content"]) for c in calls] == [
        ("ok", "a"),
        ("budget_exceeded", None),
        ("ok", "c"),
    ]
    assert [r["summary"] for r in calls[0].tool_results] == ["list_dir . -> 2 entries"]
    assert calls[2].tool_results == []


def test_a_restarted_agent_numbers_its_requests_again() -> None:
    calls = join([event(1), event(1, "provider_error"), event(1)], [llm("first"), llm("again")])
    assert [(c.number, c.status) for c in calls] == [(1, "ok"), (2, "provider_error"), (3, "ok")]
    assert calls[2].response is not None and calls[2].response["content"] == "again"


def test_entries_without_events_are_still_shown() -> None:
    calls = join([], [llm("old", replayed=True)])
    assert [(c.number, c.status) for c in calls] == [(1, "replayed")]
    assert calls[0].as_dict()["request"] is None
