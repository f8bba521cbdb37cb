"""Approval gates: the policies (pure), and the scheduler waiting at a gate, against fake processes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from rnix.core import events as ev
from rnix.core.approval import may_decide, verdict
from rnix.core.events import InstanceKey, Record
from rnix.core.fold import RunState, fold
from rnix.core.lifecycle import AgentState
from rnix.core.model import Approval
from rnix.core.plan import make_plan
from rnix.core.spec import parse_compose
from rnix.errors import InvalidCompose
from rnix.supervisor.scheduler import Scheduler
from tests.supervisor.test_scheduler import FakeSpawner, fake_scheduler

ALL = Approval(approvers=("alice", "bob"), policy="all")
QUORUM = Approval(approvers=("alice", "bob", "carol"), policy="quorum", quorum=2)


@pytest.mark.parametrize(
    ("approval", "decisions", "expected"),
    [
        (Approval(), [], "waiting"),
        (Approval(), [("x", "approve", None)], "approved"),
        (Approval(), [("x", "reject", "no"), ("y", "approve", None)], "rejected"),  # the first counts
        (ALL, [("alice", "approve", None)], "waiting"),
        (ALL, [("alice", "approve", None), ("bob", "approve", None)], "approved"),
        (ALL, [("alice", "approve", None), ("bob", "reject", None)], "rejected"),
        (QUORUM, [("alice", "approve", None)], "waiting"),
        (
            QUORUM,
            [("alice", "reject", None), ("bob", "approve", None), ("carol", "approve", None)],
            "approved",
        ),
        (QUORUM, [("alice", "reject", None), ("bob", "reject", None)], "rejected"),  # 2 can no longer agree
        (Approval(policy="quorum", quorum=2), [("a", "reject", None)], "waiting"),
        (Approval(policy="quorum", quorum=2), [("a", "reject", None), ("b", "reject", None)], "rejected"),
        (ALL, [("timeout", "approve", None)], "approved"),
        (ALL, [("alice", "approve", None), ("timeout", "reject", None)], "rejected"),
    ],
)
def test_verdict_by_policy(approval: Approval, decisions: list[Any], expected: str) -> None:
    assert verdict(approval, decisions)[0] == expected


def test_who_may_decide() -> None:
    assert may_decide(ALL, [], "alice") is None
    assert "not an approver" in (may_decide(ALL, [], "mallory") or "")
    assert "already decided" in (may_decide(ALL, [("alice", "approve", None)], "alice") or "")
    assert may_decide(Approval(), [], "anyone") is None
    assert "timeout" in (may_decide(Approval(), [], "timeout") or "")


def test_gate_settings_are_checked() -> None:
    def problems(approval: dict[str, Any]) -> list[str]:
        with pytest.raises(InvalidCompose) as caught:
            parse_compose({"agents": {"a": {"intent": "x", "approval": approval}}}, {}, "c.yaml")
        return [p.message for p in caught.value.problems]

    assert problems({"policy": "quorum"}) == ["policy: quorum needs `quorum: N`, the approvals needed"]
    assert problems({"policy": "all"}) == ["policy: all needs `approvers`: all of whom?"]
    assert problems({"approvers": ["a"], "policy": "quorum", "quorum": 2}) == [
        "needs 2 approvals but lists 1 approvers"
    ]
    assert problems({"quorum": 1}) == ["applies only with policy: quorum"]


GATED: dict[str, Any] = {
    "agents": {
        "build": {"intent": "build", "command": "build"},
        "deploy": {
            "intent": "deploy",
            "command": "deploy",
            "depends_on": ["build"],
            "timeout": "1s",
            "approval": {"approvers": ["alice", "bob"], "policy": "all"},
        },
        "announce": {"intent": "announce", "command": "announce", "depends_on": ["deploy"]},
        "rollback": {"intent": "tell", "command": "tell", "depends_on": {"deploy": "failed"}},
    }
}


def run_gated(
    tmp_path: Path,
    compose: dict[str, Any],
    act: Callable[[Scheduler, FakeSpawner], Awaitable[None]],
) -> tuple[Scheduler, FakeSpawner, list[Record]]:
    spec = parse_compose(compose, {}, "compose.yaml")
    plan = make_plan(spec, "proj")
    spawner = FakeSpawner({})
    records: list[Record] = []

    async def main() -> Scheduler:
        scheduler = fake_scheduler(plan, spawner, tmp_path, records.append)
        running = asyncio.ensure_future(scheduler.run())
        await act(scheduler, spawner)
        await asyncio.wait_for(running, 10)
        return scheduler

    return asyncio.run(main()), spawner, records


async def until_waiting(scheduler: Scheduler, name: str = "deploy") -> None:
    for _ in range(500):
        inst = scheduler.state.instances.get(InstanceKey(name))
        if inst is not None and inst.state is AgentState.WAITING_APPROVAL:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{name} never reached its gate")


def started(spawner: FakeSpawner) -> list[str]:
    return [p.request.name for p in spawner.spawned]


def test_the_gate_waits_for_both_approvers_then_starts(tmp_path: Path) -> None:
    seen: dict[str, Any] = {}

    async def act(scheduler: Scheduler, spawner: FakeSpawner) -> None:
        await until_waiting(scheduler)
        await asyncio.sleep(1.2)  # longer than the agent's own timeout: the wait does not count
        seen["first"] = scheduler.decide(InstanceKey("deploy"), "approve", "alice", "ok")
        await asyncio.sleep(0.1)
        seen["running"] = started(spawner)
        seen["second"] = scheduler.decide(InstanceKey("deploy"), "approve", "bob", None)

    scheduler, spawner, records = run_gated(tmp_path, GATED, act)
    assert seen["first"]["outcome"] == "waiting" and seen["first"]["detail"] == "waiting for bob"
    assert seen["running"] == ["build"]  # nothing passed the gate on one approval
    assert seen["second"]["outcome"] == "approved" and seen["second"]["before"] == "waiting"
    state = scheduler.state
    assert state.instance("deploy").state is AgentState.COMPLETED
    assert state.instance("announce").state is AgentState.COMPLETED
    assert state.instance("rollback").state is AgentState.SKIPPED
    assert started(spawner) == ["build", "deploy", "announce"]
    assert fold(records, RunState(run_id="r1", project="proj")) == state
    kinds = [r.kind for r in records if r.agent == "deploy"]
    assert kinds[:4] == ["agent_planned", "approval_requested", "approval_decided", "approval_decided"]


def test_a_rejection_skips_the_dependents_and_runs_the_failure_branch(tmp_path: Path) -> None:
    async def act(scheduler: Scheduler, spawner: FakeSpawner) -> None:
        await until_waiting(scheduler)
        with pytest.raises(PermissionError, match="not an approver"):
            scheduler.decide(InstanceKey("deploy"), "approve", "mallory", None)
        scheduler.decide(InstanceKey("deploy"), "reject", "bob", "not today")
        with pytest.raises(LookupError, match="not waiting"):
            scheduler.decide(InstanceKey("deploy"), "approve", "alice", None)

    scheduler, spawner, _ = run_gated(tmp_path, GATED, act)
    deploy = scheduler.state.instance("deploy")
    assert deploy.state is AgentState.REJECTED and deploy.error == "rejected by bob: not today"
    assert scheduler.state.instance("announce").state is AgentState.SKIPPED
    assert scheduler.state.instance("rollback").state is AgentState.COMPLETED
    assert started(spawner) == ["build", "rollback"]


def test_a_timeout_decides_on_timeout(tmp_path: Path) -> None:
    for on_timeout, expected in (("reject", AgentState.REJECTED), ("approve", AgentState.COMPLETED)):
        compose = {
            "agents": {
                "deploy": {
                    "intent": "deploy",
                    "command": "deploy",
                    "approval": {"timeout": "0.3s", "on_timeout": on_timeout},
                }
            }
        }

        async def nothing(scheduler: Scheduler, spawner: FakeSpawner) -> None:
            return None

        began = time.monotonic()
        scheduler, _, records = run_gated(tmp_path / on_timeout, compose, nothing)
        assert scheduler.state.instance("deploy").state is expected
        assert time.monotonic() - began >= 0.3
        decided = [r.event for r in records if isinstance(r.event, ev.ApprovalDecided)]
        assert [(d.by, d.decision) for d in decided] == [("timeout", on_timeout)]


def test_decisions_carried_by_a_resume_open_the_gate(tmp_path: Path) -> None:
    spec = parse_compose(GATED, {}, "compose.yaml")
    plan = make_plan(spec, "proj")
    spawner = FakeSpawner({})
    carried = {
        "deploy": (
            ev.ApprovalDecided(key=InstanceKey("deploy"), decision="approve", by="alice"),
            ev.ApprovalDecided(key=InstanceKey("deploy"), decision="approve", by="bob"),
        )
    }

    async def main() -> Scheduler:
        scheduler = fake_scheduler(plan, spawner, tmp_path, run_id="r2", decisions=carried)
        await asyncio.wait_for(scheduler.run(), 10)
        return scheduler

    scheduler = asyncio.run(main())
    assert scheduler.state.instance("announce").state is AgentState.COMPLETED
    assert [b for b, _, _ in scheduler.state.instance("deploy").approvals] == ["alice", "bob"]
