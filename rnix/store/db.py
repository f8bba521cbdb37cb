"""The state database `<home>/rnix.db`: an append-only event log and its two projections.

Contract:
- One SQLite file in WAL mode, `busy_timeout` 5000 ms, foreign keys on. Several supervisors (separate
  processes) write at once: every write is one `BEGIN IMMEDIATE` transaction, so writers queue on the
  lock instead of failing half-way. Readers (`ps`, `top`, `logs`) open the file read-only and never
  block writers nor wait for them.
- `Store.open(home)` creates the home and the database and applies migrations. `readonly=True` never
  creates anything: on a missing (or not yet migrated) database every read returns nothing, and
  the next read looks again, so a long-lived reader sees the database once a writer has made it.
- `append(events)` stores the events and updates `runs` and `processes` in the same transaction, in
  event order, following the table in `rnix.core.events` (`rnix.store.projections` does the work).
  Unknown kinds, and events about a run or an agent the projections do not know, are stored but not
  projected; they never raise.
- A `Store` holds one connection: use it from one thread (the Recorder opens its own).
- SQLite failures surface as `StoreError`; a lock still held after the busy timeout as `StoreLocked`;
  a write the filesystem refused (full, read-only, I/O error) as `StoreUnwritable` (exit status 3),
  whose message names the file and the cause.
- Reading needs no write. A read-only store whose filesystem is full (SQLite cannot create its
  shared-memory file) reads the file as immutable when no write-ahead log is pending, and
  `Store.open_scratch(home)` is a writable store, or when the file cannot be written, a copy of it in
  memory: a listing can then show a lost run as lost without recording it (`scratch` says why).
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import quote

from rnix.core import events as ev
from rnix.core.events import Record
from rnix.core.lifecycle import RunStatus
from rnix.errors import ExitCode, HomeUnusable, RnixError
from rnix.store import migrations, preflight, projections
from rnix.store.paths import home_dir

DB_NAME = "rnix.db"
BUSY_TIMEOUT_MS = 5000
_SETUP_DEADLINE = 30.0  # seconds to keep retrying WAL setup and migrations on a busy fresh file
_T = TypeVar("_T")


class StoreError(RnixError):
    """The state database could not be read or written."""

    code = "STORE"


class StoreLocked(StoreError):
    """Another process held the database's write lock for longer than the busy timeout."""

    code = "STORE_LOCKED"


class StoreUnwritable(StoreError, HomeUnusable):
    """The filesystem refused a write to the database (full, read-only, I/O error, permission)."""

    code = "STORE_UNWRITABLE"
    exit_code = ExitCode.STATE

    def __init__(self, message: str, hint: str | None = None, *, path: Path, cause: str) -> None:
        super().__init__(message, hint)
        self.path, self.cause = path, cause


@dataclass(frozen=True)
class RunRow:
    id: str
    project: str
    compose_file: str | None
    cwd: str | None
    status: str  # a RunStatus value
    supervisor_pid: int | None
    supervisor_start_time: float | None
    detached: bool
    started_at: float
    ended_at: float | None
    exit_code: int | None
    tokens_used: int
    stop_requested_at: float | None
    stop_grace: float | None
    plan_json: str | None
    resumed_from: str | None = None  # the run whose completed agents and journal this one reuses
    control_socket: str | None = None
    supervisor_start_ticks: int | None = None  # None in runs recorded before rnix stored ticks

    @property
    def active(self) -> bool:
        return self.status == RunStatus.RUNNING.value

    @property
    def plan(self) -> Any:
        """The plan recorded by run_started, decoded (None when there was none)."""
        return None if self.plan_json is None else json.loads(self.plan_json)


@dataclass(frozen=True)
class ProcessRow:
    run_id: str
    agent: str
    project: str
    layer: int | None
    state: str  # an AgentState value
    pid: int | None
    pid_start_time: float | None
    ppid: int | None
    attempt: int
    budget: int | None
    tokens_used: int
    model: str | None
    kind: str | None
    priority: str | None
    intent: str | None
    depends_on: tuple[str, ...]
    started_at: float | None
    ended_at: float | None
    elapsed_ms: int | None
    exit_code: int | None
    signal: int | None
    result: str | None
    error: str | None
    log_path: str | None
    out_path: str | None
    paused_at: float | None
    paused_ms: int
    updated_at: float | None
    sla: dict[str, Any] | None = None  # the SLA verdict, once assessed
    reused_from: str | None = None  # completed in that earlier run, not run again
    spec_hash: str | None = None
    pid_start_ticks: int | None = None  # None in rows recorded before rnix stored ticks
    rate_limited: bool = False  # a model call waits for the provider's limits (while it runs)
    # The cluster node the agent's latest attempt runs on, where `pid` lives; None: the
    # supervisor's machine (and rows recorded before agents could run elsewhere).
    node: str | None = None

    @property
    def terminal(self) -> bool:
        return self.state in _TERMINAL_STATES


