"""The journal's keys, entries, FIFO replay and the carry-forward of a replay cut short."""

from __future__ import annotations

import json
from typing import Any

import pytest

from rnix.core.journal import LLM, TOOL, JournalEntry, Replay, carry_forward, request_hash, tool_key

MESSAGES = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "Your task: sum"}]
TOOLS = [{"type": "function", "function": {"name": "read_file", "parameters": {"type": "object"}}}]
REPLY = {"content": "4", "tool_calls": None, "finish_reason": "stop", "usage": {"total_tokens": 9}}


def base(**changes: Any) -> str:
    request: dict[str, Any] = {
        "model": "mock",
        "messages": MESSAGES,
        "tools": TOOLS,
        "temperature": 0.2,
        "max_tokens": 100,
    }
    request.update(changes)
    return request_hash(**request)


def llm(key: str, tokens: int = 10, *, replayed: bool = False, seq: int = 0) -> JournalEntry:
    return JournalEntry(LLM, key, {**REPLY, "content": key}, 4, tokens - 4, tokens, replayed, seq)


def tool(key: str, *, replayed: bool = False) -> JournalEntry:
    return JournalEntry(TOOL, key, {"output": key}, replayed=replayed)


def test_request_hash_is_a_stable_sha256_of_what_was_asked() -> None:
    key = base()
    assert len(key) == 64 and int(key, 16) >= 0
    # the same request built in another key order, after a JSON round trip, is the same request
    reordered = [{"content": m["content"], "role": m["role"]} for m in json.loads(json.dumps(MESSAGES))]
    assert base(messages=reordered) == key
    assert request_hash("mock", MESSAGES, TOOLS, 0.2, 100) == key


@pytest.mark.parametrize(
    "change",
    [
        {"model": "gpt-4o"},
        {"messages": [*MESSAGES, {"role": "user", "content": "more"}]},
        {"messages": [MESSAGES[0], {"role": "user", "content": "Your task: sum "}]},
        {"tools": None},
        {"temperature": None},
        {"temperature": 0.3},
        {"max_tokens": None},
        {"max_tokens": 101},
    ],
)
def test_request_hash_changes_with_every_field(change: dict[str, Any]) -> None:
    assert base(**change) != base()


def test_request_hash_takes_any_text() -> None:
    odd = [{"role": "user", "content": "caf\u00e9 \U0001f600 \udcff"}]  # a lone surrogate from JSON
    assert base(messages=odd) != base()


def test_tool_key_depends_on_each_part() -> None:
    key = tool_key("h1", 0, "read_file", '{"path":"a"}')
    assert key == tool_key("h1", 0, "read_file", '{"path":"a"}')
    others = [
        tool_key("h2", 0, "read_file", '{"path":"a"}'),
        tool_key("h1", 1, "read_file", '{"path":"a"}'),
        tool_key("h1", 0, "list_dir", '{"path":"a"}'),
        tool_key("h1", 0, "read_file", '{"path":"b"}'),
    ]
    assert len({key, *others}) == 5


def test_entries_round_trip_through_json() -> None:
    entry = llm("k", replayed=True, seq=3)
    assert JournalEntry.from_dict(json.loads(json.dumps(entry.to_dict()))) == entry
    assert JournalEntry.from_dict(tool("t").to_dict()) == tool("t")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"kind": "http"}, "kind"),
        ({"key": ""}, "key"),
        ({"response": "text"}, "response"),
        ({"response": {"content": "x"}}, "needs content"),
        ({"total_tokens": "9"}, "total_tokens"),
        ({"seq": True}, "seq"),
        ({"replayed": 1}, "replayed"),
    ],
)
def test_from_dict_rejects_malformed_entries(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        JournalEntry.from_dict({**llm("k").to_dict(), **change})


def test_replay_hands_out_each_entry_once_in_order_per_key() -> None:
    first, second = llm("a", 10), JournalEntry(LLM, "a", {**REPLY, "content": "again"}, 1, 1, 2)
    replay = Replay([first, llm("b", 5), second, tool("a")])
    assert (replay.calls, replay.tokens) == (3, 17)
    assert replay.take(LLM, "a") is first
    assert replay.take(TOOL, "a") == tool("a")  # same key, other kind: a separate queue
    assert replay.take(LLM, "a") is second
    assert replay.take(LLM, "a") is None  # asked a third time: it was journalled only twice
    assert replay.take(TOOL, "a") is None
    assert replay.take(LLM, "zzz") is None
    assert (replay.taken_calls, replay.taken_tokens) == (2, 12)  # tools are not LLM calls
    assert (replay.calls, replay.tokens) == (3, 17)  # what was there at the start


def test_carry_forward_keeps_what_a_cut_short_replay_did_not_reach() -> None:
    first = [llm("a", seq=1), tool("t"), llm("b", seq=2), llm("a", seq=3), llm("c", seq=4)]
    # the resumed attempt replayed a, t and b, asked something new (d), then crashed
    second = [llm("a", replayed=True), tool("t", replayed=True), llm("b", replayed=True), llm("d")]
    journal = carry_forward(first, second)
    assert journal == [*second, first[3], first[4]]
    replay = Replay(journal)
    assert [replay.take(LLM, k) is not None for k in ("a", "b", "a", "c", "d", "a")] == [
        True,
        True,
        True,
        True,
        True,
        False,
    ]


def test_carry_forward_of_a_complete_replay_is_the_new_attempt() -> None:
    first = [llm("a"), llm("a")]
    second = [llm("a", replayed=True), llm("a", replayed=True), llm("a")]  # a third time, live
    assert carry_forward(first, second) == second
    assert carry_forward([], first) == first
    assert carry_forward(first, []) == first
