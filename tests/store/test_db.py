"""The state database: projections of every event kind, reads, read-only use, concurrent writers; paths."""

from __future__ import annotations

import os
import re
import sqlite3
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rnix.core import events as ev
from rnix.core.events import Record as Event
from rnix.errors import RnixError
from rnix.store import db, projections
from rnix.store.db import DB_NAME, Store, StoreError, StoreLocked
from rnix.store.paths import home_dir, new_run_id, run_dir, runtime_dir

T0 = 1_700_000_000.0
RUN = "a1b2c3d4e5f6"


class K:
    """The stored kinds of the events these tests write."""

    RUN_STARTED = ev.RunStarted.KIND
    RUN_STOP_REQUESTED = ev.RunStopRequested.KIND
    RUN_FINISHED = ev.RunFinished.KIND
    AGENT_PLANNED = ev.InstancePlanned.KIND
    AGENT_STARTED = ev.InstanceStarted.KIND
    AGENT_SIGNALLED = ev.InstanceSignalled.KIND
    AGENT_PAUSED = ev.InstancePaused.KIND
    AGENT_RESUMED = ev.InstanceResumed.KIND
    AGENT_EXITED = ev.InstanceExited.KIND
    AGENT_SKIPPED = ev.InstanceSkipped.KIND
    AGENT_ASSESSED = ev.InstanceAssessed.KIND
    LLM_CALL = ev.LlmCall.KIND
    AGENT_THROTTLED = ev.InstanceThrottled.KIND


def event(kind: str, agent: str | None = None, ts: float = T0, run_id: str = RUN, /, **data: Any) -> Event:
    return Event(run_id, ts, ev.decode(kind, data, agent))


def started_run(run_id: str = RUN, project: str = "demo", ts: float = T0, **extra: Any) -> Event:
    data: dict[str, Any] = {
        "project": project,
        "compose_file": "/p/rnix-compose.yaml",
        "cwd": "/p",
        "supervisor_pid": 4242,
        "supervisor_start_time": T0 - 1,
        "supervisor_start_ticks": 1234,
        "detached": True,
        "plan": {"layers": [["writer"], ["reviewer"]]},
    }
    data.update(extra)
    return event(K.RUN_STARTED, None, ts, run_id, **data)


def planned(agent: str, layer: int = 0, run_id: str = RUN, **extra: Any) -> Event:
    data: dict[str, Any] = {"layer": layer, "depends_on": [], "model": "gpt-x", "budget": 1000}
    data.update(extra)
    return event(K.AGENT_PLANNED, agent, T0, run_id, **data)


def agent_started(agent: str, ts: float = T0 + 1, run_id: str = RUN, **extra: Any) -> Event:
    data: dict[str, Any] = {"attempt": 0, "pid": 5000, "pid_start_time": ts, "pid_start_ticks": 5678}
    data["budget"] = 1000
    data.update(extra)
    return event(K.AGENT_STARTED, agent, ts, run_id, **data)


@pytest.fixture
def store(rnix_home: Path) -> Iterator[Store]:
    with Store.open(rnix_home) as opened:
        yield opened


def process(store: Store, agent: str, run_id: str = RUN) -> db.ProcessRow:
    (row,) = [p for p in store.processes(run_id=run_id) if p.agent == agent]
    return row


def the_run(store: Store, run_id: str = RUN) -> db.RunRow:
    row = store.run(run_id)
    assert row is not None
    return row


# -- opening -----------------------------------------------------------------------------------------


def test_open_creates_a_private_home_with_a_wal_database(rnix_home: Path, store: Store) -> None:
    assert stat.S_IMODE(rnix_home.stat().st_mode) == 0o700
    with sqlite3.connect(rnix_home / DB_NAME) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert store.path == rnix_home / DB_NAME


# -- projections -------------------------------------------------------------------------------------


def test_run_started_inserts_a_running_run(store: Store) -> None:
    store.append([started_run()])
    run = the_run(store)
    assert (run.id, run.project, run.compose_file, run.cwd) == (RUN, "demo", "/p/rnix-compose.yaml", "/p")
    assert (run.status, run.active, run.started_at, run.ended_at) == ("running", True, T0, None)
    assert (run.supervisor_pid, run.supervisor_start_time, run.detached) == (4242, T0 - 1, True)
    assert run.supervisor_start_ticks == 1234
    assert (run.tokens_used, run.exit_code, run.stop_requested_at) == (0, None, None)
    assert run.plan == {"layers": [["writer"], ["reviewer"]]}


