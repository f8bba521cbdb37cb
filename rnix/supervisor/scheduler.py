"""The scheduler: performs what `rnix.core.actions.next_actions` decides and appends what results.

It owns the run's state only as the fold of the events it appends (`self.state`): every change is
an event, applied with `rnix.core.fold.apply` and handed to `record` (the store) in the same step.
Effects live here and nowhere else: funding an agent from the pool, writing its task, spawning it,
waiting for its exit report, stopping it (SIGTERM to the group, grace, SIGKILL), pausing it on a
user's request, and asking for its SLA verdict. Before an instance starts, every event it depends
on is durable (`flush`), so a supervisor killed at any moment loses no completed result.

Every effect is injected (spawner, gateway accounts, recorder, files, clock), so the scheduler is
unit-tested with scripted fakes and integration-tested with real processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import hashlib
import json
import logging
import os
import signal as signals
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

from rnix.core import actions as act
from rnix.core import events as ev
from rnix.core import saga, structured
from rnix.core.actions import Options
from rnix.core.events import InstanceKey, Record
from rnix.core.fold import Instance, RunState, apply
from rnix.core.lifecycle import AgentState
from rnix.core.model import AgentSpec
from rnix.core.plan import AgentPlan, Plan, jury_member
from rnix.core.pool import Pool
from rnix.supervisor.api import AgentProcess, ExitInfo, Spawner, SpawnRequest
from rnix.supervisor.early import Held
from rnix.supervisor.runfiles import RunFiles

__all__ = ["AgentView", "Options", "Scheduler"]

log = logging.getLogger(__name__)


class Accounts(Protocol):
    """The part of the gateway the scheduler needs: per-agent budgets and nonces."""

    def register(
        self, agent: str, *, model: str, api_base: str | None, budget: int, replay: Any = None
    ) -> Any:
        """`replay` (when resuming): the journal that answers the calls this agent already paid for."""
        ...

    def begin_attempt(self, agent: str, attempt: int) -> None:
        """A retry: what the agent's calls are journalled under from now on."""
        ...

    def issue_nonce(self, agent: str) -> str: ...

    def revoke(self, agent: str) -> None: ...

    def used(self, agent: str) -> int: ...

    def fund(self, agent: str, budget: int) -> None:
        """Set the budget of an agent registered before it was funded (early spawn)."""
        ...


class Clock(Protocol):
    def time(self) -> float: ...

    def monotonic(self) -> float: ...


@dataclass(frozen=True)
class AgentView:
    """One instance as the renderers see it: its plan beside its folded state."""

    plan: AgentPlan
    instance: Instance

    @property
    def name(self) -> str:
        return self.instance.name

    @property
    def state(self) -> AgentState:
        return self.instance.state

    def __getattr__(self, name: str) -> Any:  # pid, attempt, result, error, tokens_used, budget, sla ...
        return getattr(self.instance, name)

    def elapsed_ms(self, now: float) -> int:
        """`now`: seconds since the epoch (the fold's clock)."""
        return int(self.instance.elapsed_s(now) * 1000)


EnvBuilder = Callable[[AgentPlan, str, int], Mapping[str, str]]  # (agent, nonce, attempt) -> env
# After an agent ran: its SLA verdict as the event to append (None: nothing to record).
Assessor = Callable[[AgentPlan, Instance], Awaitable["ev.InstanceAssessed | None"]]


async def _no_flush() -> None:
    return None


