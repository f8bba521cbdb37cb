"""Compensation (saga): what undoes completed agents when the run fails. Pure.

An agent with `compensate:` (a command, or an intent for the built-in agent) is undone when the run
fails after it completed. Once every agent of the plan has ended (and every loop, unless the run
was stopped by `--abort-on-failure`), and the run did not end as it should (`actions.run_ok`), the
compensations run one after the other, in reverse order of completion (the completing events'
order in the log, `Instance.completed_seq`), each once. A compensation is an instance of its own,
`<node>:undo` (`:` cannot appear in an agent name), whose node is not an agent of the plan; its end
is shown on the instance it undoes (`Instance.compensation`). Its failure is reported and the next
one still runs; the run stays failed.

Not for a user's stop (Ctrl-C, `compose down`, `rnix kill` of the run): a stop is not a failure,
and a user who stops a run may not want anything more to run. A user's stop during the saga stops
the running compensation and starts no other.

An agent of a for_each node is compensated as the node (its items are not); an agent in a loop once,
for its last completed iteration.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from rnix.core.actions import Stop, run_ok
from rnix.core.events import InstanceKey
from rnix.core.fold import Instance, RunState
from rnix.core.lifecycle import AgentState
from rnix.core.model import AgentSpec, ComposeSpec

SUFFIX = ":undo"


def compensation_key(node: str) -> InstanceKey:
    return InstanceKey(node + SUFFIX)


def is_compensation(key: InstanceKey) -> bool:
    return key.node.endswith(SUFFIX)


def compensation_spec(spec: AgentSpec) -> AgentSpec:
    """The spec a compensation runs: its command or intent, its model, timeout, environment and
    budget when set, else the agent's; no dependencies, conditions, retries or contract."""
    comp = spec.compensate
    if comp is None:
        raise ValueError(f"agent '{spec.name}' has no compensate")
    return dataclasses.replace(
        spec,
        name=spec.name + SUFFIX,
        intent=comp.intent or f"Undo what agent '{spec.name}' did: the run failed after it completed.",
        command=comp.command,
        model=comp.model or spec.model,
        timeout_s=comp.timeout_s if comp.timeout_s is not None else spec.timeout_s,
        environment=MappingProxyType({**spec.environment, **comp.environment}),
        budget=comp.budget,
        depends_on=(),
        conditions=MappingProxyType({}),
        max_retries=0,
        agent=None,
        candidates=(),
        definition=None,
        contract=None,
        output_schema=None,
        when=None,
        for_each=None,
        item_name=None,
        for_each_policy="all",
        max_parallel=None,
        compensate=None,
    )


@dataclass(frozen=True)
class Compensate:
    """Plan and start the compensation `key` of the completed instance `of`."""

    key: InstanceKey
    of: InstanceKey
    reason: str  # why the run failed


def order(state: RunState, spec: ComposeSpec) -> list[InstanceKey]:
    """The completed instances to compensate, last completed first, one per node."""
    with_comp = {a.name for a in spec.agents if a.compensate is not None}
    done = [
        inst
        for key, inst in state.instances.items()
        if inst.state is AgentState.COMPLETED and key.node in with_comp and not key.fanned
    ]
    done.sort(key=lambda i: -1 if i.completed_seq is None else i.completed_seq, reverse=True)
    seen: set[str] = set()
    out: list[InstanceKey] = []
    for inst in done:
        if inst.key.node not in seen:
            seen.add(inst.key.node)
            out.append(inst.key)
    return out


def due(state: RunState, spec: ComposeSpec) -> bool:
    """Whether the run failed and its agents have all ended, so that compensations may run."""
    if state.status.value != "running":
        return False
    if state.stopping is not None and not state.stop_failure:
        return False  # a user's stop is not a failure
    names = {a.name for a in spec.agents}
    if any(not i.state.terminal for k, i in state.instances.items() if k.node in names):
        return False
    if state.stopping is None and any(not state.loop(loop.name).ended for loop in spec.loops):
        return False  # a loop still decides whether to iterate
    return not run_ok(_without_compensations(state), spec)


def next_compensation(state: RunState, spec: ComposeSpec) -> Compensate | None:
    """The compensation to start now: none while one runs, or when none is due."""
    if not due(state, spec):
        return None
    if any(is_compensation(k) and not i.state.terminal for k, i in state.instances.items()):
        return None  # one at a time
    for key in order(state, spec):
        comp = compensation_key(key.node)
        if comp not in state.instances:
            return Compensate(comp, key, failure_reason(state, spec))
    return None


def stops(state: RunState, specs: Mapping[str, AgentSpec], now: float) -> tuple[list[Stop], float | None]:
    """Running compensations to stop (a user's stop, their timeout), and when one next times out.
    `specs`: the compensations' specs by node (`<node>:undo`)."""
    out: list[Stop] = []
    wake: list[float] = []
    for key, inst in state.instances.items():
        spec = specs.get(key.node)
        if spec is None or not is_compensation(key) or not inst.state.signallable:
            continue
        if inst.stop_reason is not None:
            continue
        if state.stopping is not None and not state.stop_failure:
            grace = spec.stop_grace_period_s if state.stop_grace is None else state.stop_grace
            out.append(Stop(key, state.stopping, grace))
            continue
        deadline = inst.deadline(spec.timeout_s)
        if deadline is not None and deadline <= now:
            out.append(Stop(key, "timeout", spec.stop_grace_period_s))
        elif deadline is not None:
            wake.append(deadline)
    return out, min(wake) if wake else None


def failure_reason(state: RunState, spec: ComposeSpec) -> str:
    """Why the run failed, in one line: its failed loops and the agents that did not end as they
    should (at most five named), or the failure that stopped it."""
    parts = [
        f"loop '{name}' failed: {loop.reason}"
        for name, loop in state.loops.items()
        if loop.status == "failed"
    ]
    names = {a.name for a in spec.agents}
    bad = [
        i
        for k, i in state.instances.items()
        if k.node in names and not k.fanned and not i.ok and i.state is not AgentState.CANCELLED
    ]
    for inst in bad[:5]:
        parts.append(f"{inst.name} {inst.state.value}" + (f": {inst.error}" if inst.error else ""))
    if len(bad) > 5:
        parts.append(f"and {len(bad) - 5} more")
    if state.stop_failure and state.stopping:
        parts.insert(0, f"stopped: {state.stopping}")
    return "; ".join(parts) or "the run failed"


def summary(state: RunState) -> list[Instance]:
    """The instances that have a compensation, in the order their compensations were planned."""
    comps = [i for k, i in state.instances.items() if is_compensation(k) and i.compensates is not None]
    found = [state.instances.get(InstanceKey.parse(c.compensates or "")) for c in comps]
    return [i for i in found if i is not None]


def _without_compensations(state: RunState) -> RunState:
    if not any(is_compensation(k) for k in state.instances):
        return state
    kept = {k: i for k, i in state.instances.items() if not is_compensation(k)}
    return dataclasses.replace(state, instances=kept)
