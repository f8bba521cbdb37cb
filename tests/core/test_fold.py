"""The fold and the decisions over it: typed events, legal transitions, and runs that always finish."""

from __future__ import annotations

import dataclasses
import signal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rnix.core import actions as act
from rnix.core import events as ev
from rnix.core.events import InstanceKey, Record
from rnix.core.fold import RunState, apply, fold
from rnix.core.lifecycle import AgentState, TransitionError
from rnix.core.plan import Plan, make_plan
from rnix.core.spec import parse_compose

A = InstanceKey("a")


def plan_of(agents: dict[str, dict[str, Any]], **top: Any) -> Plan:
    return make_plan(parse_compose({"agents": agents, **top}, {}, "compose.yaml"), "proj")


def planned(plan: Plan) -> RunState:
    state = apply(RunState(), Record("r", 0.0, ev.RunStarted(project="proj")))
    for agent in plan.agents:
        event = ev.InstancePlanned(
            key=InstanceKey(agent.spec.name),
            depends_on=agent.spec.depends_on,
            layer=agent.layer,
            spec_hash=agent.spec_hash,
        )
        state = apply(state, Record("r", 0.0, event))
    return state


def step(state: RunState, ts: float, *events: ev.Event) -> RunState:
    return fold((Record("r", ts, e) for e in events), state)


# -- events -------------------------------------------------------------------------------------------


def sample(cls: type[ev.Event]) -> ev.Event:
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name == "key":
            values["key"] = InstanceKey("fix", 2, 1)
        elif f.type in ("str", "str | None"):
            values[f.name] = f"{f.name}-text"
        elif f.type in ("int", "int | None"):
            values[f.name] = 7
    return cls(**values)


@pytest.mark.parametrize("cls", list(ev.EVENT_TYPES.values()), ids=lambda c: c.KIND)
def test_every_event_round_trips_through_its_stored_form(cls: type[ev.Event]) -> None:
    event = sample(cls)
    record = Record("run1", 12.5, event)
    stored = record.data  # what the log keeps; the key travels as the `agent` column
    assert stored["v"] == cls.VERSION
    assert ev.decode(record.kind, stored, record.agent) == event


def test_a_newer_event_version_or_an_unknown_kind_is_not_misread() -> None:
    with pytest.raises(ev.EventVersionError):
        ev.InstanceStarted.from_dict({"v": 99, "attempt": 1})
    assert isinstance(ev.decode("agent_started", {"v": 99}, "a"), ev.Unknown)
    unknown = ev.decode("agent_teleported", {"where": "mars"}, "a")
    assert unknown == ev.Unknown("agent_teleported", {"where": "mars"}, "a")
    assert apply(RunState(), Record("r", 1.0, unknown)) == RunState()


def test_instance_keys_print_and_parse() -> None:
    for key, text in [(A, "a"), (InstanceKey("fix", 2), "fix[2]"), (InstanceKey("fix", 2, 1), "fix[2]@1")]:
        assert str(key) == text and InstanceKey.parse(text) == key


def test_an_llm_call_keeps_its_try_field_name() -> None:
    call = ev.LlmCall(key=A, try_=3, used=10)
    assert Record("r", 1.0, call).data["try"] == 3
    assert ev.decode("llm_call", {"try": 3, "used": 10}, "a") == call


# -- transitions --------------------------------------------------------------------------------------


def test_illegal_moves_are_errors_not_silent_state() -> None:
    state = planned(plan_of({"a": {"intent": "x"}}))
    with pytest.raises(TransitionError):
        step(state, 1.0, ev.InstancePaused(key=A))  # pending, not running
    done = step(state, 1.0, ev.InstanceStarted(key=A, attempt=1), ev.InstanceExited(key=A, state="completed"))
    with pytest.raises(TransitionError):
        step(done, 2.0, ev.InstanceStarted(key=A, attempt=2))
    with pytest.raises(TransitionError):
        step(state, 1.0, ev.InstanceStarted(key=InstanceKey("ghost"), attempt=1))
    assert fold([Record("r", 2.0, ev.InstanceStarted(key=A, attempt=2))], done, strict=False) == done


