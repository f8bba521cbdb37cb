"""Recorded runs whose agents run on cluster nodes, written through the store as a supervisor would.

`record_run(home, {"a": (pid, None), "b": (pid, "worker-1")})` appends run_started, the agents'
agent_planned and agent_started (with their `node`) and, unless `live`, their exits and the run's
end. A live run's supervisor is this test process, so `top` and `ps` take the run for a live one.
An agent's recorded start is that of the local process with its PID when there is one, also for an
agent on another node: a local look at that PID would then take it for the agent.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from rnix.core import events as ev
from rnix.core.events import InstanceKey, Record
from rnix.store.db import Store
from rnix.store.paths import new_run_id
from rnix.supervisor import procinfo

_T = TypeVar("_T")


def record_run(
    home: Path, agents: dict[str, tuple[int, str | None]], *, project: str = "nodes", live: bool = False
) -> str:
    run_id, now, me = new_run_id(), time.time(), os.getpid()
    started = ev.RunStarted(
        project=project,
        compose_file="compose.yaml",
        cwd=str(home),
        supervisor_pid=me,
        supervisor_start_time=procinfo.start_time(me),
        supervisor_start_ticks=procinfo.start_ticks(me),
    )
    records = [Record(run_id, now, started)]
    for layer, (name, (pid, node)) in enumerate(agents.items()):
        key = InstanceKey(name)
        records.append(Record(run_id, now, ev.InstancePlanned(key=key, layer=layer, budget=1000)))
        records.append(
            Record(
                run_id,
                now,
                ev.InstanceStarted(
                    key=key,
                    attempt=1,
                    pid=pid,
                    pid_start_time=_start(procinfo.start_time, pid),
                    pid_start_ticks=_start(procinfo.start_ticks, pid),
                    budget=1000,
                    node=node,
                ),
            )
        )
        if not live:
            exited = ev.InstanceExited(
                key=key, attempt=1, state="completed", outcome="completed", exit_code=0
            )
            records.append(Record(run_id, now + 1, exited))
    if not live:
        records.append(Record(run_id, now + 1, ev.RunFinished(status="completed", exit_code=0)))
    with Store.open(home) as store:
        store.append(records)
    return run_id


def _start(read: Callable[[int], _T], pid: int) -> _T | None:
    try:
        return read(pid)
    except (OSError, ValueError):  # no such process here
        return None
