"""Controlling runs from another terminal: `compose down`, `rnix kill`, `top`, a detached run.

A run's live supervisor is asked through its control socket (`rnix.supervisor.controlsock`): it
signals through the agent's process handle and records the events itself, so its scheduler knows
what the user did. Only a run whose supervisor is gone is acted on from here (the direct path), and
a PID is then signalled only after its start time matches what the store recorded, so a reused PID
is never hit. A run whose supervisor died without recording its end is *lost*: `down` then stops
the agents it left (if any survived) itself and marks the run.

- `signal_agent` is the one path for a user's signal to an agent (`rnix kill` and `top`). A live
  supervisor that does not answer is an error (nothing is signalled behind its back), except one
  without a socket at all while `DIRECT_WHEN_NO_SOCKET` holds. On the direct path SIGSTOP records
  the agent as paused (its clock stops), SIGCONT as running again, and any other signal to a paused
  agent is followed by SIGCONT so the agent can act on it.
- An agent on another cluster node (`ProcessRow.node`) has a PID of that node: nothing here probes
  or signals it by PID. A signal to it goes through its live supervisor (which reaches the node);
  with the supervisor gone it is refused (`RemoteAgent`), and `stop_orphans` leaves it to its node
  agent, which stops the agents of a supervisor that is gone by itself.
- `stop_run` (`compose down`) asks the supervisor to stop; one whose socket does not answer gets
  SIGTERM after the grace is recorded in the store (as before the socket existed), so `down` always
  works. A run that outlives its grace gets a second request (or SIGTERM): no more grace.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rnix.core import events as ev
from rnix.core.events import InstanceKey, Record
from rnix.core.lifecycle import AgentState
from rnix.errors import RnixError
from rnix.store.db import ProcessRow, RunRow, Store
from rnix.supervisor import procinfo
from rnix.supervisor.controlsock import ControlUnavailable, call, control_socket_path
from rnix.supervisor.signals import send_group, signal_name

DOWN_EXTRA_WAIT = 10.0  # seconds beyond the grace period before `down` escalates
CONTROL_TIMEOUT = 5.0  # seconds a live supervisor has to answer a control request
# A supervisor from before the control socket (or one that does not serve it yet) has no socket
# file: signal its agents directly, as rnix always did. With False, a live supervisor without a
# socket is reported like a silent one and nothing is signalled behind its back.
DIRECT_WHEN_NO_SOCKET = False


class RemoteAgent(RnixError):
    """A signal to an agent on another node whose supervisor is gone: nothing can reach it from here."""

    code = "REMOTE_AGENT"


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
    """Its supervisor runs: the same process (not a reused PID), and not a zombie or on its way out
    (a killed supervisor stays a zombie until its parent, or a subreaper, reaps it)."""
    return (
        run.supervisor_pid is not None
        and procinfo.is_same_process(
            run.supervisor_pid, run.supervisor_start_time, run.supervisor_start_ticks
        )
        and not procinfo.is_exiting(run.supervisor_pid)
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


def stop_run(
    store: Store,
    run: RunRow,
    grace: float | None,
    wait: bool = True,
    *,
    environ: Mapping[str, str] | None = None,
) -> StopOutcome:
    """Ask the supervisor of `run` to stop (through its socket, else SIGTERM); wait for its end."""
    if run.status != "running":
        return StopOutcome(run.id, run.project, "none", run.status)
    if not supervisor_alive(run):
        return _stop_lost(store, run, grace)
    assert run.supervisor_pid is not None
    path = control_socket_path(_home(store), run.id, os.environ if environ is None else environ)
    asked = _ask_stop(path, grace, CONTROL_TIMEOUT)
    if not asked:
        if not supervisor_alive(run):
            return _stop_lost(store, run, grace)
        # The old way, which every supervisor understands: the grace goes through the store.
        store.request_stop(run.id, grace, time.time())
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
    if supervisor_alive(run):  # a second stop (or SIGTERM) means "no more grace"
        if not (asked and _ask_stop(path, 0.0, 1.0)):
            _kill(run.supervisor_pid, signal.SIGTERM)
        time.sleep(1.0)
    current = store.run(run.id)
    if current is not None and current.status == "running" and not supervisor_alive(run):
        stop_orphans(store.processes(run_id=run.id), 1.0)
        store.mark_run_lost(run.id, time.time())
        current = store.run(run.id)
    status = current.status if current else "unknown"
    return StopOutcome(run.id, run.project, "stopped" if status != "running" else "timeout", status)


def _ask_stop(path: str, grace: float | None, timeout: float) -> bool:
    """True when the supervisor took the stop request; False when nobody answered on `path`."""
    message = {"op": "stop", "grace": grace, "reason": "compose down", "by_pid": os.getpid()}
    try:
        call(path, message, timeout)
    except ControlUnavailable:
        return False
    return True


def _stop_lost(store: Store, run: RunRow, grace: float | None) -> StopOutcome:
    """The supervisor is gone: stop what it left and record the run as lost."""
    stop_orphans(store.processes(run_id=run.id), grace if grace is not None else 1.0)
    store.mark_run_lost(run.id, time.time())
    return StopOutcome(run.id, run.project, "lost", "lost")


def _longest_grace(run: RunRow) -> float:
    """The longest stop_grace_period among the run's agents (from the plan it recorded)."""
    plan = run.plan if isinstance(run.plan, dict) else {}
    graces = [float(a.get("stop_grace_period_s", 5.0)) for a in plan.get("agents", [])]
    return max(graces, default=5.0)


