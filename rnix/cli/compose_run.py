"""`rnix compose up`: run the team of agents (in the foreground, or detached with -d)."""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Any

import click

from rnix.cli.compose import (
    check_credentials,
    compose,
    env_files_of,
    file_option,
    json_option,
    load,
    project_option,
    seed_option,
)
from rnix.cli.procs import Listing, listing_options
from rnix.core.lifecycle import AgentState
from rnix.core.secrets import mask, mask_text, secret_values
from rnix.env import Env, SystemClock
from rnix.errors import ExitCode, RnixError, UsageError
from rnix.ui import jsonout


def preload_clients(env: Env, spec: ComposeSpec) -> None:
    """Begin loading what the run's first calls need as soon as the file says which models: the
    lean client's import, and the token encoding of the mock (a provider's model needs none)."""
    from rnix.llm import routing, tokens

    for model in {a.model for a in spec.agents if not a.command}:
        if tokens.needs_encoding(model):
            tokens.preload(model)

    if any(routing.client_for(a.model, env.environ) == routing.LEAN for a in spec.agents if not a.command):
        from rnix.llm import openai_http

        openai_http.preload()


def prestart_spawner(env: Env) -> None:
    """Boot the fork server now, while the CLI still plans the run: the run adopts it (spawn.py)."""
    from rnix.core.secrets import is_secret_name
    from rnix.supervisor import spawn

    spawn.prestart({k: v for k, v in env.environ.items() if not is_secret_name(k)})


# At most this many built-in agents are forked ahead of their release, while their dependencies run
# (rnix.supervisor.early): their start-up then costs nothing on the critical path.
EARLY_SPAWN = 64

if TYPE_CHECKING:
    from pathlib import Path

    from rnix.cli.compose import Loaded
    from rnix.core.model import ComposeSpec
    from rnix.core.plan import Plan
    from rnix.supervisor.resume import Resume
    from rnix.supervisor.run import Outcome
    from rnix.supervisor.scheduler import AgentView


class UpView:
    """What `up` shows while it runs: a live table on a terminal, otherwise a line per settled agent.

    It renders the scheduler's fold; pauses asked from another terminal (`rnix kill -s STOP`, `top`)
    go through the supervisor, so they are in the fold too.
    """

    def __init__(self, env: Env, plan: Plan, as_json: bool, run_id: str | None = None) -> None:
        self.env, self.plan, self.as_json = env, plan, as_json
        self.run_id = run_id
        self.layers = len(plan.layers)
        self.printed: set[str] = set()
        self.gated: set[str] = set()  # agents whose approval gate was announced
        self.runs: dict[str, AgentView] = {}
        self.live: Any = None
        if env.stdout_isatty and not as_json:
            from rich.live import Live

            from rnix.ui.render import console

            self.live = Live(
                console=console(env), refresh_per_second=4, transient=True, get_renderable=self._table
            )
            self.live.start()

    def _table(self) -> Any:
        from rnix.ui.runview import in_plan_order, live_table

        ordered = in_plan_order(self.plan, self.runs)  # items and iterations under their agent
        return live_table(ordered, self.layers, f"project {self.plan.project}")

    def update(self, run: AgentView) -> None:
        self.runs[run.name] = run
        if run.state is AgentState.WAITING_APPROVAL and self.live is None and run.name not in self.gated:
            self.gated.add(run.name)  # said once, on stderr: a prompt for a person, not data
            from rnix.ui.runview import approval_hint

            hint = approval_hint(run, self.plan.project)
            self.env.stderr.write(f"rnix: {run.name} waits for approval: {hint}\n")
            self.env.stderr.flush()
        if self.as_json or self.live is not None or not run.state.terminal or run.name in self.printed:
            return
        if run.plan.spec.contract is not None and run.attempt > 0 and not run.assessed:
            return  # print once the verdict is known (the scheduler updates again after assessing)
        from rnix.ui.runview import agent_line

        self.printed.add(run.name)
        line = agent_line(run, self.layers, time.time())
        self.env.stdout.write(mask_text(line, secret_values(self.env.environ)) + "\n")
        self.env.stdout.flush()

    def finish(self, outcome: Outcome) -> None:
        from rnix.ui.runview import agent_line, compensation_line, summary_line, up_document

        if self.live is not None:
            self.live.stop()
        if self.as_json:
            data = mask(up_document(self.plan, outcome, self.plan.project), secret_values(self.env.environ))
            if outcome.exit_code == ExitCode.OK:
                jsonout.write_ok(self.env.stdout, data)
            else:
                failed = data["summary"]["total"] - data["summary"]["completed"]
                jsonout.write_document(
                    self.env.stdout,
                    {
                        "ok": False,
                        "data": data,
                        "error": {
                            "code": "RUN_" + outcome.status.value.upper(),
                            "message": f"{failed} of {data['summary']['total']} agents did not complete",
                        },
                    },
                )
            return
        now = time.time()
        for agent in self.plan.agents:
            run = outcome.agents[agent.spec.name]
            if run.name not in self.printed:
                self.env.stdout.write(
                    mask_text(agent_line(run, self.layers, now), secret_values(self.env.environ)) + "\n"
                )
        for run in outcome.agents.values():  # compensations (rnix.core.saga) not printed yet
            if run.instance.compensates is not None and run.name not in self.printed:
                self.env.stdout.write(
                    mask_text(agent_line(run, self.layers, now), secret_values(self.env.environ)) + "\n"
                )
        self.env.stdout.write(summary_line(outcome) + "\n")
        saga = compensation_line(outcome)
        if saga is not None:
            self.env.stdout.write(mask_text(saga, secret_values(self.env.environ)) + "\n")
        self.env.stdout.flush()