@dataclass(frozen=True)
class EventRow:
    id: int
    run_id: str
    agent: str | None
    ts: float
    kind: str
    data: dict[str, Any]

    def to_record(self) -> Record:
        """The typed event (`rnix.core.events.Unknown` for a kind this version does not know)."""
        return Record(self.run_id, self.ts, ev.decode(self.kind, self.data, self.agent))


_TERMINAL_STATES = projections.TERMINAL_STATES
_RUN_COLUMNS = ", ".join(f"r.{f.name}" for f in fields(RunRow))
_PROCESS_COLUMNS = ", ".join(f"p.{f.name}" for f in fields(ProcessRow))


@dataclass(frozen=True)
class LedgerRow:
    """One reputation-ledger record (see migration m002_ledger)."""

    id: int
    ts: float
    definition: str
    run_id: str
    agent: str
    project: str | None
    status: str
    completed: bool
    tokens_used: int
    budget: int | None
    elapsed_ms: int
    model: str | None
    level: str | None
    sla_passed: bool | None
    sla: dict[str, Any] | None
    contract_timeout_s: float | None
    contract_max_tokens: int | None
    judge_tokens: int
    infra: str | None = None  # why it failed when that was not the agent's fault; not scored


_LEDGER_COLUMNS = ", ".join(f.name for f in fields(LedgerRow))


