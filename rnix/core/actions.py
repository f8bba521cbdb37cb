"""What to do next: `next_actions(state, plan, now, options)`, a pure function of the fold's state.

The scheduler performs the actions and appends the events that result; it decides nothing itself.

- `Start(key)`: a pending instance whose dependencies all completed, or one in backoff whose delay
  is over (the next attempt).
- `Skip(key, reason)`: a pending instance with a dependency that ended without completing.
- `Cancel(key, reason)`: once the run is stopping, every instance that waits (pending or backoff).
- `Stop(key, reason, grace)`: a running (or paused) attempt past its timeout (the clock leaves paused
  time out), or every running attempt once the run is stopping. Never twice for one attempt.
- `StopRun(reason)`: with `abort_on_failure`, the first instance that ended badly stops the run.
- `Assess(key)`: an instance this run executed reached its end and has no verdict yet.

`Decision.wake_at` is the earliest time at which a decision changes by the clock alone (a backoff or
a timeout ending); the scheduler sleeps until then or until an event arrives.

`exit_decision` is the other decision the scheduler needs: where an ended attempt takes the
instance (retry with backoff, or a terminal state).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rnix.core.events import InstanceKey
from rnix.core.fold import Instance, RunState
from rnix.core.lifecycle import AgentState, exit_state_for

if TYPE_CHECKING:
    from rnix.core.plan import Plan


@dataclass(frozen=True)
class Options:
    abort_on_failure: bool = False
    retry_base_delay: float = 1.0  # seconds before the first retry; doubles each time
    retry_max_delay: float = 30.0
    # Early spawn: at most this many built-in agents are forked ahead of their release, while
    # their dependencies run, and wait for their task (0: never; see `Hold`).
    early_spawn: int = 0


DEFAULT_OPTIONS = Options()


@dataclass(frozen=True)
class Start:
    key: InstanceKey


@dataclass(frozen=True)
class Skip:
    key: InstanceKey
    reason: str
    by_condition: bool = False  # a dependency's condition was not met (InstanceSkipped.by_condition)


@dataclass(frozen=True)
class Cancel:
    key: InstanceKey
    reason: str


@dataclass(frozen=True)
class Stop:
    key: InstanceKey
    reason: str
    grace: float


@dataclass(frozen=True)
class StopRun:
    reason: str


@dataclass(frozen=True)
class Assess:
    key: InstanceKey


@dataclass(frozen=True)
class Hold:
    """Fork this pending built-in agent now, to wait for its task: its dependencies are running or
    completed, so it will most likely start, and its start-up (fork, gateway handshake) then costs
    nothing on the critical path. Its Start releases it; its Skip or Cancel stops the process.
    Nothing is recorded for a hold: the instance stays pending until released."""

    key: InstanceKey


Action = Start | Skip | Cancel | Stop | StopRun | Assess | Hold


@dataclass(frozen=True)
class Decision:
    actions: tuple[Action, ...]
    wake_at: float | None  # None: nothing is due by the clock alone


_BAD_ENDS = frozenset({AgentState.FAILED, AgentState.TIMEOUT, AgentState.BUDGET_EXCEEDED})


def next_actions(
    state: RunState,
    plan: Plan,
    now: float,
    options: Options = DEFAULT_OPTIONS,
    held: frozenset[InstanceKey] = frozenset(),
    warming: bool = False,
    starting: frozenset[InstanceKey] = frozenset(),
) -> Decision:
    """What to do now. `held`: the instances forked early and waiting for their task (`Hold`).
    `warming`: what agents' first calls need (token encodings, clients) is still loading, so
    nothing starts yet; agents that could start are held instead (their start-up then overlaps
    the loading, and their clock starts when they are released). `starting`: instances whose
    start (or hold) is under way: nothing more is decided for them until it is done.

    The file's `max_parallel` caps the agents alive at once: running, paused, held or starting.
    A Start or Hold that would go over it is not decided now; the others' ends make room, and
    instances take it in plan order. Releasing a held agent takes no new room."""
    specs = {a.spec.name: a.spec for a in plan.agents}
    actions: list[Action] = []
    wake: list[float] = []
    stopping = state.stopping
    room = options.early_spawn - len(held)
    cap = plan.spec.max_parallel
    alive = sum(i.state.signallable for i in state.instances.values()) + len(held | starting)
    slots = None if cap is None else cap - alive
    for key, inst in state.instances.items():
        spec = specs.get(key.node)
        if spec is None:
            continue
        if inst.state.terminal:
            if inst.ran and not inst.assessed and inst.state is not AgentState.CANCELLED:
                actions.append(Assess(key))
            continue
        if key in starting:
            continue
        if stopping is not None:
            if inst.state.waiting:
                word = "not retried" if inst.state is AgentState.BACKOFF else "not started"
                actions.append(Cancel(key, f"{word}: {stopping}"))
            elif inst.stop_reason is None:
                grace = spec.stop_grace_period_s if state.stop_grace is None else state.stop_grace
                actions.append(Stop(key, stopping, grace))
            continue
        if inst.state is AgentState.PENDING:
            decided = _pending(state, inst, spec.conditions)
            startable = bool(decided) and isinstance(decided[0], Start)
            if warming and startable:
                decided = []
            holdable = (not spec.conditions and _holdable(state, inst, spec.command)) or (
                startable and _first_builtin(inst, spec.command)
            )
            if not decided and room > 0 and key not in held and holdable and (slots is None or slots > 0):
                decided, room = [Hold(key)], room - 1
                slots = None if slots is None else slots - 1
            elif decided and isinstance(decided[0], Start) and key not in held and slots is not None:
                if slots <= 0:
                    decided = []  # waits for room under max_parallel
                else:
                    slots -= 1
            actions.extend(decided)
        elif inst.state is AgentState.BACKOFF:
            due = inst.retry_at if inst.retry_at is not None else now
            if due > now:
                wake.append(due)
            elif slots is None or slots > 0:
                actions.append(Start(key))
                slots = None if slots is None else slots - 1
        elif inst.state is AgentState.RUNNING and inst.stop_reason is None:
            deadline = inst.deadline(spec.timeout_s)
            if deadline is not None and deadline <= now:
                actions.append(Stop(key, "timeout", spec.stop_grace_period_s))
            elif deadline is not None:
                wake.append(deadline)
    if options.abort_on_failure and stopping is None:
        bad = next((i for i in state.instances.values() if i.state in _BAD_ENDS and i.ran), None)
        if bad is not None:
            actions.append(StopRun(f"'{bad.name}' {bad.state.value} (--abort-on-failure)"))
    return Decision(tuple(actions), min(wake) if wake else None)


def _pending(state: RunState, inst: Instance, conditions: Mapping[str, str]) -> list[Action]:
    """Start once every dependency met its condition; skip as soon as one cannot.

    `completed` (the default) is met by a completed dependency, or by one skipped by a condition (it
    need not have run: the agent runs without its result); `failed` by one that failed, timed out or
    ran out of budget; `finished` by any end. A dependency that ended otherwise skips the agent: by
    condition when the dependency ended as it should have (`{build: failed}` after build completed),
    else as a failure that propagates."""
    deps = [state.instances.get(InstanceKey(dep)) for dep in inst.depends_on]
    waiting = False
    for dep_name, dep in zip(inst.depends_on, deps, strict=True):
        if dep is None:
            return [Skip(inst.key, f"dependency '{dep_name}' is not in the run")]
        if not dep.state.terminal:
            waiting = True
            continue
        condition = conditions.get(dep_name, "completed")
        if condition == "finished":
            continue
        if condition == "failed":
            if dep.state not in _BAD_ENDS:
                reason = f"dependency '{dep_name}' {dep.state.value}: this agent runs only if it failed"
                return [Skip(inst.key, reason, by_condition=dep.ok)]
            continue
        if not dep.ok:
            return [Skip(inst.key, f"dependency '{dep_name}' {dep.state.value}")]
    return [] if waiting else [Start(inst.key)]


_UNDER_WAY = frozenset({AgentState.RUNNING, AgentState.PAUSED, AgentState.COMPLETED})


def _first_builtin(inst: Instance, command: object) -> bool:
    """A first attempt of a built-in agent: a command cannot wait for its task (it may ignore stdin)."""
    return command is None and inst.attempt == 0


def _holdable(state: RunState, inst: Instance, command: object) -> bool:
    """A first attempt of a built-in agent whose dependencies are all running or completed, one at
    least still running."""
    if not _first_builtin(inst, command) or not inst.depends_on:
        return False
    deps = [state.instances.get(InstanceKey(dep)) for dep in inst.depends_on]
    return all(d is not None and d.state in _UNDER_WAY for d in deps)


@dataclass(frozen=True)
class ExitDecision:
    state: AgentState  # terminal, or BACKOFF for a retry
    outcome: AgentState  # how the attempt itself ended
    retry_in: float | None


def exit_decision(
    inst: Instance,
    max_retries: int,
    returncode: int | None,
    signal: int | None,
    stopping: str | None,
    options: Options = DEFAULT_OPTIONS,
) -> ExitDecision:
    """Where an ended attempt takes the instance: a failure or timeout is retried with backoff
    (base delay doubling, capped) while attempts are left and the run is not stopping."""
    timed_out = inst.stop_reason == "timeout"
    cancelled = inst.stop_reason is not None and not timed_out
    outcome = exit_state_for(returncode, signal, timed_out, cancelled)
    retry = (
        outcome in (AgentState.FAILED, AgentState.TIMEOUT) and inst.attempt <= max_retries and not stopping
    )
    if not retry:
        return ExitDecision(outcome, outcome, None)
    delay = min(options.retry_max_delay, options.retry_base_delay * 2 ** (inst.attempt - 1))
    return ExitDecision(AgentState.BACKOFF, outcome, delay)