class Scheduler:
    def __init__(
        self,
        plan: Plan,
        *,
        run_id: str,
        spawner: Spawner,
        accounts: Accounts,
        record: Callable[[Record], None],
        files: RunFiles,
        clock: Clock,
        env_for: EnvBuilder,
        options: Options = act.DEFAULT_OPTIONS,
        on_update: Callable[[AgentView], None] = lambda view: None,
        stdin_input: str | None = None,
        assess: Assessor | None = None,
        flush: Callable[[], Awaitable[None]] = _no_flush,
        reused: Sequence[ev.InstanceReused] = (),
        replays: Mapping[str, Any] | None = None,
        ready: asyncio.Future[Any] | None = None,
        reusable: Mapping[str, tuple[str | None, ev.InstanceReused]] | None = None,
        decisions: Mapping[str, Sequence[ev.ApprovalDecided]] | None = None,
        notify: Callable[[AgentPlan, InstanceKey, Mapping[str, Any]], Awaitable[None]] | None = None,
    ) -> None:
        """`reused`: instances completed in an earlier run (resume); `replays`: per instance name,
        the journal replay its first attempt is registered with; `ready`: done once what agents'
        first calls need is loaded (nothing starts before; built-in agents are held meanwhile);
        `reusable`: completed for_each items and loop iterations of the earlier run, by name, with
        their spec hash: taken when planned again with the same hash and the same inputs."""
        self.plan = plan
        self.assess = assess
        self.run_id = run_id
        self.spawner = spawner
        self.accounts = accounts
        self._record = record
        self._flush = flush
        self.files = files
        self.clock = clock
        self.env_for = env_for
        self.options = options
        self.on_update = on_update
        self.stdin_input = stdin_input
        self.state = RunState(run_id=run_id, project=plan.project)
        self.pool = Pool(plan.requests, plan.spec.budget_pool)
        self._plans = {a.spec.name: a for a in plan.agents}
        self._reused = tuple(reused)
        self._replays = dict(replays or {})
        self._processes: dict[InstanceKey, AgentProcess] = {}
        self._budgets: dict[InstanceKey, int] = {}  # funded by the pool as each first started
        # A node's budget, drawn from the pool once, covers all its instances (items, iterations).
        self._wallets: dict[str, _Wallet] = {}
        self._graph = act.Graph(plan.spec)
        self._loop_of = self._graph.loop_of
        # Resume: instances an earlier run completed that are planned only as the run goes (for_each
        # items, loop iterations), by name; taken when planned with the same spec hash.
        self._reusable = dict(reusable or {})
        # Resume: decisions an earlier run recorded at gates that had not opened, by instance name.
        self._decisions = {name: list(found) for name, found in (decisions or {}).items()}
        self._notify = notify
        self._busy: set[InstanceKey] = set()  # a spawn, an attempt or a verdict is under way
        self._assessing: set[InstanceKey] = set()  # verdicts asked for (once each)
        self._tasks: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self._kill_now = asyncio.Event()
        self._unflushed = False
        self._held: dict[InstanceKey, Held] = {}  # forked early, waiting for their task (early.py)
        self._registered: set[InstanceKey] = set()  # accounts opened by a hold, funded at release
        self._ready = ready
        self._files_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rnix-files")
        # Compensation (saga): only a file with `compensate:` pays for its decisions.
        self._saga = any(a.spec.compensate is not None for a in plan.agents)
        self._comp_specs: dict[str, AgentSpec] = {}  # by node (`<agent>:undo`)
        self._comp_reasons: dict[InstanceKey, str] = {}
        self._members: dict[tuple[str, str], AgentPlan] = {}  # jury members' plans (_member)

    # -- public -----------------------------------------------------------------------------------

    @property
    def agents(self) -> dict[str, AgentView]:
        """Every instance with its plan, by name, in plan order."""
        return {str(key): AgentView(self._plan_of(key), inst) for key, inst in self.state.instances.items()}

    def view(self, key: InstanceKey) -> AgentView:
        return AgentView(self._plan_of(key), self.state.instances[key])

    @property
    def stopping(self) -> str | None:
        return self.state.stopping

    async def run(self) -> dict[str, AgentView]:
        """Run every instance to a terminal state; returns them by name."""
        for agent in self.plan.agents:
            self.emit(_planned_event(agent))
        for reused in self._reused:
            self.emit(reused)
        await self._flush()  # what this run decided to reuse is durable before anything starts
        if self._ready is not None:
            self._ready.add_done_callback(lambda _: self._wake.set())
        try:
            await self._loop()
        finally:
            for held in self._held.values():
                held.discard()
            self._held.clear()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            self._files_thread.shutdown(wait=False)
        return self.agents

    def request_stop(
        self, reason: str, grace: float | None = None, by_pid: int | None = None, failure: bool = False
    ) -> None:
        """Stop everything gracefully: waiting agents are cancelled, running ones get SIGTERM.
        `failure`: the run stops because it failed (its compensations still run); a user's stop
        after such a stop stops them too."""
        if self.state.stopping is None or (self.state.stop_failure and not failure):
            self.emit(ev.RunStopRequested(grace=grace, by_pid=by_pid, reason=reason, failure=failure))

    def kill_now(self) -> None:
        """A second interrupt: SIGKILL every running agent at once."""
        self.request_stop("interrupt", 0)
        self._kill_now.set()
        self._wake.set()

    def signal(self, key: InstanceKey, signum: int, reason: str, by_pid: int | None = None) -> Instance:
        """A user's signal to a running agent's group (`rnix kill`, `top`), through its handle.

        SIGSTOP pauses it (its timeout clock stops), SIGCONT resumes it; any other signal reaches a
        paused agent after a SIGCONT, so that it can act on it. Raises LookupError when the agent
        has no live process here."""
        inst = self.state.instances.get(key)
        process = self._processes.get(key)
        if inst is None or process is None or not inst.state.signallable:
            state = inst.state.value if inst is not None else "unknown"
            raise LookupError(f"agent {key} is not running ({state})")
        if not process.signal_group(signum):
            raise LookupError(f"agent {key} exited before it could be signalled")
        from rnix.supervisor.signals import signal_name

        self.emit(
            ev.InstanceSignalled(
                key=key, pid=process.pid, signal=signal_name(signum), reason=reason, by_pid=by_pid
            )
        )
        if signum == signals.SIGSTOP and inst.state is AgentState.RUNNING:
            self.emit(ev.InstancePaused(key=key, pid=process.pid))
        elif inst.state is AgentState.PAUSED and signum not in (signals.SIGSTOP, signals.SIGKILL):
            if signum != signals.SIGCONT:
                process.signal_group(signals.SIGCONT)
            self.emit(ev.InstanceResumed(key=key, pid=process.pid))
        return self.state.instances[key]

    # -- the loop ---------------------------------------------------------------------------------

    async def _loop(self) -> None:
        while True:
            self._wake.clear()
            held = frozenset(self._held)
            warming = self._ready is not None and not self._ready.done()
            now = self.clock.time()
            starting = frozenset(k for k in self._busy if self.state.instances[k].state.waiting)
            decision = act.next_actions(
                self.state, self.plan, now, self.options, held, warming, starting, self._graph
            )
            if self._saga:
                decision = self._saga_step(decision, now)
            await self._perform(decision.actions)
            if self._wake.is_set():
                continue  # something changed: decide again at once
            if self.state.all_terminal and not self._tasks:
                return
            timeout = None if decision.wake_at is None else max(0.0, decision.wake_at - self.clock.time())
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)

    async def _perform(self, actions: Sequence[act.Action]) -> None:
        starts: list[InstanceKey] = []
        for action in actions:
            if isinstance(action, act.Start):
                if action.key not in self._busy:
                    starts.append(action.key)
            elif isinstance(action, act.Stop):
                self._stop(action)
            elif isinstance(action, act.Assess):
                self._start_assessment(action.key)
            elif isinstance(action, act.StopRun):
                self.request_stop(action.reason, failure=True)
            elif isinstance(action, act.Hold):
                if action.key not in self._busy:
                    self._spawn_task(self._hold(action.key), action.key)
            elif isinstance(action, act.Expand):
                self._expand(action)
            elif isinstance(action, act.Settle):
                self.emit(
                    ev.InstanceSettled(
                        key=action.key, state=action.state.value, result=action.result, error=action.error
                    )
                )
            elif isinstance(action, act.AskApproval):
                self._ask_approval(action)
            elif isinstance(action, act.TimeOutApproval):
                self.emit(ev.ApprovalDecided(key=action.key, decision=action.decision, by="timeout"))
            elif isinstance(action, act.Iterate):
                self._iterate(action)
            elif isinstance(action, act.EndLoop):
                self.emit(
                    ev.LoopEnded(
                        loop=action.loop,
                        iteration=self.state.loop(action.loop).iteration,
                        status=action.status,
                        reason=action.reason,
                    )
                )
                self._close_loop(action.loop)
            elif action.key in self._busy and action.key not in self._held:
                continue  # being spawned: decided again once it runs
            else:
                if action.key in self._held:  # forked early, but it will never be released
                    self._held.pop(action.key).discard()
                if isinstance(action, act.Skip):
                    skipped = ev.InstanceSkipped(
                        key=action.key, reason=action.reason, by_condition=action.by_condition
                    )
                    self.emit(skipped)
                else:
                    self.emit(ev.InstanceCancelled(key=action.key, reason=action.reason))
        if not starts or self._wake.is_set():
            return  # starts wait until the events just appended have been decided on
        if self._unflushed:  # what the new agents depend on must be durable first
            self._unflushed = False
            await self._flush()
            if self.state.stopping is not None:
                return  # stopped meanwhile (e.g. the store broke and the flush gave up): start nothing
        for key in starts:
            if not self._fund(key):
                if key in self._held:  # forked early, but it will never run
                    self._held.pop(key).discard()
                return  # decide again: its dependents are skipped before others are funded
            self._launch(key)

    def _fund(self, key: InstanceKey) -> bool:
        """Take a first attempt's budget from the pool as it starts (in plan order); an instance the
        pool cannot fund never starts. Retries keep what the first attempt was funded."""
        inst = self.state.instances[key]
        if inst.attempt > 0:
            return True
        if not self._dynamic(key.node):
            budget = self.pool.fund(str(key))
        else:
            wallet = self._wallet(key.node)
            budget = wallet.share(key, self.state, self._budgets)
        if budget <= 0:
            self.emit(ev.InstanceUnfunded(key=key, available=self.pool.available))
            return False
        self._budgets[key] = budget
        return True

    def _dynamic(self, node: str) -> bool:
        """A node with instances planned as the run goes (for_each items, loop iterations): its
        budget is drawn once and shared among them (`_Wallet`)."""
        spec = self._plans[node].spec
        return node in self._loop_of or spec.for_each is not None or spec.aggregate is not None

    def _wallet(self, node: str) -> _Wallet:
        wallet = self._wallets.get(node)
        if wallet is None:
            wallet = self._wallets[node] = _Wallet(self.pool.fund(node))
        return wallet

    # -- approval gates ---------------------------------------------------------------------------

    def _ask_approval(self, action: act.AskApproval) -> None:
        agent = self._plans[action.key.node]
        approval = agent.spec.approval
        assert approval is not None
        self.emit(
            ev.ApprovalRequested(
                key=action.key,
                approvers=approval.approvers,
                policy=approval.policy,
                quorum=approval.quorum,
                deadline=action.deadline,
            )
        )
        for decided in self._decisions.pop(str(action.key), ()):  # recorded before a resume
            if self.state.instances[action.key].state is AgentState.WAITING_APPROVAL:
                self.emit(dataclasses.replace(decided, key=action.key))
        if approval.notify and self._notify is not None:
            document = {
                "run_id": self.run_id,
                "project": self.plan.project,
                "agent": str(action.key),
                "intent": agent.spec.intent,
                "approvers": list(approval.approvers),
                "policy": approval.policy,
                "quorum": approval.quorum,
                "deadline": action.deadline,
                "approve": f"rnix compose -p {self.plan.project} approve {action.key}",
                "reject": f"rnix compose -p {self.plan.project} reject {action.key}",
            }
            task = asyncio.ensure_future(self._notify(agent, action.key, document))
            self._tasks.add(task)
            task.add_done_callback(self._task_done)

    def decide(self, key: InstanceKey, decision: str, by: str, message: str | None) -> dict[str, Any]:
        """A person's decision at a gate (`rnix compose approve/reject`); raises LookupError or
        PermissionError (refused) with the reason. Returns what it changed."""
        from rnix.core.approval import may_decide, verdict

        inst = self.state.instances.get(key)
        if inst is None:
            raise LookupError(f"no agent {key} in this run")
        spec = self._plans[key.node].spec
        if spec.approval is None:
            raise LookupError(f"agent {key} has no approval gate")
        if inst.state is not AgentState.WAITING_APPROVAL:
            raise LookupError(f"agent {key} is {inst.state.value}, not waiting for approval")
        before = verdict(spec.approval, inst.approvals)
        if before[0] != "waiting":
            raise LookupError(f"agent {key} is not waiting for approval any more: {before[1]}")
        refused = may_decide(spec.approval, inst.approvals, by)
        if refused is not None:
            raise PermissionError(refused)
        self.emit(ev.ApprovalDecided(key=key, decision=decision, by=by, message=message))
        inst = self.state.instances[key]
        word, why = verdict(spec.approval, inst.approvals)
        return {
            "agent": str(key),
            "decision": decision,
            "by": by,
            "before": before[0],
            "outcome": word,  # approved (it starts now) | rejected | waiting (for more decisions)
            "detail": why,
            "decisions": [{"by": b, "decision": d, "message": m} for b, d, m in inst.approvals],
        }

    # -- pipelines: fan-out and loops -------------------------------------------------------------

    def _expand(self, action: act.Expand) -> None:
        key = action.key
        self.emit(ev.InstanceExpanded(key=key, count=len(action.items)))
        agent = self._plans[key.node]
        for index, (item, label) in enumerate(zip(action.items, action.labels, strict=True)):
            child = InstanceKey(key.node, index, key.iteration)
            member = agent if agent.spec.aggregate is None else self._member(agent, str(item))
            self._plan_dynamic(member, child, (), item=item, label=label)

    def _iterate(self, action: act.Iterate) -> None:
        self.emit(ev.LoopIterated(loop=action.loop, iteration=action.iteration, reason=action.reason))
        body = set(self._graph.loops[action.loop].body)
        for agent in self.plan.agents:  # in plan order
            if agent.spec.name in body:
                key = InstanceKey(agent.spec.name, None, action.iteration)
                self._plan_dynamic(agent, key, tuple(agent.spec.depends_on))

    def _plan_dynamic(
        self,
        agent: AgentPlan,
        key: InstanceKey,
        depends_on: tuple[str, ...],
        item: Any = None,
        label: Any = None,
    ) -> None:
        event = _planned_event(agent, key, depends_on, item, label)
        if key.fanned:  # shown as it will run (ps, top): its item in its intent; funded when it starts
            event = dataclasses.replace(event, intent=self._shown_intent(agent.spec, item, key), budget=None)
        self.emit(event)
        found = self._reusable.get(str(key))
        if found is None or self.state.instances[key].spec_hash != found[0]:
            return
        reused = found[1]
        if not any(self._made_here(i) for i in self._inputs(key)):
            self.emit(reused)

    def _shown_intent(self, spec: AgentSpec, item: Any, key: InstanceKey) -> str:
        if "{{" not in spec.intent:
            return spec.intent
        from rnix.core import expr

        context = {**self._graph.context(self.state, key), "item": item, "index": key.index}
        try:
            return expr.render(spec.intent, context)
        except expr.ExprError:
            return spec.intent

    def _made_here(self, inst: Instance) -> bool:
        """Whether this run produced the instance's result (it ran, or one of its items did): what
        reads it may then differ from what the earlier run read."""
        if inst.ran:
            return True
        node, iteration = inst.key.node, inst.key.iteration
        return any(
            c is not None and c.ran
            for c in (
                self.state.instances.get(InstanceKey(node, i, iteration)) for i in range(inst.children or 0)
            )
        )

    def _inputs(self, key: InstanceKey) -> list[Instance]:
        """The instances whose results `key` reads: its dependencies' (or its node's, for an item),
        and in a loop the previous iteration's body."""
        spec = self._plans[key.node].spec
        found: list[Instance] = []
        for dep in spec.depends_on:
            inst = self._graph.dependency(self.state, key.node_key(), dep)
            if isinstance(inst, Instance):
                found.append(inst)
        loop = self._loop_of.get(key.node)
        if loop is not None and key.iteration > 0:
            for name in self._graph.loops[loop].body:
                prev = self.state.instances.get(InstanceKey(name, None, key.iteration - 1))
                if prev is not None:
                    found.append(prev)
        return found

    def _close_loop(self, loop: str) -> None:
        """A loop ended: its body nodes' budgets go back to the pool (or their shares, unused)."""
        for name in self._graph.loops[loop].body:
            self._close_node(name)

    def _node_ended(self, key: InstanceKey) -> bool:
        """The node of `key` (an item) ended and all its items did: a jury settled by `first` ends
        before the members it stops, which give their unused budget back as they end."""
        node = self.state.instances.get(key.node_key())
        if node is None or not node.state.terminal:
            return False
        return all(
            i.state.terminal for k, i in self.state.instances.items() if k.node_key() == node.key and k.fanned
        )

    def _close_node(self, node: str) -> None:
        wallet = self._wallets.get(node)
        if wallet is not None and not wallet.closed:
            node_key = InstanceKey(node)
            if any(
                not i.state.terminal
                for k, i in self.state.instances.items()
                if k.fanned and k.node_key() == node_key
            ):
                return  # items still end: the last of them closes the node
        with contextlib.suppress(Exception):  # the pool's own checks: never wedge the run on them
            if wallet is None:
                self.pool.cancel(node)
            elif not wallet.closed:
                wallet.closed = True
                self.pool.release(node, wallet.used)

    def _plan_of(self, key: InstanceKey) -> AgentPlan:
        """The plan an instance runs with: its node's, or for a jury member its candidate's."""
        agent = self._plans[key.node]
        if agent.spec.aggregate is None or not key.fanned:
            return agent
        inst = self.state.instances.get(key)
        if inst is None or inst.item is None:
            return agent
        return self._member(agent, str(inst.item))

    def _member(self, agent: AgentPlan, candidate: str) -> AgentPlan:
        found = self._members.get((agent.spec.name, candidate))
        if found is None:
            found = jury_member(agent, candidate, self.plan.spec.definitions)
            self._members[(agent.spec.name, candidate)] = found
        return found

    def instance_spec(self, key: InstanceKey) -> AgentSpec:
        """The spec an instance runs: its name, and `{{ ... }}` in its intent and command filled in
        (item, index, iteration, vars, upstream outputs); a jury member's with its candidate's
        definition. Raises ExprError."""
        spec = self._plan_of(key).spec
        intent, command = spec.intent, spec.command
        texts = [intent, *(command or ())]
        if key == InstanceKey(spec.name) and not any("{{" in t for t in texts):
            return spec
        from rnix.core import expr

        inst = self.state.instances[key]
        context = self._graph.context(self.state, key)
        if key.fanned:
            context.update(item=inst.item, index=key.index)
        if any("{{" in t for t in texts):
            intent = expr.render(intent, context)
            command = tuple(expr.render(a, context) for a in command) if command is not None else None
        return dataclasses.replace(spec, name=str(key), intent=intent, command=command)

    def _upstream(
        self, key: InstanceKey, spec: AgentSpec
    ) -> tuple[dict[str, str], list[tuple[str, str]], dict[str, Any]]:
        """What an instance receives: the `upstream` mapping of its task (a for_each dependency as the
        JSON list of its instances' results), the upstream messages for the built-in agent (one per
        instance of a for_each dependency), and the task's pipeline fields."""
        upstream: dict[str, str] = {}
        messages: list[tuple[str, str]] = []
        for dep in spec.depends_on:
            inst = self._graph.dependency(self.state, key.node_key(), dep)
            if not isinstance(inst, Instance):
                continue
            upstream[dep] = _upstream_text(inst)
            if inst.children and self._plans[dep].spec.aggregate is None:  # a jury passes its verdict
                for i in range(inst.children):
                    child = self.state.instances.get(InstanceKey(dep, i, inst.key.iteration))
                    if child is not None:
                        messages.append((child.label or child.name, _upstream_text(child)))
            else:
                messages.append((dep, upstream[dep]))
        extra: dict[str, Any] = {}
        inst = self.state.instances[key]
        if key.fanned:
            extra.update(item=inst.item, index=key.index)
        loop = self._loop_of.get(key.node)
        if loop is not None:
            extra["iteration"] = key.iteration
            if key.iteration > 0:
                previous: dict[str, str] = {}
                for name in self._graph.loops[loop].body:
                    prev = self.state.instances.get(InstanceKey(name, None, key.iteration - 1))
                    if prev is not None:
                        previous[name] = _upstream_text(prev)
                        messages.append(
                            (
                                str(InstanceKey(name, None, key.iteration - 1)) + " (previous iteration)",
                                previous[name],
                            )
                        )
                extra["previous"] = previous
        return upstream, messages, extra

    def _launch(self, key: InstanceKey) -> None:
        self._spawn_task(self._drive(key), key)

    def _spawn_task(self, work: Awaitable[None], key: InstanceKey) -> None:
        self._busy.add(key)
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    async def _hold(self, key: InstanceKey) -> None:
        """Fork `key` early (actions.Hold); it waits for its task until `_attempt` releases it."""
        try:
            agent = self._plans[key.node]
            spec, name = agent.spec, str(key)
            if key not in self._registered:
                replay = self._replays.get(name)
                self.accounts.register(
                    name, model=spec.model, api_base=spec.api_base, budget=0, replay=replay
                )
                self._registered.add(key)
            paths = self.files.paths(name)
            fifo, fd = self.files.task_channel(name)
            try:
                process = await self.spawner.spawn(
                    SpawnRequest(
                        name=name,
                        argv=None,
                        env=self.env_for(agent, self.accounts.issue_nonce(name), 1),
                        cwd=self.files.cwd_for(spec),
                        stdin_path=fifo,
                        stdout_path=str(paths.out),
                        stderr_path=str(paths.log),
                        grace=spec.stop_grace_period_s,
                        exit_path=str(paths.exit),
                    )
                )
            except BaseException:
                os.close(fd)
                raise
            finally:
                with contextlib.suppress(OSError):
                    os.unlink(fifo)
            self._held[key] = Held(process, fd)
        except asyncio.CancelledError:
            raise
        except Exception:  # an early spawn is only an optimisation: the agent starts normally later
            return
        finally:
            self._busy.discard(key)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._wake.set()

    async def _drive(self, key: InstanceKey) -> None:
        try:
            await self._attempt(key)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug or an OS failure must not wedge the run: the agent fails
            inst = self.state.instances[key]
            if not inst.state.terminal:
                message = f"rnix could not run the agent: {exc}"
                if inst.state.signallable:
                    self.emit(_exit_event(inst, AgentState.FAILED, AgentState.FAILED, None, message))
                else:
                    self.emit(ev.InstanceCancelled(key=key, reason=message))
        finally:
            self._processes.pop(key, None)
            self._busy.discard(key)

    # -- one attempt ------------------------------------------------------------------------------

    async def _attempt(self, key: InstanceKey) -> None:
        agent = self._plan_of(key)
        spec = agent.spec
        inst = self.state.instances[key]
        attempt = inst.attempt + 1
        name = str(key)
        replay = self._replays.get(name) if attempt == 1 else None
        held = self._held.pop(key, None)
        if attempt == 1:
            budget = self._budgets[key]
            if key in self._registered:  # opened by a hold: its journal replay came with it
                self.accounts.fund(name, budget)
            else:
                self.accounts.register(
                    name, model=spec.model, api_base=spec.api_base, budget=budget, replay=replay
                )
        else:
            budget = inst.budget
            self.accounts.begin_attempt(name, attempt)
        upstream, messages, extra = self._upstream(key, spec)
        if key in self._comp_reasons:
            upstream, messages, extra = self._compensation_task(key)
        try:
            spec = self.instance_spec(key)
        except ValueError as exc:  # a template that reads what is not there
            if attempt == 1:
                self.emit(ev.InstanceSettled(key=key, state="failed", error=f"intent or command: {exc}"))
                return
            raise
        loop = asyncio.get_running_loop()
        paths = self.files.task(
            spec, attempt, budget, upstream, self.stdin_input, messages=messages, extra=extra
        )
        # Off the loop: creating two files costs ~1 ms each, 1 s for a layer of 500 agents. One
        # worker, so that agents launched together are spawned in plan order.
        recorded: asyncio.Future[None] | None = None
        if held is not None and held.alive:
            # Forked early: the task crosses its FIFO at once, and the task file (a record of it:
            # the agent never reads it) is written behind it. Its stdout file is fresh (attempt 1
            # of a new run directory) and may already be written to: it is not emptied.
            write = functools.partial(self.files.write, empty_out=False)
            recorded = loop.run_in_executor(self._files_thread, write, paths, attempt)
        else:
            await loop.run_in_executor(self._files_thread, self.files.write, paths, attempt)
        requested = self.clock.time()  # the agent's clock starts with the spawn (or release)
        if held is not None and await held.release(paths.task_data):
            process = held.process
        else:
            if held is not None:
                held.discard()
            if recorded is not None:
                await recorded  # a command-line spawn reads its task from the file
            process = await self._spawn(key, agent, attempt, paths, spec)
        self._processes[key] = process
        self.emit(
            ev.InstanceStarted(
                key=key,
                attempt=attempt,
                pid=process.pid,
                pid_start_time=process.start_time,
                pid_start_ticks=process.start_ticks,
                node=getattr(process, "node", None),  # optional on the seam (api.AgentProcess)
                budget=budget,
                log_path=str(paths.log),
                out_path=str(paths.out),
                replay_calls=getattr(replay, "calls", 0) if replay is not None else 0,
            ),
            ts=requested,
        )
        if recorded is not None:
            try:
                await recorded
            except OSError as exc:  # only the record is missing: the agent has its task
                log.warning("rnix: cannot write the task file of %s: %s", name, exc)
        exit_info = await process.wait()
        schema_error = structured.result_error(spec.output_schema, exit_info.returncode, exit_info.result)
        if schema_error is not None:  # stdout does not match output_schema: a failed attempt, exit 1
            exit_info = dataclasses.replace(exit_info, returncode=1)
        inst = self.state.instances[key]
        result = exit_info.result  # read next to the process by the spawner
        decision = act.exit_decision(
            inst, spec.max_retries, exit_info.returncode, exit_info.signal, self.state.stopping, self.options
        )
        error = schema_error or self._error_text(decision.outcome, inst, exit_info, spec.timeout_s, paths.log)
        self.emit(
            _exit_event(
                inst,
                decision.state,
                decision.outcome,
                exit_info,
                error,
                tokens=self.accounts.used(name),
                result=result,
                elapsed_ms=int(inst.elapsed_s(self.clock.time()) * 1000),
                retry_in=decision.retry_in,
            )
        )
        self._unflushed = True

    async def _spawn(
        self, key: InstanceKey, agent: AgentPlan, attempt: int, paths: Any, spec: AgentSpec
    ) -> AgentProcess:
        """`spec`: the instance's (its command's templates filled in)."""
        name = str(key)
        request = SpawnRequest(
            name=name,
            argv=spec.command,
            env=self.env_for(agent, self.accounts.issue_nonce(name), attempt),
            cwd=self.files.cwd_for(spec),
            stdin_path=str(paths.task),
            stdout_path=str(paths.out),
            stderr_path=str(paths.log),
            grace=spec.stop_grace_period_s,
            exit_path=str(paths.exit),
            resources=dict(spec.resources) or None,
        )
        return await self.spawner.spawn(request)

    def _stop(self, action: act.Stop) -> None:
        process = self._processes.get(action.key)
        if process is None:
            return  # still being spawned: the next decision, once it runs, stops it
        self.emit(ev.InstanceStopping(key=action.key, reason=action.reason, grace=action.grace))
        self.emit(
            ev.InstanceSignalled(key=action.key, pid=process.pid, signal="SIGTERM", reason=action.reason)
        )
        if self.state.instances[action.key].state is AgentState.PAUSED:
            process.signal_group(signals.SIGCONT)  # a stopped group cannot act on SIGTERM
        task = asyncio.create_task(self._stop_process(action.key, process, action.grace))
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    async def _stop_process(self, key: InstanceKey, process: AgentProcess, grace: float) -> None:
        stopper = asyncio.ensure_future(process.stop(grace))
        killer = asyncio.ensure_future(self._kill_now.wait())
        try:
            done, _ = await asyncio.wait({stopper, killer}, return_when=asyncio.FIRST_COMPLETED)
            if stopper not in done:  # a second Ctrl-C: no more grace
                process.signal_group(signals.SIGKILL)
                reason = self.state.instances[key].stop_reason or "interrupt"
                self.emit(ev.InstanceSignalled(key=key, pid=process.pid, signal="SIGKILL", reason=reason))
            await stopper
        finally:
            killer.cancel()

    # -- verdicts ---------------------------------------------------------------------------------

    def _start_assessment(self, key: InstanceKey) -> None:
        """Once per instance; a verdict that cannot be reached is simply not recorded."""
        if key in self._assessing:
            return
        self._assessing.add(key)
        if self.assess is None:
            return
        task = asyncio.create_task(self._assess(key), name=f"assess:{key}")
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    async def _assess(self, key: InstanceKey) -> None:
        assert self.assess is not None
        try:
            event = await self.assess(self._plan_of(key), self.state.instances[key])
        except Exception:  # a verdict that cannot be reached must not wedge the run
            return
        if event is not None:
            self.emit(event)

    # -- bookkeeping ------------------------------------------------------------------------------

    def emit(self, event: ev.Event, ts: float | None = None) -> None:
        """Apply the event to the state and record it: the one way anything changes."""
        record = Record(self.run_id, self.clock.time() if ts is None else ts, event)
        before = self.state.instances.get(event.instance) if event.instance is not None else None
        self.state = apply(self.state, record)
        self._record(record)
        key = event.instance
        if key is not None and key in self.state.instances:
            after = self.state.instances[key]
            if after.state.terminal and (before is None or not before.state.terminal):
                self._settled(after)
            if not isinstance(event, ev.InstancePlanned):
                self.on_update(self.view(key))
        self._wake.set()

    def _settled(self, inst: Instance) -> None:
        name, key = inst.name, inst.key
        if key.node in self._comp_specs:  # not funded by the pool: nothing to give back
            with contextlib.suppress(KeyError):
                self.accounts.revoke(name)
            return
        if self._dynamic(key.node):
            wallet = self._wallets.get(key.node)
            if wallet is not None and key in self._budgets:  # funded, whether or not it ran
                wallet.give_back(self._budgets[key], inst.tokens_used)
            if key.node not in self._loop_of and (not key.fanned or self._node_ended(key)):
                self._close_node(key.node)  # the node ended, and none of its instances still runs
        elif inst.ran or key in self._budgets:  # funded: it started, or failed to (e.g. its task file)
            self.pool.release(name, inst.tokens_used)  # unused tokens go back to agents not started
        elif inst.state is not AgentState.BUDGET_EXCEEDED:
            self.pool.cancel(name)  # never started here: its share is re-divided
        with contextlib.suppress(KeyError):
            self.accounts.revoke(name)

    # -- compensation (saga) ----------------------------------------------------------------------

    def _saga_step(self, decision: act.Decision, now: float) -> act.Decision:
        """Start the next compensation when one is due (rnix.core.saga); add the stops of running
        compensations (a user's stop, their timeout) to the decision."""
        if self.options.compensate:
            step = saga.next_compensation(self.state, self.plan.spec)
            if step is not None and step.key not in self._busy:
                self._compensate(step)
        if not self._comp_specs:
            return decision
        stops, wake = saga.stops(self.state, self._comp_specs, now)
        wakes = [w for w in (decision.wake_at, wake) if w is not None]
        return act.Decision((*decision.actions, *stops), min(wakes) if wakes else None)

    def _compensate(self, step: saga.Compensate) -> None:
        """Plan the compensation as an instance of its own and start it (not funded by the pool: its
        own `budget`, else the planned budget of the agent it undoes)."""
        from rnix.core.fields import DEFAULT_AGENT_BUDGET

        undone = self._plans[step.of.node]
        spec = saga.compensation_spec(undone.spec)
        budget = spec.budget or undone.budget or DEFAULT_AGENT_BUDGET
        self._plans[step.key.node] = AgentPlan(spec, undone.layer, budget, False)
        self._comp_specs[step.key.node] = spec
        self._comp_reasons[step.key] = step.reason
        self.emit(_planned_event(self._plans[step.key.node]))
        self.emit(ev.CompensationPlanned(key=step.key, of=str(step.of), reason=step.reason))
        self._budgets[step.key] = budget
        self._spawn_task(self._run_compensation(step.key), step.key)

    async def _run_compensation(self, key: InstanceKey) -> None:
        await self._flush()  # what it undoes, and why, is durable before it starts
        self._unflushed = False
        await self._drive(key)

    def _compensation_task(
        self, key: InstanceKey
    ) -> tuple[dict[str, str], list[tuple[str, str]], dict[str, Any]]:
        """What a compensation receives: the undone agent's result as its upstream, and `compensate`
        in its task: {agent, result, state, reason} (docs/pipelines.md)."""
        of_name = self.state.instances[key].compensates or ""
        of = self.state.instances[InstanceKey.parse(of_name)]
        text = _upstream_text(of)
        extra = {
            "compensate": {
                "agent": of.name,
                "result": of.result,
                "reason": self._comp_reasons.get(key, ""),
            }
        }
        return {of.name: text}, [(of.name, text)], extra

    def _error_text(
        self, state: AgentState, inst: Instance, exit_info: ExitInfo, timeout: float, log: Any
    ) -> str | None:
        if state is AgentState.COMPLETED:
            return None
        if state is AgentState.TIMEOUT:
            return f"timed out after {timeout:g}s"
        if state is AgentState.CANCELLED:
            return f"stopped: {inst.stop_reason or self.state.stopping}"
        last = self.files.last_log_line(log)
        if state is AgentState.BUDGET_EXCEEDED:
            return last or "token budget exceeded"
        how = (
            f"killed by {signals.Signals(exit_info.signal).name}"
            if exit_info.signal is not None and exit_info.signal in signals.valid_signals()
            else f"exit status {exit_info.returncode}"
        )
        return f"{how}: {last}" if last else how