def test_backoff_is_not_pending_and_retries_when_due() -> None:
    plan = plan_of({"a": {"intent": "x", "max_retries": 1}, "b": {"intent": "y", "depends_on": ["a"]}})
    state = step(planned(plan), 10.0, ev.InstanceStarted(key=A, attempt=1))
    failed = act.exit_decision(state.instance("a"), 1, 1, None, None, act.Options(retry_base_delay=5))
    assert (failed.state, failed.outcome, failed.retry_in) == (AgentState.BACKOFF, AgentState.FAILED, 5)
    state = step(state, 11.0, ev.InstanceExited(key=A, state="backoff", outcome="failed", retry_in=5))
    assert state.instance("a").state is AgentState.BACKOFF and state.instance("b").state is AgentState.PENDING
    assert act.next_actions(state, plan, 12.0) == act.Decision((), 16.0)
    assert act.next_actions(state, plan, 16.0).actions == (act.Start(A),)


def test_the_node_an_attempt_runs_on_is_kept_and_old_logs_have_none() -> None:
    """`node` of agent_started is the cluster node (where the PID lives), not the compose node."""
    plan = plan_of({"a": {"intent": "x", "max_retries": 1}})
    remote = ev.InstanceStarted(key=A, attempt=1, pid=4321, node="worker-1")
    state = step(planned(plan), 10.0, remote)
    inst = state.instance("a")
    assert (inst.node, inst.pid, inst.key.node) == ("worker-1", 4321, "a")
    assert Record("r", 10.0, remote).data["node"] == "worker-1"
    state = step(state, 11.0, ev.InstanceExited(key=A, state="backoff", outcome="failed", retry_in=0))
    assert state.instance("a").node == "worker-1"  # the last attempt's, until the next one starts
    state = step(state, 12.0, ev.InstanceStarted(key=A, attempt=2, pid=99))
    assert state.instance("a").node is None  # this one runs here
    old = ev.decode("agent_started", {"v": 1, "attempt": 1, "pid": 5000}, "a")  # written before nodes
    assert isinstance(old, ev.InstanceStarted) and old.node is None
    assert step(planned(plan), 10.0, old).instance("a").node is None


def test_paused_time_does_not_count_against_the_timeout() -> None:
    plan = plan_of({"a": {"intent": "x", "timeout": 10}})
    state = step(planned(plan), 100.0, ev.InstanceStarted(key=A, attempt=1))
    state = step(state, 103.0, ev.InstancePaused(key=A))
    assert act.next_actions(state, plan, 500.0).actions == ()  # paused: no deadline at all
    state = step(state, 200.0, ev.InstanceResumed(key=A))
    assert act.next_actions(state, plan, 205.0).wake_at == 207.0  # 3 s ran, 7 s left
    assert act.next_actions(state, plan, 207.0).actions == (act.Stop(A, "timeout", 5.0),)
    assert state.instance("a").elapsed_s(205.0) == pytest.approx(8.0)


def test_rate_limited_while_a_call_waits_and_never_after_the_attempt() -> None:
    plan = plan_of({"a": {"intent": "x", "max_retries": 1}})
    state = step(planned(plan), 1.0, ev.InstanceStarted(key=A, attempt=1))
    assert state.instance("a").rate_limited is False
    state = step(state, 2.0, ev.InstanceThrottled(key=A, waiting=True, reason="http_429", until=3.0))
    assert state.instance("a").rate_limited is True
    assert act.next_actions(state, plan, 2.5).actions == ()  # waiting changes no decision
    state = step(state, 3.0, ev.InstanceThrottled(key=A, waiting=False, reason="http_429"))
    assert state.instance("a").rate_limited is False
    # A wait that outlives the attempt ends with it; a late report does not mark the next one.
    state = step(state, 4.0, ev.InstanceThrottled(key=A, waiting=True, reason="max_concurrency"))
    state = step(state, 5.0, ev.InstanceExited(key=A, state="backoff", outcome="failed", retry_in=1))
    assert state.instance("a").rate_limited is False
    state = step(state, 5.5, ev.InstanceThrottled(key=A, waiting=True, reason="max_concurrency"))
    assert state.instance("a").rate_limited is False
    state = step(state, 6.0, ev.InstanceStarted(key=A, attempt=2))
    assert state.instance("a").rate_limited is False
    state = step(state, 7.0, ev.InstanceThrottled(key=A, waiting=True, reason="rpm"))
    state = step(state, 8.0, ev.InstanceCancelled(key=A, reason="stop"))
    assert state.instance("a").rate_limited is False