@compose.command("up")
@file_option
@project_option
@json_option
@click.option("-d", "--detach", is_flag=True, help="Start the run in the background and print its id.")
@click.option("--abort-on-failure", is_flag=True, help="Stop every agent as soon as one fails for good.")
@click.option("--fresh", is_flag=True, help="Run every agent again: do not resume the last run.")
@click.option(
    "--no-compensate",
    is_flag=True,
    help="When the run fails, do not run the `compensate:` of the agents that completed.",
)
@click.option(
    "--from",
    "from_agent",
    metavar="AGENT",
    help="Run AGENT and everything that depends on it again; reuse the rest of the last run.",
)
@click.option(
    "--engine",
    type=click.Choice(("local", "ray")),
    envvar="RNIX_ENGINE",
    help="Where the agents run: processes of this machine (local, the default) or a Ray cluster "
    "(ray; docs/scale-out.md). Wins over the file's `engine:`. [env: RNIX_ENGINE]",
)
@click.option(
    "--ray-address",
    metavar="ADDRESS",
    envvar="RNIX_RAY_ADDRESS",
    help="The Ray cluster to run on (implies --engine ray); without it a local Ray instance is "
    "started for the run. [env: RNIX_RAY_ADDRESS]",
)
@click.option("--run-id", hidden=True, help="Internal: the id of a run started with --detach.")
@seed_option
@click.argument("agents", nargs=-1, metavar="[AGENT]...")
@click.pass_obj
def up_cmd(
    env: Env,
    file: str | None,
    project: str | None,
    as_json: bool,
    detach: bool,
    abort_on_failure: bool,
    fresh: bool,
    no_compensate: bool,
    from_agent: str | None,
    engine: str | None,
    ray_address: str | None,
    run_id: str | None,
    seed: int | None,
    agents: tuple[str, ...],
) -> int:
    """Run the agents: each as its own process, as soon as its dependencies completed.

    Naming AGENTs runs only those and what they depend on (as `docker compose up SERVICE`); the
    budget pool is shared among them alone.

    When the project's last run did not complete (it failed, was stopped, or its supervisor died),
    `up` resumes it: agents that completed are not run again, and model calls already paid for are
    answered from the journal. --fresh starts over; --from AGENT re-runs AGENT and its dependents.

    When the run fails (not when it is stopped), the `compensate:` of each agent that completed runs,
    last completed first, each once; --no-compensate skips them. The run stays failed.

    Exit status 0 when every agent completed, 1 otherwise, 2 when the project already has a live
    run (or for a usage error), 3 when RNIX_HOME cannot hold the run's state (checked before
    anything starts; mid-run the agents are stopped), 130/143 when interrupted.
    """
    from rnix.cli.reputation import plan_with_ledger
    from rnix.core.actions import Options
    from rnix.store.paths import new_run_id
    from rnix.store.preflight import check_home
    from rnix.store.projectlock import try_lock
    from rnix.supervisor.run import RunContext, supervise

    loaded = load(env, file, project)
    engine = "ray" if ray_address and engine is None else engine or loaded.spec.engine or "local"
    if engine == "ray":
        from rnix.supervisor.rayspawn import import_ray

        import_ray()  # not installed: a one-line error with the install command, before anything
    check_credentials(env, loaded)
    if not detach:
        if engine == "local":
            prestart_spawner(env)
        preload_clients(env, loaded.spec)
    plan = plan_with_ledger(env, _only(loaded, agents), loaded.project, seed)
    if fresh and from_agent:
        raise UsageError("--fresh and --from cannot be used together", "--from already re-runs what it names")
    if from_agent is not None and from_agent not in {a.spec.name for a in plan.agents}:
        from rnix.core.problems import did_you_mean

        names = [a.spec.name for a in plan.agents]
        raise UsageError(
            f"--from: no agent '{from_agent}' in {loaded.path.name}{did_you_mean(from_agent, names)}",
            f"agents: {', '.join(names)}",
        )
    if plan.allocation.unfunded:
        env.warn(f"the budget pool cannot fund {', '.join(plan.allocation.unfunded)}: they will not start")
    check_home(env.home)  # before the lock (a file under RNIX_HOME) and before anything starts
    lock = try_lock(env.home, loaded.project)
    if lock is None:
        raise _live_run_error(env, loaded.project)
    try:
        if detach:
            lock.release()  # the detached supervisor takes it
            extra = ["--fresh"] if fresh else ["--from", from_agent] if from_agent else []
            extra = ["--no-compensate", *extra] if no_compensate else extra
            extra += ["--engine", engine] + (["--ray-address", ray_address] if ray_address else [])
            extra += ["--", *agents] if agents else []
            return _detach(env, loaded.path, loaded.project, abort_on_failure, as_json, seed, extra)
        _credentials_from_dotenv(env, loaded.path.parent)
        resume = _resume(env, plan, loaded.project, fresh, from_agent)
        ctx = RunContext(
            plan=plan,
            run_id=run_id or new_run_id(),
            home=env.home,
            environ=env.environ,
            base_dir=loaded.path.parent,
            compose_file=str(loaded.path),
            clock=SystemClock(),
            detached=run_id is not None,
            options=Options(
                abort_on_failure=abort_on_failure,
                # Early spawn holds a forked agent on a FIFO of this machine: local agents only.
                early_spawn=EARLY_SPAWN if engine == "local" else 0,
                compensate=not no_compensate,
            ),
            resume=resume,
            engine=engine,
            ray_address=ray_address if engine == "ray" else None,
        )
        if resume is not None and resume.worth_saying:
            env.stderr.write(f"rnix: {resume.message()}\n")
        view = UpView(env, plan, as_json, ctx.run_id)
        try:
            import asyncio

            outcome = asyncio.run(supervise(ctx, on_update=view.update))
        finally:
            if view.live is not None:
                view.live.stop()
        view.finish(outcome)
        return outcome.exit_code
    finally:
        lock.release()