class _Wallet:
    """A dynamic node's budget, funded by the pool once: each item gets an equal part of what is
    left (`remaining // items not yet funded`), each loop iteration all that is left; what an
    instance does not use comes back. The node releases `used` to the pool when it can have no more
    instances (it ended, or its loop did)."""

    def __init__(self, funded: int) -> None:
        self.funded = funded
        self.remaining = funded
        self.closed = False

    @property
    def used(self) -> int:
        return self.funded - self.remaining

    def share(self, key: InstanceKey, state: RunState, funded: Mapping[InstanceKey, int]) -> int:
        amount = self.remaining
        if key.fanned:
            node = state.instances.get(key.node_key())
            count = node.children if node is not None and node.children else 1
            waiting = sum(
                1
                for i in range(count)
                if (c := state.instances.get(InstanceKey(key.node, i, key.iteration))) is not None
                and c.key not in funded
                and c.attempt == 0
                and c.state is AgentState.PENDING
            )
            amount = self.remaining // max(1, waiting)
        self.remaining -= amount
        return amount

    def give_back(self, budget: int, used: int) -> None:
        self.remaining += max(0, budget - used)


def _exit_event(
    inst: Instance,
    state: AgentState,
    outcome: AgentState,
    exit_info: ExitInfo | None,
    error: str | None,
    *,
    tokens: int | None = None,
    result: str | None = None,
    elapsed_ms: int | None = None,
    retry_in: float | None = None,
) -> ev.InstanceExited:
    return ev.InstanceExited(
        key=inst.key,
        attempt=inst.attempt,
        state=state.value,
        outcome=outcome.value,
        exit_code=exit_info.returncode if exit_info else None,
        signal=exit_info.signal if exit_info else None,
        tokens_used=tokens if tokens is not None else inst.tokens_used,
        elapsed_ms=elapsed_ms,
        result=result,
        error=error,
        final=state.terminal,
        retry_in=retry_in,
    )