def stop_orphans(processes: list[ProcessRow], grace: float) -> list[int]:
    """TERM, grace, KILL to the groups of agents a dead supervisor left; returns the pids signalled.

    Agents on other nodes are left to their node agent (their PIDs are not this machine's)."""
    targets = [
        p.pid
        for p in processes
        if p.pid is not None
        and p.node is None
        and AgentState(p.state).signallable
        and procinfo.is_same_process(p.pid, p.pid_start_time, p.pid_start_ticks)
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


def signal_agent(
    store: Store,
    pid: int,
    signum: int,
    reason: str = "kill",
    *,
    environ: Mapping[str, str] | None = None,
) -> ProcessRow:
    """Signal the process group of the rnix agent whose PID is `pid` (`rnix kill`, `top`).

    Through the run's live supervisor when there is one (it signals and records); directly, with
    the start-time check, only when the supervisor is gone (or has no socket: DIRECT_WHEN_NO_SOCKET).
    An agent on another node (`row.node`) is reached only through its supervisor: its PID is not
    checked here, and without a live supervisor the signal is refused (`RemoteAgent`).
    """
    row = store.process_by_pid(pid)
    if row is None:
        raise RnixError(f"no rnix agent has PID {pid}", "`rnix ps` lists the agents and their PIDs")
    remote = row.node is not None  # its PID lives on that node: no local check can say anything
    if not AgentState(row.state).signallable or not (
        remote or procinfo.is_same_process(pid, row.pid_start_time, row.pid_start_ticks)
    ):
        raise RnixError(
            f"agent {row.agent} (PID {pid}) is not running ({row.state})",
            "the PID may have been reused by another program; nothing was signalled",
        )
    run = store.run(row.run_id)
    if run is not None and supervisor_alive(run):
        path = control_socket_path(_home(store), run.id, os.environ if environ is None else environ)
        message: dict[str, Any] = {
            "op": "signal",
            "agent": row.agent,
            "pid": pid,
            "signal": _wire_signal(signum),
            "reason": reason,
        }
        try:
            call(path, message, CONTROL_TIMEOUT)  # a refusal (ControlRefused) is the user's error
            return row
        except ControlUnavailable as exc:
            without_socket = exc.reason == "missing" and DIRECT_WHEN_NO_SOCKET and not remote
            if supervisor_alive(run) and not without_socket:
                raise RnixError(
                    f"the supervisor of run {run.id} (PID {run.supervisor_pid}) did not answer: "
                    f"{exc.message}; nothing was signalled",
                    f"it may be busy: try again; `rnix compose -p {run.project} down` stops the run even so",
                ) from exc
    if remote:
        raise RemoteAgent(
            f"agent {row.agent} (PID {pid}) runs on node {row.node} and its supervisor is gone; "
            "nothing was signalled",
            "the node agent stops the agents of a supervisor that is gone by itself; "
            f"`rnix compose -p {row.project} down` records the run as lost",
        )
    return _signal_directly(store, row, pid, signum, reason)


def _signal_directly(store: Store, row: ProcessRow, pid: int, signum: int, reason: str) -> ProcessRow:
    """Signal the group from here and record it: for agents whose supervisor cannot do it."""
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


def _wire_signal(signum: int) -> str | int:
    """The signal as the control protocol carries it: its name, or its number when it has none."""
    name = signal_name(signum)
    return name if name in signal.Signals.__members__ else signum


def _home(store: Store) -> Path:
    return store.path.parent  # the store is <home>/rnix.db


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


def decide(
    store: Store,
    project: str,
    agent: str,
    decision: str,
    by: str,
    message: str | None,
    *,
    environ: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Record a decision at `agent`'s approval gate in the project's run (`compose approve/reject`).

    A live run is asked through its control socket: its supervisor checks and records the decision
    and the gate acts at once. Without a live supervisor (it was killed), the decision is recorded in
    the project's last run, checked the same way against the gate's log, and the gate acts on it when
    the run is resumed (`compose up`). Raises RnixError with the reason when it cannot be recorded."""
    from rnix.core.approval import may_decide, verdict
    from rnix.core.fold import fold
    from rnix.core.model import Approval
    from rnix.supervisor.controlsock import ControlRefused

    for run in store.runs(project=project, active_only=True):
        if supervisor_alive(run):
            path = control_socket_path(_home(store), run.id, os.environ if environ is None else environ)
            request = {"op": "decide", "agent": agent, "decision": decision, "by": by, "message": message}
            try:
                data = call(path, request, CONTROL_TIMEOUT)
            except ControlRefused as exc:
                raise RnixError(exc.message, exc.hint) from None
            except ControlUnavailable as exc:
                raise RnixError(
                    f"the supervisor of run {run.id} does not answer: {exc}", "try again in a moment"
                ) from None
            return {"project": project, "run_id": run.id, "applied": "now", **data}
    last = store.latest_run(project)
    if last is None:
        raise RnixError(f"project {project} has no run", "start it with `rnix compose up`")
    records = [r.to_record() for r in store.events(last.id)]
    key = InstanceKey.parse(agent)
    state = fold(records, strict=False)
    inst = state.instances.get(key)
    if inst is None or inst.state is not AgentState.WAITING_APPROVAL:
        shown = "not in it" if inst is None else inst.state.value
        raise RnixError(
            f"agent {agent} is not waiting for approval in run {last.id} ({shown})",
            "`rnix compose ps -a` shows the agents and their states",
        )
    asked = next(
        r.event for r in reversed(records) if isinstance(r.event, ev.ApprovalRequested) and r.event.key == key
    )
    approval = Approval(approvers=tuple(asked.approvers), policy=asked.policy, quorum=asked.quorum)
    settled = verdict(approval, inst.approvals)
    if settled[0] != "waiting":
        raise RnixError(
            f"agent {agent} is not waiting for approval any more: {settled[1]}",
            "`rnix compose up` resumes the run and applies it",
        )
    refused = may_decide(approval, inst.approvals, by)
    if refused is not None:
        raise RnixError(refused, "decide under an approver's name: --as NAME")
    store.append(
        [Record(run.id, time.time(), ev.ApprovalDecided(key=key, decision=decision, by=by, message=message))]
    )
    decisions = (*inst.approvals, (by, decision, message))
    word, why = verdict(approval, decisions)
    return {
        "project": project,
        "run_id": last.id,
        "applied": "on resume",  # the run's supervisor is gone: `compose up` resumes it at the gate
        "agent": agent,
        "decision": decision,
        "by": by,
        "before": verdict(approval, inst.approvals)[0],
        "outcome": word,
        "detail": why,
        "decisions": [{"by": b, "decision": d, "message": m} for b, d, m in decisions],
    }
