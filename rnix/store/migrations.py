"""Ordered, named schema migrations of the state database.

Each migration is a function decorated with `@migration`; its name (the function's name, e.g.
`m001_initial`) is recorded in `_migrations(name, applied_at)` once it has run. `migrate(conn)` applies
the missing ones in order, all inside one `BEGIN IMMEDIATE` transaction, so two processes opening a
fresh database at the same moment serialise: the second one waits, then finds nothing left to do.
Applying is idempotent; a database that is up to date costs one read and no write lock.

To change the schema, append a new function (`m002_...`); never edit one that has shipped. Migration
bodies use `conn.execute` one statement at a time: `executescript` would COMMIT the transaction.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable

Migration = Callable[[sqlite3.Connection], None]

MIGRATIONS: list[tuple[str, Migration]] = []


def migration(fn: Migration) -> Migration:
    """Register `fn` as the next migration, named after the function."""
    MIGRATIONS.append((fn.__name__, fn))
    return fn


def migrate(conn: sqlite3.Connection) -> list[str]:
    """Apply every missing migration in order; return the names applied now (often none).

    `conn` must be in autocommit mode (`isolation_level=None`) with a busy timeout set.
    """
    if not pending(conn):
        return []
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute("CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at REAL)")
        done = _applied(conn)  # again: another process may have migrated while we waited for the lock
        names: list[str] = []
        for name, fn in MIGRATIONS:
            if name not in done:
                fn(conn)
                conn.execute("INSERT INTO _migrations (name, applied_at) VALUES (?, ?)", (name, time.time()))
                names.append(name)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return names


def pending(conn: sqlite3.Connection) -> list[str]:
    """The names of the migrations not yet applied to the database behind `conn`."""
    done = _applied(conn)
    return [name for name, _ in MIGRATIONS if name not in done]


def _applied(conn: sqlite3.Connection) -> set[str]:
    exists = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = '_migrations'")
    if exists.fetchone() is None:
        return set()
    return {row[0] for row in conn.execute("SELECT name FROM _migrations")}


def _run(conn: sqlite3.Connection, *statements: str) -> None:
    for statement in statements:
        conn.execute(statement)


@migration
def m001_initial(conn: sqlite3.Connection) -> None:
    _run(
        conn,
        """
        CREATE TABLE runs (
            id TEXT PRIMARY KEY,
            project TEXT NOT NULL,
            compose_file TEXT,
            cwd TEXT,
            status TEXT NOT NULL,
            supervisor_pid INTEGER,
            supervisor_start_time REAL,
            detached INTEGER NOT NULL DEFAULT 0,
            started_at REAL NOT NULL,
            ended_at REAL,
            exit_code INTEGER,
            tokens_used INTEGER NOT NULL DEFAULT 0,
            stop_requested_at REAL,
            stop_grace REAL,
            plan_json TEXT
        )
        """,
        "CREATE INDEX runs_project_started ON runs (project, started_at)",
        """
        CREATE TABLE processes (
            run_id TEXT NOT NULL REFERENCES runs (id),
            agent TEXT NOT NULL,
            project TEXT NOT NULL,
            layer INTEGER,
            state TEXT NOT NULL,
            pid INTEGER,
            pid_start_time REAL,
            ppid INTEGER,
            attempt INTEGER NOT NULL DEFAULT 0,
            budget INTEGER,
            tokens_used INTEGER NOT NULL DEFAULT 0,
            model TEXT,
            kind TEXT,
            priority TEXT,
            intent TEXT,
            depends_on TEXT,
            started_at REAL,
            ended_at REAL,
            elapsed_ms INTEGER,
            exit_code INTEGER,
            signal INTEGER,
            result TEXT,
            error TEXT,
            log_path TEXT,
            out_path TEXT,
            paused_at REAL,
            paused_ms INTEGER NOT NULL DEFAULT 0,
            updated_at REAL,
            PRIMARY KEY (run_id, agent)
        )
        """,
        "CREATE INDEX processes_pid ON processes (pid)",
        """
        CREATE TABLE events (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            run_id TEXT NOT NULL,
            agent TEXT,
            ts REAL NOT NULL,
            kind TEXT NOT NULL,
            data TEXT NOT NULL
        )
        """,
        "CREATE INDEX events_run_id ON events (run_id, id)",
    )


@migration
def m002_ledger(conn: sqlite3.Connection) -> None:
    """The reputation ledger: one append-only row per assessed agent run, keyed by definition."""
    _run(
        conn,
        """
        CREATE TABLE ledger (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            ts REAL NOT NULL,
            definition TEXT NOT NULL,
            run_id TEXT NOT NULL,
            agent TEXT NOT NULL,
            project TEXT,
            status TEXT NOT NULL,
            completed INTEGER NOT NULL,
            tokens_used INTEGER NOT NULL,
            budget INTEGER,
            elapsed_ms INTEGER NOT NULL,
            model TEXT,
            level TEXT,
            sla_passed INTEGER,
            sla TEXT,
            contract_timeout_s REAL,
            contract_max_tokens INTEGER,
            judge_tokens INTEGER NOT NULL DEFAULT 0
        )
        """,
        "CREATE INDEX ledger_definition ON ledger (definition, ts)",
        "ALTER TABLE processes ADD COLUMN sla TEXT",
    )


@migration
def m003_journal(conn: sqlite3.Connection) -> None:
    """The LLM-call journal (rnix.store.journal): what each agent attempt was answered, in order."""
    _run(
        conn,
        """
        CREATE TABLE journal (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            run_id TEXT NOT NULL,
            instance TEXT NOT NULL,
            attempt INTEGER NOT NULL,
            seq INTEGER NOT NULL,
            kind TEXT NOT NULL,
            key TEXT NOT NULL,
            response TEXT NOT NULL,
            prompt_tokens INTEGER,
            completion_tokens INTEGER,
            total_tokens INTEGER,
            replayed INTEGER NOT NULL DEFAULT 0,
            ts REAL NOT NULL
        )
        """,
        "CREATE INDEX journal_instance ON journal (run_id, instance, attempt, seq)",
    )


@migration
def m004_durable_runs(conn: sqlite3.Connection) -> None:
    """Resume: which run a run continues, what each agent reused, and the hash of its spec."""
    _run(
        conn,
        "ALTER TABLE runs ADD COLUMN resumed_from TEXT",
        "ALTER TABLE runs ADD COLUMN control_socket TEXT",
        "ALTER TABLE processes ADD COLUMN reused_from TEXT",
        "ALTER TABLE processes ADD COLUMN spec_hash TEXT",
    )


@migration
def m005_ledger_infra(conn: sqlite3.Connection) -> None:
    """Failures that were not the agent's (provider, credentials, network): kept, not scored."""
    _run(conn, "ALTER TABLE ledger ADD COLUMN infra TEXT")


@migration
def m006_start_ticks(conn: sqlite3.Connection) -> None:
    """Exact start times (clock ticks since boot) of supervisors and agents, for the PID checks of
    `kill` and `down`; NULL in rows written before, which keep the check to the second."""
    _run(
        conn,
        "ALTER TABLE runs ADD COLUMN supervisor_start_ticks INTEGER",
        "ALTER TABLE processes ADD COLUMN pid_start_ticks INTEGER",
    )


@migration
def m007_journal_requests(conn: sqlite3.Connection) -> None:
    """What each answered call asked (the messages it added, masked), for `rnix log PID --llm`."""
    _run(conn, "ALTER TABLE journal ADD COLUMN request TEXT")


@migration
def m008_rate_limited(conn: sqlite3.Connection) -> None:
    """Whether a running agent's model call waits for the provider's limits (`rate_limited` in ps)."""
    _run(conn, "ALTER TABLE processes ADD COLUMN rate_limited INTEGER NOT NULL DEFAULT 0")


@migration
def m009_node(conn: sqlite3.Connection) -> None:
    """The cluster node an agent runs on (`NODE` in ps and top); NULL: the supervisor's machine."""
    _run(conn, "ALTER TABLE processes ADD COLUMN node TEXT")
