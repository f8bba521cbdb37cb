"""Resume: what a new `compose up` takes over from the project's last run that did not complete.

`prepare(store, plan, previous, from_agent=...)` folds the previous run's log and decides, per agent
of the new plan (in dependency order):

- **reuse** it: it completed in the previous run, its resolved spec is unchanged (`spec_hash`), no
  dependency of it runs again, and it is not `--from` AGENT or below. Its result is taken as it
  was (`InstanceReused`); nothing is spawned, nothing is charged, no ledger record is added.
- **replay** it: it runs again, but every model call it had already paid for in its last attempt is
  answered from the LLM-call journal (identical request hash): no request, no token charged. Not
  for `--from` targets (the user asked for a fresh answer) nor for agents whose spec changed.
- run it afresh otherwise; also an agent whose compensation completed in the previous run (its
  work was undone, rnix.core.saga). A compensation is never carried over: one that completed is not
  run again for that execution (its agent runs again); one that failed, or never ran, may run in
  the new run if it fails too, for the agent it reuses.

Before deciding, results the previous supervisor never learned of are recovered: an agent the log
shows running, whose exit report (written by its leader next to the process) says it exited 0, is
recorded in the previous run as completed (`InstanceExited(recovered=True)`) with its stdout as the
result. Executions that ended but were never judged (the supervisor died in between) get their
verdict now, recorded in the run that executed them (`assess_previous`): each real execution has
exactly one ledger record.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rnix.core import events as ev
from rnix.core.events import InstanceKey, Record
from rnix.core.fold import Instance, RunState, fold
from rnix.core.lifecycle import AgentState
from rnix.core.plan import AgentPlan, Plan
from rnix.store.db import RunRow, Store

if TYPE_CHECKING:
    from rnix.supervisor.assess import Assessor


@dataclass
class Resume:
    from_run: str
    reused: tuple[ev.InstanceReused, ...] = ()
    # for_each items and loop iterations it completed, by name, with their spec hash: the scheduler
    # takes them when it plans them again (rnix.supervisor.scheduler._plan_dynamic).
    reusable: dict[str, tuple[str | None, ev.InstanceReused]] = field(default_factory=dict)
    # Decisions recorded at approval gates that had not opened, by instance name: the new run's gate
    # starts with them (a decision made while no supervisor was alive counts too).
    decisions: dict[str, tuple[ev.ApprovalDecided, ...]] = field(default_factory=dict)
    replays: dict[str, Any] = field(default_factory=dict)  # instance name -> journal Replay
    # Executions that ended without a verdict (their supervisor died first), with the run they ran in.
    to_assess: tuple[tuple[str, AgentPlan, Instance], ...] = ()
    changed: tuple[str, ...] = ()  # agents whose spec changed since the previous run
    recovered: tuple[str, ...] = ()  # completed results read back from exit reports
    reused_tokens: int = 0
    journal_calls: int = 0
    journal_tokens: int = 0

    @property
    def worth_saying(self) -> bool:
        return bool(self.reused or self.journal_calls or self.recovered)

    def message(self) -> str:
        """`reusing 3 completed agents and 7 journalled calls (12,480 tokens) from run X; ...`."""
        agents = f"{len(self.reused)} completed agent{'' if len(self.reused) == 1 else 's'}"
        calls = f"{self.journal_calls} journalled call{'' if self.journal_calls == 1 else 's'}"
        tokens = self.reused_tokens + self.journal_tokens
        text = f"reusing {agents} and {calls} ({tokens:,} tokens) from run {self.from_run}"
        if self.changed:
            text += f"; changed since: {', '.join(self.changed)} (run again, with what depends on them)"
        return text + "; --fresh starts over"

    async def assess_previous(self, assessor: Assessor, record: Callable[[Record], None]) -> None:
        """Judge the previous run's executions that ended without a verdict; recorded in that run."""
        for run_id, agent, inst in self.to_assess:
            try:
                event = await assessor(agent, inst)
            except Exception:  # a verdict that cannot be reached is not recorded
                continue
            if event is not None:
                record(Record(run_id, time.time(), event))


