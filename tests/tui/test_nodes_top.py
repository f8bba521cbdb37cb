"""`top` never reads /proc for an agent on another cluster node: its PID is one of that node.

The "remote" agent here is a real local process (stopped, so a local look would take it for a
paused agent): what `top` shows or does about it must come from the store, not from this PID.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from rnix.supervisor import control
from rnix.tui.collect import Collector
from rnix.tui.pauses import PausedHere
from tests.nodes import record_run
from tests.teams import wait_for


@pytest.fixture
def sleepers() -> Iterator[tuple[int, int]]:
    procs = [
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
        for _ in range(2)
    ]
    try:
        yield procs[0].pid, procs[1].pid
    finally:
        for proc in procs:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


def test_an_agent_on_another_node_has_no_local_process_view(
    rnix_home: Path, sleepers: tuple[int, int]
) -> None:
    here, there = sleepers
    run_id = record_run(rnix_home, {"here": (here, None), "there": (there, "worker-1")}, live=True)
    collector = Collector(rnix_home)
    try:
        (run,) = collector.collect().runs
    finally:
        collector.close()
    assert run.run.id == run_id and run.proc is not None  # the supervisor (this process) is alive
    views = {a.row.agent: a for a in run.agents}
    assert views["here"].proc is not None and views["here"].proc.pid == here
    assert (views["there"].proc, views["there"].children, views["there"].row.node) == (None, (), "worker-1")


def test_quitting_top_does_not_resume_a_local_process_by_a_remote_pid(
    rnix_home: Path, sleepers: tuple[int, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store says running; the local process with that PID is stopped. For a local agent that
    means "resume it"; for one on another node it means nothing."""
    here, there = sleepers
    record_run(rnix_home, {"here": (here, None), "there": (there, "worker-1")}, live=True)
    for pid in sleepers:
        os.killpg(pid, signal.SIGSTOP)
    assert wait_for(lambda: all(_state(pid) == "T" for pid in sleepers), 5, "the sleepers to stop")
    sent: list[int] = []
    monkeypatch.setattr(control, "signal_agent", lambda store, pid, *args, **kw: sent.append(pid))
    paused = PausedHere()
    paused.sent(here, "here", signal.SIGSTOP)
    paused.sent(there, "there", signal.SIGSTOP)
    done = paused.resume_all(rnix_home, os.environ)
    assert sent == [here] and [d.agent for d in done] == ["here"]


def _state(pid: int) -> str:
    with open(f"/proc/{pid}/stat", "rb") as f:
        stat = f.read()
    return stat[stat.rindex(b")") + 2 :].split()[0].decode()