def _credentials_from_dotenv(env: Env, directory: Path) -> None:
    """Provider keys in the `.env` beside the compose file reach the gateway (this process, the
    supervisor), never an agent: agents' environments leave every secret-named variable out. A
    variable already set in the environment wins, as in docker compose."""
    import os

    from rnix.core.secrets import is_secret_name
    from rnix.store.compose_file import dotenv_values

    files = env_files_of(env, click.get_current_context())
    for name, value in dotenv_values(directory, files).items():
        if is_secret_name(name) and value and not env.environ.get(name):
            os.environ[name] = value  # litellm and the gateway's masking read the process's own
            env.environ = {**env.environ, name: value}


def _only(loaded: Loaded, agents: tuple[str, ...]) -> ComposeSpec:
    """The compose spec cut to `agents` and their dependencies (all of it when none are named)."""
    from rnix.core.problems import did_you_mean
    from rnix.core.subset import only, unknown

    names = [a.name for a in loaded.spec.agents]
    for name in unknown(loaded.spec, agents):
        raise UsageError(
            f"no agent '{name}' in {loaded.path.name}{did_you_mean(name, names)}",
            f"agents: {', '.join(names)}",
        )
    return only(loaded.spec, agents)


def _live_run_error(env: Env, project: str) -> RnixError:
    """`up` of a project whose run is live: say which run, and how to stop it or run beside it."""
    from rnix.store.db import Store
    from rnix.supervisor.control import supervisor_alive

    with Store.open(env.home, readonly=True) as store:
        live = [r for r in store.runs(project=project, active_only=True) if supervisor_alive(r)]
    what = f"run {live[0].id} (supervisor PID {live[0].supervisor_pid})" if live else "a run starting now"
    return UsageError(
        f"project {project} already has a live run: {what}",
        f"stop it with `rnix compose -p {project} down`, or run another copy with `-p OTHER_NAME`",
    )