def test_a_stop_is_asked_once_and_waiting_agents_are_cancelled() -> None:
    plan = plan_of({"a": {"intent": "x"}, "b": {"intent": "y", "depends_on": ["a"]}})
    state = step(planned(plan), 1.0, ev.InstanceStarted(key=A, attempt=1))
    state = step(state, 2.0, ev.RunStopRequested(reason="compose down", grace=1.5))
    assert set(act.next_actions(state, plan, 2.0).actions) == {
        act.Stop(A, "compose down", 1.5),
        act.Cancel(InstanceKey("b"), "not started: compose down"),
    }
    state = step(state, 2.0, ev.InstanceStopping(key=A, reason="compose down", grace=1.5))
    assert act.Stop(A, "compose down", 1.5) not in act.next_actions(state, plan, 3.0).actions
    ended = act.exit_decision(state.instance("a"), 3, None, signal.SIGTERM, state.stopping)
    assert ended.state is AgentState.CANCELLED  # never retried while the run stops


def test_a_failure_skips_dependents_and_a_verdict_is_asked_for_what_ran() -> None:
    plan = plan_of({"a": {"intent": "x"}, "b": {"intent": "y", "depends_on": ["a"]}})
    state = step(planned(plan), 1.0, ev.InstanceStarted(key=A, attempt=1))
    state = step(state, 2.0, ev.InstanceExited(key=A, state="failed", outcome="failed"))
    assert act.next_actions(state, plan, 2.0).actions == (
        act.Assess(A),
        act.Skip(InstanceKey("b"), "dependency 'a' failed"),
    )
    options = act.Options(abort_on_failure=True)
    assert (
        act.StopRun("'a' failed (--abort-on-failure)") in act.next_actions(state, plan, 2.0, options).actions
    )


def test_built_in_dependents_of_running_agents_are_held_within_the_limit() -> None:
    plan = plan_of(
        {
            "a": {"intent": "x"},
            "b": {"intent": "y", "depends_on": ["a"]},
            "c": {"intent": "z", "depends_on": ["a"]},
            "cmd": {"intent": "w", "command": ["true"], "depends_on": ["a"]},  # may ignore stdin
            "d": {"intent": "v", "depends_on": ["b"]},  # b is only pending
        }
    )
    b, c = InstanceKey("b"), InstanceKey("c")
    early = act.Options(early_spawn=2)
    state = planned(plan)
    assert act.next_actions(state, plan, 0.0, early).actions == (act.Start(A),)  # nothing runs yet
    state = step(state, 1.0, ev.InstanceStarted(key=A, attempt=1))
    assert act.next_actions(state, plan, 1.0).actions == ()  # off by default
    assert act.next_actions(state, plan, 1.0, early).actions == (act.Hold(b), act.Hold(c))
    assert act.next_actions(state, plan, 1.0, early, frozenset({b})).actions == (act.Hold(c),)
    assert act.next_actions(state, plan, 1.0, act.Options(early_spawn=1), frozenset({b})).actions == ()
    # Released by the usual Start once `a` completed; skipped like any pending agent if it failed.
    done = step(state, 2.0, ev.InstanceExited(key=A, state="completed", outcome="completed"))
    assert act.Start(b) in act.next_actions(done, plan, 2.0, early, frozenset({b})).actions
    failed = step(state, 2.0, ev.InstanceExited(key=A, state="failed", outcome="failed"))
    assert act.Skip(b, "dependency 'a' failed") in act.next_actions(failed, plan, 2.0, early).actions
    stopping = step(state, 2.0, ev.RunStopRequested(reason="compose down"))
    assert act.Hold(b) not in act.next_actions(stopping, plan, 2.0, early).actions