def test_agent_planned_inserts_a_pending_process(store: Store) -> None:
    store.append(
        [
            started_run(),
            planned("reviewer", layer=1, depends_on=["writer"], priority="high", intent="review", kind="llm"),
        ]
    )
    row = process(store, "reviewer")
    assert (row.state, row.project, row.layer, row.depends_on) == ("pending", "demo", 1, ("writer",))
    assert (row.model, row.budget, row.priority, row.intent, row.kind) == (
        "gpt-x",
        1000,
        "high",
        "review",
        "llm",
    )
    assert (row.pid, row.attempt, row.tokens_used, row.paused_ms, row.updated_at) == (None, 0, 0, 0, T0)
    assert not row.terminal


def test_agent_started_runs_the_process_under_the_supervisor(store: Store) -> None:
    store.append(
        [
            started_run(),
            planned("writer"),
            agent_started("writer", attempt=0, budget=800, log_path="/r/w.err", out_path="/r/w.out"),
        ]
    )
    row = process(store, "writer")
    assert (row.state, row.pid, row.pid_start_time, row.ppid) == ("running", 5000, T0 + 1, 4242)
    assert row.pid_start_ticks == 5678
    assert (row.attempt, row.budget, row.started_at) == (0, 800, T0 + 1)
    assert (row.log_path, row.out_path) == ("/r/w.err", "/r/w.out")


def test_agent_started_on_another_node_records_the_node_and_no_ppid(store: Store) -> None:
    store.append([started_run(), planned("writer"), planned("reviewer", layer=1)])
    store.append([agent_started("writer", node="worker-1"), agent_started("reviewer", pid=5001)])
    remote, local = process(store, "writer"), process(store, "reviewer")
    assert (remote.node, remote.pid, remote.ppid) == ("worker-1", 5000, None)  # not our child
    assert (local.node, local.pid, local.ppid) == (None, 5001, 4242)
    assert store.process_by_pid(5000) == remote
    store.append([agent_started("writer", ts=T0 + 5, attempt=1, pid=6000)])  # the retry runs here
    assert (process(store, "writer").node, process(store, "writer").ppid) == (None, 4242)


def test_a_retry_clears_the_previous_attempts_ending(store: Store) -> None:
    failed = {"state": "backoff", "exit_code": 1, "signal": None, "tokens_used": 30, "elapsed_ms": 900}
    store.append(
        [
            started_run(),
            planned("writer"),
            agent_started("writer", ts=T0 + 1),
            event(K.AGENT_EXITED, "writer", T0 + 2, **failed, error="crashed", final=False),
        ]
    )
    between = process(store, "writer")
    assert (between.state, between.exit_code, between.error, between.ended_at) == (
        "backoff",
        1,
        "crashed",
        T0 + 2,
    )
    store.append([agent_started("writer", ts=T0 + 3, attempt=1, pid=5001)])
    row = process(store, "writer")
    assert (row.state, row.attempt, row.pid, row.started_at) == ("running", 1, 5001, T0 + 3)
    assert (row.ended_at, row.exit_code, row.signal, row.error, row.elapsed_ms) == (
        None,
        None,
        None,
        None,
        None,
    )
    assert row.tokens_used == 30  # usage is cumulative over attempts


def test_llm_call_sets_the_agents_usage_and_the_runs_sum(store: Store) -> None:
    store.append([started_run(), planned("writer"), planned("reviewer", layer=1)])
    store.append([agent_started("writer"), agent_started("reviewer", pid=5001)])
    store.append(
        [
            event(K.LLM_CALL, "writer", T0 + 2, used=120, total_tokens=120),
            event(K.LLM_CALL, "writer", T0 + 3, used=300, total_tokens=180),
            event(K.LLM_CALL, "reviewer", T0 + 4, used=50, total_tokens=50),
            event(K.LLM_CALL, "reviewer", T0 + 5, status="rate_limited"),  # no `used`: no change
        ]
    )
    assert (process(store, "writer").tokens_used, process(store, "reviewer").tokens_used) == (300, 50)
    assert the_run(store).tokens_used == 350


