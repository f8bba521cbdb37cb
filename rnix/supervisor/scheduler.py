"""The scheduler: runs a plan's agents as processes, each as soon as its own dependencies completed.

Per agent: write the task (upstream results injected), spawn, wait with the agent's timeout, stop it
(SIGTERM to the group, grace, SIGKILL) on timeout or on a stop request, read its result, retry a
failure or timeout up to `max_retries` with backoff, then settle. A dependency that did not complete
skips its dependents (transitively); independent branches go on unless `abort_on_failure`.

Every effect is injected (spawner, gateway accounts, recorder, files, clock), so the scheduler is
unit-tested with scripted fakes and integration-tested with real processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal as signals
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from rnix.core.events import (
    AGENT_EXITED,
    AGENT_PLANNED,
    AGENT_SIGNALLED,
    AGENT_SKIPPED,
    AGENT_STARTED,
    Event,
)
from rnix.core.lifecycle import AgentState, exit_state_for
from rnix.core.plan import AgentPlan, Plan
from rnix.core.pool import Pool
from rnix.supervisor.api import AgentProcess, ExitInfo, Spawner, SpawnRequest
from rnix.supervisor.runfiles import RunFiles

RESULT_LIMIT = 1024 * 1024  # bytes of stdout kept as the result (the whole stdout stays in its file)


class Accounts(Protocol):
    """The part of the gateway the scheduler needs: per-agent budgets and nonces."""

    def register(self, agent: str, *, model: str, api_base: str | None, budget: int) -> Any: ...

    def issue_nonce(self, agent: str) -> str: ...

    def revoke(self, agent: str) -> None: ...

    def used(self, agent: str) -> int: ...


class Clock(Protocol):
    def time(self) -> float: ...

    def monotonic(self) -> float: ...


@dataclass
class AgentRun:
    """The live state of one agent (mutable; owned by the scheduler)."""

    plan: AgentPlan
    state: AgentState = AgentState.PENDING
    attempt: int = 0
    pid: int | None = None
    started: float | None = None  # monotonic, first attempt
    ended: float | None = None
    exit_code: int | None = None
    signal: int | None = None
    result: str | None = None
    error: str | None = None
    tokens_used: int = 0
    budget: int = 0  # what the pool funded (0 until the agent starts, or when it could not be funded)
    sla: dict[str, Any] | None = None  # the contract verdict, once assessed
    assessed: bool = False
    process: AgentProcess | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return self.plan.spec.name

    def elapsed_ms(self, now: float) -> int:
        if self.started is None:
            return 0
        return int(((self.ended if self.ended is not None else now) - self.started) * 1000)


@dataclass(frozen=True)
class Options:
    abort_on_failure: bool = False
    retry_base_delay: float = 1.0  # seconds before the first retry; doubles each time
    retry_max_delay: float = 30.0


EnvBuilder = Callable[[AgentPlan, str, int], Mapping[str, str]]  # (agent, nonce, attempt) -> env
Assessor = Callable[["AgentRun"], Awaitable[None]]  # after an agent ran: SLA verdict, ledger record


class Scheduler:
    def __init__(
        self,
        plan: Plan,
        *,
        run_id: str,
        spawner: Spawner,
        accounts: Accounts,
        record: Callable[[Event], None],
        files: RunFiles,
        clock: Clock,
        env_for: EnvBuilder,
        options: Options = Options(),
        on_update: Callable[[AgentRun], None] = lambda run: None,
        stdin_input: str | None = None,
        assess: Assessor | None = None,
    ) -> None:
        self.plan = plan
        self.assess = assess
        self.run_id = run_id
        self.spawner = spawner
        self.accounts = accounts
        self._record = record
        self.files = files
        self.clock = clock
        self.env_for = env_for
        self.options = options
        self.on_update = on_update
        self.stdin_input = stdin_input
        self.agents = {a.spec.name: AgentRun(a) for a in plan.agents}
        self.pool = Pool(plan.requests, plan.spec.budget_pool)
        self.dependents: dict[str, list[str]] = {name: [] for name in self.agents}
        for agent in plan.agents:
            for dep in agent.spec.depends_on:
                self.dependents[dep].append(agent.spec.name)
        self.stopping: str | None = None  # the reason, once a stop was requested
        self.stop_grace: float | None = None
        self._stop_event = asyncio.Event()
        self._kill_now = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._done = asyncio.Event()
        self.started_at = clock.monotonic()

    # -- public -----------------------------------------------------------------------------------

    async def run(self) -> dict[str, AgentRun]:
        """Run every agent to a terminal state; returns the agents by name."""
        for agent in self.plan.agents:
            self._emit(agent.spec.name, AGENT_PLANNED, self._planned_data(agent))
        self._start_ready()
        self._check_done()
        await self._done.wait()
        return self.agents

    def request_stop(self, reason: str, grace: float | None = None) -> None:
        """Stop everything gracefully: pending agents are cancelled, running ones get SIGTERM."""
        if self.stopping is None:
            self.stopping = reason
            self.stop_grace = grace
            self._stop_event.set()
            for run in self.agents.values():
                if run.state is AgentState.PENDING and run.attempt == 0:  # never started
                    self._settle(run, AgentState.CANCELLED, f"not started: {reason}")
            self._check_done()

    def kill_now(self) -> None:
        """A second interrupt: SIGKILL every running agent at once."""
        self.request_stop("interrupt", 0)
        self._kill_now.set()

    # -- scheduling -------------------------------------------------------------------------------

    def _start_ready(self) -> None:
        if self.stopping:
            return
        for run in self.agents.values():
            if run.state is not AgentState.PENDING or run.process is not None or run.attempt:
                continue
            deps = [self.agents[d] for d in run.plan.spec.depends_on]
            if all(d.state is AgentState.COMPLETED for d in deps) and self._fund(run):
                run.attempt = 1
                task = asyncio.create_task(self._drive(run), name=f"agent:{run.name}")
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    def _fund(self, run: AgentRun) -> bool:
        """Take the agent's budget from the pool as it starts; one the pool cannot fund never starts."""
        run.budget = self.pool.fund(run.name)
        if run.budget <= 0:
            left = self.pool.available
            self._settle(
                run, AgentState.BUDGET_EXCEEDED, f"the budget pool cannot fund it ({left:,} tokens left)"
            )
            self._after(run)
            return False
        spec = run.plan.spec
        self.accounts.register(run.name, model=spec.model, api_base=spec.api_base, budget=run.budget)
        return True

    def _check_done(self) -> None:
        if all(run.state.terminal for run in self.agents.values()) and not self._tasks:
            self._done.set()

    async def _drive(self, run: AgentRun) -> None:
        try:
            await self._attempts(run)
        except Exception as exc:  # a bug or an OS failure must not wedge the run: the agent fails
            if not run.state.terminal:
                self._settle(run, AgentState.FAILED, f"rnix could not run the agent: {exc}")
        finally:
            self._after(run)  # dependents start first: assessing never delays the DAG
            if self.assess is not None and run.attempt > 0 and run.state is not AgentState.CANCELLED:
                try:
                    await self.assess(run)
                except Exception as exc:  # a verdict that cannot be reached must not wedge the run
                    run.error = run.error or f"could not assess the contract: {exc}"
                run.assessed = True
                self.on_update(run)
            current = asyncio.current_task()
            if current is not None:
                self._tasks.discard(current)
            self._check_done()

    def _after(self, run: AgentRun) -> None:
        if run.state is AgentState.COMPLETED:
            self._start_ready()
            return
        self._skip_dependents(run.name, f"dependency '{run.name}' {run.state.value}")
        if self.options.abort_on_failure and run.state is not AgentState.CANCELLED:
            self.request_stop(f"'{run.name}' {run.state.value} (--abort-on-failure)")

    def _skip_dependents(self, name: str, reason: str) -> None:
        for child in self.dependents[name]:
            run = self.agents[child]
            if run.state is AgentState.PENDING and run.attempt == 0 and run.budget == 0:
                self._settle(run, AgentState.SKIPPED, reason)
                self._skip_dependents(child, reason)

    # -- one agent --------------------------------------------------------------------------------

    async def _attempts(self, run: AgentRun) -> None:
        spec = run.plan.spec
        while True:
            state, exit_info = await self._one_attempt(run)
            retry = (
                state in (AgentState.FAILED, AgentState.TIMEOUT)
                and run.attempt <= spec.max_retries
                and not self.stopping
            )
            self._emit_exit(run, state, exit_info, final=not retry)
            if not retry:
                self._settle(run, state, run.error, emitted=True)
                return
            run.state = AgentState.PENDING
            self.on_update(run)
            delay = min(self.options.retry_max_delay, self.options.retry_base_delay * 2 ** (run.attempt - 1))
            if await self._wait_stop(delay):
                self._settle(run, AgentState.CANCELLED, f"not retried: {self.stopping}")
                return
            run.attempt += 1

    async def _one_attempt(self, run: AgentRun) -> tuple[AgentState, ExitInfo | None]:
        spec = run.plan.spec
        upstream = {dep: self.agents[dep].result or "" for dep in spec.depends_on}
        paths = self.files.prepare(run, upstream, self.stdin_input)
        nonce = self.accounts.issue_nonce(run.name)
        request = SpawnRequest(
            name=run.name,
            argv=spec.command,
            env=self.env_for(run.plan, nonce, run.attempt),
            cwd=self.files.cwd_for(spec),
            stdin_path=str(paths.task),
            stdout_path=str(paths.out),
            stderr_path=str(paths.log),
            grace=spec.stop_grace_period_s,
        )
        requested = self.clock.monotonic()  # the agent's clock starts with the spawn, not its reply
        process = await self.spawner.spawn(request)
        run.process, run.pid = process, process.pid
        if run.started is None:
            run.started = requested
        run.ended = None
        run.state = AgentState.RUNNING
        self._emit(
            run.name,
            AGENT_STARTED,
            {
                "attempt": run.attempt,
                "pid": process.pid,
                "pid_start_time": process.start_time,
                "budget": run.budget,
                "log_path": str(paths.log),
                "out_path": str(paths.out),
            },
        )
        self.on_update(run)
        timed_out, cancelled, exit_info = await self._supervise(run, process)
        run.process = None
        run.ended = self.clock.monotonic()
        run.exit_code, run.signal = exit_info.returncode, exit_info.signal
        run.tokens_used = self.accounts.used(run.name)
        run.result = self.files.read_result(paths.out, RESULT_LIMIT)
        state = exit_state_for(exit_info.returncode, exit_info.signal, timed_out, cancelled)
        run.error = self._error_text(state, exit_info, spec.timeout_s, paths.log)
        return state, exit_info

    async def _supervise(self, run: AgentRun, process: AgentProcess) -> tuple[bool, bool, ExitInfo]:
        """Wait for the process, its timeout or a stop request; returns (timed_out, cancelled, exit)."""
        spec = run.plan.spec
        waiter = asyncio.ensure_future(process.wait())
        stop = asyncio.ensure_future(self._stop_event.wait())
        try:
            done, _ = await asyncio.wait(
                {waiter, stop}, timeout=spec.timeout_s, return_when=asyncio.FIRST_COMPLETED
            )
            if waiter in done:
                return False, False, waiter.result()
            timed_out = not done  # neither finished: the timeout elapsed
            reason = "timeout" if timed_out else (self.stopping or "stop")
            grace = spec.stop_grace_period_s if self.stop_grace is None or timed_out else self.stop_grace
            exit_info = await self._stop_process(run, process, grace, reason)
            return timed_out, not timed_out, exit_info
        finally:
            stop.cancel()
            if not waiter.done():
                waiter.cancel()

    async def _stop_process(
        self, run: AgentRun, process: AgentProcess, grace: float, reason: str
    ) -> ExitInfo:
        self._emit(run.name, AGENT_SIGNALLED, {"pid": process.pid, "signal": "SIGTERM", "reason": reason})
        stopper = asyncio.ensure_future(process.stop(grace))
        killer = asyncio.ensure_future(self._kill_now.wait())
        try:
            done, _ = await asyncio.wait({stopper, killer}, return_when=asyncio.FIRST_COMPLETED)
            if stopper not in done:  # a second Ctrl-C: no more grace
                process.signal_group(signals.SIGKILL)
                self._emit(
                    run.name, AGENT_SIGNALLED, {"pid": process.pid, "signal": "SIGKILL", "reason": reason}
                )
            return await stopper
        finally:
            killer.cancel()

    async def _wait_stop(self, delay: float) -> bool:
        """Sleep `delay` seconds unless a stop is requested first (then True)."""
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._stop_event.wait(), timeout=delay)
        return self.stopping is not None

    # -- bookkeeping ------------------------------------------------------------------------------

    def _error_text(self, state: AgentState, exit_info: ExitInfo, timeout: float, log: Any) -> str | None:
        if state is AgentState.COMPLETED:
            return None
        if state is AgentState.TIMEOUT:
            return f"timed out after {timeout:g}s"
        if state is AgentState.CANCELLED:
            return f"stopped: {self.stopping}"
        last = self.files.last_log_line(log)
        if state is AgentState.BUDGET_EXCEEDED:
            return last or "token budget exceeded"
        how = (
            f"killed by {signals.Signals(exit_info.signal).name}"
            if exit_info.signal is not None and exit_info.signal in signals.valid_signals()
            else f"exit status {exit_info.returncode}"
        )
        return f"{how}: {last}" if last else how

    def _emit_exit(self, run: AgentRun, state: AgentState, exit_info: ExitInfo | None, final: bool) -> None:
        self._emit(
            run.name,
            AGENT_EXITED,
            {
                "attempt": run.attempt,
                "state": state.value if final else AgentState.PENDING.value,
                "outcome": state.value,
                "exit_code": exit_info.returncode if exit_info else None,
                "signal": exit_info.signal if exit_info else None,
                "tokens_used": run.tokens_used,
                "elapsed_ms": run.elapsed_ms(self.clock.monotonic()),
                "result": run.result,
                "error": run.error,
                "final": final,
            },
        )

    def _settle(self, run: AgentRun, state: AgentState, error: str | None, emitted: bool = False) -> None:
        run.state = state
        run.error = error
        if run.attempt > 0:
            self.pool.release(run.name, run.tokens_used)  # unused tokens go back to agents not started
        elif run.budget == 0 and state is not AgentState.BUDGET_EXCEEDED:
            self.pool.cancel(run.name)  # never started: its share is re-divided
        if run.started is not None and run.ended is None:
            run.ended = self.clock.monotonic()
        if state is AgentState.SKIPPED:
            self._emit(run.name, AGENT_SKIPPED, {"reason": error})
        elif not emitted:
            self._emit_exit(run, state, None, final=True)
        with contextlib.suppress(KeyError):
            self.accounts.revoke(run.name)
        self.on_update(run)

    def _planned_data(self, agent: AgentPlan) -> dict[str, Any]:
        spec = agent.spec
        return {
            "layer": agent.layer,
            "depends_on": list(spec.depends_on),
            "model": spec.model,
            "budget": agent.budget,
            "priority": spec.priority,
            "intent": spec.intent,
            "kind": spec.kind,
        }

    def _emit(self, agent: str | None, kind: str, data: dict[str, Any]) -> None:
        self._record(Event(self.run_id, kind, self.clock.time(), agent, data))
