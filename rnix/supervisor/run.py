"""`supervise()`: one compose run, from the first event to the last, as the supervisor process.

Wires the store (through the recorder thread), the gateway, the fork-server spawner and the
scheduler; turns SIGINT/SIGTERM into graceful stops (a second one kills at once); always records the
run's end and releases every resource, so an exception never leaves agents or a dangling run.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from rnix.core.events import LLM_CALL, RUN_FINISHED, RUN_STARTED, Event
from rnix.core.lifecycle import AgentState, RunState
from rnix.core.plan import Plan, plan_as_dict
from rnix.core.secrets import is_secret_name, mask, secret_values
from rnix.errors import ExitCode
from rnix.supervisor.agentenv import agent_environment, base_environment
from rnix.supervisor.scheduler import AgentRun, Clock, Options, Scheduler

if TYPE_CHECKING:
    from rnix.supervisor.gateway import Gateway


@dataclass
class RunContext:
    """What a run needs to know about its surroundings."""

    plan: Plan
    run_id: str
    home: Path
    environ: Mapping[str, str]
    base_dir: Path  # the compose file's directory
    compose_file: str
    clock: Clock
    detached: bool = False
    stdin_input: str | None = None
    options: Options = field(default_factory=Options)


@dataclass
class Outcome:
    run_id: str
    status: RunState
    exit_code: int
    agents: dict[str, AgentRun]
    elapsed_ms: int
    interrupted_by: int | None = None  # the signal that stopped the run


async def supervise(ctx: RunContext, on_update: Callable[[AgentRun], None] = lambda run: None) -> Outcome:
    from rnix.store import paths
    from rnix.store.db import Store
    from rnix.supervisor import procinfo
    from rnix.supervisor.assess import Assessor
    from rnix.supervisor.gateway import Gateway
    from rnix.supervisor.recorder import Recorder
    from rnix.supervisor.runfiles import RunFiles
    from rnix.supervisor.spawn import ForkServerSpawner

    home = paths.home_dir(ctx.home)
    run_dir = paths.run_dir(home, ctx.run_id)
    socket_path = str(paths.runtime_dir(ctx.environ) / f"{ctx.run_id}.sock")
    secrets = secret_values(ctx.environ)
    recorder = Recorder(lambda: Store.open(home))
    recorder.start()

    def record(event: Event) -> None:
        recorder.record(Event(event.run_id, event.kind, event.ts, event.agent, mask(event.data, secrets)))

    started = ctx.clock.monotonic()
    record(
        Event(
            ctx.run_id,
            RUN_STARTED,
            ctx.clock.time(),
            None,
            {
                "project": ctx.plan.project,
                "compose_file": ctx.compose_file,
                "cwd": str(ctx.base_dir),
                "supervisor_pid": os.getpid(),
                "supervisor_start_time": procinfo.start_time(os.getpid()),
                "detached": ctx.detached,
                "plan": plan_as_dict(ctx.plan),
            },
        )
    )
    await recorder.aflush()  # `compose down`, `ps` and `--detach` can see the run from here on
    scheduler: Scheduler | None = None

    def on_call(agent: str, data: dict[str, object]) -> None:
        record(Event(ctx.run_id, LLM_CALL, ctx.clock.time(), agent, data))
        if scheduler is not None and agent in scheduler.agents:
            run = scheduler.agents[agent]
            run.tokens_used = int(data.get("used", run.tokens_used))  # type: ignore[call-overload]
            on_update(run)

    gateway = Gateway(socket_path, on_call=on_call)
    spawner = ForkServerSpawner(environ={k: v for k, v in ctx.environ.items() if not is_secret_name(k)})
    interrupted: list[int] = []
    background: list[asyncio.Future[object]] = []
    loop = asyncio.get_running_loop()
    try:
        # Slow loads begin at once in the background, so agents start without waiting for them: a
        # tokenizer encoding takes ~0.3 s, `import litellm` several seconds. The first LLM call
        # waits for what it needs; everything else (command agents, spawning) goes on meanwhile.
        from rnix.llm import tokens

        models = {agent.spec.model for agent in ctx.plan.agents}
        background.extend(asyncio.ensure_future(asyncio.to_thread(tokens.get_encoding, m)) for m in models)
        await asyncio.gather(gateway.start(), spawner.start())
        if any(not model.startswith("mock") for model in models):
            from rnix.llm.litellm_backend import load_litellm

            background.append(asyncio.ensure_future(load_litellm()))
        files = RunFiles(
            run_dir,
            run_id=ctx.run_id,
            project=ctx.plan.project,
            project_intent=ctx.plan.spec.intent,
            base_dir=ctx.base_dir,
            secrets=secrets,
        )

        base_env = base_environment(ctx.environ)  # once per run, not once per agent

        def env_for(agent: object, nonce: str, attempt: int) -> Mapping[str, str]:
            spec = agent.spec  # type: ignore[attr-defined]
            return agent_environment(
                base_env,
                ctx.environ,
                spec,
                gateway_path=socket_path,
                nonce=nonce,
                run_id=ctx.run_id,
                project=ctx.plan.project,
            )

        scheduler = Scheduler(
            ctx.plan,
            run_id=ctx.run_id,
            spawner=spawner,
            accounts=_Accounts(gateway),
            record=record,
            files=files,
            clock=ctx.clock,
            env_for=env_for,
            options=ctx.options,
            on_update=on_update,
            stdin_input=ctx.stdin_input,
            assess=Assessor(gateway, record, ctx.clock, ctx.run_id),
        )
        sched = scheduler

        def on_signal(signum: int) -> None:
            if interrupted:
                sched.kill_now()
                return
            interrupted.append(signum)
            reason = "interrupted (SIGINT)" if signum == signal.SIGINT else "terminated (SIGTERM)"
            grace = None
            if signum == signal.SIGTERM:
                by_down, grace = _stop_request(home, ctx.run_id)
                reason = "compose down" if by_down else reason
            sched.request_stop(reason, grace)

        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, on_signal, signum)
        agents = await scheduler.run()
    except BaseException as exc:
        # The run cannot go on (e.g. no socket directory, the fork server would not start): record
        # its end so that ps/down do not show a run that is not there, then let the error out.
        _record_failure(record, ctx, started, exc)
        recorder.close()
        raise
    finally:
        for task in background:
            if not task.done():
                task.cancel()  # the import thread itself finishes on its own; nothing waits for it
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        await spawner.close()
        await gateway.close()
    elapsed_ms = int((ctx.clock.monotonic() - started) * 1000)
    outcome = _outcome(ctx.run_id, agents, elapsed_ms, interrupted[0] if interrupted else None)
    record(
        Event(
            ctx.run_id,
            RUN_FINISHED,
            ctx.clock.time(),
            None,
            {
                "status": outcome.status.value,
                "exit_code": outcome.exit_code,
                "elapsed_ms": elapsed_ms,
                "tokens_used": sum(a.tokens_used for a in agents.values()),
            },
        )
    )
    recorder.close()
    return outcome


def _record_failure(
    record: Callable[[Event], None], ctx: RunContext, started: float, exc: BaseException
) -> None:
    elapsed_ms = int((ctx.clock.monotonic() - started) * 1000)
    data = {"status": RunState.FAILED.value, "exit_code": int(ExitCode.FAILURE), "elapsed_ms": elapsed_ms}
    record(Event(ctx.run_id, RUN_FINISHED, ctx.clock.time(), None, {**data, "error": str(exc)[:500]}))


def _stop_request(home: Path, run_id: str) -> tuple[bool, float | None]:
    """Whether `compose down` asked this run to stop, and the grace it gave (None: each agent's own)."""
    from rnix.store.db import Store

    with Store.open(home, readonly=True) as store:
        row = store.run(run_id)
    if row is None or row.stop_requested_at is None:
        return False, None
    return True, row.stop_grace


class _Accounts:
    """The gateway seen as the scheduler's `Accounts`."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    def register(self, agent: str, *, model: str, api_base: str | None, budget: int) -> object:
        return self.gateway.register(agent, model=model, api_base=api_base, budget=budget)

    def issue_nonce(self, agent: str) -> str:
        return self.gateway.issue_nonce(agent)

    def revoke(self, agent: str) -> None:
        self.gateway.revoke(agent)

    def used(self, agent: str) -> int:
        return self.gateway.account(agent).used


def _outcome(run_id: str, agents: dict[str, AgentRun], elapsed_ms: int, signum: int | None) -> Outcome:
    if signum is not None:
        status = RunState.CANCELLED
        code = ExitCode.INTERRUPTED if signum == signal.SIGINT else ExitCode.TERMINATED
    elif all(a.state is AgentState.COMPLETED for a in agents.values()):
        status, code = RunState.COMPLETED, ExitCode.OK
    else:
        status, code = RunState.FAILED, ExitCode.FAILURE
    return Outcome(run_id, status, int(code), agents, elapsed_ms, signum)