class Store:
    """A connection to `<home>/rnix.db`; see the module docstring for the contract."""

    def __init__(
        self,
        conn: sqlite3.Connection | None,
        path: Path,
        *,
        readonly: bool,
        busy_timeout_ms: int | None = None,
    ) -> None:
        self._conn = conn
        self._closed = False
        self.path = path
        self.readonly = readonly
        self.scratch: StoreUnwritable | None = None  # why this is a copy in memory (writes are not kept)
        self._busy_timeout_ms = BUSY_TIMEOUT_MS if busy_timeout_ms is None else busy_timeout_ms

    @classmethod
    def open(cls, home: Path, *, readonly: bool = False, busy_timeout_ms: int | None = None) -> Store:
        """`busy_timeout_ms` applies to read-only stores: a live view (`top`) waits less than a command."""
        path = home / DB_NAME
        try:
            if readonly:
                conn = _connect_readonly(path, busy_timeout_ms)
                return cls(conn, path, readonly=True, busy_timeout_ms=busy_timeout_ms)
            home_dir(home)
            return cls(_connect_writable(path), path, readonly=False)
        except sqlite3.Error as exc:
            raise _store_error(exc, path) from exc
        except OSError as exc:  # the home could not be created
            cause = preflight.cause_of(home, exc)
            if cause is None:
                raise
            raise _unwritable(path, cause) from exc

    @classmethod
    def open_scratch(cls, home: Path) -> Store:
        """A writable store; when the database cannot be written, a writable copy of it in memory
        (`scratch` holds the reason: the caller may say that what it writes is not kept)."""
        path = home / DB_NAME
        cause = preflight.filesystem_cause(home) if path.exists() else None
        if cause is not None:  # opening may well succeed (nothing to migrate); writing would not
            reason = _unwritable(path, cause)
        else:
            try:
                return cls.open(home)
            except StoreUnwritable as exc:
                if not path.exists():
                    raise
                reason = exc
        with cls.open(home, readonly=True) as source:
            memory = sqlite3.connect(":memory:", isolation_level=None)
            memory.row_factory = sqlite3.Row
            if source._conn is not None:
                source._conn.backup(memory)
        store = cls(memory, home / DB_NAME, readonly=False)
        store.scratch = reason
        return store

    def close(self) -> None:
        self._closed = True
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- writes ---------------------------------------------------------------------------------

    def append(self, records: Sequence[Record]) -> None:
        """Store `records` and update the projections, all in one transaction."""
        if records:
            with self._write() as conn:
                projections.append(conn, records)

    def request_stop(self, run_id: str, grace: float | None, ts: float) -> None:
        """Ask the run's supervisor to stop (it polls `stop_requested_at`); logged as an event."""
        event = ev.RunStopRequested(grace=grace, by_pid=os.getpid(), reason="compose down")
        self.append([Record(run_id, ts, event)])

    def mark_run_lost(self, run_id: str, ts: float) -> bool:
        """End a running run whose supervisor is gone: status 'lost', unfinished agents 'cancelled'.

        Logged as a run_finished event with status 'lost'. A run that is not 'running' any more (its
        supervisor recorded the end meanwhile) is left alone; returns whether the run was marked.
        """
        with self._write() as conn:
            row = conn.execute("SELECT status FROM runs WHERE id = ?", (run_id,)).fetchone()
            if row is None or row["status"] != RunStatus.RUNNING.value:
                return False
            event = ev.RunFinished(status=RunStatus.LOST.value, exit_code=None, reason="supervisor gone")
            projections.append(conn, [Record(run_id, ts, event)])
            return True

    # -- reads ----------------------------------------------------------------------------------

    def run(self, run_id: str) -> RunRow | None:
        rows = self._select(f"SELECT {_RUN_COLUMNS} FROM runs r WHERE r.id = ?", (run_id,))
        return _run_row(rows[0]) if rows else None

    def runs(
        self, *, project: str | None = None, active_only: bool = False, limit: int | None = None
    ) -> list[RunRow]:
        """Runs, newest first."""
        where, params = _where(
            ("r.project = ?", project), ("r.status = ?", RunStatus.RUNNING.value if active_only else None)
        )
        sql = f"SELECT {_RUN_COLUMNS} FROM runs r{where} ORDER BY r.started_at DESC, r.rowid DESC"
        return [_run_row(row) for row in self._select(sql + _limit(limit), params)]

    def latest_run(self, project: str) -> RunRow | None:
        found = self.runs(project=project, limit=1)
        return found[0] if found else None

    def processes(
        self, *, run_id: str | None = None, project: str | None = None, include_finished: bool = True
    ) -> list[ProcessRow]:
        """Agents ordered by their run's start (oldest first), then layer, then name."""
        where, params = _where(("p.run_id = ?", run_id), ("p.project = ?", project))
        if not include_finished:
            marks = ", ".join("?" * len(_TERMINAL_STATES))
            where += f"{' AND' if where else ' WHERE'} p.state NOT IN ({marks})"
            params += _TERMINAL_STATES
        sql = (
            f"SELECT {_PROCESS_COLUMNS} FROM processes p JOIN runs r ON r.id = p.run_id{where}"
            " ORDER BY r.started_at, r.rowid, p.layer IS NULL, p.layer, p.agent"
        )
        return [_process_row(row) for row in self._select(sql, params)]

    def process_by_pid(self, pid: int) -> ProcessRow | None:
        """The most recently started agent that had `pid` (pids are reused)."""
        sql = (
            f"SELECT {_PROCESS_COLUMNS} FROM processes p WHERE p.pid = ?"
            " ORDER BY p.started_at DESC, p.updated_at DESC LIMIT 1"
        )
        rows = self._select(sql, (pid,))
        return _process_row(rows[0]) if rows else None

    def events(
        self,
        run_id: str,
        *,
        agent: str | None = None,
        kinds: Collection[str] | None = None,
        after_id: int = 0,
        limit: int | None = None,
    ) -> list[EventRow]:
        """A run's events with id > after_id, oldest first."""
        where, params = _where(("run_id = ?", run_id), ("agent = ?", agent), ("id > ?", after_id))
        if kinds is not None:
            if not kinds:
                return []
            kinds = tuple(kinds)
            where += f" AND kind IN ({', '.join('?' * len(kinds))})"
            params += kinds
        sql = f"SELECT id, run_id, agent, ts, kind, data FROM events{where} ORDER BY id"
        return [_event_row(row) for row in self._select(sql + _limit(limit), params)]

    def ledger(
        self, *, definitions: Collection[str] | None = None, limit: int | None = None
    ) -> list[LedgerRow]:
        """Ledger records, oldest first (`limit`: only the newest that many, still oldest first)."""
        where, params = "", tuple[str, ...]()
        if definitions is not None:
            names = tuple(definitions)
            if not names:
                return []
            where, params = f" WHERE definition IN ({', '.join('?' * len(names))})", names
        sql = f"SELECT {_LEDGER_COLUMNS} FROM ledger{where} ORDER BY id DESC" + _limit(limit)
        rows = [_ledger_row(row) for row in self._select(sql, params)]
        return rows[::-1]

    def data_version(self) -> int | None:
        """SQLite's `PRAGMA data_version`: it changes whenever another connection commits, so a
        reader polling the store can skip re-reading while nothing changed (None: no database yet)."""
        rows = self._select("PRAGMA data_version", ())
        return int(rows[0][0]) if rows else None

    @contextmanager
    def reading(self) -> Iterator[None]:
        """Run several reads in one read transaction, so they all see the same committed state."""
        self._select("SELECT 1", ())  # connects a read-only store whose database appeared meanwhile
        conn = self._conn
        if conn is None or conn.in_transaction:
            yield
            return
        try:
            conn.execute("BEGIN")
        except sqlite3.Error as exc:
            raise _store_error(exc, self.path, self._busy_timeout_ms) from exc
        try:
            yield
        finally:
            if conn.in_transaction:
                conn.execute("COMMIT")

    # -- for modules that keep their own tables (rnix.store.journal) ----------------------------

    def transaction(self) -> AbstractContextManager[sqlite3.Connection]:
        """One `BEGIN IMMEDIATE` write transaction: committed on exit, rolled back on an error."""
        return self._write()

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        """The rows of one read (a read-only store without a database yet reads nothing)."""
        return self._select(sql, params)

    # -- plumbing -------------------------------------------------------------------------------

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        if self._conn is None:
            raise StoreError(f"{self.path} is open read-only" if self.readonly else "the store is closed")
        conn = self._conn
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise _store_error(exc, self.path) from exc
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise _store_error(exc, self.path) from exc
            raise

    def _select(self, sql: str, params: Sequence[Any]) -> list[sqlite3.Row]:
        if self._conn is None and self.readonly and not self._closed:
            try:  # a long-lived reader (`top`) opened before the first run: the database may exist now
                self._conn = _connect_readonly(self.path, self._busy_timeout_ms)
            except sqlite3.Error as exc:
                raise _store_error(exc, self.path, self._busy_timeout_ms) from exc
            if self._conn is None:
                return []
        if self._conn is None:
            raise StoreError("the store is closed")
        try:
            return self._conn.execute(sql, params).fetchall()
        except sqlite3.OperationalError as exc:
            if self.readonly and "no such table" in str(exc):
                return []  # a database another process is creating right now
            raise _store_error(exc, self.path, self._busy_timeout_ms) from exc
        except sqlite3.Error as exc:
            raise _store_error(exc, self.path) from exc


