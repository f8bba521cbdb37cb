"""The scheduler's decisions, replayed against a scripted fake spawner (no real processes here)."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rnix.core.events import Event, InstanceStarted
from rnix.core.plan import make_plan
from rnix.core.spec import parse_compose
from rnix.supervisor.api import ExitInfo, SpawnRequest
from rnix.supervisor.runfiles import RunFiles
from rnix.supervisor.scheduler import Options, Scheduler


@dataclass
class Behaviour:
    """How one attempt of a fake agent ends: after `seconds`, with `code`/`signal`, printing `out`."""

    seconds: float = 0.01
    code: int = 0
    out: str = ""
    hang: bool = False  # never exits by itself
    ignore_term: bool = False


@dataclass
class FakeProcess:
    pid: int
    request: SpawnRequest
    behaviour: Behaviour
    start_time: float = 0.0
    start_ticks: int | None = None
    signals: list[int] = field(default_factory=list)
    exited: asyncio.Future[ExitInfo] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )

    def finish(self, info: ExitInfo) -> None:
        if not self.exited.done():
            self.exited.set_result(info)

    async def wait(self) -> ExitInfo:
        return await asyncio.shield(self.exited)

    def signal_group(self, signum: int) -> bool:
        self.signals.append(signum)
        if signum == signal.SIGKILL or (signum == signal.SIGTERM and not self.behaviour.ignore_term):
            self.finish(ExitInfo(None, signum))
        return not self.exited.done()

    async def stop(self, grace: float) -> ExitInfo:
        self.signal_group(signal.SIGTERM)
        try:
            return await asyncio.wait_for(self.wait(), grace)
        except asyncio.TimeoutError:
            self.signal_group(signal.SIGKILL)
            return await self.wait()


class FakeSpawner:
    def __init__(self, script: dict[str, list[Behaviour]]) -> None:
        self.script = script
        self.spawned: list[FakeProcess] = []
        self.log: list[tuple[str, str]] = []  # ("start"|"end", agent)

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def spawn(self, request: SpawnRequest) -> FakeProcess:
        behaviours = self.script.get(request.name, [Behaviour()])
        attempt = sum(1 for p in self.spawned if p.request.name == request.name)
        behaviour = behaviours[min(attempt, len(behaviours) - 1)]
        process = FakeProcess(1000 + len(self.spawned), request, behaviour)
        self.spawned.append(process)
        self.log.append(("start", request.name))
        if not behaviour.hang:
            asyncio.get_running_loop().call_later(behaviour.seconds, self._exit, process)
        return process

    def _exit(self, process: FakeProcess) -> None:
        # The result travels with the exit, as a spawner on any node reads it next to the process.
        result = process.behaviour.out or f"result of {process.request.name}"
        self.log.append(("end", process.request.name))
        process.finish(ExitInfo(process.behaviour.code, None, result))


class FakeAccounts:
    def __init__(self) -> None:
        self.registered: dict[str, int] = {}
        self.revoked: list[str] = []
        self.attempts: dict[str, int] = {}

    def register(
        self, agent: str, *, model: str, api_base: str | None, budget: int, replay: Any = None
    ) -> None:
        self.registered[agent] = budget

    def begin_attempt(self, agent: str, attempt: int) -> None:
        self.attempts[agent] = attempt

    def issue_nonce(self, agent: str) -> str:
        return f"nonce-{agent}"

    def revoke(self, agent: str) -> None:
        self.revoked.append(agent)

    def used(self, agent: str) -> int:
        return 7

    def fund(self, agent: str, budget: int) -> None:
        self.registered[agent] = budget


class Clock:
    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()


def run(
    tmp_path: Path,
    compose: dict[str, Any],
    script: dict[str, list[Behaviour]],
    options: Options | None = None,
    during: Any = None,
    spawner: FakeSpawner | None = None,
) -> tuple[dict[str, Any], FakeSpawner, list[Event], FakeAccounts]:
    spec = parse_compose(compose, {}, "compose.yaml")
    plan = make_plan(spec, "proj")
    spawner = spawner or FakeSpawner(script)
    events: list[Event] = []
    accounts = FakeAccounts()
    files = RunFiles(tmp_path, run_id="r1", project="proj", project_intent=spec.intent, base_dir=tmp_path)

    async def main() -> dict[str, Any]:
        scheduler = Scheduler(
            plan,
            run_id="r1",
            spawner=spawner,
            accounts=accounts,
            record=events.append,
            files=files,
            clock=Clock(),
            env_for=lambda agent, nonce, attempt: {"NONCE": nonce},
            options=options or Options(retry_base_delay=0.01),
        )
        if during:
            asyncio.get_running_loop().call_later(0.1, during, scheduler)
        return await asyncio.wait_for(scheduler.run(), 10)

    return asyncio.run(main()), spawner, events, accounts


def states(agents: dict[str, Any]) -> dict[str, str]:
    return {name: run.state.value for name, run in agents.items()}


DIAMOND = {
    "agents": {
        "a": {"intent": "first"},
        "b": {"intent": "left", "depends_on": ["a"]},
        "c": {"intent": "right", "depends_on": ["a"]},
        "d": {"intent": "join", "depends_on": ["b", "c"]},
    }
}


def test_diamond_runs_in_dependency_order_with_parallel_middle(tmp_path: Path) -> None:
    agents, spawner, _events, accounts = run(
        tmp_path, DIAMOND, {"b": [Behaviour(0.1)], "c": [Behaviour(0.1)]}
    )
    assert states(agents) == dict.fromkeys("abcd", "completed")
    log = spawner.log
    assert log.index(("end", "a")) < log.index(("start", "b"))
    assert log.index(("start", "c")) < log.index(("end", "b"))  # b and c overlap
    assert log.index(("end", "b")) < log.index(("start", "d")) and log.index(("end", "c")) < log.index(
        ("start", "d")
    )
    task = json.loads((tmp_path / "d.task.json").read_text())
    assert task["upstream"] == {"b": "result of b", "c": "result of c"}
    assert [m["content"].count('<<<rnix:upstream agent="') for m in task["messages"]].count(1) == 2
    assert len({p.pid for p in spawner.spawned}) == 4
    assert set(accounts.registered) == set("abcd") and sorted(accounts.revoked) == list("abcd")
    assert agents["d"].result == "result of d" and agents["d"].tokens_used == 7


class NodeSpawner(FakeSpawner):
    """Starts `b` on cluster node n1; its other processes have no `node` attribute at all."""

    async def spawn(self, request: SpawnRequest) -> FakeProcess:
        process = await super().spawn(request)
        if request.name == "b":
            process.node = "n1"  # type: ignore[attr-defined]
        return process


def test_the_node_of_each_process_is_recorded_when_it_starts(tmp_path: Path) -> None:
    agents, _spawner, events, _ = run(tmp_path, DIAMOND, {}, spawner=NodeSpawner({}))
    assert states(agents) == dict.fromkeys("abcd", "completed")
    started = {e.agent: e.data["node"] for e in events if e.kind == InstanceStarted.KIND}
    assert started == {"a": None, "b": "n1", "c": None, "d": None}
    assert agents["b"].instance.node == "n1" and agents["a"].instance.node is None


def test_failure_skips_dependents_but_independent_branches_go_on(tmp_path: Path) -> None:
    compose = {
        "agents": {
            "a": {"intent": "x"},
            "b": {"intent": "x", "depends_on": ["a"]},
            "c": {"intent": "x", "depends_on": ["b"]},
            "solo": {"intent": "x"},
        }
    }
    agents, spawner, _events, _ = run(tmp_path, compose, {"a": [Behaviour(code=1)], "solo": [Behaviour(0.2)]})
    assert states(agents) == {"a": "failed", "b": "skipped", "c": "skipped", "solo": "completed"}
    assert agents["b"].error == "dependency 'a' failed"
    assert [p.request.name for p in spawner.spawned] == ["a", "solo"]
    assert agents["a"].error == "exit status 1"


def test_abort_on_failure_cancels_the_rest(tmp_path: Path) -> None:
    compose = {
        "agents": {
            "a": {"intent": "x"},
            "slow": {"intent": "x"},
            "later": {"intent": "x", "depends_on": ["slow"]},
        }
    }
    agents, spawner, _, _ = run(
        tmp_path,
        compose,
        {"a": [Behaviour(0.05, code=1)], "slow": [Behaviour(hang=True)]},
        Options(abort_on_failure=True),
    )
    assert states(agents) == {"a": "failed", "slow": "cancelled", "later": "cancelled"}
    slow = next(p for p in spawner.spawned if p.request.name == "slow")
    assert slow.signals == [signal.SIGTERM]


def test_retry_after_failure_then_success(tmp_path: Path) -> None:
    compose = {"agents": {"a": {"intent": "x", "max_retries": 2}, "b": {"intent": "y", "depends_on": ["a"]}}}
    agents, _spawner, events, accounts = run(
        tmp_path, compose, {"a": [Behaviour(code=1), Behaviour(code=0, out="ok")]}
    )
    assert states(agents) == {"a": "completed", "b": "completed"}
    assert agents["a"].attempt == 2 and agents["a"].result == "ok"
    assert accounts.attempts == {"a": 2}  # the retry's calls are journalled as attempt 2
    exits = [e.data for e in events if e.kind == "agent_exited" and e.agent == "a"]
    assert [(x["attempt"], x["outcome"], x["final"]) for x in exits] == [
        (1, "failed", False),
        (2, "completed", True),
    ]


def test_budget_exceeded_exit_2_is_not_retried(tmp_path: Path) -> None:
    compose = {"agents": {"a": {"intent": "x", "max_retries": 3}}}
    agents, spawner, _, _ = run(tmp_path, compose, {"a": [Behaviour(code=2)]})
    assert states(agents) == {"a": "budget_exceeded"} and len(spawner.spawned) == 1


def test_timeout_stops_with_term_then_kill_and_retries(tmp_path: Path) -> None:
    compose = {"agents": {"a": {"intent": "x", "timeout": 0.1, "stop_grace_period": 0.1, "max_retries": 1}}}
    agents, spawner, events, _ = run(tmp_path, compose, {"a": [Behaviour(hang=True, ignore_term=True)]})
    assert states(agents) == {"a": "timeout"} and agents["a"].attempt == 2
    assert [p.signals for p in spawner.spawned] == [[signal.SIGTERM, signal.SIGKILL]] * 2
    assert agents["a"].error == "timed out after 0.1s" and agents["a"].signal == signal.SIGKILL
    assert [e.data["reason"] for e in events if e.kind == "agent_signalled"] == ["timeout", "timeout"]


def test_unfunded_agent_never_starts_and_its_dependents_are_skipped(tmp_path: Path) -> None:
    compose = {
        "budget_pool": {"total": 100},
        "agents": {
            "big": {"intent": "x", "budget": 500},
            "after": {"intent": "y", "depends_on": ["big"]},
            "ok": {"intent": "z"},
        },
    }
    agents, spawner, _, accounts = run(tmp_path, compose, {})
    assert states(agents) == {"big": "budget_exceeded", "after": "skipped", "ok": "completed"}
    assert agents["big"].error == "the budget pool cannot fund it (100 tokens left)"
    assert [p.request.name for p in spawner.spawned] == ["ok"] and "big" not in accounts.registered


def test_stop_request_cancels_running_and_pending(tmp_path: Path) -> None:
    compose = {"agents": {"a": {"intent": "x"}, "b": {"intent": "y", "depends_on": ["a"]}}}
    agents, _spawner, _events, _ = run(
        tmp_path, compose, {"a": [Behaviour(hang=True)]}, during=lambda s: s.request_stop("compose down", 1.0)
    )
    assert states(agents) == {"a": "cancelled", "b": "cancelled"}
    assert agents["a"].error == "stopped: compose down" and agents["a"].signal == signal.SIGTERM


def test_kill_now_skips_the_grace_period(tmp_path: Path) -> None:
    compose = {"agents": {"a": {"intent": "x", "stop_grace_period": 30}}}

    def interrupt_twice(scheduler: Scheduler) -> None:
        scheduler.request_stop("interrupt")
        asyncio.get_running_loop().call_later(0.1, scheduler.kill_now)

    started = time.monotonic()
    agents, spawner, _, _ = run(
        tmp_path, compose, {"a": [Behaviour(hang=True, ignore_term=True)]}, during=interrupt_twice
    )
    assert time.monotonic() - started < 5
    assert states(agents) == {"a": "cancelled"} and spawner.spawned[0].signals[-1] == signal.SIGKILL


def test_environment_and_task_per_attempt(tmp_path: Path) -> None:
    compose = {"intent": "team goal", "agents": {"a": {"intent": "do it", "max_retries": 1}}}
    _agents, spawner, _, _ = run(tmp_path, compose, {"a": [Behaviour(code=1), Behaviour()]})
    first, _second = spawner.spawned
    assert first.request.env == {"NONCE": "nonce-a"} and first.request.argv is None
    task = json.loads((tmp_path / "a.task.json").read_text())
    assert task["attempt"] == 2 and task["intent"] == "do it" and task["run_id"] == "r1"
    assert task["messages"][1]["content"] == "The team's overall goal: team goal"


def test_tokens_an_agent_did_not_use_fund_agents_that_start_later(tmp_path: Path) -> None:
    compose = {
        "budget_pool": {"total": 1000, "allocation": "equal"},
        "agents": {"first": {"intent": "x"}, "second": {"intent": "y", "depends_on": ["first"]}},
    }
    agents, _, events, accounts = run(tmp_path, compose, {})
    # planned 500 each; `first` used 7 (FakeAccounts), so 493 went back to `second`
    assert accounts.registered == {"first": 500, "second": 993}
    assert agents["second"].budget == 993
    started = {e.agent: e.data["budget"] for e in events if e.kind == "agent_started"}
    assert started == {"first": 500, "second": 993}


def fake_scheduler(
    plan: Any,
    spawner: Any,
    tmp_path: Path,
    record: Any = lambda record: None,
    run_id: str = "r1",
    **options: Any,
) -> Scheduler:
    """A scheduler over fakes (accounts, clock, no environment) writing its task files in `tmp_path`;
    `options` go to `Scheduler` (assess, reused, decisions, ...)."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    files = RunFiles(tmp_path, run_id=run_id, project="proj", project_intent=None, base_dir=tmp_path)
    options.setdefault("options", Options(retry_base_delay=0.001))
    return Scheduler(
        plan,
        run_id=run_id,
        spawner=spawner,
        accounts=FakeAccounts(),
        record=record,
        files=files,
        clock=Clock(),
        env_for=lambda agent, nonce, attempt: {},
        **options,
    )
