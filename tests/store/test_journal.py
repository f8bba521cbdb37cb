"""The journal table: entries written in one transaction, read back per run, instance and attempt."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from rnix.core.journal import LLM, TOOL, JournalEntry, Replay
from rnix.store.db import DB_NAME, Store, StoreError
from rnix.store.journal import append_entries, latest_attempt_entries

RUN = "run1"
REPLY = {"content": "ok", "tool_calls": None, "finish_reason": "stop", "usage": {"total_tokens": 7}}


@pytest.fixture
def store(rnix_home: Path) -> Iterator[Store]:
    with Store.open(rnix_home) as opened:
        yield opened


def llm(key: str, seq: int, *, replayed: bool = False, content: str = "ok") -> JournalEntry:
    return JournalEntry(LLM, key, {**REPLY, "content": content}, 3, 4, 7, replayed, seq)


def test_entries_come_back_as_written(store: Store) -> None:
    entries = [
        llm("h1", 1, content="caf\u00e9 \U0001f600"),
        JournalEntry(TOOL, "t1", {"ok": True, "denied": False, "output": "3 lines", "summary": "s"}, seq=2),
        llm("h2", 3),
    ]
    append_entries(store, RUN, "writer", 1, entries, ts=1.5)
    assert latest_attempt_entries(store, RUN, "writer") == entries
    rows = store.query("SELECT attempt, seq, kind, replayed, ts FROM journal ORDER BY id")
    assert [tuple(row) for row in rows] == [
        (1, 1, "llm", 0, 1.5),
        (1, 2, "tool", 0, 1.5),
        (1, 3, "llm", 0, 1.5),
    ]


def test_reads_are_per_run_and_instance_and_ordered_by_seq(store: Store) -> None:
    append_entries(store, RUN, "writer", 1, [llm("w2", 2), llm("w1", 1)])
    append_entries(store, RUN, "editor", 1, [llm("e1", 1)])
    append_entries(store, "run2", "writer", 1, [llm("other", 1)])
    assert [e.key for e in latest_attempt_entries(store, RUN, "writer")] == ["w1", "w2"]
    assert [e.key for e in latest_attempt_entries(store, RUN, "editor")] == ["e1"]
    assert latest_attempt_entries(store, RUN, "nobody") == []
    assert latest_attempt_entries(store, "run3", "writer") == []


def test_the_latest_attempt_wins_and_an_empty_one_changes_nothing(store: Store) -> None:
    append_entries(store, RUN, "writer", 1, [llm("a", 1), llm("b", 2)])
    # attempt 2 replayed both and went on live; attempt 3 made no call before it stopped
    second = [llm("a", 1, replayed=True), llm("b", 2, replayed=True), llm("c", 3)]
    append_entries(store, RUN, "writer", 2, second)
    append_entries(store, RUN, "writer", 3, [])
    assert latest_attempt_entries(store, RUN, "writer") == second


def test_a_resume_that_crashed_mid_replay_loses_nothing(store: Store) -> None:
    first = [llm("a", 1), llm("b", 2), llm("c", 3)]
    append_entries(store, RUN, "writer", 1, first)
    append_entries(store, RUN, "writer", 2, [llm("a", 1, replayed=True)])  # then the supervisor died
    journal = latest_attempt_entries(store, RUN, "writer")
    assert [(e.key, e.replayed) for e in journal] == [("a", True), ("b", False), ("c", False)]
    replay = Replay(journal)
    assert (replay.calls, replay.tokens) == (3, 21)


def test_a_failing_batch_writes_nothing(store: Store) -> None:
    bad = JournalEntry(None, "x", REPLY, seq=2)  # type: ignore[arg-type]  # kind is NOT NULL
    with pytest.raises(StoreError, match="NOT NULL"):
        append_entries(store, RUN, "writer", 1, [llm("a", 1), bad])
    assert latest_attempt_entries(store, RUN, "writer") == []


def test_undecodable_rows_are_skipped(store: Store, rnix_home: Path) -> None:
    append_entries(store, RUN, "writer", 1, [llm("a", 1), llm("b", 2)])
    with sqlite3.connect(rnix_home / DB_NAME) as conn:
        conn.execute("UPDATE journal SET response = '{broken' WHERE key = 'a'")
    assert [e.key for e in latest_attempt_entries(store, RUN, "writer")] == ["b"]


def test_a_read_only_store_reads_and_cannot_write(store: Store, rnix_home: Path) -> None:
    append_entries(store, RUN, "writer", 1, [llm("a", 1)])
    with Store.open(rnix_home, readonly=True) as reader:
        assert [e.key for e in latest_attempt_entries(reader, RUN, "writer")] == ["a"]
        with pytest.raises(StoreError, match="readonly"):
            append_entries(reader, RUN, "writer", 1, [llm("b", 2)])


def test_a_read_only_store_without_a_database_reads_nothing(tmp_path: Path) -> None:
    with Store.open(tmp_path / "empty", readonly=True) as reader:
        assert latest_attempt_entries(reader, RUN, "writer") == []