# -- connections ------------------------------------------------------------------------------------


def _connect_writable(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
    try:
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        # Switching a fresh file to WAL can report "locked" at once while another process does the same.
        _retry_locked(lambda: conn.execute("PRAGMA journal_mode = WAL").fetchone())
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("PRAGMA synchronous = NORMAL")  # durable at checkpoints; WAL keeps it consistent
        _retry_locked(lambda: migrations.migrate(conn))
    except BaseException:
        conn.close()
        raise
    return conn


def _connect_readonly(path: Path, busy_timeout_ms: int | None = None) -> sqlite3.Connection | None:
    if not path.exists():
        return None
    busy_timeout_ms = BUSY_TIMEOUT_MS if busy_timeout_ms is None else busy_timeout_ms
    uri = f"file:{quote(str(path.absolute()))}?mode=ro"
    conn = sqlite3.connect(uri, uri=True, timeout=busy_timeout_ms / 1000, isolation_level=None)
    conn.row_factory = sqlite3.Row
    conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
    try:
        conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
    except sqlite3.Error as exc:
        if not _unwritable_error(exc) or _wal_pending(path):
            return conn  # e.g. locked: the first read reports it, with the reader's busy timeout
        conn.close()
        # A full (or read-only) filesystem: SQLite could not create the shared-memory file a WAL
        # reader needs. With no log pending the file alone is the whole database: read it as is.
        conn = sqlite3.connect(uri + "&immutable=1", uri=True, isolation_level=None)
        conn.row_factory = sqlite3.Row
    return conn


def _wal_pending(path: Path) -> bool:
    try:
        return os.path.getsize(f"{path}-wal") > 0
    except OSError:
        return False


def _retry_locked(action: Callable[[], _T]) -> _T:
    deadline = time.monotonic() + _SETUP_DEADLINE
    delay = 0.005
    while True:
        try:
            return action()
        except sqlite3.OperationalError as exc:
            if not is_locked(exc) or time.monotonic() > deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 0.2)


