"""Controlling runs from another terminal: `compose down`, `rnix kill`, `top`, a detached run.

A PID is signalled only after its start time matches what the store recorded, so a reused PID is
never hit. A run whose supervisor died without recording its end is *lost*: `down` then stops the
agents it left (if any survived) itself and marks the run. `signal_agent` is the one path for a
user's signal to an agent (`rnix kill` and `top`): SIGSTOP records the agent as paused (its clock
stops), SIGCONT as running again, and any other signal to a paused agent is followed by SIGCONT so
the agent can act on it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from rnix.core import events as ev
from rnix.core.events import InstanceKey, Record
from rnix.core.lifecycle import AgentState
from rnix.errors import RnixError
from rnix.store.db import ProcessRow, RunRow, Store
from rnix.supervisor import procinfo
from rnix.supervisor.signals import send_group, signal_name

DOWN_EXTRA_WAIT = 10.0  # seconds beyond the grace period before `down` escalates


@dataclass(frozen=True)
class StopOutcome:
    run_id: str
    project: str
    action: str  # "stopped", "lost" (supervisor was gone), "timeout"
    status: str  # the run's status afterwards


def start_detached(
    argv: list[str], *, cwd: str, environ: Mapping[str, str], log_path: Path
) -> subprocess.Popen[bytes]:
    """Start a supervisor in its own session, detached from the terminal, logging to `log_path`."""
    log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        return subprocess.Popen(
            argv,
            cwd=cwd,
            env=dict(environ),
            stdin=subprocess.DEVNULL,
            stdout=log_fd,
            stderr=log_fd,
            start_new_session=True,
            close_fds=True,
        )
    finally:
        os.close(log_fd)


def supervisor_alive(run: RunRow) -> bool:
    return run.supervisor_pid is not None and procinfo.is_same_process(
        run.supervisor_pid, run.supervisor_start_time
    )


def find_lost(store: Store, runs: list[RunRow]) -> list[RunRow]:
    """Mark runs recorded as running whose supervisor is gone as lost; returns them (updated)."""
    lost = []
    for run in runs:
        if run.status == "running" and not supervisor_alive(run):
            stop_orphans(store.processes(run_id=run.id), grace=1.0)
            store.mark_run_lost(run.id, time.time())
            lost.append(store.run(run.id) or run)
    return lost


def stop_run(store: Store, run: RunRow, grace: float | None, wait: bool = True) -> StopOutcome:
    """Ask the supervisor of `run` to stop (SIGTERM after recording the grace); wait for its end."""
    if run.status != "running":
        return StopOutcome(run.id, run.project, "none", run.status)
    if not supervisor_alive(run):
        stop_orphans(store.processes(run_id=run.id), grace if grace is not None else 1.0)
        store.mark_run_lost(run.id, time.time())
        return StopOutcome(run.id, run.project, "lost", "lost")
    store.request_stop(run.id, grace, time.time())
    assert run.supervisor_pid is not None
    _kill(run.supervisor_pid, signal.SIGTERM)
    if not wait:
        return StopOutcome(run.id, run.project, "stopping", "running")
    deadline = time.monotonic() + (grace if grace is not None else _longest_grace(run)) + DOWN_EXTRA_WAIT
    while time.monotonic() < deadline:
        current = store.run(run.id)
        if current is not None and current.status != "running":
            return StopOutcome(run.id, run.project, "stopped", current.status)
        if not supervisor_alive(run):
            break
        time.sleep(0.05)
    if supervisor_alive(run):  # a second SIGTERM means "no more grace"
        _kill(run.supervisor_pid, signal.SIGTERM)
        time.sleep(1.0)
    current = store.run(run.id)
    if current is not None and current.status == "running" and not supervisor_alive(run):
        stop_orphans(store.processes(run_id=run.id), 1.0)
        store.mark_run_lost(run.id, time.time())
        current = store.run(run.id)
    status = current.status if current else "unknown"
    return StopOutcome(run.id, run.project, "stopped" if status != "running" else "timeout", status)


def _longest_grace(run: RunRow) -> float:
    """The longest stop_grace_period among the run's agents (from the plan it recorded)."""
    plan = run.plan if isinstance(run.plan, dict) else {}
    graces = [float(a.get("stop_grace_period_s", 5.0)) for a in plan.get("agents", [])]
    return max(graces, default=5.0)


def stop_orphans(processes: list[ProcessRow], grace: float) -> list[int]:
    """TERM, grace, KILL to the groups of agents a dead supervisor left; returns the pids signalled."""
    targets = [
        p.pid
        for p in processes
        if p.pid is not None
        and AgentState(p.state).signallable
        and procinfo.is_same_process(p.pid, p.pid_start_time)
    ]
    for pid in targets:
        send_group(pid, signal.SIGCONT)
        send_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while targets and time.monotonic() < deadline and any(_group_alive(pid) for pid in targets):
        time.sleep(0.05)
    for pid in targets:
        send_group(pid, signal.SIGKILL)
    return targets


def signal_agent(store: Store, pid: int, signum: int, reason: str = "kill") -> ProcessRow:
    """Signal the process group of the rnix agent whose PID is `pid` (`rnix kill`, `top`)."""
    row = store.process_by_pid(pid)
    if row is None:
        raise RnixError(f"no rnix agent has PID {pid}", "`rnix ps` lists the agents and their PIDs")
    if not AgentState(row.state).signallable or not procinfo.is_same_process(pid, row.pid_start_time):
        raise RnixError(
            f"agent {row.agent} (PID {pid}) is not running ({row.state})",
            "the PID may have been reused by another program; nothing was signalled",
        )
    if not send_group(pid, signum):
        raise RnixError(f"agent {row.agent} (PID {pid}) exited before it could be signalled")
    # A stopped group keeps TERM, INT, ... pending until it is continued: continue it, so the agent
    # acts on them. SIGKILL needs no help; SIGSTOP/SIGCONT are the pause and the resume themselves.
    wake = row.state == AgentState.PAUSED.value and signum not in _PAUSE_SIGNALS
    if wake:
        send_group(pid, signal.SIGCONT)
    now = time.time()
    key = InstanceKey.parse(row.agent)
    signalled = ev.InstanceSignalled(
        key=key, pid=pid, signal=signal_name(signum), reason=reason, by_pid=os.getpid()
    )
    records = [Record(row.run_id, now, signalled)]
    if signum == signal.SIGSTOP:
        records.append(Record(row.run_id, now, ev.InstancePaused(key=key, pid=pid)))
    elif signum == signal.SIGCONT or wake:
        records.append(Record(row.run_id, now, ev.InstanceResumed(key=key, pid=pid)))
    store.append(records)
    return row


_PAUSE_SIGNALS = frozenset({signal.SIGSTOP, signal.SIGCONT, signal.SIGKILL})


def _kill(pid: int, signum: int) -> bool:
    try:
        os.kill(pid, signum)
        return True
    except ProcessLookupError:
        return False
    except PermissionError as exc:
        raise RnixError(
            f"not allowed to signal PID {pid}", "run rnix as the user who started the run"
        ) from exc


def _group_alive(pgid: int) -> bool:
    return send_group(pgid, 0)
