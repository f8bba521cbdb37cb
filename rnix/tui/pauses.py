"""Agents that `top` paused: quitting `top` never leaves one of them silently stopped.

Contract:
- `PausedHere.sent(pid, agent, signum)` follows what this `top` sent: SIGSTOP adds the agent, any
  other signal (a resume, or TERM/KILL, which rnix follows with SIGCONT) removes it.
- `resume_all(home, environ)` continues each agent still paused — the store says paused, or its
  process is stopped (the store may lag behind the supervisor; for an agent on another node only
  the store is asked, its PID is not this machine's) — through
  `rnix.supervisor.control.signal_agent` (reason `top`), the path of `s` itself. It returns one
  `Resumed` per agent it tried, with the error when that failed; an agent resumed meanwhile by
  someone else, or gone, is left alone and not reported.
"""

from __future__ import annotations

import signal
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from rnix.errors import RnixError


@dataclass(frozen=True)
class Resumed:
    agent: str
    pid: int
    error: RnixError | None = None


class PausedHere:
    def __init__(self) -> None:
        self._agents: dict[int, str] = {}  # PID -> agent name

    def sent(self, pid: int, agent: str, signum: int) -> None:
        if signum == signal.SIGSTOP:
            self._agents[pid] = agent
        else:
            self._agents.pop(pid, None)

    def __bool__(self) -> bool:
        return bool(self._agents)

    def resume_all(self, home: Path, environ: Mapping[str, str]) -> list[Resumed]:
        from rnix.store.db import Store
        from rnix.supervisor.control import signal_agent
        from rnix.tui.procstat import ProcReader

        if not self._agents:
            return []
        done: list[Resumed] = []
        reader = ProcReader()
        try:
            with Store.open(home) as store:
                for pid, agent in sorted(self._agents.items()):
                    row = store.process_by_pid(pid)
                    if row is None or row.agent != agent:
                        continue
                    info = reader.read(pid) if row.node is None else None
                    started = info is not None and info.started_at(row.pid_start_time, row.pid_start_ticks)
                    stopped = started and info is not None and info.state == "T"
                    if row.state != "paused" and not stopped:
                        continue
                    try:
                        signal_agent(store, pid, signal.SIGCONT, reason="top", environ=environ)
                    except RnixError as exc:
                        done.append(Resumed(agent, pid, exc))
                    else:
                        done.append(Resumed(agent, pid))
        finally:
            reader.close()
            self._agents.clear()
        return done
