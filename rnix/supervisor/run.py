"""`supervise()`: one compose run, from the first event to the last, as the supervisor process.

Wires the store (through the recorder thread), the gateway, the fork-server spawner and the
scheduler; turns SIGINT/SIGTERM into graceful stops (a second one kills at once); always records the
run's end and releases every resource, so an exception never leaves agents or a dangling run. The
end is recorded after the spawner closed, i.e. after every agent and every process descended from
one was reaped (spawn.py): `compose down`, which waits for the recorded end, returns with none left.

RNIX_HOME is checked (`preflight.check_home`) before anything starts. When an event cannot be
recorded mid-run (the filesystem is full or read-only: the recorder breaks), the run is stopped the
way a Ctrl-C stops it, its end is recorded if the filesystem lets it, and `supervise` raises
`HomeUnusable` (exit status 3) naming the database and the cause.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import signal
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from rnix.core import events as ev
from rnix.core.actions import Options
from rnix.core.events import InstanceKey, Record
from rnix.core.fold import RunState
from rnix.core.lifecycle import RunStatus
from rnix.core.model import ComposeSpec
from rnix.core.plan import Plan, plan_as_dict
from rnix.core.secrets import is_secret_name, mask, secret_values
from rnix.errors import ExitCode, HomeUnusable
from rnix.llm import retry, routing
from rnix.supervisor.agentenv import agent_environment, base_environment
from rnix.supervisor.api import AgentProcess, SpawnRequest
from rnix.supervisor.scheduler import AgentView, Clock, Scheduler

if TYPE_CHECKING:
    from rnix.core.journal import Replay
    from rnix.store.db import StoreUnwritable
    from rnix.supervisor.gateway import Gateway
    from rnix.supervisor.resume import Resume


class Spawner(Protocol):
    """What a run needs of its spawner (api.Spawner, plus the run-wide environment)."""

    async def start(self) -> None: ...

    async def spawn(self, request: SpawnRequest) -> AgentProcess: ...

    async def close(self) -> None: ...

    def set_base_env(self, env: Mapping[str, str]) -> None: ...


@runtime_checkable
class _RayLike(Protocol):
    """The Ray spawner's extra duties (rayspawn.RaySpawner), without importing it."""

    gateway_address: str | None

    @property
    def needs_tcp(self) -> bool: ...

    def gateway_host(self) -> str: ...

    def check_resources(self, wanted: Iterable[tuple[str, Mapping[str, float]]]) -> None: ...


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
    resume: Resume | None = None  # what this run takes over from an earlier one
    engine: str = "local"  # local | ray (docs/scale-out.md)
    ray_address: str | None = None  # the Ray cluster (None: a local Ray instance for the run)


@dataclass
class Outcome:
    run_id: str
    status: RunStatus
    exit_code: int
    agents: dict[str, AgentView]
    elapsed_ms: int
    state: RunState | None = None


async def supervise(ctx: RunContext, on_update: Callable[[AgentView], None] = lambda view: None) -> Outcome:
    from rnix.store import preflight
    from rnix.supervisor import procinfo
    from rnix.supervisor.spawn import ForkServerSpawner

    # The gateway holds the provider keys and agents run as the same user: keep them out of this
    # process (its /proc environ and memory, ptrace) before the first agent exists.
    procinfo.make_undumpable()
    preflight.check_home(ctx.home)
    # The fork server is a process of its own: it boots (~80 ms) while the run is set up here.
    spawner: Spawner
    if ctx.engine == "ray":
        from rnix.supervisor.rayspawn import RaySpawner

        spawner = RaySpawner(
            run_id=ctx.run_id, address=ctx.ray_address, ship_dir=str(ctx.base_dir), environ=ctx.environ
        )
    else:
        spawner = ForkServerSpawner(environ={k: v for k, v in ctx.environ.items() if not is_secret_name(k)})
    spawner_started = asyncio.ensure_future(spawner.start())
    try:
        return await _supervise(ctx, on_update, spawner, spawner_started)
    finally:
        with contextlib.suppress(Exception):
            await spawner_started  # never abandoned half-started: then it can be closed
        await spawner.close()  # a no-op when the run closed it; else (a failed set-up) it ends here