def _resume(env: Env, plan: Plan, project: str, fresh: bool, from_agent: str | None) -> Resume | None:
    """What this run takes over from the project's last run (None: it starts from scratch)."""
    from rnix.store.db import Store
    from rnix.supervisor import resume
    from rnix.supervisor.control import find_lost

    with Store.open(env.home) as store:
        find_lost(store, store.runs(project=project, active_only=True))  # we hold the lock: they died
        if fresh:
            return None
        previous = store.latest_run(project) if from_agent else resume.previous_run(store, project)
        if previous is None:
            if from_agent:
                raise UsageError(
                    f"--from {from_agent}: project {project} has no earlier run to reuse",
                    "run `rnix compose up` first",
                )
            return None
        return resume.prepare(store, plan, previous, from_agent=from_agent)


def _detach(
    env: Env,
    path: Any,
    project: str,
    abort_on_failure: bool,
    as_json: bool,
    seed: int | None,
    extra: list[str],
) -> int:
    from rnix.store import paths
    from rnix.store.db import Store
    from rnix.supervisor.control import start_detached

    run_id = paths.new_run_id()
    log = paths.run_dir(paths.home_dir(env.home), run_id) / "supervisor.log"
    argv = [sys.executable, "-m", "rnix", "compose"]
    for env_file in env_files_of(env, click.get_current_context()) or ():
        argv += ["--env-file", str(env_file)]
    argv += ["up", "-f", str(path), "-p", project, "--run-id", run_id]
    if abort_on_failure:
        argv.append("--abort-on-failure")
    if seed is not None:
        argv += ["--seed", str(seed)]
    argv += extra
    child = start_detached(argv, cwd=str(env.cwd), environ=env.environ, log_path=log)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with Store.open(env.home, readonly=True) as store:
            if store.run(run_id) is not None:
                break
        if child.poll() is not None:
            tail = log.read_text(errors="replace").strip().splitlines()[-3:] if log.exists() else []
            raise RnixError("the detached supervisor exited at start: " + " / ".join(tail), f"see {log}")
        time.sleep(0.05)
    else:
        raise RnixError("the detached supervisor did not start within 30 s", f"see {log}")
    if as_json:
        jsonout.write_ok(
            env.stdout, {"project": project, "run_id": run_id, "pid": child.pid, "status": "running"}
        )
    else:
        env.stdout.write(f"{run_id}\n")
        env.stderr.write(
            f"rnix: started project {project} run {run_id} (supervisor PID {child.pid}); "
            f"`rnix compose -p {project} ps` shows it, `rnix compose -p {project} down` stops it\n"
        )
    return ExitCode.OK


def _project_of(env: Env, file: str | None, project: str | None) -> str:
    """The project to act on: -p, else $RNIX_PROJECT_NAME or $COMPOSE_PROJECT_NAME (unless -f names a
    file), else the file's."""
    from rnix.store.compose_file import project_name_from_env, resolve_project_name

    ctx = click.get_current_context()
    project = project or ctx.meta.get("rnix.compose.project")
    file = file or ctx.meta.get("rnix.compose.file")
    if project or (project_name_from_env(env.environ) and not file):
        return resolve_project_name(project, env.environ, None, env.cwd / "compose.yaml")
    return load(env, file, None).project