def test_agent_throttled_marks_a_live_agent_rate_limited_until_the_wait_or_the_attempt_ends(
    store: Store,
) -> None:
    store.append([started_run(), planned("writer"), agent_started("writer", ts=T0 + 1)])
    assert process(store, "writer").rate_limited is False
    store.append([event(K.AGENT_THROTTLED, "writer", T0 + 2, waiting=True, reason="http_429", until=T0 + 3)])
    assert process(store, "writer").rate_limited is True
    store.append([event(K.AGENT_PAUSED, "writer", T0 + 2.5, pid=5000)])
    assert process(store, "writer").rate_limited is True  # the gateway's wait goes on
    store.append([event(K.AGENT_THROTTLED, "writer", T0 + 3, waiting=False, reason="http_429")])
    assert process(store, "writer").rate_limited is False
    store.append(
        [
            event(K.AGENT_RESUMED, "writer", T0 + 4, pid=5000),
            event(K.AGENT_THROTTLED, "writer", T0 + 5, waiting=True, reason="max_concurrency"),
            event(K.AGENT_EXITED, "writer", T0 + 6, state="backoff", exit_code=1, final=False),
            event(K.AGENT_THROTTLED, "writer", T0 + 6.5, waiting=True, reason="max_concurrency"),
        ]
    )
    assert process(store, "writer").rate_limited is False  # ended with the attempt; late report ignored
    store.append(
        [
            agent_started("writer", ts=T0 + 7, attempt=1),
            event(K.AGENT_THROTTLED, "writer", T0 + 8, waiting=True, reason="rpm"),
        ]
    )
    assert process(store, "writer").rate_limited is True
    store.append([event(K.RUN_FINISHED, None, T0 + 9, status="cancelled", exit_code=130)])
    assert process(store, "writer").rate_limited is False


def test_pause_and_resume_accumulate_paused_time(store: Store) -> None:
    store.append([started_run(), planned("writer"), agent_started("writer", ts=T0)])
    store.append([event(K.AGENT_PAUSED, "writer", T0 + 10, pid=5000)])
    paused = process(store, "writer")
    assert (paused.state, paused.paused_at) == ("paused", T0 + 10)
    store.append(
        [
            event(K.AGENT_RESUMED, "writer", T0 + 12.5, pid=5000),
            event(K.AGENT_PAUSED, "writer", T0 + 20, pid=5000),
            event(K.AGENT_RESUMED, "writer", T0 + 21, pid=5000),
        ]
    )
    row = process(store, "writer")
    assert (row.state, row.paused_at, row.paused_ms) == ("running", None, 3500)


def test_agent_exited_records_how_it_ended(store: Store) -> None:
    store.append([started_run(), planned("writer"), agent_started("writer", ts=T0)])
    store.append(
        [
            event(
                K.AGENT_EXITED,
                "writer",
                T0 + 9,
                attempt=0,
                state="failed",
                exit_code=None,
                signal=9,
                tokens_used=77,
                elapsed_ms=9000,
                result={"text": "partial"},
                error="killed",
                final=True,
            )
        ]
    )
    row = process(store, "writer")
    assert (row.state, row.exit_code, row.signal, row.tokens_used) == ("failed", None, 9, 77)
    assert (row.elapsed_ms, row.result, row.error, row.ended_at) == (
        9000,
        '{"text":"partial"}',
        "killed",
        T0 + 9,
    )
    assert row.terminal
    assert the_run(store).tokens_used == 77


def test_exiting_while_paused_stops_the_pause_clock(store: Store) -> None:
    store.append([started_run(), planned("writer"), agent_started("writer", ts=T0)])
    store.append([event(K.AGENT_PAUSED, "writer", T0 + 1)])
    store.append([event(K.AGENT_EXITED, "writer", T0 + 3, state="cancelled", signal=15, final=True)])
    store.append([event(K.AGENT_RESUMED, "writer", T0 + 4)])  # late: must not revive it
    row = process(store, "writer")
    assert (row.state, row.paused_at, row.paused_ms) == ("cancelled", None, 2000)