def previous_run(store: Store, project: str) -> RunRow | None:
    """The project's last run, when it did not complete (the run a plain `up` resumes)."""
    last = store.latest_run(project)
    if last is None or last.status in ("completed", "running"):
        return None
    return last


def prepare(
    store: Store,
    plan: Plan,
    previous: RunRow,
    *,
    from_agent: str | None = None,
) -> Resume:
    """Decide what the new run reuses from `previous` (see the module docstring); records recovered
    exits in the run that executed them."""
    newest = previous
    previous, records = _decisive(store, previous)
    newer = _chain(store, newest, stop=previous.id)  # resumed runs that started nothing
    before_end = [r for r in records if not isinstance(r.event, ev.RunFinished)]
    state = fold(before_end, strict=False)
    recovered = _recover(store, previous, state)
    if recovered:
        state = fold(recovered, state, strict=False)
    rerun = _descendants(plan, from_agent) if from_agent else set()
    dirty: set[str] = set()
    changed: list[str] = []
    reused: list[ev.InstanceReused] = []
    replay_names: list[str] = []
    reused_tokens = 0
    for agent in plan.agents:
        name = agent.spec.name
        old = state.instances.get(InstanceKey(name))
        if old is not None and old.spec_hash is not None and old.spec_hash != agent.spec_hash:
            changed.append(name)
            dirty.add(name)
            continue
        if old is None or name in rerun or any(dep in dirty for dep in agent.spec.depends_on):
            dirty.add(name)
            if name not in rerun:  # its paid calls may be in this run or one it resumed
                replay_names.append(name)
            continue
        if old.state is AgentState.COMPLETED and old.compensation != "compensated":
            reused.append(_reused_event(old, previous.id))
            reused_tokens += old.tokens_used
            continue
        dirty.add(name)
        replay_names.append(name)
    replays = _replays(store, previous, replay_names)
    to_assess = _unjudged(store, plan, previous, state, newer)
    # Undone by its compensation (rnix.core.saga): its work is gone, so it runs again, items too.
    undone = {k.node for k, i in state.instances.items() if i.compensation == "compensated"}
    reusable = {
        str(key): (old.spec_hash, _reused_event(old, previous.id))
        for key, old in state.instances.items()
        if (key.fanned or key.iteration > 0)
        and old.state is AgentState.COMPLETED
        and key.node not in rerun
        and key.node not in changed
        and key.node not in undone
    }
    decisions = {
        str(key): tuple(
            ev.ApprovalDecided(key=key, decision=decision, by=by, message=message)
            for by, decision, message in old.approvals
            if by != "timeout"  # a timed-out gate waits again: its clock starts again too
        )
        for key, old in state.instances.items()
        if old.approvals and old.state is not AgentState.COMPLETED
    }
    return Resume(
        from_run=previous.id,
        reused=tuple(reused),
        reusable=reusable,
        decisions={name: found for name, found in decisions.items() if found},
        replays=replays,
        to_assess=to_assess,
        changed=tuple(changed),
        recovered=tuple(str(r.event.instance) for r in recovered),
        reused_tokens=reused_tokens,
        journal_calls=sum(getattr(r, "calls", 0) for r in replays.values()),
        journal_tokens=sum(getattr(r, "tokens", 0) for r in replays.values()),
    )


def _reused_event(old: Instance, previous: str) -> ev.InstanceReused:
    return ev.InstanceReused(
        key=old.key,
        from_run=old.reused_from or previous,
        result=old.result,
        tokens_used=old.tokens_used,
        elapsed_ms=int(old.elapsed_s(old.ended_at or 0.0) * 1000),
        sla=old.sla,
    )


def _chain(store: Store, run: RunRow, stop: str | None = None) -> list[RunRow]:
    """`run` and the runs it resumed, newest first, up to (not including) `stop`."""
    out: list[RunRow] = []
    current: RunRow | None = run
    while current is not None and current.id != stop and len(out) < MAX_CHAIN:
        out.append(current)
        current = store.run(current.resumed_from) if current.resumed_from else None
    return out


