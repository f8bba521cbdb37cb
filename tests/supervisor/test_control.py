"""Routing of `rnix kill`, pause/resume and `compose down` (rnix.supervisor.control): through a live
supervisor's control socket, directly only when the supervisor is gone, SIGTERM for `down` when a
live supervisor does not answer.

The supervisor is a real process (tests/fixtures/control_supervisor.py) that records what reaches
it; the agent is a real sleeping process in its own group, so a signal sent from here would show.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from rnix.core import events as ev
from rnix.core.events import Record
from rnix.errors import RnixError
from rnix.store.db import Store
from rnix.store.paths import new_run_id
from rnix.supervisor import control, procinfo
from rnix.supervisor.controlsock import control_socket_path
from tests.conftest import RunRnix
from tests.procs import wait_gone
from tests.teams import wait_for

FAKE = Path(__file__).resolve().parents[1] / "fixtures" / "control_supervisor.py"
PROJECT = "ctl"


def proc_state(pid: int) -> str:
    with open(f"/proc/{pid}/stat", "rb") as f:
        stat = f.read()
    return stat[stat.rindex(b")") + 2 :].split()[0].decode()


class Setup:
    """One recorded run: a fake supervisor (in `mode`) and one running agent process.

    `ticks`: the agent's recorded start in clock ticks is its real one ("exact"), absent as in rows
    from before rnix stored ticks ("none"), or one tick later ("next": another process that got
    the same PID in the same second, as far as the recorded time can tell). `node`: the cluster
    node the agent is recorded on (None: this machine); the process itself still runs here, so a
    signal sent from here by its PID would show."""

    def __init__(
        self,
        home: Path,
        tmp_path: Path,
        mode: str,
        agent: str = "nap",
        ticks: str = "exact",
        node: str | None = None,
    ) -> None:
        self.home, self.run_id, self.agent = home, new_run_id(), agent
        self.record = tmp_path / f"{self.run_id}.record"
        self.record.touch()
        home.mkdir(parents=True, exist_ok=True)
        self.supervisor = subprocess.Popen(
            [sys.executable, str(FAKE), str(home), self.run_id, str(self.record), mode],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.supervisor.stdout is not None and self.supervisor.stdout.readline() == "ready\n"
        self.agent_proc = subprocess.Popen(
            [sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True
        )
        self.pid = self.agent_proc.pid
        sup_start, agent_start = procinfo.start_time(self.supervisor.pid), procinfo.start_time(self.pid)
        agent_ticks = {"exact": 0, "next": 1}.get(ticks)
        if agent_ticks is not None:
            agent_ticks += procinfo.start_ticks(self.pid)
        now = time.time()
        run_data = {
            "project": PROJECT,
            "compose_file": "compose.yaml",
            "cwd": str(tmp_path),
            "supervisor_pid": self.supervisor.pid,
            "supervisor_start_time": sup_start,
            "supervisor_start_ticks": procinfo.start_ticks(self.supervisor.pid),
            "detached": True,
            "plan": {"agents": [{"name": agent, "stop_grace_period_s": 1.0}]},
        }
        planned = {"layer": 0, "depends_on": [], "model": "mock", "budget": 1000}
        started = {
            "attempt": 1,
            "pid": self.pid,
            "pid_start_time": agent_start,
            "pid_start_ticks": agent_ticks,
            "budget": 1000,
            "node": node,
        }
        with Store.open(home) as store:
            store.append(
                [
                    Record(self.run_id, now, ev.decode(ev.RunStarted.KIND, run_data)),
                    Record(self.run_id, now, ev.decode(ev.InstancePlanned.KIND, planned, agent)),
                    Record(self.run_id, now, ev.decode(ev.InstanceStarted.KIND, started, agent)),
                ]
            )

    def received(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.record.read_text().splitlines()]

    def events(self, *kinds: str) -> list[tuple[str, dict[str, Any]]]:
        with Store.open(self.home, readonly=True) as store:
            return [(e.kind, e.data) for e in store.events(self.run_id, kinds=list(kinds))]

    def kill_supervisor(self) -> None:
        """SIGKILL: it records nothing and leaves its socket file behind."""
        self.supervisor.kill()
        self.supervisor.wait(5)

    def close(self) -> None:
        if self.supervisor.poll() is None:
            self.supervisor.kill()
        if self.agent_proc.poll() is None:
            os.killpg(self.pid, signal.SIGKILL)
        self.supervisor.wait(5)
        self.agent_proc.wait(5)
        if self.supervisor.stdout is not None:
            self.supervisor.stdout.close()


@pytest.fixture
def setup(rnix_home: Path, tmp_path: Path) -> Iterator[Callable[..., Setup]]:
    made: list[Setup] = []

    def make(mode: str = "serve", agent: str = "nap", ticks: str = "exact", node: str | None = None) -> Setup:
        made.append(Setup(rnix_home, tmp_path, mode, agent, ticks, node))
        return made[-1]

    yield make
    for one in made:
        one.close()


def run_row(s: Setup) -> Any:
    with Store.open(s.home, readonly=True) as store:
        return store.run(s.run_id)


def test_kill_and_pause_go_through_a_live_supervisor(setup: Callable[..., Setup], rnix: RunRnix) -> None:
    s = setup()
    assert os.path.exists(control_socket_path(s.home, s.run_id, os.environ))
    result = rnix("kill", "-s", "STOP", str(s.pid), "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["data"] == {
        "pid": s.pid,
        "agent": "nap",
        "run_id": s.run_id,
        "signal": signal.SIGSTOP,
    }
    assert rnix("kill", "-s", "CONT", str(s.pid)).returncode == 0
    with Store.open(s.home) as store:
        control.signal_agent(store, s.pid, signal.SIGTERM, reason="top")
    assert s.received() == [
        {"op": "signal", "agent": "nap", "pid": s.pid, "signum": signal.SIGSTOP, "reason": "kill"},
        {"op": "signal", "agent": "nap", "pid": s.pid, "signum": signal.SIGCONT, "reason": "kill"},
        {"op": "signal", "agent": "nap", "pid": s.pid, "signum": signal.SIGTERM, "reason": "top"},
    ]
    # The supervisor signals and records; nothing was signalled or recorded from here.
    assert s.agent_proc.poll() is None and proc_state(s.pid) != "T"
    assert s.events(ev.InstanceSignalled.KIND, ev.InstancePaused.KIND, ev.InstanceResumed.KIND) == []


def test_a_refusal_from_the_supervisor_is_a_one_line_error(
    setup: Callable[..., Setup], rnix: RunRnix
) -> None:
    s = setup(agent="refused-one")
    result = rnix("kill", str(s.pid))
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"rnix: error: agent refused-one (PID {s.pid}) is not running",
        "hint: `rnix ps` lists the agents",
    ]
    assert s.agent_proc.poll() is None


def test_down_asks_the_supervisor_without_the_store_round_trip(
    setup: Callable[..., Setup], rnix: RunRnix
) -> None:
    s = setup()
    result = rnix("compose", "-p", PROJECT, "down", "-t", "2.5", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["data"]["runs"] == [
        {"run_id": s.run_id, "action": "stopped", "status": "cancelled"}
    ]
    (stop,) = s.received()
    assert stop["op"] == "stop" and stop["grace"] == 2.5 and stop["reason"] == "compose down"
    assert isinstance(stop["by_pid"], int) and stop["by_pid"] != s.supervisor.pid
    assert run_row(s).stop_requested_at is None  # the grace went through the socket, not the store
    assert s.supervisor.wait(5) == 0


def test_down_asks_again_with_no_grace_when_the_run_outlives_it(
    setup: Callable[..., Setup], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(control, "DOWN_EXTRA_WAIT", 0.2)
    s = setup("slow-stop")
    with Store.open(s.home) as store:
        outcome = control.stop_run(store, run_row(s), 0.1)
    assert (outcome.action, outcome.status) == ("stopped", "cancelled")
    assert [(r["op"], r["grace"]) for r in s.received()] == [("stop", 0.1), ("stop", 0.0)]


def test_a_dead_supervisors_agents_are_signalled_directly(setup: Callable[..., Setup], rnix: RunRnix) -> None:
    s = setup()
    s.kill_supervisor()  # its socket file stays behind: nobody must be asked through it
    assert os.path.exists(control_socket_path(s.home, s.run_id, os.environ))
    assert rnix("kill", "-s", "STOP", str(s.pid)).returncode == 0
    assert wait_for(lambda: proc_state(s.pid) == "T", 5, "the agent to stop")
    assert rnix("kill", "-s", "CONT", str(s.pid)).returncode == 0
    assert wait_for(lambda: proc_state(s.pid) != "T", 5, "the agent to go on")
    assert [
        kind
        for kind, _ in s.events(ev.InstanceSignalled.KIND, ev.InstancePaused.KIND, ev.InstanceResumed.KIND)
    ] == [
        ev.InstanceSignalled.KIND,
        ev.InstancePaused.KIND,
        ev.InstanceSignalled.KIND,
        ev.InstanceResumed.KIND,
    ]
    result = rnix("compose", "-p", PROJECT, "down", "--json")
    assert json.loads(result.stdout)["data"]["runs"] == [
        {"run_id": s.run_id, "action": "lost", "status": "lost"}
    ]
    assert wait_gone([s.pid], 5) == []
    assert s.received() == []


def test_down_falls_back_to_sigterm_when_a_live_supervisor_has_no_socket(
    setup: Callable[..., Setup], rnix: RunRnix
) -> None:
    s = setup("no-socket")
    result = rnix("compose", "-p", PROJECT, "down", "-t", "3", "--json")
    assert json.loads(result.stdout)["data"]["runs"] == [
        {"run_id": s.run_id, "action": "stopped", "status": "cancelled"}
    ]
    assert s.received() == [{"op": "SIGTERM"}]
    row = run_row(s)
    assert row.stop_requested_at is not None and row.stop_grace == 3.0  # for run.py to read back


def test_kill_without_a_socket_signals_directly_only_while_allowed(
    setup: Callable[..., Setup], monkeypatch: pytest.MonkeyPatch
) -> None:
    s = setup("no-socket")
    monkeypatch.setattr(control, "DIRECT_WHEN_NO_SOCKET", False)
    with Store.open(s.home) as store, pytest.raises(RnixError) as error:
        control.signal_agent(store, s.pid, signal.SIGSTOP)
    assert "did not answer" in error.value.message and "nothing was signalled" in error.value.message
    assert error.value.hint is not None and f"rnix compose -p {PROJECT} down" in error.value.hint
    assert proc_state(s.pid) != "T" and s.events(ev.InstanceSignalled.KIND) == []

    monkeypatch.setattr(control, "DIRECT_WHEN_NO_SOCKET", True)  # a supervisor from before the socket
    with Store.open(s.home) as store:
        control.signal_agent(store, s.pid, signal.SIGSTOP)
    assert wait_for(lambda: proc_state(s.pid) == "T", 5, "the agent to stop")
    assert [kind for kind, _ in s.events(ev.InstancePaused.KIND)] == [ev.InstancePaused.KIND]
    os.killpg(s.pid, signal.SIGCONT)


def test_a_wedged_supervisor_is_reported_and_down_still_works(
    setup: Callable[..., Setup], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(control, "CONTROL_TIMEOUT", 0.3)
    s = setup("wedged")
    with Store.open(s.home) as store:
        with pytest.raises(RnixError, match="did not answer"):
            control.signal_agent(store, s.pid, signal.SIGTERM)  # even with DIRECT_WHEN_NO_SOCKET
        assert s.agent_proc.poll() is None
        outcome = control.stop_run(store, run_row(s), 1.0)
    assert (outcome.action, outcome.status) == ("stopped", "cancelled")
    assert s.received() == [{"op": "SIGTERM"}]


def test_a_pid_reused_in_the_same_second_is_not_signalled(setup: Callable[..., Setup], rnix: RunRnix) -> None:
    """The recorded agent started one clock tick before the process that holds its PID now: the
    same second, so a check to the second took one for the other. `kill` and `down` must not."""
    s = setup(ticks="next")
    s.kill_supervisor()  # the direct path, where rnix itself decides whom to signal
    result = rnix("kill", "-s", "STOP", str(s.pid))
    assert result.returncode != 0 and "nothing was signalled" in result.stderr
    down = rnix("compose", "-p", PROJECT, "down", "-t", "0.2", "--json")
    assert down.returncode == 0, down.stderr
    assert run_row(s).status == "lost"
    time.sleep(0.3)  # past the grace: a TERM, STOP or KILL would show by now
    assert proc_state(s.pid) == "S" and s.agent_proc.poll() is None
    assert s.events(ev.InstanceSignalled.KIND) == []


def test_records_without_ticks_keep_the_check_to_the_second(
    setup: Callable[..., Setup], rnix: RunRnix
) -> None:
    s = setup(ticks="none")  # a row written before rnix recorded ticks
    s.kill_supervisor()
    assert rnix("kill", "-s", "TERM", str(s.pid)).returncode == 0
    assert s.agent_proc.wait(5) == -signal.SIGTERM


# -- agents on other nodes -----------------------------------------------------------------------------


def test_kill_of_an_agent_on_another_node_goes_through_the_supervisor_unchecked(
    setup: Callable[..., Setup], rnix: RunRnix
) -> None:
    """Its PID is one of node n1: the local start-time check (which would fail here: ticks "next")
    is not made, and the supervisor, which reaches the node, is asked."""
    s = setup(ticks="next", node="n1")
    result = rnix("kill", "-s", "STOP", str(s.pid), "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["data"]["agent"] == "nap"
    with Store.open(s.home) as store:
        control.signal_agent(store, s.pid, signal.SIGCONT, reason="top")
    assert s.received() == [
        {"op": "signal", "agent": "nap", "pid": s.pid, "signum": signal.SIGSTOP, "reason": "kill"},
        {"op": "signal", "agent": "nap", "pid": s.pid, "signum": signal.SIGCONT, "reason": "top"},
    ]
    assert proc_state(s.pid) != "T" and s.agent_proc.poll() is None  # nothing sent from here
    assert s.events(ev.InstanceSignalled.KIND, ev.InstancePaused.KIND) == []


def test_kill_of_an_agent_on_another_node_is_refused_once_its_supervisor_is_gone(
    setup: Callable[..., Setup], rnix: RunRnix
) -> None:
    s = setup(node="n1")
    s.kill_supervisor()
    for args in (("-s", "STOP"), ("-s", "KILL"), ()):
        result = rnix("kill", *args, str(s.pid))
        assert result.returncode == 1
        assert result.stderr.splitlines() == [
            f"rnix: error: agent nap (PID {s.pid}) runs on node n1 and its supervisor is gone; "
            "nothing was signalled",
            "hint: the node agent stops the agents of a supervisor that is gone by itself; "
            f"`rnix compose -p {PROJECT} down` records the run as lost",
        ]
    with Store.open(s.home) as store, pytest.raises(control.RemoteAgent):
        control.signal_agent(store, s.pid, signal.SIGCONT, reason="top")
    down = rnix("compose", "-p", PROJECT, "down", "-t", "0.2", "--json")
    assert json.loads(down.stdout)["data"]["runs"] == [
        {"run_id": s.run_id, "action": "lost", "status": "lost"}
    ]
    time.sleep(0.3)  # past the grace: a TERM, STOP or KILL from here would show by now
    assert proc_state(s.pid) == "S" and s.agent_proc.poll() is None
    assert s.events(ev.InstanceSignalled.KIND, ev.InstancePaused.KIND) == [] and s.received() == []


def test_an_agent_on_another_node_is_never_signalled_behind_a_socketless_supervisor(
    setup: Callable[..., Setup], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(control, "DIRECT_WHEN_NO_SOCKET", True)  # allowed for local agents only
    s = setup("no-socket", node="n1")
    with Store.open(s.home) as store, pytest.raises(RnixError, match="did not answer"):
        control.signal_agent(store, s.pid, signal.SIGSTOP)
    assert proc_state(s.pid) != "T" and s.events(ev.InstanceSignalled.KIND) == []
    with Store.open(s.home) as store:
        assert control.stop_orphans(store.processes(run_id=s.run_id), 0.1) == []
    assert s.agent_proc.poll() is None