@compose.command("down")
@file_option
@project_option
@json_option
@click.option("-t", "--timeout", "grace", type=float, metavar="SECONDS", help="Grace period before SIGKILL.")
@click.pass_obj
def down_cmd(env: Env, file: str | None, project: str | None, as_json: bool, grace: float | None) -> int:
    """Stop the running `up` of this project (from any terminal).

    Agents get SIGTERM, then SIGKILL after their grace period (or -t). Stopping a project that is
    not running is not an error.
    """
    from rnix.store.db import Store
    from rnix.supervisor.control import stop_run

    name = _project_of(env, file, project)
    outcomes = []
    with Store.open(env.home, readonly=not (env.home / "rnix.db").exists()) as store:
        for run in store.runs(project=name, active_only=True):
            outcomes.append(stop_run(store, run, grace, environ=env.environ))
    if as_json:
        jsonout.write_ok(
            env.stdout,
            {
                "project": name,
                "runs": [{"run_id": o.run_id, "action": o.action, "status": o.status} for o in outcomes],
            },
        )
    elif not outcomes:
        env.stderr.write(f"rnix: project {name} is not running; nothing to stop\n")
    for outcome in outcomes:
        if not as_json:
            env.stdout.write(f"{outcome.run_id} {outcome.status}\n")
    return ExitCode.OK if all(o.action != "timeout" for o in outcomes) else ExitCode.FAILURE


def _decide_options(fn: Any) -> Any:
    fn = click.option("-m", "--message", metavar="TEXT", help="Why: recorded with the decision.")(fn)
    fn = click.option(
        "--as",
        "by",
        metavar="NAME",
        help="Decide as NAME (default: $USER); must be one of the gate's approvers when it lists them.",
    )(fn)
    return json_option(project_option(file_option(click.argument("agent")(fn))))


def _decide(
    env: Env,
    file: str | None,
    project: str | None,
    agent: str,
    decision: str,
    by: str | None,
    message: str | None,
    as_json: bool,
) -> int:
    import getpass

    from rnix.store.db import Store
    from rnix.supervisor.control import decide

    name = _project_of(env, file, project)
    who = by or env.environ.get("USER") or getpass.getuser()
    with Store.open(env.home, readonly=False) as store:
        data = decide(store, name, agent, decision, who, message, environ=env.environ)
    if as_json:
        jsonout.write_ok(env.stdout, data)
        return ExitCode.OK
    outcome = data["outcome"]
    when = (
        "" if data["applied"] == "now" else " (recorded: it applies when the run resumes, `rnix compose up`)"
    )
    if outcome == "approved":
        env.stdout.write(f"{agent}: {data['detail']}: it starts{when}\n")
    elif outcome == "rejected":
        env.stdout.write(f"{agent}: {data['detail']}: it will not run{when}\n")
    else:
        env.stdout.write(f"{agent}: {decision} by {who} recorded; {data['detail']}{when}\n")
    return ExitCode.OK


_APPROVE_HELP = """Approve AGENT, which waits at its approval gate (from any terminal).

    The gate opens by its policy: `any` at the first decision, `all` once every approver approved,
    `quorum` at N approvals. --json says what the decision changed (`outcome`: approved, rejected or
    waiting). A decision while the run's supervisor is gone is recorded and applies when the run is
    resumed. Refused (exit 1): a name not among the approvers, a second decision by the same name, an
    agent that is not waiting.
    """
_REJECT_HELP = """Reject AGENT at its approval gate: it ends `rejected` and what depends on it is skipped.

    Under `all` one rejection is enough; under `quorum` enough rejections that the quorum cannot be
    met. Same options and refusals as `approve`.
    """


def _decide_command(decision: str, help_text: str) -> None:
    """Register `compose approve` or `compose reject`: the same options, one decision each."""

    def command(
        env: Env,
        file: str | None,
        project: str | None,
        as_json: bool,
        agent: str,
        by: str | None,
        message: str | None,
    ) -> int:
        return _decide(env, file, project, agent, decision, by, message, as_json)

    command.__doc__ = help_text
    command.__name__ = f"{decision}_cmd"
    compose.command(decision)(_decide_options(click.pass_obj(command)))


_decide_command("approve", _APPROVE_HELP)
_decide_command("reject", _REJECT_HELP)