def _planned_event(
    agent: AgentPlan,
    key: InstanceKey | None = None,
    depends_on: tuple[str, ...] | None = None,
    item: Any = None,
    label: str | None = None,
) -> ev.InstancePlanned:
    spec = agent.spec
    key = key if key is not None else InstanceKey(spec.name)
    spec_hash = agent.spec_hash
    if key.fanned:  # an item's instance is what it is because of its item
        text = json.dumps([spec_hash, item], sort_keys=True, default=str)
        spec_hash = hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
    return ev.InstancePlanned(
        key=key,
        layer=agent.layer,
        depends_on=tuple(spec.depends_on) if depends_on is None else depends_on,
        model=spec.model,
        budget=agent.budget,
        priority=spec.priority,
        intent=spec.intent,
        kind=spec.kind,
        spec_hash=spec_hash,
        item=item,
        label=label,
    )


def _upstream_text(dep: Instance) -> str:
    """What a dependency passes on: its result; for one that did not complete (`{x: failed}`,
    `{x: finished}`), how it ended and why, then whatever it printed; nothing for one skipped by a
    condition (the agent runs without it)."""
    if dep.state is AgentState.COMPLETED or dep.by_condition:  # a skip by condition passes nothing
        return dep.result or ""
    head = f"[{dep.name} {dep.state.value}" + (f": {dep.error}]" if dep.error else "]")
    return f"{head}\n{dep.result}" if dep.result else head