async def _supervise(
    ctx: RunContext,
    on_update: Callable[[AgentView], None],
    spawner: Spawner,
    spawner_started: asyncio.Future[None],
) -> Outcome:
    from rnix.store import paths
    from rnix.store.db import Store
    from rnix.supervisor import procinfo
    from rnix.supervisor.assess import Assessor
    from rnix.supervisor.controlsock import ControlServer, control_socket_path
    from rnix.supervisor.gateway import Gateway
    from rnix.supervisor.recorder import Recorder
    from rnix.supervisor.runfiles import RunFiles

    home = paths.home_dir(ctx.home)
    loop = asyncio.get_running_loop()
    scheduler: Scheduler | None = None

    unrecorded: list[StoreUnwritable] = []

    def on_broken(error: StoreUnwritable) -> None:
        """The store refused a write: stop the run now (the scheduler records the stop as usual)."""
        unrecorded.append(error)
        if scheduler is not None and not recorder.closed and not scheduler.state.all_terminal:
            scheduler.request_stop(f"the run's state cannot be recorded: {error.cause}")

    run_dir = paths.run_dir(home, ctx.run_id)
    socket_path = str(paths.runtime_dir(ctx.environ) / f"{ctx.run_id}.sock")
    secrets = secret_values(ctx.environ)
    control = _Control()
    control_server = ControlServer(control_socket_path(home, ctx.run_id, ctx.environ), control)
    await control_server.start()  # before the run is visible: whoever sees it can reach it

    def on_broken_thread(error: StoreUnwritable) -> None:
        loop.call_soon_threadsafe(on_broken, error)

    recorder = Recorder(lambda: Store.open(home), on_broken=on_broken_thread)
    recorder.start()
    control.flush = recorder.aflush

    def record(item: Record) -> None:
        recorder.record(_masked(item, secrets))

    started = ctx.clock.monotonic()
    record(
        Record(
            ctx.run_id,
            ctx.clock.time(),
            ev.RunStarted(
                project=ctx.plan.project,
                compose_file=ctx.compose_file,
                cwd=str(ctx.base_dir),
                supervisor_pid=os.getpid(),
                supervisor_start_time=procinfo.start_time(os.getpid()),
                supervisor_start_ticks=procinfo.start_ticks(os.getpid()),
                detached=ctx.detached,
                plan=plan_as_dict(ctx.plan),
                resumed_from=ctx.resume.from_run if ctx.resume else None,
                control_socket=control_server.path,
            ),
        )
    )
    await recorder.aflush()  # `compose down`, `ps` and `--detach` can see the run from here on

    def on_call(agent: str, data: dict[str, object]) -> None:
        key = InstanceKey.parse(agent)
        call = ev.LlmCall.from_dict({**data, "key": str(key)})
        if scheduler is not None and key in scheduler.state.instances:
            scheduler.emit(call)
        else:  # the SLA judge's own account: logged, not an instance of the run
            record(Record(ctx.run_id, ctx.clock.time(), call))

    def on_wait(agent: str, waiting: bool, reason: str, seconds: float | None) -> None:
        """A call of `agent` waits for its model's limits, or a 429's retry (or stopped waiting)."""
        key = InstanceKey.parse(agent)
        if scheduler is None:
            return
        inst = scheduler.state.instances.get(key)
        if inst is None or not inst.state.signallable:  # the judge's account, or an attempt that ended
            return
        now = ctx.clock.time()
        until = None if seconds is None else now + seconds
        scheduler.emit(ev.InstanceThrottled(key=key, waiting=waiting, reason=reason, until=until), now)

    journal = _Journal(home, ctx.run_id, secrets, on_broken)
    retries = retry.Settings.from_environ(os.environ)
    gateway = Gateway(
        socket_path,
        on_call=on_call,
        on_journal=journal.append,
        on_wait=on_wait,
        max_attempts=retries.max_attempts,
        max_retry_after=retries.max_retry_after,
    )
    for agent in ctx.plan.agents:
        gateway.limit_model(agent.spec.model, agent.spec.max_concurrency, agent.spec.rpm)
    interrupted: list[int] = []
    failure: list[BaseException] = []
    background: list[asyncio.Future[Any]] = []
    try:
        if recorder.broken is not None:  # not even the run's start could be recorded
            raise _unrecorded(recorder.broken)
        # Slow loads begin at once: a tokenizer encoding takes ~0.3 s (the CLI began the likely one
        # as it started), `import aiohttp` ~0.3 s, `import litellm` several seconds (the first call
        # through a client waits for it; command agents and spawning go on meanwhile).
        from rnix.llm import tokens

        models = {agent.spec.model for agent in ctx.plan.agents}
        for model in models:
            if tokens.needs_encoding(model):
                tokens.preload(model)
        clients = {routing.client_for(model, os.environ) for model in models}
        if routing.LITELLM in clients:  # only then: a run of OpenAI-protocol models never imports it
            from rnix.llm.litellm_backend import load_litellm

            background.append(asyncio.ensure_future(load_litellm()))
        if routing.LEAN in clients:
            from rnix.llm import limits
            from rnix.llm.openai_http import load_aiohttp

            background.extend(asyncio.ensure_future(load) for load in (load_aiohttp(), limits.load()))
        await asyncio.gather(gateway.start(), spawner_started)
        if isinstance(spawner, _RayLike):  # agents of other nodes reach the gateway over TCP
            spawner.check_resources((a.spec.name, a.spec.resources) for a in ctx.plan.agents)
            if spawner.needs_tcp:
                spawner.gateway_address = await gateway.listen_tcp(spawner.gateway_host())
        # What built-in agents' first calls need is ready before any agent starts: the token
        # encodings (tiktoken's GIL-holding constructor never stalls the loop mid-run) and the
        # clients (imported, session open), so no first call pays for them. Agents that could
        # start are forked meanwhile and held (rnix.supervisor.early).
        counted = {a.spec.model for a in ctx.plan.agents if not a.spec.command}
        encoded = {model for model in counted if tokens.needs_encoding(model)}
        ready = asyncio.ensure_future(
            asyncio.gather(asyncio.to_thread(tokens.wait_loaded, encoded), gateway.warm(counted))
        )
        background.append(ready)
        files = RunFiles(
            run_dir,
            run_id=ctx.run_id,
            project=ctx.plan.project,
            project_intent=ctx.plan.spec.intent,
            base_dir=ctx.base_dir,
            secrets=secrets,
        )

        base_env = base_environment(ctx.environ)  # once per run, not once per agent
        spawner.set_base_env(base_env)  # and sent to the fork server once

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

        assessor = Assessor(gateway, ctx.clock)
        if ctx.resume is not None:
            await ctx.resume.assess_previous(assessor, record)
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
            assess=assessor,
            flush=recorder.aflush,
            reused=ctx.resume.reused if ctx.resume else (),
            replays=ctx.resume.replays if ctx.resume else None,
            reusable=ctx.resume.reusable if ctx.resume else None,
            decisions=ctx.resume.decisions if ctx.resume else None,
            notify=functools.partial(_notify, run_dir, ctx.base_dir, base_env),
            ready=ready,
        )
        sched = scheduler

        def stop(signum: int, reason: str, grace: float | None, by_pid: int | None = None) -> None:
            """The first stop is graceful; a second one (Ctrl-C twice, `down` again) kills at once."""
            if interrupted:
                sched.kill_now()
                return
            interrupted.append(signum)
            sched.request_stop(reason, grace, by_pid)

        def on_signal(signum: int) -> None:
            reason = "interrupted (SIGINT)" if signum == signal.SIGINT else "terminated (SIGTERM)"
            grace = None
            if signum == signal.SIGTERM and not interrupted:
                by_down, grace = _stop_request(home, ctx.run_id)  # an older `down`, or its fallback
                reason = "compose down" if by_down else reason
            stop(signum, reason, grace)

        control.scheduler, control.stop_run = scheduler, stop

        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, on_signal, signum)
        if recorder.broken is not None:  # it broke before the scheduler existed
            on_broken(recorder.broken)
        agents = await scheduler.run()
    except BaseException as exc:
        failure.append(exc)
        raise
    finally:
        try:
            for task in background:
                if not task.done():
                    task.cancel()  # the import thread itself finishes on its own; nothing waits for it
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)
            await control_server.close()
            await spawner.close()  # returns once every agent and every stray is reaped
            await gateway.close()
            await journal.close()
        finally:
            if failure:
                # The run cannot go on (e.g. no socket directory, the fork server would not start):
                # record its end so that ps/down do not show a run that is not there, then let the
                # error out. Only now: whoever waits for the end (`down`) may rely on no process left.
                _record_failure(record, ctx, started, failure[0])
                recorder.close()
    elapsed_ms = int((ctx.clock.monotonic() - started) * 1000)
    outcome = _outcome(
        ctx.run_id,
        scheduler.state,
        agents,
        elapsed_ms,
        interrupted[0] if interrupted else None,
        ctx.plan.spec,
    )
    broken = recorder.broken or (unrecorded[0] if unrecorded else None)
    if broken is not None:
        outcome.status, outcome.exit_code = RunStatus.FAILED, int(ExitCode.STATE)
    finished = ev.RunFinished(
        status=outcome.status.value,
        exit_code=outcome.exit_code,
        elapsed_ms=elapsed_ms,
        tokens_used=scheduler.state.tokens_used,
        error=None if broken is None else f"the run's state cannot be recorded: {broken.cause}",
    )
    record(Record(ctx.run_id, ctx.clock.time(), finished))
    recorder.close()  # when broken: one last try, then whatever was committed stays as it was
    if broken is not None:
        raise _unrecorded(broken, "the run was stopped")
    if recorder.broken is not None:  # only the run's last events could not be written
        raise _unrecorded(recorder.broken, "its end is not recorded")
    return outcome