@compose.command("ps")
@file_option
@project_option
@json_option
@click.option("-a", "--all", "show_all", is_flag=True, help="Include agents that finished (last run).")
@listing_options
@click.pass_obj
def compose_ps_cmd(
    env: Env, file: str | None, project: str | None, as_json: bool, show_all: bool, listing: Listing
) -> int:
    """List the agents of this project's running (or, with -a, latest) run.

    The same columns and options as `rnix ps`; how much of the run's budget pool was used is noted
    on stderr.
    """
    from rnix.cli.procs import list_processes

    name = _project_of(env, file, project)
    return list_processes(env, project=name, show_all=show_all, as_json=as_json, listing=listing)


def _tail_value(ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
    """`--tail N` (lines per agent) or `--tail all` (the default, as in docker compose)."""
    if value is None or value == "all":
        return None
    if value.isdigit():
        return int(value)
    raise click.BadParameter(f"{value!r} is not a number of lines (or 'all')")


@compose.command("logs")
@project_option
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines until the run ends.")
@click.option("--no-log-prefix", is_flag=True, help="Do not prefix each line with the agent's name.")
@click.option(
    "-n",
    "--tail",
    metavar="N",
    callback=_tail_value,
    help="Only the last N lines of each agent (default: all).",
)
@click.option(
    "-t",
    "--timestamps",
    is_flag=True,
    help="Prefix each line with a time no earlier than it was written (see below).",
)
@json_option
@click.argument("agents", nargs=-1)
@click.pass_obj
def logs_cmd(
    env: Env,
    project: str | None,
    follow: bool,
    no_log_prefix: bool,
    tail: int | None,
    timestamps: bool,
    as_json: bool,
    agents: tuple[str, ...],
) -> int:
    """Print the agents' output (stderr, then stdout), each line prefixed with the agent's name.

    Here -f means --follow, as in docker compose: name the file before `logs` (`rnix compose -f FILE logs`).
    With -f, `logs` ends when the run ends and exits with the run's status, as `up` would (so
    `up -d && logs -f` can be scripted); a run that had already ended gives its status at once.

    Agents write plain lines, without times. --timestamps prints, before each line, the time (RFC
    3339, UTC) its log file was last modified when rnix read the line: the latest the line can have
    been written. While following that is within 0.2 s of the line's writing; for lines written
    before `logs` started it is the last change of their file, the same for all. --json gives each
    agent's log lines and result (--tail applies to the log lines).

    \b
    Exit status: 0; with -f the run's status (0 completed, 1 failed or lost, 130/143 interrupted
    or terminated); 1 when the project has no runs or an AGENT is unknown.
    """
    from rnix.cli.habits import logs_file_mistake
    from rnix.cli.procs import follow_logs
    from rnix.cli.runwait import exit_status, lost_message
    from rnix.store.db import Store

    if (mistake := logs_file_mistake(env.cwd, follow, agents)) is not None:
        raise mistake
    name = _project_of(env, None, project)
    with Store.open(env.home, readonly=True) as store:
        run = store.latest_run(name)
        if run is None:
            raise RnixError(f"project {name} has no runs yet", "start one with `rnix compose up`")
        rows = store.processes(run_id=run.id)
    known = [r.agent for r in rows]
    for agent in agents:
        if agent not in known:
            from rnix.core.problems import did_you_mean

            raise RnixError(
                f"no agent '{agent}' in project {name}{did_you_mean(agent, known)}",
                f"agents: {', '.join(known)}",
            )
    selected = [r for r in rows if not agents or r.agent in agents]
    if as_json:
        if follow:
            raise UsageError("--json and --follow cannot be combined", "drop -f for one JSON document")
        from rnix.cli.procs import read_output

        documents = [{"agent": r.agent, "state": r.state, **read_output(env, r)} for r in selected]
        if tail is not None:
            for document in documents:
                document["log"] = document["log"][-tail:] if tail else []
        jsonout.write_ok(env.stdout, {"project": name, "run_id": run.id, "agents": documents})
        return ExitCode.OK
    ended = follow_logs(
        env, run.id, selected, follow=follow, prefix=not no_log_prefix, tail=tail, timestamps=timestamps
    )
    if ended is None:
        return ExitCode.OK
    if ended.status == "lost":
        env.stderr.write(f"rnix: {lost_message(ended)}\n")
    return exit_status(ended)
