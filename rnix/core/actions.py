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
- A jury (`aggregate`, rnix.core.jury) is expanded into one instance per candidate, settled by its
  verdict; members still running or waiting once it is decided (`first`, `quorum`) get a `Stop`
  or a `Cancel`.

`Decision.wake_at` is the earliest time at which a decision changes by the clock alone (a backoff or
a timeout ending); the scheduler sleeps until then or until an event arrives.

`exit_decision` is the other decision the scheduler needs: where an ended attempt takes the
instance (retry with backoff, or a terminal state).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rnix.core.events import InstanceKey
from rnix.core.fold import Instance, RunState
from rnix.core.lifecycle import AgentState, exit_state_for

if TYPE_CHECKING:
    from rnix.core.model import AgentSpec, ComposeSpec
    from rnix.core.plan import Plan


@dataclass(frozen=True)
class Options:
    abort_on_failure: bool = False
    retry_base_delay: float = 1.0  # seconds before the first retry; doubles each time
    retry_max_delay: float = 30.0
    # Early spawn: at most this many built-in agents are forked ahead of their release, while
    # their dependencies run, and wait for their task (0: never; see `Hold`).
    early_spawn: int = 0
    compensate: bool = True  # run `compensate:` when the run fails (rnix.core.saga); --no-compensate


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


@dataclass(frozen=True)
class Expand:
    """A `for_each` node whose list was evaluated: plan one instance per item."""

    key: InstanceKey
    items: tuple[Any, ...]
    labels: tuple[str | None, ...]


@dataclass(frozen=True)
class Settle:
    """End a node that has no process of its own: a `for_each` node once its instances ended, or
    an agent whose expression could not be evaluated (`state` failed)."""

    key: InstanceKey
    state: AgentState
    result: str | None
    error: str | None


@dataclass(frozen=True)
class Iterate:
    """A loop whose `until` is false after `iteration - 1`: plan its body again as `iteration`."""

    loop: str
    iteration: int
    reason: str


@dataclass(frozen=True)
class EndLoop:
    loop: str
    status: str  # completed | failed
    reason: str


@dataclass(frozen=True)
class AskApproval:
    """The instance reached its approval gate: record that it waits, until `deadline` if any."""

    key: InstanceKey
    deadline: float | None


@dataclass(frozen=True)
class TimeOutApproval:
    """Nobody decided before the gate's deadline: record its `on_timeout` decision."""

    key: InstanceKey
    decision: str


Action = (
    Start
    | Skip
    | Cancel
    | Stop
    | StopRun
    | Assess
    | Hold
    | Expand
    | Settle
    | Iterate
    | EndLoop
    | AskApproval
    | TimeOutApproval
)


@dataclass(frozen=True)
class Decision:
    actions: tuple[Action, ...]
    wake_at: float | None  # None: nothing is due by the clock alone


_BAD_ENDS = frozenset({AgentState.FAILED, AgentState.TIMEOUT, AgentState.BUDGET_EXCEEDED})
# How a `{x: failed}` dependency may have ended; a rejected gate counts (its work did not happen).
_FAILED_ENDS = _BAD_ENDS | {AgentState.REJECTED}