def _unrecorded(error: StoreUnwritable, done: str = "nothing was started") -> HomeUnusable:
    """The error a run ends with when its events could not be recorded."""
    from rnix.store.preflight import fix_hint

    message = f"cannot record the run in {error.path}: {error.cause}; {done}"
    return HomeUnusable(message, fix_hint(error.cause))


def _masked(item: Record, secrets: tuple[str, ...]) -> Record:
    """The record with every secret value masked (what is stored; the live state keeps the text)."""
    if not secrets or isinstance(item.event, ev.Unknown):
        return item
    data = item.event.to_dict()
    masked = mask(data, secrets)
    if masked == data:
        return item
    return Record(item.run_id, item.ts, type(item.event).from_dict(masked))


def _record_failure(
    record: Callable[[Record], None], ctx: RunContext, started: float, exc: BaseException
) -> None:
    elapsed_ms = int((ctx.clock.monotonic() - started) * 1000)
    event = ev.RunFinished(
        status=RunStatus.FAILED.value,
        exit_code=int(ExitCode.FAILURE),
        elapsed_ms=elapsed_ms,
        error=str(exc)[:500],
    )
    record(Record(ctx.run_id, ctx.clock.time(), event))


def _stop_request(home: Path, run_id: str) -> tuple[bool, float | None]:
    """Whether `compose down` asked this run to stop, and the grace it gave (None: each agent's own)."""
    from rnix.store.db import Store

    with Store.open(home, readonly=True) as store:
        row = store.run(run_id)
    if row is None or row.stop_requested_at is None:
        return False, None
    return True, row.stop_grace


