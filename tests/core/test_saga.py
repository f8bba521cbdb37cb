"""The saga's decisions (rnix.core.saga) as a pure function of the fold: when compensations are due,
in which order, one at a time, each once; their progress shown on the instance they undo."""

from __future__ import annotations

from typing import Any

import pytest

from rnix.core import events as ev
from rnix.core import saga
from rnix.core.events import InstanceKey, Record
from rnix.core.fold import RunState, apply, fold
from rnix.core.model import ComposeSpec
from rnix.core.plan import Plan, make_plan
from rnix.core.spec import parse_compose
from rnix.errors import InvalidCompose

UNDO = {"command": "undo.sh"}


def plan_of(agents: dict[str, dict[str, Any]], **top: Any) -> Plan:
    return make_plan(parse_compose({"agents": agents, **top}, {}, "compose.yaml"), "proj")


def chain() -> Plan:
    return plan_of(
        {
            "a": {"intent": "a", "compensate": "undo-a.sh"},
            "b": {"intent": "b", "depends_on": ["a"], "compensate": UNDO},
            "x": {"intent": "x", "compensate": {"intent": "undo x", "model": "mock", "timeout": "5s"}},
            "c": {"intent": "c", "depends_on": ["b", "x"]},
        }
    )


def start(plan: Plan) -> RunState:
    events: list[ev.Event] = [ev.RunStarted(project="proj")]
    events += [
        ev.InstancePlanned(key=InstanceKey(a.spec.name), depends_on=a.spec.depends_on) for a in plan.agents
    ]
    return run(RunState(), *events)


def run(state: RunState, *events: ev.Event) -> RunState:
    return fold((Record("r", float(i), e) for i, e in enumerate(events)), state)


def ends(state: RunState, name: str, how: str = "completed", error: str | None = None) -> RunState:
    key = InstanceKey.parse(name)
    return run(state, ev.InstanceStarted(key=key, pid=1), ev.InstanceExited(key=key, state=how, error=error))


def compensate(state: RunState, step: saga.Compensate) -> RunState:
    return run(
        state,
        ev.InstancePlanned(key=step.key),
        ev.CompensationPlanned(key=step.key, of=str(step.of), reason=step.reason),
    )


def spec(plan: Plan) -> ComposeSpec:
    return plan.spec


def test_compensations_run_last_completed_first_each_once_one_at_a_time() -> None:
    plan = chain()
    state = start(plan)
    state = ends(ends(ends(state, "x"), "a"), "b")
    assert saga.next_compensation(state, spec(plan)) is None  # c still pending
    state = ends(state, "c", "failed", "exit status 3")
    assert saga.order(state, spec(plan)) == [InstanceKey("b"), InstanceKey("a"), InstanceKey("x")]
    first = saga.next_compensation(state, spec(plan))
    assert first == saga.Compensate(InstanceKey("b:undo"), InstanceKey("b"), "c failed: exit status 3")
    state = compensate(state, first)
    assert state.instance("b").compensation == "pending"
    assert saga.next_compensation(state, spec(plan)) is None  # b:undo runs: one at a time
    state = run(state, ev.InstanceStarted(key=first.key, pid=2))
    assert state.instance("b").compensation == "compensating"
    state = run(state, ev.InstanceExited(key=first.key, state="failed", error="exit status 5"))
    assert state.instance("b").compensation == "compensation failed: exit status 5"
    second = saga.next_compensation(state, spec(plan))  # a failed compensation does not stop the saga
    assert second is not None and second.of == InstanceKey("a")
    state = ends(compensate(state, second), "a:undo")
    assert state.instance("a").compensation == "compensated"
    third = saga.next_compensation(state, spec(plan))
    assert third is not None and third.of == InstanceKey("x")
    state = ends(compensate(state, third), "x:undo")
    assert saga.next_compensation(state, spec(plan)) is None  # each once
    assert [i.name for i in saga.summary(state)] == ["b", "a", "x"]


def test_nothing_to_compensate_when_the_run_succeeds_or_a_user_stopped_it() -> None:
    plan = chain()
    state = start(plan)
    for name in ("x", "a", "b", "c"):
        state = ends(state, name)
    assert not saga.due(state, spec(plan))
    state = ends(ends(start(plan), "a"), "x")
    state = run(state, ev.RunStopRequested(reason="compose down"))
    state = run(state, ev.InstanceCancelled(key=InstanceKey("b")), ev.InstanceCancelled(key=InstanceKey("c")))
    assert not saga.due(state, spec(plan))