def next_actions(
    state: RunState,
    plan: Plan,
    now: float,
    options: Options = DEFAULT_OPTIONS,
    held: frozenset[InstanceKey] = frozenset(),
    warming: bool = False,
    starting: frozenset[InstanceKey] = frozenset(),
    graph: Graph | None = None,
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
    graph = graph if graph is not None else Graph(plan.spec)  # the scheduler keeps one per run
    actions: list[Action] = []
    wake: list[float] = []
    stopping = state.stopping
    room = options.early_spawn - len(held)
    cap = plan.spec.max_parallel
    alive = sum(i.state.signallable for i in state.instances.values()) + len(held | starting)
    slots = None if cap is None else cap - alive
    fanned_alive: dict[InstanceKey, int] = {}  # a for_each node's instances alive, for its max_parallel
    if graph.fans_out:
        for key, inst in state.instances.items():
            if key.fanned and (inst.state.signallable or key in held or key in starting):
                fanned_alive[key.node_key()] = fanned_alive.get(key.node_key(), 0) + 1
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
        if key.fanned and spec.aggregate is not None and _jury_over(state, key):
            actions.extend(_dismiss(inst, spec))
            continue
        if inst.state is AgentState.PENDING and inst.children is not None:
            joined = (
                _join(state, inst, spec, graph)
                if spec.aggregate is None
                else _verdict(state, inst, spec, plan)
            )
            if joined is not None:
                actions.append(joined)
        elif inst.state is AgentState.PENDING and key.fanned:
            node_cap = spec.max_parallel
            busy = fanned_alive.get(key.node_key(), 0)
            if warming or (node_cap is not None and busy >= node_cap) or (slots is not None and slots <= 0):
                continue
            fanned_alive[key.node_key()] = busy + 1
            slots = None if slots is None else slots - 1
            actions.append(Start(key))
        elif inst.state is AgentState.PENDING:
            decided = _pending(state, inst, spec.conditions, graph)
            startable = bool(decided) and isinstance(decided[0], Start)
            if startable and (
                spec.when is not None or spec.for_each is not None or spec.aggregate is not None
            ):
                decided = _evaluate(state, inst, spec, graph)
                startable = bool(decided) and isinstance(decided[0], Start)
            if startable and spec.approval is not None:  # a gate: wait for people, not for the pool
                timeout = spec.approval.timeout_s
                actions.append(AskApproval(key, None if timeout is None else now + timeout))
                continue
            if warming and startable:
                decided = []
            plain = (
                not spec.conditions
                and spec.when is None
                and spec.for_each is None
                and spec.approval is None
                and spec.aggregate is None
            )
            holdable = (plain and _holdable(state, inst, spec.command, graph)) or (
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
        elif inst.state is AgentState.WAITING_APPROVAL and spec.approval is not None:
            from rnix.core.approval import verdict

            word, why = verdict(spec.approval, inst.approvals)
            if word == "rejected":
                actions.append(Settle(key, AgentState.REJECTED, None, why))
            elif word == "approved" and (slots is None or slots > 0):
                actions.append(Start(key))
                slots = None if slots is None else slots - 1
            elif word == "waiting" and inst.approval_deadline is not None:
                if inst.approval_deadline <= now:
                    actions.append(TimeOutApproval(key, spec.approval.on_timeout))
                else:
                    wake.append(inst.approval_deadline)
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
    if stopping is None and plan.spec.loops:
        actions.extend(_loops(state, plan.spec, graph))
    if options.abort_on_failure and stopping is None:
        bad = next((i for i in state.instances.values() if i.state in _BAD_ENDS and i.ran), None)
        if bad is not None:
            actions.append(StopRun(f"'{bad.name}' {bad.state.value} (--abort-on-failure)"))
    return Decision(tuple(actions), min(wake) if wake else None)


class Graph:
    """Which instance of a dependency an instance reads, across loops: a dependency in the same
    loop is read in the same iteration; one in another loop once that loop ended, in its last
    iteration; any other in its only instance."""

    def __init__(self, spec: ComposeSpec) -> None:
        self.spec = spec
        self.loop_of = {name: loop.name for loop in spec.loops for name in loop.body}
        self.loops = {loop.name: loop for loop in spec.loops}
        self.specs = {a.name: a for a in spec.agents}
        self.fans_out = any(a.for_each is not None for a in spec.agents)

    def dependency(self, state: RunState, key: InstanceKey, dep: str) -> Instance | str | None:
        """The dependency's instance; a string saying why it failed (its loop failed); None while
        it cannot be known yet (its loop still runs) or it is not in the run."""
        loop = self.loop_of.get(dep)
        if loop is None:
            return state.instances.get(InstanceKey(dep))
        if loop == self.loop_of.get(key.node):
            return state.instances.get(InstanceKey(dep, None, key.iteration))
        progress = state.loop(loop)
        if not progress.ended:
            return None
        if progress.status == "failed":
            return f"loop '{loop}' failed: {progress.reason}"
        return state.instances.get(InstanceKey(dep, None, progress.iteration))

    def visible(self, state: RunState, key: InstanceKey, node: str) -> Instance | None:
        """The instance of `node` that expressions evaluated for `key` see."""
        loop = self.loop_of.get(node)
        if loop is None:
            return state.instances.get(InstanceKey(node))
        if loop == self.loop_of.get(key.node):
            return state.instances.get(InstanceKey(node, None, key.iteration))
        return state.instances.get(InstanceKey(node, None, state.loop(loop).iteration))

    def context(self, state: RunState, key: InstanceKey) -> dict[str, Any]:
        """What `when`, `for_each`, `until` and templates read for `key` (rnix.core.expr)."""
        agents: dict[str, Any] = {}
        for name, spec in self.specs.items():
            inst = self.visible(state, key, name)
            agents[name] = {
                "status": inst.state.value if inst is not None else AgentState.PENDING.value,
                "output": output_of(inst, spec) if inst is not None else None,
                "result": inst.result if inst is not None else None,
                "error": inst.error if inst is not None else None,
            }
        return {"agents": agents, "vars": dict(self.spec.vars), "iteration": key.iteration}


def output_of(inst: Instance, spec: AgentSpec) -> Any:
    """An instance's output as expressions see it: the parsed JSON of a structured (or for_each)
    result, else the text."""
    if inst.result is None:
        return None
    listed = spec.for_each is not None or spec.aggregate in ("all", "any")  # the node's result is a list
    if spec.output_schema is not None or (listed and not inst.key.fanned):
        try:
            return json.loads(inst.result)
        except ValueError:
            return inst.result
    return inst.result


def _evaluate(state: RunState, inst: Instance, spec: AgentSpec, graph: Graph) -> list[Action]:
    """`when` (false: skipped by condition), then `for_each` (the instances to plan)."""
    from rnix.core import expr

    key = inst.key
    context = graph.context(state, key)
    if spec.when is not None:
        try:
            if not expr.truth(spec.when, context):
                return [Skip(key, f"condition: `{spec.when}` is false", by_condition=True)]
        except expr.ExprError as exc:
            return [Settle(key, AgentState.FAILED, None, f"when: {exc}")]
    if spec.for_each is None:
        return [Start(key)] if spec.aggregate is None else [_convene(key, spec)]
    try:
        items = expr.items(spec.for_each, context)
    except expr.ExprError as exc:
        return [Settle(key, AgentState.FAILED, None, f"for_each: {exc}")]
    if not items:
        return [Settle(key, AgentState.COMPLETED, "[]", None)]
    labels: list[str | None] = []
    for index, item in enumerate(items):
        label = None
        if spec.item_name is not None:
            try:
                label = expr.render(spec.item_name, {**context, "item": item, "index": index})
            except expr.ExprError:
                label = None
        labels.append(label)
    return [Expand(key, tuple(items), tuple(labels))]


def _join(state: RunState, inst: Instance, spec: AgentSpec, graph: Graph) -> Settle | None:
    """A for_each node once all its instances ended: completed when all did (policy `all`) or one
    did (`any`); its result is the JSON list of their outputs, in item order (null for one that
    did not complete)."""
    children = [
        state.instances.get(InstanceKey(inst.key.node, i, inst.key.iteration))
        for i in range(inst.children or 0)
    ]
    if any(c is None or not c.state.terminal for c in children):
        return None
    done = [c for c in children if c is not None]
    outputs = [output_of(c, spec) if c.state is AgentState.COMPLETED else None for c in done]
    bad = [c for c in done if c.state is not AgentState.COMPLETED]
    ok = not bad if spec.for_each_policy == "all" else len(bad) < len(done)
    error = None
    if bad:
        shown = ", ".join(f"{c.name} {c.state.value}" for c in bad[:5]) + (", ..." if len(bad) > 5 else "")
        error = f"{len(bad)} of {len(done)} instances did not complete: {shown}"
    result = json.dumps(outputs, ensure_ascii=False)
    return Settle(inst.key, AgentState.COMPLETED if ok else AgentState.FAILED, result, error)


def _loops(state: RunState, spec: ComposeSpec, graph: Graph) -> list[Action]:
    """After an iteration's body ended: end the loop when `until` holds (or the iterations are
    used up), else run the body again."""
    from rnix.core import expr

    out: list[Action] = []
    for loop in spec.loops:
        progress = state.loop(loop.name)
        if progress.ended:
            continue
        k = progress.iteration
        body = [state.instances.get(InstanceKey(name, None, k)) for name in loop.body]
        if any(b is None or not b.state.terminal for b in body):
            continue
        if not any(b is not None and (b.state is AgentState.COMPLETED or b.ran) for b in body):
            out.append(EndLoop(loop.name, "failed", f"nothing in its body ran in iteration {k}"))
            continue
        try:
            done = expr.truth(loop.until, graph.context(state, InstanceKey(loop.body[0], None, k)))
        except expr.ExprError as exc:
            out.append(EndLoop(loop.name, "failed", f"until: {exc}"))
            continue
        if done:
            out.append(EndLoop(loop.name, "completed", f"`{loop.until}` held after iteration {k}"))
        elif k + 1 >= loop.max_iterations:
            status = "failed" if loop.on_max == "fail" else "completed"
            reason = f"`{loop.until}` still false after {loop.max_iterations} iterations"
            out.append(EndLoop(loop.name, status, reason))
        else:
            out.append(Iterate(loop.name, k + 1, f"`{loop.until}` was false after iteration {k}"))
    return out


def run_ok(state: RunState, spec: ComposeSpec) -> bool:
    """Whether the run ended as it should: every loop completed, and every instance that counts
    (not an earlier iteration of a loop, nor one item of a for_each node, which its node judges)
    completed or was skipped by a condition."""
    loop_of = {name: loop.name for loop in spec.loops for name in loop.body}
    if any(p.status == "failed" for p in state.loops.values()):
        return False
    for key, inst in state.instances.items():
        if key.fanned:
            continue
        loop = loop_of.get(key.node)
        if loop is not None and key.iteration < state.loop(loop).iteration:
            continue
        if not inst.ok:
            return False
    return True


def _pending(
    state: RunState, inst: Instance, conditions: Mapping[str, str], graph: Graph | None = None
) -> list[Action]:
    """Start once every dependency met its condition; skip as soon as one cannot.

    `completed` (the default) is met by a completed dependency, or by one skipped by a condition (it
    need not have run: the agent runs without its result); `failed` by one that failed, timed out or
    ran out of budget; `finished` by any end. A dependency that ended otherwise skips the agent: by
    condition when the dependency ended as it should have (`{build: failed}` after build completed),
    else as a failure that propagates. A dependency in a loop is read once the loop ended (in its
    last iteration); a failed loop skips the agent."""
    waiting = False
    for dep_name in inst.depends_on:
        dep = (
            graph.dependency(state, inst.key, dep_name)
            if graph is not None
            else state.instances.get(InstanceKey(dep_name))
        )
        if isinstance(dep, str):
            return [Skip(inst.key, f"dependency '{dep_name}': {dep}")]
        if dep is None:
            if graph is not None and dep_name in graph.loop_of:
                waiting = True
                continue
            return [Skip(inst.key, f"dependency '{dep_name}' is not in the run")]
        if not dep.state.terminal:
            waiting = True
            continue
        condition = conditions.get(dep_name, "completed")
        if condition == "finished":
            continue
        if condition == "failed":
            if dep.state not in _FAILED_ENDS:
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


def _holdable(state: RunState, inst: Instance, command: object, graph: Graph | None = None) -> bool:
    """A first attempt of a built-in agent whose dependencies are all running or completed, one at
    least still running."""
    if not _first_builtin(inst, command) or not inst.depends_on:
        return False
    deps = [
        graph.dependency(state, inst.key, dep) if graph is not None else state.instances.get(InstanceKey(dep))
        for dep in inst.depends_on
    ]
    return all(isinstance(d, Instance) and d.state in _UNDER_WAY for d in deps)


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


# -- juries (rnix.core.jury) -----------------------------------------------------------------------


def _convene(key: InstanceKey, spec: AgentSpec) -> Expand:
    """A jury whose dependencies are done: one instance per candidate, labelled with its name."""
    return Expand(key, tuple(spec.candidates), tuple(spec.candidates))


def _verdict(state: RunState, inst: Instance, spec: AgentSpec, plan: Plan) -> Settle | None:
    """A jury once its members decide it (rnix.core.jury.decide)."""
    from rnix.core import jury

    members = []
    for i in range(inst.children or 0):
        child = state.instances.get(InstanceKey(inst.key.node, i, inst.key.iteration))
        if child is None:
            return None
        candidate = str(child.item) if child.item is not None else child.name
        members.append(jury.Member(candidate, child.state, child.result, child.ended_at))
    rule = jury.Rule(
        spec.aggregate or "all",
        structured=spec.output_schema is not None,
        vote_on=spec.vote_on,
        quorum=spec.quorum,
        weighted=spec.weights == "reputation",
    )
    verdict = jury.decide(rule, members, plan.reputation)
    if verdict is None:
        return None
    ended = AgentState.COMPLETED if verdict.completed else AgentState.FAILED
    return Settle(inst.key, ended, verdict.result, verdict.error)


def _jury_over(state: RunState, key: InstanceKey) -> bool:
    node = state.instances.get(key.node_key())
    return node is not None and node.state.terminal


def _dismiss(inst: Instance, spec: AgentSpec) -> list[Action]:
    """A member of a jury already decided: it is no longer needed."""
    reason = f"jury '{inst.key.node}' decided"
    if inst.state.waiting:
        return [Cancel(inst.key, reason)]
    if inst.state.signallable and inst.stop_reason is None:
        return [Stop(inst.key, reason, spec.stop_grace_period_s)]
    return []