def is_locked(exc: BaseException) -> bool:
    """Whether `exc` is SQLite's SQLITE_BUSY/SQLITE_LOCKED ("database is locked")."""
    if isinstance(exc, StoreLocked):
        return True
    if not isinstance(exc, sqlite3.OperationalError):
        return False
    code = getattr(exc, "sqlite_errorcode", None)  # Python >= 3.11; extended codes keep the primary low byte
    return (code is not None and code & 0xFF in (5, 6)) or "locked" in str(exc)


def _unwritable_error(exc: BaseException) -> bool:
    """SQLITE_READONLY, SQLITE_IOERR, SQLITE_FULL or SQLITE_CANTOPEN: the filesystem said no."""
    code = getattr(exc, "sqlite_errorcode", None)
    return isinstance(exc, sqlite3.Error) and code is not None and code & 0xFF in (8, 10, 13, 14)


def _unwritable(path: Path, cause: str) -> StoreUnwritable:
    return StoreUnwritable(
        f"cannot write the state database {path}: {cause}",
        preflight.fix_hint(cause),
        path=path,
        cause=cause,
    )


def _store_error(exc: sqlite3.Error, path: Path, busy_timeout_ms: int | None = None) -> StoreError:
    busy_timeout_ms = BUSY_TIMEOUT_MS if busy_timeout_ms is None else busy_timeout_ms
    if is_locked(exc):
        return StoreLocked(
            f"the state database {path} stayed locked for over {busy_timeout_ms / 1000:g} s",
            "another rnix process is holding it; try again",
        )
    if _unwritable_error(exc):
        return _unwritable(path, preflight.filesystem_cause(path.parent) or str(exc))
    return StoreError(
        f"cannot use the state database {path}: {exc}",
        "check the file and its directory (RNIX_HOME); move it aside to start afresh",
    )


# -- values and rows --------------------------------------------------------------------------------


def _where(*conditions: tuple[str, Any]) -> tuple[str, tuple[Any, ...]]:
    used = [(sql, value) for sql, value in conditions if value is not None]
    if not used:
        return "", ()
    return " WHERE " + " AND ".join(sql for sql, _ in used), tuple(value for _, value in used)


def _limit(limit: int | None) -> str:
    return "" if limit is None else f" LIMIT {int(limit)}"


def _run_row(row: sqlite3.Row) -> RunRow:
    return RunRow(**{**dict(row), "detached": bool(row["detached"])})


_PROCESS_FIELDS = [f.name for f in fields(ProcessRow)]
_DEPENDS_ON, _SLA = _PROCESS_FIELDS.index("depends_on"), _PROCESS_FIELDS.index("sla")
_RATE_LIMITED = _PROCESS_FIELDS.index("rate_limited")


def _process_row(row: sqlite3.Row) -> ProcessRow:
    # By position: every query selects _PROCESS_COLUMNS, which follow the fields' order. A dict per
    # row made reading 500 agents (`top`, once a second) cost 12 ms of CPU instead of 5.
    values = list(row)
    depends_on = values[_DEPENDS_ON]
    values[_DEPENDS_ON] = (
        tuple(str(n) for n in json.loads(depends_on)) if depends_on not in (None, "", "[]") else ()
    )
    values[_SLA] = json.loads(values[_SLA]) if values[_SLA] else None
    values[_RATE_LIMITED] = bool(values[_RATE_LIMITED])
    return ProcessRow(*values)


def _ledger_row(row: sqlite3.Row) -> LedgerRow:
    values = dict(row)
    values["completed"] = bool(values["completed"])
    values["sla_passed"] = None if values["sla_passed"] is None else bool(values["sla_passed"])
    values["sla"] = json.loads(values["sla"]) if values["sla"] else None
    return LedgerRow(**values)


def _event_row(row: sqlite3.Row) -> EventRow:
    data = json.loads(row["data"])
    return EventRow(**{**dict(row), "data": data if isinstance(data, dict) else {"value": data}})