class _Journal:
    """The gateway's `on_journal`: each answered call of an agent attempt, committed to the store
    (on a thread of its own: a Store's connection belongs to one thread) before the agent sees it.

    Group commit: the entries that arrive while a commit is under way are committed together in
    the next one, so 500 agents answered at once cost a few transactions, not 500 in a row."""

    def __init__(
        self,
        home: Path,
        run_id: str,
        secrets: tuple[str, ...],
        on_broken: Callable[[StoreUnwritable], None] = lambda error: None,
    ) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self.home, self.run_id, self.secrets, self.on_broken = home, run_id, secrets, on_broken
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rnix-journal")
        self._store: Any = None
        self._waiting: list[tuple[str, int, Any, asyncio.Future[None]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def append(self, instance: str, attempt: int, entry: Any) -> None:
        from rnix.store.db import StoreUnwritable

        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append((instance, attempt, entry, done))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.ensure_future(self._drain())
        try:
            await asyncio.shield(done)
        except StoreUnwritable as exc:  # the run is stopped; the answer still reaches the agent
            self.on_broken(exc)

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        while self._waiting:
            batch, self._waiting = self._waiting, []
            try:
                await loop.run_in_executor(self._executor, self._write, [b[:3] for b in batch])
            except Exception as exc:
                for *_, done in batch:
                    if not done.done():
                        done.set_exception(exc)
            else:
                for *_, done in batch:
                    if not done.done():
                        done.set_result(None)

    def _write(self, items: list[tuple[str, int, Any]]) -> None:
        from rnix.store.db import Store
        from rnix.store.journal import append_batch

        if self._store is None:
            self._store = Store.open(self.home)
        append_batch(self._store, self.run_id, items)

    async def close(self) -> None:
        def shut() -> None:
            if self._store is not None:
                self._store.close()

        await asyncio.get_running_loop().run_in_executor(self._executor, shut)
        self._executor.shutdown(wait=False)


class _Control:
    """The supervisor's side of the control socket: users' signals and stops go through the
    scheduler, which signals the agent's process handle and records the event; the reply waits
    until the event is durable, so a `ps` right after `rnix kill` already shows it."""

    def __init__(self) -> None:
        self.scheduler: Scheduler | None = None
        self.stop_run: Callable[..., None] | None = None
        self.flush: Callable[[], Awaitable[None]] | None = None

    async def signal_agent(self, agent: str, pid: int, signum: int, reason: str) -> dict[str, Any]:
        from rnix.supervisor.controlsock import ControlRefused

        hint = "`rnix ps` lists the agents and their PIDs"
        if self.scheduler is None:
            raise ControlRefused("the run is still starting", "try again in a moment")
        key = InstanceKey.parse(agent)
        inst = self.scheduler.state.instances.get(key)
        if inst is None or inst.pid != pid:
            raise ControlRefused(f"agent {agent} (PID {pid}) is not an agent of this run", hint)
        try:
            inst = self.scheduler.signal(key, signum, reason)
        except LookupError as exc:
            raise ControlRefused(str(exc), hint) from None
        await self._durable()
        return {"agent": agent, "pid": pid, "state": inst.state.value}

    async def decide(self, agent: str, decision: str, by: str, message: str | None) -> dict[str, Any]:
        from rnix.supervisor.controlsock import ControlRefused

        if self.scheduler is None:
            raise ControlRefused("the run is still starting", "try again in a moment")
        try:
            data = self.scheduler.decide(InstanceKey.parse(agent), decision, by, message)
        except PermissionError as exc:
            raise ControlRefused(str(exc), "decide under an approver's name: --as NAME") from None
        except LookupError as exc:
            raise ControlRefused(str(exc), "`rnix compose ps` shows which agents wait for approval") from None
        await self._durable()
        return data

    async def stop(self, grace: float | None, reason: str, by_pid: int | None) -> dict[str, Any]:
        from rnix.supervisor.controlsock import ControlRefused

        if self.stop_run is None:
            raise ControlRefused("the run is still starting", "try again in a moment")
        self.stop_run(signal.SIGTERM, reason or "compose down", grace, by_pid)
        await self._durable()
        return {"stopping": True}

    async def _durable(self) -> None:
        if self.flush is not None:
            await self.flush()


class _Accounts:
    """The gateway seen as the scheduler's `Accounts`."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    def register(
        self, agent: str, *, model: str, api_base: str | None, budget: int, replay: Replay | None = None
    ) -> object:
        return self.gateway.register(agent, model=model, api_base=api_base, budget=budget, replay=replay)

    def begin_attempt(self, agent: str, attempt: int) -> None:
        self.gateway.begin_attempt(agent, attempt)

    def issue_nonce(self, agent: str) -> str:
        return self.gateway.issue_nonce(agent)

    def revoke(self, agent: str) -> None:
        self.gateway.revoke(agent)

    def used(self, agent: str) -> int:
        return self.gateway.account(agent).used

    def fund(self, agent: str, budget: int) -> None:
        self.gateway.account(agent).budget = budget


NOTIFY_TIMEOUT = 60.0  # seconds an approval gate's `notify` command may take


async def _notify(
    run_dir: Path,
    cwd: Path,
    env: Mapping[str, str],
    agent: Any,
    key: InstanceKey,
    document: Mapping[str, Any],
) -> None:
    """Run a gate's `notify` command with the gate as JSON on stdin; its output goes to
    `notify-AGENT.log` in the run's directory. A command that fails or hangs (killed after
    NOTIFY_TIMEOUT) is logged there and changes nothing else: the gate waits all the same."""
    argv = list(agent.spec.approval.notify)
    log_path = run_dir / f"notify-{key}.log"
    with open(log_path, "ab") as log:
        try:
            process = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=log,
                stderr=log,
                cwd=str(cwd),
                env=dict(env),
                start_new_session=True,
            )
        except OSError as exc:
            log.write(f"rnix: cannot run {argv[0]}: {exc.strerror or exc}\n".encode())
            return
        try:
            await asyncio.wait_for(process.communicate(json.dumps(document).encode()), NOTIFY_TIMEOUT)
        except asyncio.TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()
            log.write(f"rnix: {argv[0]} did not finish in {NOTIFY_TIMEOUT:g}s: killed\n".encode())
        except asyncio.CancelledError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            raise
        if process.returncode:
            log.write(f"rnix: {argv[0]} exited with status {process.returncode}\n".encode())


def _outcome(
    run_id: str,
    state: RunState,
    agents: dict[str, AgentView],
    elapsed_ms: int,
    signum: int | None,
    spec: ComposeSpec,
) -> Outcome:
    from rnix.core.actions import run_ok

    if signum is not None:
        status = RunStatus.CANCELLED
        code = ExitCode.INTERRUPTED if signum == signal.SIGINT else ExitCode.TERMINATED
    elif run_ok(state, spec):  # completed, or skipped by a condition; loops completed
        status, code = RunStatus.COMPLETED, ExitCode.OK
    else:
        status, code = RunStatus.FAILED, ExitCode.FAILURE
    return Outcome(run_id, status, int(code), agents, elapsed_ms, state)