def _unjudged(
    store: Store, plan: Plan, base: RunRow, state: RunState, newer: list[RunRow]
) -> tuple[tuple[str, AgentPlan, Instance], ...]:
    """Executions in the chain that ended without a verdict: a resume killed before it judged the
    run before it leaves them to the next one, so every run back to the first is looked at."""
    by_name = {a.spec.name: a for a in plan.agents}
    out: list[tuple[str, AgentPlan, Instance]] = []
    for run in [*newer, *_chain(store, base)]:
        folded = (
            state if run.id == base.id else fold((r.to_record() for r in store.events(run.id)), strict=False)
        )
        out += [
            (run.id, _judged_as(by_name[key.node], inst, plan), inst)
            for key, inst in folded.instances.items()
            if key.node in by_name
            and inst.ran
            and inst.state.terminal
            and inst.state is not AgentState.CANCELLED
            and not inst.assessed
        ]
    return tuple(out)


MAX_CHAIN = 1000  # runs followed back through `resumed_from` (a guard, never reached in practice)


def _decisive(store: Store, run: RunRow) -> tuple[RunRow, list[Record]]:
    """The newest run of the chain that started an agent: a resumed run killed before it started
    one holds nothing of its own, so the run it resumed stands instead."""
    for _ in range(MAX_CHAIN):
        records = [row.to_record() for row in store.events(run.id)]
        # Reuse events are durable before a run starts its first agent (Scheduler.run), so a run
        # that started one holds all its decisions; one that started none holds nothing the run
        # before it does not (and may hold only part of what it decided to reuse).
        decided = any(isinstance(r.event, ev.InstanceStarted) for r in records)
        earlier = store.run(run.resumed_from) if run.resumed_from and not decided else None
        if earlier is None:
            return run, records
        run = earlier
    return run, records


def _recover(store: Store, previous: RunRow, state: RunState) -> list[Record]:
    """Completed exits the supervisor died before recording, from the agents' exit reports."""
    from rnix.supervisor.exitreport import read_exit_report, read_result

    records = []
    for inst in state.instances.values():
        if not inst.state.signallable or inst.out_path is None:
            continue
        report = read_exit_report(_exit_path(Path(inst.out_path)))
        if report is None or (report.returncode, report.signal) != (0, None):
            continue  # killed with its supervisor, or it failed: it runs again
        event = ev.InstanceExited(
            key=inst.key,
            attempt=inst.attempt,
            state=AgentState.COMPLETED.value,
            outcome=AgentState.COMPLETED.value,
            exit_code=0,
            tokens_used=inst.tokens_used,
            result=read_result(Path(inst.out_path)),
            recovered=True,
        )
        records.append(Record(previous.id, time.time(), event))
    if records:
        store.append(records)
    return records


def _exit_path(out_path: Path) -> Path:
    """Where an agent's exit report lives: beside its stdout file (`<agent>.exit.json`)."""
    return out_path.with_suffix(".exit.json")


def _descendants(plan: Plan, root: str) -> set[str]:
    children: dict[str, list[str]] = {a.spec.name: [] for a in plan.agents}
    for agent in plan.agents:
        for dep in agent.spec.depends_on:
            children[dep].append(agent.spec.name)
    seen, todo = {root}, [root]
    while todo:
        for child in children.get(todo.pop(), ()):
            if child not in seen:
                seen.add(child)
                todo.append(child)
    return seen


def _replays(store: Store, run: RunRow, names: Iterable[str]) -> dict[str, Any]:
    """The journal of each agent's last attempt, ready to answer its paid calls: in `run`, or, when
    the agent made no call there (killed before its first), in the runs `run` resumed."""
    from rnix.core.journal import Replay
    from rnix.store.journal import latest_attempt_entries

    out: dict[str, Any] = {}
    for name in names:
        current: RunRow | None = run
        for _ in range(MAX_CHAIN):
            if current is None:
                break
            entries = latest_attempt_entries(store, current.id, name)
            if entries:
                out[name] = Replay(entries)
                break
            current = store.run(current.resumed_from) if current.resumed_from else None
    return out


def _judged_as(agent: AgentPlan, inst: Instance, plan: Plan) -> AgentPlan:
    """The plan an execution is judged with: a jury member's is its candidate's (rnix.core.jury)."""
    if agent.spec.aggregate is None or not inst.key.fanned or inst.item is None:
        return agent
    from rnix.core.plan import jury_member

    return jury_member(agent, str(inst.item), plan.spec.definitions)
