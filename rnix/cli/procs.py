"""Process tools: `rnix run`, `ps`, `kill`, `log` and `llm`."""

from __future__ import annotations

import functools
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from rnix.env import Env, SystemClock
from rnix.errors import ExitCode, InvalidCompose, RnixError, UsageError
from rnix.ui import jsonout

if TYPE_CHECKING:
    from rnix.store.db import RunRow, Store

json_option = click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout.")


@dataclass(frozen=True)
class Listing:
    """How `ps` and `compose ps` print their rows: a table (cut on a terminal), PIDs, or a format."""

    quiet: bool = False
    no_trunc: bool = False
    format: str | None = None  # None/"table", "json" (one object per line), or a {{.field}} template


def listing_options(function: Callable[..., Any]) -> Callable[..., Any]:
    """`-q`, `--no-trunc` and `--format`, shared by `ps` and `compose ps` (as a `listing` argument)."""
    for option in reversed(
        [
            click.option(
                "-q",
                "--quiet",
                is_flag=True,
                help="Only the PIDs, one a line (agents that never started have none).",
            ),
            click.option(
                "--no-trunc",
                is_flag=True,
                help="Do not cut INTENT and REASON on a terminal (piped output is never cut).",
            ),
            click.option(
                "--format",
                "fmt",
                metavar="FORMAT",
                help="table (default), json (one object a line), or a template such as "
                "'{{.pid}}\\t{{.agent}}' over the --json fields; 'table TEMPLATE' adds a header.",
            ),
        ]
    ):
        function = option(function)

    def wrapper(*args: Any, quiet: bool, no_trunc: bool, fmt: str | None, **kwargs: Any) -> Any:
        return function(*args, listing=Listing(quiet, no_trunc, fmt), **kwargs)

    return functools.update_wrapper(wrapper, function)


FOLLOW_POLL = 0.2
CATEGORY_CHOICES = ("think", "tool", "warn", "log", "output")  # rnix.core.logs.CATEGORIES


def list_processes(
    env: Env,
    *,
    project: str | None,
    show_all: bool,
    as_json: bool,
    listing: Listing | None = None,
) -> int:
    """`ps` and `compose ps`: the rows, then one of the outputs `listing` asks for (table by default)."""
    from rnix.supervisor.control import find_lost
    from rnix.ui.proctable import PROCESS_FIELDS, compensation_notes, pool_lines, process_dict, table_lines

    listing = listing or Listing()
    db_exists = (env.home / "rnix.db").exists()
    with listing_store(env, db_exists) as store:
        if db_exists:
            warn_unrecorded(env, store, find_lost(store, store.runs(project=project, active_only=True)))
        runs = store.runs(project=project, active_only=not show_all, limit=None if not show_all else 20)
        if show_all and project:
            runs = runs[:1]  # `compose ps -a`: the latest run of the project
        rows = [row for run in reversed(runs) for row in store.processes(run_id=run.id)]
    notes = compensation_notes(rows)  # read from every row, before they are filtered
    if not show_all:
        rows = [r for r in rows if r.state in ("running", "paused", "pending")]
    shown = [run for run in runs if any(r.run_id == run.id for r in rows)]
    if as_json or listing.format == "json":
        dicts = [process_dict(r, notes.get((r.run_id, r.agent))) for r in rows]
        if as_json:
            jsonout.write_ok(env.stdout, {"processes": dicts, "runs": [_run_dict(r) for r in shown]})
        else:  # docker's `--format json`: one object per line
            env.stdout.writelines(json.dumps(d, ensure_ascii=False) + "\n" for d in dicts)
        return ExitCode.OK
    if listing.quiet:  # agents that never started (pending, skipped, reused) have no PID to print
        env.stdout.writelines(f"{r.pid}\n" for r in rows if r.pid)
        return ExitCode.OK
    if listing.format not in (None, "table"):
        from rnix.ui.template import render

        fields = list(process_dict(rows[0])) if rows else list(PROCESS_FIELDS)  # checked with no rows too
        lines = render(
            listing.format, [process_dict(r, notes.get((r.run_id, r.agent))) for r in rows], fields
        )
        env.stdout.writelines(line + "\n" for line in lines)
        return ExitCode.OK
    if not rows:
        hint = " (-a shows finished ones)" if not show_all else ""
        env.stderr.write(f"rnix: no agents{' of project ' + project if project else ''}{hint}\n")
        return ExitCode.OK
    truncate = env.stdout_isatty and not listing.no_trunc
    env.stdout.writelines(
        line + "\n"
        for line in table_lines(rows, with_project=project is None, truncate=truncate, notes=notes)
    )
    for line in pool_lines(shown):  # a note for people, not a row: stderr keeps the table parseable
        env.stderr.write(f"rnix: {line}\n")
    return ExitCode.OK