def test_a_stop_by_abort_on_failure_is_a_failure_and_a_users_stop_then_wins() -> None:
    plan = chain()
    state = ends(ends(start(plan), "a"), "x", "failed")
    state = run(state, ev.RunStopRequested(reason="'x' failed (--abort-on-failure)", failure=True))
    state = run(state, ev.InstanceCancelled(key=InstanceKey("b")), ev.InstanceCancelled(key=InstanceKey("c")))
    step = saga.next_compensation(state, spec(plan))
    assert step is not None and step.of == InstanceKey("a") and step.reason.startswith("stopped: 'x' failed")
    state = run(compensate(state, step), ev.InstanceStarted(key=step.key, pid=3))
    comps = {"a:undo": saga.compensation_spec(plan.spec.agent("a"))}
    assert saga.stops(state, comps, 10.0)[0] == []  # its timeout is far off
    state = run(state, ev.RunStopRequested(reason="interrupted (SIGINT)"))
    assert state.stopping == "interrupted (SIGINT)" and not state.stop_failure
    stops, _ = saga.stops(state, comps, 10.0)
    assert [s.key for s in stops] == [InstanceKey("a:undo")]


def test_a_compensation_past_its_timeout_is_stopped() -> None:
    plan = chain()
    comp = saga.compensation_spec(plan.spec.agent("x"))
    assert comp.timeout_s == 5.0 and comp.command is None and comp.intent == "undo x"
    state = ends(start(plan), "x")
    state = ends(state, "a", "failed")
    state = run(state, ev.InstanceSkipped(key=InstanceKey("b")), ev.InstanceSkipped(key=InstanceKey("c")))
    step = saga.next_compensation(state, spec(plan))
    assert step is not None and step.key == InstanceKey("x:undo")
    state = fold([Record("r", 100.0, ev.InstanceStarted(key=step.key, pid=4))], compensate(state, step))
    assert saga.stops(state, {"x:undo": comp}, 101.0) == ([], 105.0)
    assert [s.reason for s in saga.stops(state, {"x:undo": comp}, 106.0)[0]] == ["timeout"]


def test_the_compensation_spec_takes_the_agents_keys_unless_set() -> None:
    plan = chain()
    a = saga.compensation_spec(plan.spec.agent("a"))
    assert a.name == "a:undo" and a.command == ("undo-a.sh",) and a.depends_on == () and a.max_retries == 0
    assert a.timeout_s == plan.spec.agent("a").timeout_s and a.compensate is None
    with pytest.raises(ValueError):
        saga.compensation_spec(plan.spec.agent("c"))


def test_compensate_needs_a_command_or_an_intent_and_changes_the_hash_only_when_set() -> None:
    with pytest.raises(InvalidCompose) as err:
        plan_of({"a": {"intent": "a", "compensate": {"model": "mock"}}})
    shown = [str(p) for p in err.value.problems]
    assert any("agents.a.compensate" in p and "`command` or an `intent`" in p for p in shown), shown
    with pytest.raises(InvalidCompose):
        plan_of({"a": {"intent": "a", "compensate": {"command": "x", "retries": 1}}})
    bare = plan_of({"a": {"intent": "a"}}).agents[0]
    undone = plan_of({"a": {"intent": "a", "compensate": "x"}}).agents[0]
    assert bare.spec_hash != undone.spec_hash
    from rnix.core.plan import agent_as_dict

    assert "compensate" not in agent_as_dict(bare.spec)
    assert agent_as_dict(undone.spec)["compensate"] == {"command": ["x"]}


def test_compensation_events_round_trip_and_old_stop_events_read_as_user_stops() -> None:
    event = ev.CompensationPlanned(key=InstanceKey("b:undo"), of="b", reason="c failed")
    assert ev.decode(event.KIND, event.to_dict()) == event
    old = ev.decode("run_stop_requested", {"reason": "stop", "v": 1})
    assert isinstance(old, ev.RunStopRequested) and old.failure is False
    state = apply(RunState(), Record("r", 0.0, ev.RunStarted()))
    assert state.completions == 0
