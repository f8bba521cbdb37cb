"""Juries in the scheduler, against scripted fake processes: every candidate runs as an instance
with its own definition, the verdict settles the node, `first` and `quorum` stop the rest, and each
member's verdict goes to the ledger under its candidate's name."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from pathlib import Path
from types import MappingProxyType
from typing import Any

from rnix.core import events as ev
from rnix.core.events import InstanceKey, Record
from rnix.core.fold import Instance, RunState, fold
from rnix.core.lifecycle import AgentState
from rnix.core.model import AgentDefinition
from rnix.core.plan import AgentPlan, make_plan
from rnix.core.spec import parse_compose
from rnix.supervisor.scheduler import Scheduler
from tests.supervisor.test_pipelines import Script, ScriptedSpawner
from tests.supervisor.test_scheduler import Behaviour, fake_scheduler

CANDIDATES = ["alpha", "beta", "gamma"]


def jury_compose(aggregate: str, **keys: Any) -> dict[str, Any]:
    review = {"intent": "review the patch", "candidates": CANDIDATES, "aggregate": aggregate, **keys}
    return {
        "agents": {
            "review": review,
            "report": {"intent": "report", "command": "report", "depends_on": ["review"]},
        }
    }


def run_jury(
    tmp_path: Path,
    compose: dict[str, Any],
    script: Script,
    reputation: dict[str, float] | None = None,
) -> tuple[Scheduler, ScriptedSpawner, list[Record], list[tuple[AgentPlan, Instance]]]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    spec = parse_compose(compose, {}, "compose.yaml")
    definitions = {
        name: AgentDefinition(name, f"{name} reviews", f"You are {name}.", model=f"mock?words={i + 5}")
        for i, name in enumerate(CANDIDATES)
    }
    spec = dataclasses.replace(spec, definitions=MappingProxyType(definitions))
    plan = make_plan(spec, "proj", reputation=reputation)
    spawner = ScriptedSpawner(script)
    records: list[Record] = []
    assessed: list[tuple[AgentPlan, Instance]] = []

    async def assess(agent: AgentPlan, inst: Instance) -> ev.InstanceAssessed | None:
        if inst.state is AgentState.CANCELLED:
            return None  # as the real assessor: a stopped agent says nothing about its definition
        assessed.append((agent, inst))
        return ev.InstanceAssessed(key=inst.key, definition=agent.definition, status=inst.state.value)

    async def main() -> Scheduler:
        scheduler = fake_scheduler(plan, spawner, tmp_path, records.append, assess=assess)
        await asyncio.wait_for(scheduler.run(), 20)
        return scheduler

    return asyncio.run(main()), spawner, records, assessed


def answers(by_candidate: dict[str, Behaviour]) -> Script:
    def script(name: str, task: dict[str, Any]) -> Behaviour:
        if name == "report":
            return Behaviour(out="report: " + task["upstream"]["review"])
        return by_candidate[CANDIDATES[InstanceKey.parse(name).index or 0]]

    return script


def test_vote_takes_the_majority_and_each_member_runs_its_own_definition(tmp_path: Path) -> None:
    script = answers(
        {"alpha": Behaviour(out="A\n"), "beta": Behaviour(out="B"), "gamma": Behaviour(out=" A")}
    )
    scheduler, spawner, records, assessed = run_jury(tmp_path, jury_compose("vote"), script)
    state = scheduler.state
    assert state.instance("review").state is AgentState.COMPLETED
    assert state.instance("review").result == "A\n"  # the result of a winning candidate
    members = [state.instance(f"review[{i}]") for i in range(3)]
    assert [m.label for m in members] == CANDIDATES and [m.item for m in members] == CANDIDATES
    assert state.instance("report").result == "report: A\n"  # dependents read the verdict only
    # Each member ran with its candidate's definition: instructions and model.
    assert [spawner.tasks[f"review[{i}]"]["instructions"] for i in range(3)] == [
        "You are alpha.",
        "You are beta.",
        "You are gamma.",
    ]
    assert [scheduler.agents[f"review[{i}]"].plan.spec.model for i in range(3)] == [
        "mock?words=5",
        "mock?words=6",
        "mock?words=7",
    ]
    # One ledger verdict per candidate execution, under the candidate's definition.
    assert sorted((a.definition, str(i.key)) for a, i in assessed if i.key.node == "review") == [
        ("alpha", "review[0]"),
        ("beta", "review[1]"),
        ("gamma", "review[2]"),
    ]
    verdicts = [r.event for r in records if isinstance(r.event, ev.InstanceAssessed)]
    assert sorted(e.definition for e in verdicts) == ["alpha", "beta", "command:report", "gamma"]
    assert fold(records, RunState(run_id="r1", project="proj")) == state


def test_weighted_vote_follows_reputation(tmp_path: Path) -> None:
    script = answers({"alpha": Behaviour(out="A"), "beta": Behaviour(out="B"), "gamma": Behaviour(out="A")})
    scores = {"alpha": 0.2, "beta": 0.9, "gamma": 0.3}
    compose = jury_compose("vote", weights="reputation")
    scheduler, *_ = run_jury(tmp_path, compose, script, reputation=scores)
    assert scheduler.state.instance("review").result == "B"  # 0.9 outweighs 0.2 + 0.3
    scheduler, *_ = run_jury(tmp_path / "equal", jury_compose("vote"), script, reputation=scores)
    assert scheduler.state.instance("review").result == "A"


def test_first_stops_the_slower_candidates(tmp_path: Path) -> None:
    script = answers(
        {
            "alpha": Behaviour(hang=True),
            "beta": Behaviour(seconds=0.05, out="fast"),
            "gamma": Behaviour(hang=True, ignore_term=True),
        }
    )
    compose = jury_compose("first", stop_grace_period="50ms")
    scheduler, spawner, records, assessed = run_jury(tmp_path, compose, script)
    state = scheduler.state
    assert state.instance("review").state is AgentState.COMPLETED
    assert state.instance("review").result == "fast"
    assert [state.instance(f"review[{i}]").state for i in range(3)] == [
        AgentState.CANCELLED,
        AgentState.COMPLETED,
        AgentState.CANCELLED,
    ]
    assert state.instance("report").result == "report: fast"
    by_name = {p.request.name: p for p in spawner.spawned}
    assert by_name["review[0]"].signals[:1] == [15]  # SIGTERM first
    assert 9 in by_name["review[2]"].signals  # it ignored SIGTERM: killed after the grace
    assert all(p.exited.done() for p in spawner.spawned)
    stopping = [r.event for r in records if isinstance(r.event, ev.InstanceStopping)]
    assert {str(e.key) for e in stopping} == {"review[0]", "review[2]"}
    assert all(e.reason == "jury 'review' decided" for e in stopping)
    assert [a.definition for a, _ in assessed] == ["beta", "command:report"]  # stopped ones say nothing
    assert fold(records, RunState(run_id="r1", project="proj")) == state


def test_quorum_completes_once_enough_agree_and_fails_when_it_cannot(tmp_path: Path) -> None:
    script = answers(
        {
            "alpha": Behaviour(seconds=0.01, out="yes"),
            "beta": Behaviour(seconds=0.02, out="yes "),
            "gamma": Behaviour(hang=True),
        }
    )
    compose = jury_compose("quorum", quorum=2, stop_grace_period="50ms")
    scheduler, *_ = run_jury(tmp_path, compose, script)
    state = scheduler.state
    assert state.instance("review").state is AgentState.COMPLETED
    assert state.instance("review").result == "yes"
    assert state.instance("review[2]").state is AgentState.CANCELLED
    script = answers(
        {
            "alpha": Behaviour(seconds=0.01, out="yes"),
            "beta": Behaviour(seconds=0.01, out="no"),
            "gamma": Behaviour(hang=True),
        }
    )
    compose = jury_compose("quorum", quorum=3, stop_grace_period="50ms")
    scheduler, *_ = run_jury(tmp_path / "fails", compose, script)
    state = scheduler.state
    assert state.instance("review").state is AgentState.FAILED
    assert "no quorum of 3 possible" in (state.instance("review").error or "")
    assert state.instance("review[2]").state is AgentState.CANCELLED
    assert state.instance("report").state is AgentState.SKIPPED


def test_all_lists_results_and_merge_joins_structured_results(tmp_path: Path) -> None:
    script = answers({c: Behaviour(out=json.dumps({c: 1, "shared": c})) for c in CANDIDATES})
    schema = {"type": "object"}
    scheduler, *_ = run_jury(tmp_path, jury_compose("all", output_schema=schema), script)
    review = scheduler.state.instance("review")
    assert json.loads(review.result or "") == [{c: 1, "shared": c} for c in CANDIDATES]
    scheduler, *_ = run_jury(tmp_path / "merge", jury_compose("merge", output_schema=schema), script)
    review = scheduler.state.instance("review")
    assert json.loads(review.result or "") == {"alpha": 1, "beta": 1, "gamma": 1, "shared": "gamma"}


def test_all_fails_when_one_member_fails_and_any_does_not(tmp_path: Path) -> None:
    script = answers({"alpha": Behaviour(out="a"), "beta": Behaviour(code=1), "gamma": Behaviour(out="c")})
    scheduler, *_ = run_jury(tmp_path, jury_compose("all"), script)
    review = scheduler.state.instance("review")
    assert review.state is AgentState.FAILED and "beta failed" in (review.error or "")
    assert scheduler.state.instance("report").state is AgentState.SKIPPED
    scheduler, *_ = run_jury(tmp_path / "any", jury_compose("any"), script)
    review = scheduler.state.instance("review")
    assert review.state is AgentState.COMPLETED and json.loads(review.result or "") == ["a", None, "c"]


def test_a_resume_judges_an_earlier_member_under_its_candidate() -> None:
    from rnix.supervisor.resume import _judged_as

    spec = parse_compose(jury_compose("vote"), {}, "compose.yaml")
    definitions = {name: AgentDefinition(name, name, f"You are {name}.") for name in CANDIDATES}
    plan = make_plan(dataclasses.replace(spec, definitions=MappingProxyType(definitions)), "proj")
    node = plan.agent("review")
    member = Instance(InstanceKey("review", 1), AgentState.COMPLETED, attempt=1, item="beta", label="beta")
    assert _judged_as(node, member, plan).definition == "beta"
    assert _judged_as(node, Instance(InstanceKey("review")), plan) is node