def test_elapsed_time_of_an_exited_agent_leaves_out_its_pauses(store: Store) -> None:
    store.append([started_run(), planned("a"), agent_started("a", ts=T0), planned("b"), agent_started("b")])
    pauses = [event(K.AGENT_PAUSED, "a", T0 + 1), event(K.AGENT_RESUMED, "a", T0 + 3)]
    store.append([*pauses, event(K.AGENT_PAUSED, "b", T0 + 4)])
    store.append(
        [
            event(K.AGENT_EXITED, "a", T0 + 9, state="completed", elapsed_ms=9000, final=True),
            event(K.AGENT_EXITED, "b", T0 + 9, state="cancelled", elapsed_ms=8000, final=True),
        ]
    )
    assert (process(store, "a").elapsed_ms, process(store, "b").elapsed_ms) == (7000, 3000)


def test_data_version_moves_only_when_another_connection_commits(rnix_home: Path, store: Store) -> None:
    with Store.open(rnix_home, readonly=True) as reader:
        before = reader.data_version()
        assert reader.data_version() == before
        store.append([started_run()])
        assert reader.data_version() != before
    with Store.open(rnix_home / "nowhere", readonly=True) as missing:
        assert missing.data_version() is None


def test_reads_inside_reading_see_one_state(rnix_home: Path, store: Store) -> None:
    store.append([started_run()])
    with Store.open(rnix_home, readonly=True) as reader, reader.reading():
        assert [r.status for r in reader.runs()] == ["running"]
        store.append([event(K.RUN_FINISHED, None, T0 + 5, status="completed")])
        assert [r.status for r in reader.runs()] == ["running"]  # still the state it began with
    with Store.open(rnix_home, readonly=True) as reader:
        assert [r.status for r in reader.runs()] == ["completed"]


def test_a_reader_with_a_short_busy_timeout_gives_up_quickly(rnix_home: Path, store: Store) -> None:
    store.append([started_run()])
    store.close()  # exclusive locking mode needs the only connection to the file
    holder = sqlite3.connect(rnix_home / DB_NAME, isolation_level=None)
    try:
        holder.execute("PRAGMA locking_mode = EXCLUSIVE")  # keeps the file lock, so readers wait too
        holder.execute("BEGIN EXCLUSIVE")
        holder.execute("UPDATE runs SET status = 'failed'")
        holder.execute("COMMIT")
        started = time.monotonic()
        with Store.open(rnix_home, readonly=True, busy_timeout_ms=100) as reader, pytest.raises(StoreLocked):
            reader.runs()
        assert time.monotonic() - started < 2
    finally:
        holder.close()
    with Store.open(rnix_home, readonly=True, busy_timeout_ms=100) as reader:
        assert [r.status for r in reader.runs()] == ["failed"]


def test_agent_skipped_records_the_reason(store: Store) -> None:
    store.append([started_run(), planned("reviewer", layer=1)])
    store.append([event(K.AGENT_SKIPPED, "reviewer", T0 + 5, reason="writer failed")])
    row = process(store, "reviewer")
    assert (row.state, row.error, row.ended_at) == ("skipped", "writer failed", T0 + 5)


def test_request_stop_sets_the_runs_stop_fields_and_logs_it(store: Store) -> None:
    store.append([started_run()])
    store.request_stop(RUN, 2.5, T0 + 7)
    run = the_run(store)
    assert (run.stop_requested_at, run.stop_grace, run.status) == (T0 + 7, 2.5, "running")
    (logged,) = store.events(RUN, kinds=[K.RUN_STOP_REQUESTED])
    assert logged.data == {
        "grace": 2.5,
        "by_pid": os.getpid(),
        "reason": "compose down",
        "failure": False,
        "v": 1,
    }
    store.request_stop(RUN, None, T0 + 8)
    assert (the_run(store).stop_requested_at, the_run(store).stop_grace) == (T0 + 8, None)


def test_run_finished_ends_the_run_and_anything_left_of_it(store: Store) -> None:
    store.append([started_run(), planned("writer"), planned("reviewer", layer=1), agent_started("writer")])
    store.append([event(K.AGENT_EXITED, "writer", T0 + 2, state="completed", exit_code=0, tokens_used=10)])
    store.append([event(K.RUN_FINISHED, None, T0 + 3, status="failed", exit_code=1, tokens_used=99)])
    run = the_run(store)
    assert (run.status, run.exit_code, run.ended_at, run.tokens_used, run.active) == (
        "failed",
        1,
        T0 + 3,
        99,
        False,
    )
    assert process(store, "writer").state == "completed"
    assert (process(store, "reviewer").state, process(store, "reviewer").ended_at) == ("cancelled", T0 + 3)


