"""Taking `top`'s snapshots: the state database (read-only) and /proc, as cheaply as a refresh must be.

Contract:
- `Collector(home, project=...)` holds one read-only `Store` (a short busy timeout, so a live view
  never stalls on a locked database) and one `ProcReader`; use it from one thread.
- `collect(show_all)` returns a `Snapshot`. The database is read only when something was committed
  since the last read (`PRAGMA data_version`) or `show_all` changed, and then in one read
  transaction: the runs (active ones; with `show_all` also the last `RECENT_RUNS` finished ones) and
  all their agents. /proc is read on every call, for live agents and supervisors only; never for
  an agent on another cluster node (its PID is one of that node: it has no process view here).
- A busy or unreadable database never raises: the snapshot keeps the rows read last and says so in
  `note`. A database that does not exist yet reads as empty (`db_exists` False) until it appears.
- Agents' descendants are listed depth-first, at most `MAX_CHILDREN` per agent; the processes
  beyond are counted (not walked further) as `unlisted`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from rnix.core.lifecycle import AgentState
from rnix.store.db import ProcessRow, RunRow, Store, StoreError, StoreLocked
from rnix.tui.procstat import ProcInfo, ProcReader
from rnix.tui.snapshot import AgentView, ChildView, RunView, Snapshot

BUSY_TIMEOUT_MS = 200  # the most one refresh waits for a locked database
RECENT_RUNS = 20  # finished runs shown with `a`, like `ps -a`
MAX_CHILDREN = 50
MAX_DEPTH = 8
_LIVE = frozenset(state.value for state in AgentState if state.signallable)

Rows = tuple[list[RunRow], dict[str, list[ProcessRow]]]


class Collector:
    def __init__(
        self,
        home: Path,
        *,
        project: str | None = None,
        reader: ProcReader | None = None,
        clock: Callable[[], float] = time.time,
        busy_timeout_ms: int = BUSY_TIMEOUT_MS,
    ) -> None:
        self.home = home
        self.project = project
        self.reader = reader or ProcReader()
        self._clock = clock
        self._store = Store.open(home, readonly=True, busy_timeout_ms=busy_timeout_ms)
        self._cached: tuple[int | None, bool, Rows] | None = None
        self._read_at: float | None = None
        self.error: StoreError | None = None  # why the last collect could not read the database

    def close(self) -> None:
        self._store.close()
        self.reader.close()

    def collect(self, show_all: bool = False) -> Snapshot:
        now = self._clock()
        note = None
        try:
            runs, processes = self._read(show_all)
            exists = self._cached is not None and self._cached[0] is not None
        except StoreError as exc:
            self.error = exc
            runs, processes = self._cached[2] if self._cached else ([], {})
            exists = True
            what = "busy" if isinstance(exc, StoreLocked) else f"unreadable ({exc.message})"
            since = f"; showing what was read at {_hms(self._read_at)}" if self._read_at else ""
            note = f"state database {what}{since}"
        else:
            self._read_at, self.error = now, None
        views = tuple(self._run_view(run, processes.get(run.id, [])) for run in runs)
        self.reader.end_round()
        return Snapshot(now, views, self.project, show_all, note, db_exists=exists)

    def _read(self, show_all: bool) -> Rows:
        store = self._store
        version = store.data_version()
        if self._cached and self._cached[0] == version and self._cached[1] == show_all and version:
            return self._cached[2]
        with store.reading():
            runs = store.runs(
                project=self.project, active_only=not show_all, limit=None if not show_all else RECENT_RUNS
            )
            if show_all:  # every active run, and the latest finished ones
                active = store.runs(project=self.project, active_only=True)
                known = {r.id for r in runs}
                runs += [r for r in active if r.id not in known]
                runs.sort(key=lambda r: r.started_at, reverse=True)  # newest first: what you just started
            processes = {run.id: store.processes(run_id=run.id) for run in runs}
        rows = (runs, processes)
        self._cached = (version, show_all, rows)
        return rows

    def _run_view(self, run: RunRow, rows: list[ProcessRow]) -> RunView:
        supervisor = None
        if run.active and run.supervisor_pid is not None:
            supervisor = self._alive(
                run.supervisor_pid, run.supervisor_start_time, run.supervisor_start_ticks
            )
        agents = tuple(self._agent_view(row) for row in rows)
        return RunView(run, supervisor, agents)

    def _agent_view(self, row: ProcessRow) -> AgentView:
        if row.state not in _LIVE or row.pid is None or row.node is not None:
            return AgentView(row, None)
        proc = self._alive(row.pid, row.pid_start_time, row.pid_start_ticks)
        if proc is None:
            return AgentView(row, None)
        children, unlisted = self._descendants(proc)
        return AgentView(row, proc, children, unlisted)

    def _alive(self, pid: int, start_time: float | None, start_ticks: int | None) -> ProcInfo | None:
        info = self.reader.read(pid)
        return info if info is not None and info.started_at(start_time, start_ticks) else None

    def _descendants(self, root: ProcInfo) -> tuple[tuple[ChildView, ...], int]:
        found: list[ChildView] = []
        unlisted = 0
        stack = [(pid, 1) for pid in reversed(self.reader.children(root))]
        while stack:
            pid, depth = stack.pop()
            if len(found) >= MAX_CHILDREN:
                unlisted += 1
                continue
            info = self.reader.read(pid)
            if info is None:
                continue
            found.append(ChildView(info, self.reader.command(info), depth))
            if depth < MAX_DEPTH:
                stack.extend((child, depth + 1) for child in reversed(self.reader.children(info)))
        return tuple(found), unlisted


def _hms(ts: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(ts))
