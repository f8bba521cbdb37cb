"""Schema migrations: a fresh database gets every table, reopening is a no-op, racing openers agree."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from rnix.store import migrations
from rnix.store.db import DB_NAME, Store


def _names(path: Path, type_: str) -> set[str]:
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT name FROM sqlite_master WHERE type = ?", (type_,)).fetchall()
    return {row[0] for row in rows if not row[0].startswith("sqlite_")}


def _applied(path: Path) -> list[tuple[str, float]]:
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT name, applied_at FROM _migrations ORDER BY name").fetchall()


def test_fresh_database_gets_every_table_and_index(rnix_home: Path) -> None:
    Store.open(rnix_home).close()
    db = rnix_home / DB_NAME
    assert _names(db, "table") == {"_migrations", "runs", "processes", "events", "ledger", "journal"}
    indexes = {"runs_project_started", "processes_pid", "events_run_id", "ledger_definition"}
    indexes.add("journal_instance")
    assert _names(db, "index") == indexes
    assert [name for name, _ in _applied(db)] == ALL
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_reopening_applies_nothing(rnix_home: Path) -> None:
    Store.open(rnix_home).close()
    before = _applied(rnix_home / DB_NAME)
    with sqlite3.connect(rnix_home / DB_NAME, isolation_level=None) as conn:
        assert migrations.pending(conn) == []
        assert migrations.migrate(conn) == []
    Store.open(rnix_home).close()
    assert _applied(rnix_home / DB_NAME) == before


def test_a_new_migration_is_applied_once(rnix_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    Store.open(rnix_home).close()
    calls: list[str] = []

    def m999_notes(conn: sqlite3.Connection) -> None:
        calls.append("m999")
        conn.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT)")

    monkeypatch.setattr(migrations, "MIGRATIONS", [*migrations.MIGRATIONS, ("m999_notes", m999_notes)])
    Store.open(rnix_home).close()
    Store.open(rnix_home).close()
    assert calls == ["m999"]
    assert "notes" in _names(rnix_home / DB_NAME, "table")
    assert [name for name, _ in _applied(rnix_home / DB_NAME)] == [*ALL, "m999_notes"]


def test_rows_from_before_start_ticks_keep_their_start_times(
    rnix_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """m006 adds the exact start ticks; rows written before have none (the PID check then falls
    back to the start time, to the second) and keep everything else."""
    with monkeypatch.context() as patch:
        patch.setattr(migrations, "MIGRATIONS", migrations.MIGRATIONS[:5])
        Store.open(rnix_home).close()
    with sqlite3.connect(rnix_home / DB_NAME) as conn:
        conn.execute(
            "INSERT INTO runs (id, project, status, supervisor_pid, supervisor_start_time, started_at)"
            " VALUES ('r1', 'p', 'running', 4242, 100.5, 100.0)"
        )
        conn.execute(
            "INSERT INTO processes (run_id, agent, project, state, pid, pid_start_time)"
            " VALUES ('r1', 'a', 'p', 'running', 5000, 101.25)"
        )
    with Store.open(rnix_home) as store:
        run, row = store.run("r1"), store.process_by_pid(5000)
    assert run is not None and row is not None
    assert (run.supervisor_start_time, run.supervisor_start_ticks) == (100.5, None)
    assert (row.pid_start_time, row.pid_start_ticks) == (101.25, None)
    assert [name for name, _ in _applied(rnix_home / DB_NAME)] == ALL


def test_rows_from_before_nodes_run_on_this_machine(rnix_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """m009 adds the cluster node of an agent; rows written before have none (this machine)."""
    with monkeypatch.context() as patch:
        patch.setattr(migrations, "MIGRATIONS", migrations.MIGRATIONS[:8])
        Store.open(rnix_home).close()
    with sqlite3.connect(rnix_home / DB_NAME) as conn:
        conn.execute("INSERT INTO runs (id, project, status, started_at) VALUES ('r1', 'p', 'running', 1.0)")
        conn.execute(
            "INSERT INTO processes (run_id, agent, project, state, pid)"
            " VALUES ('r1', 'a', 'p', 'running', 5000)"
        )
    with Store.open(rnix_home) as store:
        row = store.process_by_pid(5000)
    assert row is not None and (row.agent, row.node) == ("a", None)
    assert [name for name, _ in _applied(rnix_home / DB_NAME)][-1] == "m009_node"


def test_migrations_are_named_and_ordered() -> None:
    assert ALL[:3] == ["m001_initial", "m002_ledger", "m003_journal"]
    assert sorted(ALL) == ALL


def test_a_failing_migration_leaves_nothing_behind(rnix_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def m002_broken(conn: sqlite3.Connection) -> None:
        conn.execute("CREATE TABLE half (x)")
        raise RuntimeError("boom")

    monkeypatch.setattr(migrations, "MIGRATIONS", [*migrations.MIGRATIONS, ("m002_broken", m002_broken)])
    with pytest.raises(RuntimeError, match="boom"):
        Store.open(rnix_home)
    # All or nothing: not even m001 was applied, so the next (fixed) version starts from scratch.
    assert _names(rnix_home / DB_NAME, "table") == set()


ALL = [name for name, _ in migrations.MIGRATIONS]

_OPENER = """
import sys, time
from pathlib import Path
from rnix.store.db import Store
home, go = Path(sys.argv[1]), Path(sys.argv[2])
while not go.exists():
    time.sleep(0.001)
Store.open(home).close()
"""


def test_processes_opening_a_fresh_database_at_once_all_succeed(tmp_path: Path, rnix_home: Path) -> None:
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _OPENER, str(rnix_home), str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    time.sleep(0.3)  # let every interpreter start and reach the busy-wait
    go.touch()
    results = [(*proc.communicate(timeout=30), proc.returncode) for proc in procs]
    assert [(code, err) for _, err, code in results] == [(0, "")] * 4
    assert [name for name, _ in _applied(rnix_home / DB_NAME)] == ALL


def test_threads_opening_a_fresh_database_at_once_all_succeed(rnix_home: Path) -> None:
    barrier = threading.Barrier(6)
    errors: list[BaseException] = []

    def open_once() -> None:
        barrier.wait()
        try:
            Store.open(rnix_home).close()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_once) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    assert [name for name, _ in _applied(rnix_home / DB_NAME)] == ALL