def listing_store(env: Env, db_exists: bool) -> Store:
    """The store a listing reads: writable when it can be, so that runs whose supervisor died are
    recorded as lost; on a full or read-only filesystem a copy in memory (`Store.open_scratch`)."""
    from rnix.store.db import Store

    return Store.open_scratch(env.home) if db_exists else Store.open(env.home, readonly=True)


def warn_unrecorded(env: Env, store: Store, lost: list[Any]) -> None:
    """Say so when runs are shown as lost but could not be recorded as lost."""
    if store.scratch is not None and lost:
        ids = ", ".join(run.id for run in lost)
        env.warn(f"{store.scratch.message}; run {ids} is shown as lost but not recorded as lost")


def _run_dict(run: Any) -> dict[str, Any]:
    plan = run.plan if isinstance(run.plan, dict) else {}
    pool = plan.get("budget_pool") or {}
    return {
        "run_id": run.id,
        "project": run.project,
        "status": run.status,
        "tokens_used": run.tokens_used,
        "budget_pool": pool.get("total"),
    }


def follow_logs(
    env: Env,
    run_id: str,
    rows: list[Any],
    *,
    follow: bool,
    prefix: bool,
    categories: frozenset[str] | None = None,
    tail: int | None = None,
    timestamps: bool = False,
) -> RunRow | None:
    """Print each agent's stderr then stdout; with `follow`, keep reading until the run ends.

    `categories` (rnix.core.logs) keeps only those lines: stderr lines by their `[think]`/`[tool]`/
    `[warn]` prefix (plain ones are `log`), stdout lines are `output`. `tail` keeps only each
    agent's last lines of what is already written (new lines while following all print).
    `timestamps` prefixes each line with the modification time of its file when rnix read it: the
    files carry no per-line times, so this is the latest time the line can have been written (for a
    line printed while following, within FOLLOW_POLL of it). Returns the run's row once it ended
    (following; a lost run is marked so), None without `follow`.
    """
    from rnix.cli.runwait import ended
    from rnix.core.logs import OUTPUT, categorize
    from rnix.core.secrets import mask_text, secret_values
    from rnix.store.db import Store
    from rnix.ui.text import inert

    secrets = secret_values(env.environ)
    width = max((len(r.agent) for r in rows), default=0)
    offsets: dict[str, int] = {}

    def drain(first: bool = False) -> None:
        for row in rows:
            lines: list[str] = []
            for path in (row.log_path, row.out_path):
                if not path:
                    continue
                start = offsets.get(path, 0)
                try:
                    with open(path, "rb") as handle:
                        handle.seek(start)
                        data = handle.read()
                        mtime = os.fstat(handle.fileno()).st_mtime  # after the read: an upper bound
                except OSError:
                    continue
                complete = data[: data.rfind(b"\n") + 1] if follow else data
                offsets[path] = start + len(complete)
                stamp = _stamp(mtime) + " " if timestamps else ""
                for line in complete.decode("utf-8", errors="replace").splitlines():
                    category = OUTPUT if path == row.out_path else categorize(line)[0]
                    if categories is not None and category not in categories:
                        continue
                    lines.append(stamp + inert(mask_text(line, secrets)))
            if first and tail is not None:
                lines = lines[-tail:] if tail else []
            for text in lines:
                env.stdout.write(f"{row.agent:<{width}} | {text}\n" if prefix else f"{text}\n")
        env.stdout.flush()

    drain(first=True)
    if not follow:
        return None
    wanted = {row.agent for row in rows}
    while True:
        with Store.open(env.home, readonly=True) as store:
            # refresh: an agent that had not started yet gets its file paths when it starts
            rows = [row for row in store.processes(run_id=run_id) if row.agent in wanted]
        run = ended(env, run_id)
        time.sleep(FOLLOW_POLL)
        drain()
        if run is not None:
            drain()
            return run


