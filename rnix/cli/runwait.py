"""Waiting for a run to end, and the exit status it ends with (`compose wait`, `compose logs -f`).

Contract:
- `exit_status(run)` is the status a command that waited for `run` exits with, the same as `up` in
  the foreground would have: the exit code the supervisor recorded (0 completed, 1 failed, 130/143
  interrupted/terminated), else 0 for a completed run and 1 for any other (a lost run: its
  supervisor died without recording an end).
- `ended(env, run_id)` is the run's row once it has ended, None while it runs. It reads the store
  read-only; only when the row still says "running" but the supervisor is gone does it open the store
  for writing to mark the run lost (as `ps` does), so a waiter never waits for a dead run.
- `wait_for_end(env, run_id, tick)` polls `ended` every `POLL` seconds, calling `tick()` before each
  look (logs -f prints new lines there), and returns the ended row.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from rnix.env import Env
from rnix.errors import ExitCode, RnixError
from rnix.store.db import RunRow

POLL = 0.2  # seconds between looks at the store (a WAL read costs well under a millisecond)


def exit_status(run: RunRow) -> int:
    if run.exit_code is not None and run.status != "running":
        return int(run.exit_code)
    return int(ExitCode.OK if run.status == "completed" else ExitCode.FAILURE)


def lost_message(run: RunRow) -> str:
    pid = f" (PID {run.supervisor_pid})" if run.supervisor_pid else ""
    return f"run {run.id} of project {run.project} was lost: its supervisor{pid} died before the run ended"


def ended(env: Env, run_id: str) -> RunRow | None:
    from rnix.store.db import Store
    from rnix.supervisor.control import find_lost, supervisor_alive

    with Store.open(env.home, readonly=True) as store:
        run = store.run(run_id)
    if run is None:
        raise RnixError(f"run {run_id} is not in the store", "`rnix ps -a` lists the recent runs")
    if run.status != "running":
        return run
    if supervisor_alive(run):
        return None
    with Store.open_scratch(env.home) as store:  # gone: record it, exactly as `ps` would
        find_lost(store, [run])
        return store.run(run_id) or run


def wait_for_end(env: Env, run_id: str, tick: Callable[[], None] = lambda: None) -> RunRow:
    while True:
        tick()
        run = ended(env, run_id)
        if run is not None:
            return run
        time.sleep(POLL)
