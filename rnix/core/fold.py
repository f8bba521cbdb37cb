"""The run as a fold of its events: `apply(RunState, Record) -> RunState`. Pure.

`RunState` holds the run's agent *instances*, keyed by `InstanceKey` (node, index, iteration). A
state changes only here, and only through `lifecycle.transition`: an event that asks for a move the
lifecycle forbids raises `TransitionError` (`fold(..., strict=False)` skips such events instead, for
reading logs written by older versions). Times are the records' timestamps (seconds since the
epoch), so folding the same log always gives the same state: that is what resume relies on.

`up`'s live view and `--json`, the scheduler's decisions (`rnix.core.actions`) and resume all read
this state; `ps` and `top` read the SQL projection the store keeps from the same events.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from rnix.core import events as ev
from rnix.core.events import InstanceKey, Record
from rnix.core.lifecycle import AgentState, RunStatus, TransitionError, transition

_T = TypeVar("_T")


@dataclass(frozen=True)
class Instance:
    """One agent instance as the log tells it."""

    key: InstanceKey
    state: AgentState = AgentState.PENDING
    layer: int | None = None
    depends_on: tuple[str, ...] = ()
    model: str | None = None
    kind: str | None = None
    intent: str | None = None
    priority: str | None = None
    planned_budget: int | None = None
    spec_hash: str | None = None
    attempt: int = 0  # attempts started so far
    budget: int = 0  # what the pool funded when it first started
    pid: int | None = None
    pid_start_time: float | None = None
    pid_start_ticks: int | None = None
    # The cluster node the running (or last) attempt runs on, where `pid` lives; None: this
    # machine. Not `key.node`, which is the compose node.
    node: str | None = None
    tokens_used: int = 0
    started_at: float | None = None  # the first attempt's start
    attempt_started_at: float | None = None
    ended_at: float | None = None
    paused_at: float | None = None  # while paused
    paused_s: float = 0.0  # time spent paused in this attempt (the timeout clock leaves it out)
    paused_total_s: float = 0.0  # ... and over all attempts (elapsed time leaves it out)
    retry_at: float | None = None  # in backoff: when the next attempt is due
    stop_reason: str | None = None  # the supervisor is stopping this attempt (timeout, a run stop)
    exit_code: int | None = None
    signal: int | None = None
    result: str | None = None
    error: str | None = None
    reused_from: str | None = None  # completed in that earlier run; not run again
    by_condition: bool = False  # skipped because a dependency's condition was not met
    assessed: bool = False
    sla: dict[str, Any] | None = None
    log_path: str | None = None
    out_path: str | None = None
    item: Any = None  # a for_each instance's item
    label: str | None = None  # a for_each instance's item_name
    children: int | None = None  # a for_each node once expanded: how many instances it has
    # At an approval gate: its decisions so far (by, decision, message), and when the wait ends.
    approvals: tuple[tuple[str, str, str | None], ...] = ()
    approval_deadline: float | None = None
    rate_limited: bool = False  # a model call of the running attempt waits for the provider's limits
    # Compensation (saga, rnix.core.saga): on a compensation instance, the instance it undoes; on a
    # compensated one, where its compensation is (pending, compensating, compensated, or
    # "compensation failed: ..."); `completed_seq`: its place in the run's order of completion.
    compensates: str | None = None
    compensation: str | None = None
    completed_seq: int | None = None

    @property
    def name(self) -> str:
        return str(self.key)

    @property
    def ok(self) -> bool:
        """Ended as it should: completed, or skipped because a condition said it need not run."""
        return self.state is AgentState.COMPLETED or (self.state is AgentState.SKIPPED and self.by_condition)

    @property
    def ran(self) -> bool:
        """Whether this run executed it (a reused or never-started instance did not)."""
        return self.attempt > 0

    def elapsed_s(self, now: float) -> float:
        """Running time over all attempts, paused time left out."""
        if self.started_at is None:
            return 0.0
        end = self.ended_at if self.ended_at is not None else now
        paused = self.paused_total_s + (now - self.paused_at if self.paused_at is not None else 0.0)
        return max(0.0, end - self.started_at - paused)

    def deadline(self, timeout_s: float) -> float | None:
        """When the running attempt times out; None while paused or not running."""
        if self.state is not AgentState.RUNNING or self.attempt_started_at is None:
            return None
        return self.attempt_started_at + timeout_s + self.paused_s


@dataclass(frozen=True)
class LoopState:
    """Where a loop is: the iteration that runs (or ran last), and how it ended."""

    iteration: int = 0
    ended: bool = False
    status: str | None = None  # completed | failed, once ended
    reason: str | None = None


@dataclass(frozen=True)
class RunState:
    run_id: str = ""
    project: str = ""
    status: RunStatus = RunStatus.RUNNING
    started_at: float | None = None
    ended_at: float | None = None
    exit_code: int | None = None
    resumed_from: str | None = None
    stopping: str | None = None  # why the run is stopping, once asked to
    stop_grace: float | None = None  # the grace the stop asked for (None: each agent's own)
    # Read-only by contract (never mutated after a RunState is built); a plain dict because copying
    # one keeps its keys' hashes, and the fold copies it once per event.
    instances: Mapping[InstanceKey, Instance] = field(default_factory=dict)
    loops: Mapping[str, LoopState] = field(default_factory=dict)
    stop_failure: bool = False  # the stop asked for is a failure's (--abort-on-failure), not a user's
    completions: int = 0  # instances completed so far: the next one's `completed_seq`

    def loop(self, name: str) -> LoopState:
        return self.loops.get(name) or LoopState()

    def instance(self, key: InstanceKey | str) -> Instance:
        return self.instances[key if isinstance(key, InstanceKey) else InstanceKey.parse(key)]

    @property
    def all_terminal(self) -> bool:
        return all(i.state.terminal for i in self.instances.values())

    @property
    def tokens_used(self) -> int:
        return sum(i.tokens_used for i in self.instances.values() if i.reused_from is None)


def fold(records: Iterable[Record], state: RunState | None = None, *, strict: bool = True) -> RunState:
    """Apply every record in order. `strict=False` skips events the lifecycle rejects."""
    state = state if state is not None else RunState()
    for record in records:
        try:
            state = apply(state, record)
        except TransitionError:
            if strict:
                raise
    return state


def apply(state: RunState, record: Record) -> RunState:
    """The state after `record`. Raises TransitionError for an event the lifecycle forbids."""
    event = record.event
    handler = _RUN_HANDLERS.get(type(event))
    if handler is not None:
        new: RunState = handler(state, event, record.ts)
        return new
    key = event.instance
    if key is None:
        return state  # an unknown kind: kept in the log, not folded
    if isinstance(event, ev.InstancePlanned):
        old = state.instances.get(key)
        return _put(state, _planned(old or Instance(key), event))
    current = state.instances.get(key)
    if current is None:
        raise TransitionError(f"event {record.kind} for {key}, which was never planned")
    instance_handler = _INSTANCE_HANDLERS.get(type(event))
    if instance_handler is None:
        return state
    changed: Instance = instance_handler(current, event, record.ts)
    if changed.state is not current.state:
        return _state_changed(_put(state, changed), changed)
    return _put(state, changed)


# -- run events ---------------------------------------------------------------------------------------


def _run_started(state: RunState, e: ev.RunStarted, ts: float) -> RunState:
    return replace(
        state,
        project=e.project,
        status=RunStatus.RUNNING,
        started_at=ts,
        resumed_from=e.resumed_from,
    )


def _stop_requested(state: RunState, e: ev.RunStopRequested, ts: float) -> RunState:
    if state.stopping is not None and not (state.stop_failure and not e.failure):
        return state  # the first reason stands (a user's stop overrides a failure's)
    return replace(state, stopping=e.reason, stop_grace=e.grace, stop_failure=e.failure)


def _run_finished(state: RunState, e: ev.RunFinished, ts: float) -> RunState:
    # Once a run has ended nothing of it is live, whatever its supervisor managed to record.
    instances = dict.copy(state.instances)  # type: ignore[arg-type]
    for key, inst in state.instances.items():
        if not inst.state.terminal:
            instances[key] = _settle(inst, AgentState.CANCELLED, inst.error or e.reason, ts)
    return replace(
        state,
        status=RunStatus(e.status),
        ended_at=ts,
        exit_code=e.exit_code,
        instances=instances,
    )


def _loop_iterated(state: RunState, e: ev.LoopIterated, ts: float) -> RunState:
    current = state.loop(e.loop)
    if current.ended or e.iteration != current.iteration + 1:
        raise TransitionError(f"loop {e.loop} cannot go from iteration {current.iteration} to {e.iteration}")
    return replace(state, loops={**state.loops, e.loop: LoopState(iteration=e.iteration)})


def _loop_ended(state: RunState, e: ev.LoopEnded, ts: float) -> RunState:
    current = state.loop(e.loop)
    if current.ended:
        raise TransitionError(f"loop {e.loop} ended twice")
    ended = LoopState(iteration=current.iteration, ended=True, status=e.status, reason=e.reason)
    return replace(state, loops={**state.loops, e.loop: ended})


_RUN_HANDLERS: dict[type, Any] = {
    ev.LoopIterated: _loop_iterated,
    ev.LoopEnded: _loop_ended,
    ev.RunStarted: _run_started,
    ev.RunStopRequested: _stop_requested,
    ev.RunFinished: _run_finished,
}


# -- instance events ----------------------------------------------------------------------------------


def _planned(inst: Instance, e: ev.InstancePlanned) -> Instance:
    if inst.state is not AgentState.PENDING or inst.attempt:
        raise TransitionError(f"{inst.key} was planned again after it started")
    return replace(
        inst,
        layer=e.layer,
        depends_on=tuple(e.depends_on),
        model=e.model,
        kind=e.kind,
        intent=e.intent,
        priority=e.priority,
        planned_budget=e.budget,
        spec_hash=e.spec_hash,
        item=e.item,
        label=e.label,
    )


def _reused(inst: Instance, e: ev.InstanceReused, ts: float) -> Instance:
    return replace(
        inst,
        state=transition(inst.state, AgentState.COMPLETED),
        result=e.result,
        tokens_used=e.tokens_used,
        reused_from=e.from_run,
        assessed=True,  # its verdict belongs to the run that executed it
        sla=e.sla,
        ended_at=ts,
    )


def _started(inst: Instance, e: ev.InstanceStarted, ts: float) -> Instance:
    if inst.state not in (AgentState.PENDING, AgentState.BACKOFF, AgentState.WAITING_APPROVAL):
        raise TransitionError(f"an agent cannot go from {inst.state.value} to running (start)")
    return replace(
        inst,
        state=transition(inst.state, AgentState.RUNNING),
        attempt=e.attempt,
        budget=e.budget if e.budget is not None else inst.budget,
        pid=e.pid,
        pid_start_time=e.pid_start_time,
        pid_start_ticks=e.pid_start_ticks,
        node=e.node,
        started_at=inst.started_at if inst.started_at is not None else ts,
        attempt_started_at=ts,
        ended_at=None,
        paused_at=None,
        paused_s=0.0,
        retry_at=None,
        stop_reason=None,
        exit_code=None,
        signal=None,
        result=None,
        error=None,
        log_path=e.log_path,
        out_path=e.out_path,
        rate_limited=False,
    )


def _llm_call(inst: Instance, e: ev.LlmCall, ts: float) -> Instance:
    return inst if e.used is None else replace(inst, tokens_used=int(e.used))


def _signalled(inst: Instance, e: ev.InstanceSignalled, ts: float) -> Instance:
    return inst


def _stopping(inst: Instance, e: ev.InstanceStopping, ts: float) -> Instance:
    if not inst.state.signallable:
        raise TransitionError(f"{inst.key} is {inst.state.value}: there is nothing to stop")
    return inst if inst.stop_reason is not None else replace(inst, stop_reason=e.reason)


def _paused(inst: Instance, e: ev.InstancePaused, ts: float) -> Instance:
    return replace(inst, state=transition(inst.state, AgentState.PAUSED), paused_at=ts)


def _resumed(inst: Instance, e: ev.InstanceResumed, ts: float) -> Instance:
    return _unpause(replace(inst, state=transition(inst.state, AgentState.RUNNING)), ts)


def _unpause(inst: Instance, ts: float) -> Instance:
    if inst.paused_at is None:
        return inst
    held = max(0.0, ts - inst.paused_at)
    return replace(
        inst, paused_at=None, paused_s=inst.paused_s + held, paused_total_s=inst.paused_total_s + held
    )


def _exited(inst: Instance, e: ev.InstanceExited, ts: float) -> Instance:
    new = AgentState(e.state)
    inst = _unpause(inst, ts)
    inst = replace(
        inst,
        state=transition(inst.state, new),
        exit_code=e.exit_code,
        signal=e.signal,
        tokens_used=e.tokens_used if e.tokens_used is not None else inst.tokens_used,
        result=e.result,
        error=e.error,
        stop_reason=None,
        rate_limited=False,
    )
    if new is AgentState.BACKOFF:
        return replace(inst, retry_at=ts + (e.retry_in or 0.0), pid=inst.pid)
    return replace(inst, ended_at=ts)


def _settle(inst: Instance, state: AgentState, reason: str | None, ts: float) -> Instance:
    inst = _unpause(inst, ts)
    return replace(
        inst,
        state=transition(inst.state, state),
        error=reason,
        ended_at=ts,
        retry_at=None,
        rate_limited=False,
    )


def _skipped(inst: Instance, e: ev.InstanceSkipped, ts: float) -> Instance:
    return replace(_settle(inst, AgentState.SKIPPED, e.reason, ts), by_condition=e.by_condition)


def _cancelled(inst: Instance, e: ev.InstanceCancelled, ts: float) -> Instance:
    return _settle(inst, AgentState.CANCELLED, e.reason, ts)


def _unfunded(inst: Instance, e: ev.InstanceUnfunded, ts: float) -> Instance:
    reason = f"the budget pool cannot fund it ({e.available:,} tokens left)"
    return _settle(inst, AgentState.BUDGET_EXCEEDED, reason, ts)


def _assessed(inst: Instance, e: ev.InstanceAssessed, ts: float) -> Instance:
    return replace(inst, assessed=True, sla=e.sla)


def _expanded(inst: Instance, e: ev.InstanceExpanded, ts: float) -> Instance:
    if inst.state is not AgentState.PENDING or inst.children is not None:
        raise TransitionError(f"{inst.key} cannot be expanded: it is {inst.state.value}")
    return replace(inst, children=e.count, started_at=ts)


def _settled_node(inst: Instance, e: ev.InstanceSettled, ts: float) -> Instance:
    return replace(
        inst,
        state=transition(inst.state, AgentState(e.state)),
        result=e.result,
        error=e.error,
        ended_at=ts,
        started_at=inst.started_at if inst.started_at is not None else ts,
    )


def _throttled(inst: Instance, e: ev.InstanceThrottled, ts: float) -> Instance:
    # A wait reported after the attempt ended (the gateway outlives the process) changes nothing.
    return replace(inst, rate_limited=bool(e.waiting)) if inst.state.signallable else inst


def _approval_requested(inst: Instance, e: ev.ApprovalRequested, ts: float) -> Instance:
    return replace(
        inst, state=transition(inst.state, AgentState.WAITING_APPROVAL), approval_deadline=e.deadline
    )


def _approval_decided(inst: Instance, e: ev.ApprovalDecided, ts: float) -> Instance:
    if inst.state is not AgentState.WAITING_APPROVAL:
        raise TransitionError(f"{inst.key} is {inst.state.value}: it is not waiting for approval")
    return replace(inst, approvals=(*inst.approvals, (e.by, e.decision, e.message)))


_INSTANCE_HANDLERS: dict[type, Any] = {
    ev.ApprovalRequested: _approval_requested,
    ev.ApprovalDecided: _approval_decided,
    ev.InstanceExpanded: _expanded,
    ev.InstanceSettled: _settled_node,
    ev.InstanceReused: _reused,
    ev.InstanceStarted: _started,
    ev.LlmCall: _llm_call,
    ev.InstanceSignalled: _signalled,
    ev.InstanceStopping: _stopping,
    ev.InstancePaused: _paused,
    ev.InstanceResumed: _resumed,
    ev.InstanceExited: _exited,
    ev.InstanceSkipped: _skipped,
    ev.InstanceCancelled: _cancelled,
    ev.InstanceUnfunded: _unfunded,
    ev.InstanceAssessed: _assessed,
    ev.InstanceThrottled: _throttled,
}


# -- compensation (saga) ------------------------------------------------------------------------------


def _compensation_planned(state: RunState, e: ev.CompensationPlanned, ts: float) -> RunState:
    comp = state.instances.get(e.key)
    of = state.instances.get(InstanceKey.parse(e.of))
    if comp is None or of is None:
        raise TransitionError(f"compensation {e.key} of {e.of}: not planned")
    state = _put(state, replace(comp, compensates=e.of))
    return _put(state, replace(of, compensation="pending"))


_RUN_HANDLERS[ev.CompensationPlanned] = _compensation_planned


def _state_changed(state: RunState, inst: Instance) -> RunState:
    """Bookkeeping of a change of state: the order of completion, and a compensation's progress
    shown on the instance it undoes."""
    if inst.state is AgentState.COMPLETED:
        inst = replace(inst, completed_seq=state.completions)
        state = replace(_put(state, inst), completions=state.completions + 1)
    if inst.compensates is not None:
        of = state.instances.get(InstanceKey.parse(inst.compensates))
        if of is not None:
            state = _put(state, replace(of, compensation=_compensation_word(inst)))
    return state


def _compensation_word(comp: Instance) -> str:
    if comp.state is AgentState.COMPLETED:
        return "compensated"
    if not comp.state.terminal:
        return "compensating"
    return f"compensation {comp.state.value}" + (f": {comp.error}" if comp.error else "")


def replace(obj: _T, **changes: Any) -> _T:
    """`dataclasses.replace` for these frozen records, without re-running `__init__`: the fold
    applies it once or twice per event, and a 30-field `__init__` made it the fold's main cost."""
    new = object.__new__(type(obj))
    new.__dict__.update(obj.__dict__)
    new.__dict__.update(changes)
    return new


def _put(state: RunState, inst: Instance) -> RunState:
    instances = dict.copy(state.instances)  # type: ignore[arg-type]
    instances[inst.key] = inst
    return replace(state, instances=instances)