def _stamp(ts: float) -> str:
    """RFC 3339 UTC with milliseconds, as `--timestamps` prints it."""
    from datetime import datetime, timezone

    moment = datetime.fromtimestamp(ts, tz=timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


@click.command("run")
@click.argument("intent")
@click.option("--model", help="Model for the agent (default: $RNIX_MODEL, else the definition's, else mock).")
@click.option("--agent", "definition", help="An agent definition to run.")
@click.option("--budget", type=int, help="Token budget (default: the definition's, else 50,000).")
@click.option("--timeout", help="Timeout, e.g. 30s or 5m (default 10m).")
@click.option(
    "--api-base", metavar="URL", help="The model server's base URL (as api_base: in a compose file)."
)
@click.option(
    "--output-schema",
    "output_schema",
    metavar="FILE",
    help="A JSON Schema file (JSON or YAML) the result must match (as output_schema: in a compose file).",
)
@click.option("-p", "--project-name", "project", default="run", show_default=True, help="Project name.")
@json_option
@click.pass_obj
def run_cmd(
    env: Env,
    intent: str,
    model: str | None,
    definition: str | None,
    budget: int | None,
    timeout: str | None,
    api_base: str | None,
    output_schema: str | None,
    project: str,
    as_json: bool,
) -> int:
    """Run one agent and print its result on stdout.

    Piped stdin becomes the agent's input: `rnix run "summarise" < notes.txt`. `rnix "INTENT"` is
    the same as `rnix run "INTENT"`. Exit status 0 when the agent completed, 1 otherwise.
    """
    from rnix.cli.runopts import COMMAND_LINE, option_error
    from rnix.core.plan import make_plan
    from rnix.core.secrets import mask, mask_text, secret_values
    from rnix.core.spec import parse_compose
    from rnix.llm import tokens
    from rnix.store.compose_file import resolve_project_name
    from rnix.store.paths import new_run_id
    from rnix.supervisor.run import RunContext, supervise
    from rnix.ui.runview import up_document

    likely = model or env.environ.get("RNIX_MODEL") or "mock"
    if tokens.needs_encoding(likely):
        tokens.preload(likely)  # concurrently with what follows
    body: dict[str, Any] = {"intent": intent}
    for key, value in (
        ("model", model or env.environ.get("RNIX_MODEL")),
        ("agent", definition),
        ("budget", budget),
        ("timeout", timeout),
        ("api_base", api_base),
    ):
        if value is not None:
            body[key] = value
    if output_schema is not None:
        body["output_schema"] = {"$ref": output_schema}
    try:
        spec = parse_compose({"agents": {"agent": body}}, {}, COMMAND_LINE)
        if output_schema is not None:
            from rnix.store.output_schemas import resolve_output_schemas

            spec = resolve_output_schemas(spec, env.cwd, {})
        if definition is not None:  # --agent: found like a compose file's, with the project here
            from rnix.cli.compose import library
            from rnix.store.definitions import resolve_definitions

            spec = resolve_definitions(spec, library(env, env.cwd), {})
    except InvalidCompose as exc:
        raise (option_error(exc) or exc) from exc
    from rnix.cli.compose import Loaded, check_credentials, resolve_models

    spec = resolve_models(env, spec)  # `--model haiku`, with the keys checked before anything runs
    check_credentials(env, Loaded(spec, "agent", env.cwd / "compose.yaml"))
    from rnix.cli.compose_run import EARLY_SPAWN, preload_clients, prestart_spawner
    from rnix.core.actions import Options

    prestart_spawner(env)
    preload_clients(env, spec)
    plan = make_plan(spec, resolve_project_name(project, {}, None, env.cwd / "x"))
    stdin_input = None
    if env.stdin_piped:
        stdin_input = sys.stdin.read()
    ctx = RunContext(
        plan=plan,
        run_id=new_run_id(),
        home=env.home,
        environ=env.environ,
        base_dir=env.cwd,
        compose_file=COMMAND_LINE,
        clock=SystemClock(),
        stdin_input=stdin_input,
        options=Options(early_spawn=EARLY_SPAWN),  # forked while the client loads (early.py)
    )
    import asyncio

    outcome = asyncio.run(supervise(ctx))
    agent = outcome.agents["agent"]
    secrets = secret_values(env.environ)
    if as_json:
        data = mask(up_document(plan, outcome, plan.project), secrets)
        doc: dict[str, Any] = {"ok": outcome.exit_code == ExitCode.OK, "data": data}
        if outcome.exit_code != ExitCode.OK:
            doc["error"] = {
                "code": "RUN_" + outcome.status.value.upper(),
                "message": agent.error or agent.state.value,
            }
        jsonout.write_document(env.stdout, doc)
    else:
        if agent.result:
            result = mask_text(agent.result, secrets)
            env.stdout.write(result if result.endswith("\n") else result + "\n")
        if agent.error:
            env.stderr.write(f"rnix: {agent.state.value}: {mask_text(agent.error, secrets)}\n")
    return outcome.exit_code


@click.command("ps")
@json_option
@click.option("-a", "--all", "show_all", is_flag=True, help="Include finished agents of recent runs.")
@click.option("-p", "--project-name", "project", help="Only this project.")
@listing_options
@click.pass_obj
def ps_cmd(env: Env, as_json: bool, show_all: bool, project: str | None, listing: Listing) -> int:
    """List agent processes of all projects (running ones; -a adds finished ones).

    One agent a line: piped output is never cut or wrapped (on a terminal INTENT and REASON are cut
    unless --no-trunc). REASON says why an agent failed or was stopped; RUN appears when the rows come
    from several runs. TOKENS is used/funded per agent; a budget pool lends what one agent leaves to
    later ones, so the pool's own use is noted on stderr. STATE reads `running (rate_limited)` while
    one of the agent's model calls waits for its model's max_concurrency or rpm, or to retry after
    HTTP 429 (`rate_limited` in --json). NODE appears when an agent runs on another cluster node:
    its PID is one of that node (`-`: this machine); --json always has it as `cluster_node` (null:
    this machine), beside `node`, the agent's node in the compose file.
    """
    return list_processes(env, project=project, show_all=show_all, as_json=as_json, listing=listing)


@click.command("kill")
@click.option("-s", "--signal", "signame", default="TERM", show_default=True, help="Signal name or number.")
@click.argument("pid", type=int)
@json_option
@click.pass_obj
def kill_cmd(env: Env, signame: str, pid: int, as_json: bool) -> int:
    """Send a signal to an agent's whole process group (the PID is checked first).

    The run's supervisor sends it and records it (STOP pauses the agent, CONT resumes it); only for
    a run whose supervisor is gone does rnix signal the group itself. An agent on another cluster
    node (NODE in `rnix ps`) is reached only through its supervisor: once that is gone, kill refuses
    with exit status 1 and signals nothing here (the node stops such agents by itself).
    """
    from rnix.store.db import Store
    from rnix.supervisor.control import signal_agent
    from rnix.supervisor.signals import parse_signal

    try:
        signum = parse_signal(signame)
    except ValueError as exc:
        raise UsageError(str(exc), "use a name like TERM, KILL, STOP, CONT or a number") from exc
    if not (env.home / "rnix.db").exists():
        raise RnixError(f"no rnix agent has PID {pid}", "`rnix ps` lists the agents and their PIDs")
    with Store.open(env.home) as store:
        row = signal_agent(store, pid, signum, environ=env.environ)
    if as_json:
        jsonout.write_ok(env.stdout, {"pid": pid, "agent": row.agent, "run_id": row.run_id, "signal": signum})
    return ExitCode.OK


@click.command("log")
@click.argument("pid", type=int, required=False)
@click.option("-f", "--follow", is_flag=True, help="Keep printing until the agent ends.")
@click.option(
    "--filter",
    "categories",
    multiple=True,
    type=click.Choice(CATEGORY_CHOICES),
    help="Only lines of this category (repeatable): the loop's think, tool and warn steps, plain log "
    "lines, or the output.",
)
@click.option("--llm", "llm_calls", is_flag=True, help="Show the agent's model calls instead (see below).")
@click.option(
    "--planner",
    metavar="ID",
    help="Show an `rnix apply` planning and its planner's model calls instead (no PID): its id "
    "(plan-...), `last`, or a run it started.",
)
@json_option
@click.pass_obj
def log_cmd(
    env: Env,
    pid: int | None,
    follow: bool,
    categories: tuple[str, ...],
    llm_calls: bool,
    planner: str | None,
    as_json: bool,
) -> int:
    """Print the log (stderr) and output (stdout) of the agent with this PID.

    Built-in agents log each step of their loop as one line: `[think]` what the model said next to
    its tool calls, `[tool]` a call and a short result, `[warn]` a denied call. Why an agent failed
    or was stopped (its REASON in `ps`) follows on stderr.

    --llm shows the agent's model calls as recorded: per call its number, status, model, tokens,
    latency and tries, then the messages the request added, quoted with `> ` (earlier ones are not
    repeated), then the response (its text, `-> TOOL ARGUMENTS` for each tool call) and `<- ...` for
    each tool result the agent sent back to the model. Secrets are masked. --json gives each call's
    `request` as {"from": N, "messages": [...]}: the messages after the first N of the previous call.

    --planner ID shows what `rnix apply` planned (its id is printed by apply and written in the
    compose file's header): the intent, model, budget, calls, tokens, files written and runs
    started, then the planner's model calls as --llm shows an agent's.

    \b
    Exit status: 0; 1 when no agent had this PID (or no planning is ID).
    """
    from rnix.store.db import Store

    if planner is not None:
        if pid is not None or follow or categories:
            raise UsageError("--planner takes no PID, -f or --filter", f"rnix log --planner {planner}")
        from rnix.cli import plannerlog

        return plannerlog.show(env, planner, as_json)
    if pid is None:
        raise UsageError(
            "missing argument PID", "rnix log PID (`rnix ps -a` lists them), or rnix log --planner ID"
        )

    with Store.open(env.home, readonly=True) as store:
        row = store.process_by_pid(pid)
    if row is None:
        raise RnixError(f"no rnix agent has PID {pid}", "`rnix ps -a` lists agents and their PIDs")
    if llm_calls:
        if follow or categories:
            raise UsageError("--llm cannot be combined with -f or --filter", "drop them to see the calls")
        from rnix.cli import llmlog

        return llmlog.show(env, pid, row, as_json)
    if as_json:
        data = {
            "pid": pid,
            "agent": row.agent,
            "run_id": row.run_id,
            "state": row.state,
            "error": row.error,
            **read_output(env, row),
        }
        data["entries"] = _entries(data["log"], data["result"], frozenset(categories) or None)
        jsonout.write_ok(env.stdout, data)
        return ExitCode.OK
    wanted = frozenset(categories) or None
    follow_logs(env, row.run_id, [row], follow=follow, prefix=False, categories=wanted)
    with Store.open(env.home, readonly=True) as store:
        row = store.process_by_pid(pid) or row  # with -f it has ended since
    if row.error:  # why it failed or was stopped: a diagnostic, so the output stays the agent's own
        from rnix.core.secrets import mask_text, secret_values
        from rnix.ui.text import inert

        reason = inert(mask_text(row.error, secret_values(env.environ)))
        env.stderr.write(f"rnix: {row.agent} (PID {pid}) {row.state}: {reason}\n")
    return ExitCode.OK


def _entries(log: list[str], result: str, categories: frozenset[str] | None) -> list[dict[str, str]]:
    """`log --json`'s categorized lines: stderr lines, then the result as one `output` entry."""
    from rnix.core.logs import OUTPUT, categorize

    entries = [dict(zip(("category", "text"), categorize(line), strict=True)) for line in log]
    if result:
        entries.append({"category": OUTPUT, "text": result})
    return [e for e in entries if categories is None or e["category"] in categories]


def read_output(env: Env, row: Any) -> dict[str, Any]:
    """An agent's log lines (stderr) and result (stdout), secrets masked, for `--json`."""
    from rnix.core.secrets import mask_text, secret_values

    secrets = secret_values(env.environ)
    return {
        "log": mask_text(_read(row.log_path), secrets).splitlines(),
        "result": mask_text(_read(row.out_path), secrets),
    }


def _read(path: str | None) -> str:
    if not path:
        return ""
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


@click.command("llm")
@click.argument("prompt", nargs=-1)
@click.option("-s", "--system", help="A system message.")
@click.option("--max-tokens", type=int, help="Most tokens in the answer (capped by the budget).")
@json_option
@click.pass_obj
def llm_cmd(
    env: Env, prompt: tuple[str, ...], system: str | None, max_tokens: int | None, as_json: bool
) -> int:
    """Ask the LLM from inside an agent (through the rnix gateway; no API key needed).

    The PROMPT words are joined; `-` stands for standard input, which is also read when no PROMPT is
    given: `rnix llm "Summarise:" - < notes.txt`. Stdin is not read otherwise, because inside a command
    agent it holds the task. Exit status 0 on success, 2 when the agent's budget is exhausted (so a
    command agent can `exit $?`), 1 on other failures.
    """
    from rnix.agent.client import GatewayClient, GatewayError
    from rnix.agent.protocol import BUDGET_EXCEEDED, EXIT_BUDGET

    words = list(prompt) or ["-"]
    if "-" in words:
        if not env.stdin_piped:
            raise UsageError(
                "no prompt given and nothing piped in", 'pass one: rnix llm "question", or pipe text into it'
            )
        stdin_text = sys.stdin.read()
        words = [stdin_text if word == "-" else word for word in words]
    text = "\n\n".join(w for w in words if w.strip())
    if not text:
        raise UsageError("the prompt is empty", 'pass one: rnix llm "question"')
    messages = ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": text}
    ]
    options = {"max_tokens": max_tokens} if max_tokens else {}
    try:
        with GatewayClient.from_environ(env.environ) as client:
            reply = client.complete(messages, **options)
    except GatewayError as exc:
        env.stderr.write(f"rnix llm: {exc.code}: {exc.message}\n")
        return EXIT_BUDGET if exc.code == BUDGET_EXCEEDED else ExitCode.FAILURE
    if as_json:
        jsonout.write_ok(env.stdout, {k: reply.get(k) for k in ("content", "usage", "used", "remaining")})
    else:
        content = str(reply.get("content") or "")
        env.stdout.write(content if content.endswith("\n") else content + "\n")
    return ExitCode.OK


COMMANDS = (run_cmd, ps_cmd, kill_cmd, log_cmd, llm_cmd)