def test_mark_run_lost_cancels_unfinished_agents(store: Store) -> None:
    store.append([started_run(), planned("writer"), planned("reviewer", layer=1), agent_started("writer")])
    store.append([event(K.AGENT_EXITED, "writer", T0 + 2, state="completed", exit_code=0, tokens_used=5)])
    store.append([agent_started("reviewer", ts=T0 + 3, pid=5001)])
    assert store.mark_run_lost(RUN, T0 + 60) is True
    run = the_run(store)
    assert (run.status, run.ended_at, run.exit_code, run.tokens_used) == ("lost", T0 + 60, None, 5)
    assert [(p.agent, p.state) for p in store.processes(run_id=RUN)] == [
        ("writer", "completed"),
        ("reviewer", "cancelled"),
    ]
    assert process(store, "reviewer").ended_at == T0 + 60
    assert store.mark_run_lost(RUN, T0 + 70) is False  # already over: left alone
    assert the_run(store).ended_at == T0 + 60
    assert store.mark_run_lost("nosuchrun", T0) is False


def test_unknown_kinds_runs_and_agents_are_stored_not_projected(store: Store) -> None:
    store.append(
        [
            event("sla_evaluated", "writer", T0, score=0.9),
            planned("writer", run_id="ghost"),
            agent_started("writer", run_id="ghost"),
            event(K.RUN_FINISHED, None, T0, "ghost", status="completed"),
            started_run(),
            agent_started("nobody"),
            event(K.AGENT_EXITED, None, T0, state="failed"),  # an agent kind without an agent
        ]
    )
    assert store.run("ghost") is None
    assert store.processes() == []
    assert [e.kind for e in store.events("ghost")] == [K.AGENT_PLANNED, K.AGENT_STARTED, K.RUN_FINISHED]
    assert [e.kind for e in store.events(RUN)] == [
        "sla_evaluated",
        K.RUN_STARTED,
        K.AGENT_STARTED,
        K.AGENT_EXITED,
    ]


def test_event_data_that_is_not_json_is_stored_as_text(store: Store) -> None:
    store.append([event("note", "writer", T0, path=Path("/x/y"), nested={"n": [1, 2.5, None]})])
    (row,) = store.events(RUN)
    assert row.data == {"path": "/x/y", "nested": {"n": [1, 2.5, None]}}
    assert (row.run_id, row.agent, row.ts, row.kind) == (RUN, "writer", T0, "note")
    assert row.to_record() == Event(RUN, T0, ev.Unknown("note", row.data, "writer"))