def test_dependency_conditions_decide_who_runs_and_a_skip_by_condition_blocks_nothing() -> None:
    plan = plan_of(
        {
            "build": {"intent": "x"},
            "diagnose": {"intent": "y", "depends_on": {"build": "failed"}},
            "report": {"intent": "z", "depends_on": {"build": "finished"}},
            "notify": {"intent": "w", "depends_on": ["diagnose"]},
        }
    )
    build, diagnose, report, notify = (InstanceKey(n) for n in ("build", "diagnose", "report", "notify"))
    running = step(planned(plan), 1.0, ev.InstanceStarted(key=build, attempt=1))
    assert act.next_actions(running, plan, 1.0, act.Options(early_spawn=8)).actions == ()  # no holds
    # build completed: diagnose is skipped by condition, which does not block notify
    done = step(running, 2.0, ev.InstanceExited(key=build, state="completed", outcome="completed"))
    skip = act.Skip(diagnose, "dependency 'build' completed: this agent runs only if it failed", True)
    assert act.next_actions(done, plan, 2.0).actions == (act.Assess(build), skip, act.Start(report))
    done = step(done, 2.0, ev.InstanceSkipped(key=diagnose, reason=skip.reason, by_condition=True))
    assert done.instance("diagnose").ok and act.Start(notify) in act.next_actions(done, plan, 2.0).actions
    # build failed: diagnose and report run
    failed = step(running, 2.0, ev.InstanceExited(key=build, state="failed", outcome="failed"))
    assert act.next_actions(failed, plan, 2.0).actions == (
        act.Assess(build), act.Start(diagnose), act.Start(report)
    )  # fmt: skip
    # diagnose failed in turn: notify (which needs it completed) is skipped, as a failure
    failed = step(failed, 3.0, ev.InstanceStarted(key=diagnose, attempt=1))
    failed = step(failed, 4.0, ev.InstanceExited(key=diagnose, state="failed", outcome="failed"))
    assert act.Skip(notify, "dependency 'diagnose' failed") in act.next_actions(failed, plan, 4.0).actions
    # a skip that was not by condition does not satisfy `failed` either, and propagates
    skipped = step(planned(plan), 1.0, ev.InstanceSkipped(key=build, reason="dependency gone"))
    assert act.Skip(diagnose, "dependency 'build' skipped: this agent runs only if it failed") in (
        act.next_actions(skipped, plan, 1.0).actions
    )


def test_max_parallel_counts_running_held_and_starting_agents() -> None:
    plan = plan_of({n: {"intent": n} for n in ("a", "b", "c", "d")}, max_parallel=2)
    a, b, c, d = (InstanceKey(n) for n in "abcd")
    state = planned(plan)
    assert act.next_actions(state, plan, 0.0).actions == (act.Start(a), act.Start(b))  # plan order
    # a started, b still starting: no room, and nothing more is decided for b meanwhile
    state = step(state, 1.0, ev.InstanceStarted(key=a, attempt=1))
    assert act.next_actions(state, plan, 1.0, starting=frozenset({b})).actions == ()
    state = step(state, 1.0, ev.InstanceStarted(key=b, attempt=1))
    state = step(state, 2.0, ev.InstanceExited(key=a, state="completed", outcome="completed"))
    assert act.next_actions(state, plan, 2.0).actions == (act.Assess(a), act.Start(c))
    # a held agent takes room too, and releasing it takes no more
    early = act.Options(early_spawn=4)
    warming = act.next_actions(planned(plan), plan, 0.0, early, warming=True).actions
    assert warming == (act.Hold(a), act.Hold(b))
    released = act.next_actions(planned(plan), plan, 0.0, early, frozenset({a, b})).actions
    assert released == (act.Start(a), act.Start(b))
    assert act.Start(d) not in act.next_actions(state, plan, 2.0).actions


def test_a_reused_instance_counts_as_completed_but_not_as_spent() -> None:
    plan = plan_of({"a": {"intent": "x"}, "b": {"intent": "y", "depends_on": ["a"]}})
    state = step(planned(plan), 1.0, ev.InstanceReused(key=A, from_run="old", result="A", tokens_used=40))
    assert state.instance("a").state is AgentState.COMPLETED and state.tokens_used == 0
    assert act.next_actions(state, plan, 1.0).actions == (act.Start(InstanceKey("b")),)