def test_a_failed_append_leaves_nothing_behind(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(conn: sqlite3.Connection, r: Event, e: ev.Event) -> None:
        raise sqlite3.IntegrityError("boom")

    monkeypatch.setitem(projections.PROJECTIONS, ev.InstancePlanned, broken)
    with pytest.raises(StoreError, match="boom"):
        store.append([started_run(), planned("writer")])
    assert (store.runs(), store.events(RUN)) == ([], [])


# -- reads -------------------------------------------------------------------------------------------


def test_runs_newest_first_with_filters(store: Store) -> None:
    store.append(
        [
            started_run("r1", "demo", T0),
            started_run("r2", "other", T0 + 1),
            started_run("r3", "demo", T0 + 2),
            event(K.RUN_FINISHED, None, T0 + 3, "r3", status="completed", exit_code=0),
        ]
    )
    assert [r.id for r in store.runs()] == ["r3", "r2", "r1"]
    assert [r.id for r in store.runs(project="demo")] == ["r3", "r1"]
    assert [r.id for r in store.runs(active_only=True)] == ["r2", "r1"]
    assert [r.id for r in store.runs(limit=2)] == ["r3", "r2"]
    latest = store.latest_run("demo")
    assert latest is not None and latest.id == "r3"
    assert store.latest_run("nothing") is None
    assert store.run("nope") is None


def test_processes_ordered_by_run_start_layer_and_name(store: Store) -> None:
    store.append(
        [
            started_run("new", "demo", T0 + 10),
            planned("b", 0, "new"),
            started_run("old", "other", T0),
            planned("z", 1, "old"),
            planned("y", 0, "old"),
            planned("a", 1, "old"),
            event(K.AGENT_SKIPPED, "z", T0 + 1, "old", reason="y failed"),
        ]
    )
    assert [(p.run_id, p.agent) for p in store.processes()] == [
        ("old", "y"),
        ("old", "a"),
        ("old", "z"),
        ("new", "b"),
    ]
    assert [p.agent for p in store.processes(include_finished=False)] == ["y", "a", "b"]
    assert [p.agent for p in store.processes(project="demo")] == ["b"]
    assert [p.agent for p in store.processes(run_id="old", include_finished=False)] == ["y", "a"]


def test_process_by_pid_finds_the_latest_holder(store: Store) -> None:
    store.append(
        [started_run("r1", ts=T0), planned("w", run_id="r1"), agent_started("w", T0 + 1, "r1", pid=77)]
    )
    store.append(
        [started_run("r2", ts=T0 + 5), planned("v", run_id="r2"), agent_started("v", T0 + 6, "r2", pid=77)]
    )
    found = store.process_by_pid(77)
    assert found is not None and (found.run_id, found.agent) == ("r2", "v")
    assert store.process_by_pid(78) is None


def test_events_filters(store: Store) -> None:
    store.append([started_run(), planned("w"), planned("v"), agent_started("w"), agent_started("v", pid=2)])
    store.append([event(K.LLM_CALL, "w", T0 + 2, used=i) for i in range(5)])
    every = store.events(RUN)
    assert len(every) == 10 and [e.id for e in every] == sorted(e.id for e in every)
    assert [e.kind for e in store.events(RUN, agent="v")] == [K.AGENT_PLANNED, K.AGENT_STARTED]
    calls = store.events(RUN, kinds={K.LLM_CALL})
    assert [e.data["used"] for e in calls] == [0, 1, 2, 3, 4]
    assert [e.data["used"] for e in store.events(RUN, kinds=[K.LLM_CALL], after_id=calls[1].id, limit=2)] == [
        2,
        3,
    ]
    assert store.events(RUN, kinds=[]) == []
    assert store.events("other") == []


# -- read-only use -----------------------------------------------------------------------------------


def test_readonly_on_a_missing_database_is_empty_and_creates_nothing(rnix_home: Path) -> None:
    with Store.open(rnix_home, readonly=True) as store:
        assert (store.runs(), store.processes(), store.events(RUN)) == ([], [], [])
        assert (store.run(RUN), store.latest_run("demo"), store.process_by_pid(1)) == (None, None, None)
        with pytest.raises(StoreError, match="read-only"):
            store.append([started_run()])
    assert not rnix_home.exists()


def test_a_readonly_store_opened_too_early_sees_the_database_once_it_exists(rnix_home: Path) -> None:
    with Store.open(rnix_home, readonly=True) as reader:
        assert reader.runs() == []
        with Store.open(rnix_home) as writer:
            writer.append([started_run()])
        assert [r.id for r in reader.runs()] == [RUN]


def test_readonly_reads_while_a_writer_holds_the_lock(rnix_home: Path, store: Store) -> None:
    store.append([started_run()])
    writer = sqlite3.connect(rnix_home / DB_NAME, isolation_level=None)
    try:
        writer.execute("BEGIN IMMEDIATE")
        writer.execute("UPDATE runs SET status = 'failed'")
        started = time.monotonic()
        with Store.open(rnix_home, readonly=True) as reader:
            assert [(r.id, r.status) for r in reader.runs()] == [(RUN, "running")]  # the committed state
        assert time.monotonic() - started < 1
    finally:
        writer.execute("ROLLBACK")
        writer.close()


def test_a_lock_held_past_the_busy_timeout_is_store_locked(
    rnix_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(db, "BUSY_TIMEOUT_MS", 50)
    with Store.open(rnix_home) as store:
        holder = sqlite3.connect(rnix_home / DB_NAME, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        with pytest.raises(StoreLocked):
            store.append([started_run()])
        holder.execute("ROLLBACK")
        holder.close()
        store.append([started_run()])
        assert [r.id for r in store.runs()] == [RUN]


# -- concurrent writer processes ---------------------------------------------------------------------

_WRITER = """
import sys, time
from pathlib import Path
from rnix.core.events import Record, decode
from rnix.store.db import Store
def event(kind, agent, ts, run, **data):
    return Record(run, ts, decode(kind, data, agent))
home, name, count, go = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), Path(sys.argv[4])
while not go.exists():
    time.sleep(0.001)
with Store.open(home) as store:
    store.append([event("run_started", None, time.time(), name, project=name, supervisor_pid=1)])
    store.append([event("agent_planned", "a", time.time(), name, layer=0)])
    for i in range(count):
        store.append([event("llm_call", "a", time.time(), name, used=i, model=name)])
"""


def test_four_writer_processes_lose_nothing(tmp_path: Path, rnix_home: Path) -> None:
    go, count = tmp_path / "go", 300
    names = [f"writer{n}" for n in range(4)]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(rnix_home), name, str(count), str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in names
    ]
    time.sleep(0.3)  # every interpreter starts, then all open the fresh database at once
    go.touch()
    outcomes = [(*proc.communicate(timeout=60), proc.returncode) for proc in procs]
    assert [(code, err) for _, err, code in outcomes] == [(0, "")] * 4
    with Store.open(rnix_home, readonly=True) as store:
        for name in names:
            calls = store.events(name, kinds=[K.LLM_CALL])
            assert [e.data["used"] for e in calls] == list(range(count))
            assert {e.data["model"] for e in calls} == {name}
            assert the_run(store, name).tokens_used == count - 1
        assert sum(len(store.events(name)) for name in names) == 4 * (count + 2)


# -- paths -------------------------------------------------------------------------------------------


def test_home_and_run_dirs_are_private(tmp_path: Path) -> None:
    home = home_dir(tmp_path / "state" / "rnix")
    path = run_dir(home, RUN)
    assert path == home / "runs" / RUN and path.is_dir()
    for made in (home, home / "runs", path):
        assert stat.S_IMODE(made.stat().st_mode) == 0o700
    assert run_dir(home, RUN) == path  # again: fine
    with pytest.raises(ValueError):
        run_dir(home, "../escape")


def test_runtime_dir_under_xdg_runtime_dir(tmp_path: Path) -> None:
    path = runtime_dir({"XDG_RUNTIME_DIR": str(tmp_path)})
    assert path == tmp_path / "rnix"
    assert stat.S_IMODE(path.stat().st_mode) == 0o700
    assert runtime_dir({"XDG_RUNTIME_DIR": str(tmp_path)}) == path


def test_runtime_dir_refuses_a_directory_others_can_open(tmp_path: Path) -> None:
    (tmp_path / "rnix").mkdir()
    os.chmod(tmp_path / "rnix", 0o777)
    with pytest.raises(RnixError) as caught:
        runtime_dir({"XDG_RUNTIME_DIR": str(tmp_path)})
    assert "open to other users (mode 777)" in caught.value.message
    assert caught.value.hint and "remove it" in caught.value.hint


def test_runtime_dir_refuses_a_symlink(tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir(mode=0o700)
    (tmp_path / "rnix").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(RnixError, match="not a directory"):
        runtime_dir({"XDG_RUNTIME_DIR": str(tmp_path)})


def test_runtime_dir_falls_back_to_tmp(tmp_path: Path) -> None:
    path = runtime_dir({"XDG_RUNTIME_DIR": str(tmp_path / "missing")})
    assert path == Path(f"/tmp/rnix-{os.getuid()}")
    assert len(str(path / "0123456789ab.sock")) < 100


def test_run_ids_are_unique_and_12_hex() -> None:
    ids = {new_run_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(re.fullmatch(r"[0-9a-f]{12}", run_id) for run_id in ids)


def test_open_scratch_writes_to_a_copy_when_the_file_cannot_be_written(
    rnix_home: Path, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.append([started_run()])
    store.close()
    with Store.open_scratch(rnix_home) as writable:  # a healthy disk: the real database
        assert writable.scratch is None
    monkeypatch.setattr(db.preflight, "filesystem_cause", lambda path: "its filesystem is read-only")
    with Store.open_scratch(rnix_home) as copy:
        assert copy.scratch is not None and "read-only" in copy.scratch.message
        assert copy.mark_run_lost(RUN, T0 + 9)
        assert copy.run(RUN).status == "lost"  # type: ignore[union-attr]
    with Store.open(rnix_home, readonly=True) as reader:
        assert reader.run(RUN).status == "running"  # type: ignore[union-attr]