# -- any legal history can be finished ----------------------------------------------------------------


@st.composite
def plans(draw: st.DrawFn) -> Plan:
    count = draw(st.integers(1, 6))
    agents: dict[str, dict[str, Any]] = {}
    for i in range(count):
        deps = draw(st.lists(st.sampled_from([f"n{j}" for j in range(i)]), unique=True)) if i else []
        agents[f"n{i}"] = {
            "intent": "x",
            "depends_on": deps,
            "max_retries": draw(st.integers(0, 2)),
            "timeout": draw(st.sampled_from([1, 5, 30])),
        }
    return plan_of(agents)


def world_moves(state: RunState, now: float) -> list[ev.Event]:
    """What the processes and users may do next, besides what the scheduler decides."""
    moves: list[ev.Event] = []
    for key, inst in state.instances.items():
        if inst.state is AgentState.RUNNING:
            moves += [ev.InstancePaused(key=key), exit_event(state, key, 0), exit_event(state, key, 1)]
        elif inst.state is AgentState.PAUSED:
            moves += [ev.InstanceResumed(key=key), exit_event(state, key, None)]
    if state.stopping is None:
        moves.append(ev.RunStopRequested(reason="compose down"))
    return moves


def exit_event(state: RunState, key: InstanceKey, code: int | None) -> ev.InstanceExited:
    inst = state.instances[key]
    sig = signal.SIGKILL if code is None else None
    decision = act.exit_decision(inst, 1, code, sig, state.stopping, act.Options(retry_base_delay=1))
    return ev.InstanceExited(
        key=key, state=decision.state.value, outcome=decision.outcome.value, retry_in=decision.retry_in
    )


def perform(state: RunState, action: act.Action) -> ev.Event | None:
    """The event the scheduler appends for an action (a start is the process starting)."""
    if isinstance(action, act.Start):
        return ev.InstanceStarted(key=action.key, attempt=state.instances[action.key].attempt + 1)
    if isinstance(action, act.Skip):
        return ev.InstanceSkipped(key=action.key, reason=action.reason)
    if isinstance(action, act.Cancel):
        return ev.InstanceCancelled(key=action.key, reason=action.reason)
    if isinstance(action, act.Stop):
        return ev.InstanceStopping(key=action.key, reason=action.reason, grace=action.grace)
    if isinstance(action, act.StopRun):
        return ev.RunStopRequested(reason=action.reason)
    return ev.InstanceAssessed(key=action.key, status="x")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plan=plans(), data=st.data())
def test_any_interleaving_of_legal_events_can_be_finished(plan: Plan, data: st.DataObject) -> None:
    state, now = planned(plan), 0.0
    # A random history: the scheduler's decisions and the world's moves, interleaved at random.
    for _ in range(data.draw(st.integers(0, 40))):
        decision = act.next_actions(state, plan, now)
        moves: list[ev.Event] = [e for a in decision.actions if (e := perform(state, a))] + world_moves(
            state, now
        )
        if not moves:
            break
        now += data.draw(st.sampled_from([0.0, 0.5, 2.0]))
        state = step(state, now, data.draw(st.sampled_from(moves)))  # never a TransitionError
    # From there, following next_actions finishes the run: paused agents are resumed (as quitting
    # `top` does), an agent asked to stop ends, and one that never ends by itself times out.
    for _ in range(1000):
        decision = act.next_actions(state, plan, now)
        events = [e for a in decision.actions if (e := perform(state, a))]
        for key, inst in state.instances.items():
            if inst.state is AgentState.PAUSED and inst.stop_reason is None:
                events.append(ev.InstanceResumed(key=key))
            elif inst.state.signallable and inst.stop_reason is not None:
                events.append(exit_event(state, key, None))
        if events:
            state = step(state, now, events[0])
        elif decision.wake_at is not None:
            now = max(now, decision.wake_at)
        else:
            break
    assert state.all_terminal, {str(k): i.state.value for k, i in state.instances.items()}
    assert act.next_actions(state, plan, now).actions == ()
