"""`rnix apply "INTENT"`: a planner turns the intent into a compose file, which is shown, written and
run; agents that fail are replanned.

Contract: the planner is the offline `mock` (rnix.core.planner: deterministic, no key) or a real
model (rnix.cli.apply_model: the `submit_compose` tool, every problem of a proposal sent back for at
most 3 repair turns, all calls within --budget). A proposal is validated exactly as `compose config
-q` validates a file. The plan is shown as `compose plan` and `compose graph --format text` show it
(stdout), written to -o FILE (never over an existing file without --force: exit 2), and run as
`compose up --fresh` after a confirmation on a terminal or with --yes; without a terminal and without
--yes it is written, not run (exit 0). When the run fails, the planner replaces the agents that did
not complete (the completed ones are kept as they are), the proposal is written to
`FILE-STEM.replan-N.yaml` and run as `compose up` without --fresh, so the completed agents are
reused, not run again; at most --max-replans times. The replan files it could write are checked
with FILE, before planning. The planning is recorded under its own id (rnix.cli.apply_log: its
calls, files and runs) for `rnix log --planner ID`; the offline planner's answer is counted and
recorded as one call too, so --budget means the same for both.
"""

from __future__ import annotations

import io
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from rnix.core import planner
from rnix.core.secrets import mask, secret_values
from rnix.env import Env
from rnix.errors import ExitCode, RnixError, UsageError
from rnix.ui import jsonout

if TYPE_CHECKING:
    from rnix.cli.apply_log import PlannerLog
    from rnix.cli.apply_model import Spend
    from rnix.store.definitions import Library

DEFAULT_BUDGET = 20_000  # tokens for all the planner's calls together
DEFAULT_REPLANS = 1


@click.command("apply")
@click.argument("intent")
@click.option("--model", help="The planner's model (default: $RNIX_MODEL, else mock: offline).")
@click.option("--api-base", metavar="URL", help="The planner model server's base URL.")
@click.option(
    "-o",
    "--output",
    "output",
    metavar="FILE",
    default="compose.yaml",
    show_default=True,
    help="Where to write the compose file.",
)
@click.option("--force", is_flag=True, help="Overwrite FILE (and its replan files) when they exist.")
@click.option("-y", "--yes", is_flag=True, help="Run the plan without asking.")
@click.option("--dry-run", is_flag=True, help="Plan, show and write the file; do not run it.")
@click.option(
    "--max-replans",
    type=click.IntRange(min=0),
    default=DEFAULT_REPLANS,
    show_default=True,
    help="How many times the agents that failed are replanned and run again.",
)
@click.option(
    "--budget",
    type=click.IntRange(min=1),
    default=DEFAULT_BUDGET,
    show_default=True,
    help="Tokens for all the planner's calls, repairs and replans included (not the run's); a call "
    "that would not fit is not made.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout.")
@click.pass_context
def apply_cmd(
    ctx: click.Context,
    intent: str,
    model: str | None,
    api_base: str | None,
    output: str,
    force: bool,
    yes: bool,
    dry_run: bool,
    max_replans: int,
    budget: int,
    as_json: bool,
) -> int:
    """Plan a team of agents for INTENT, write it as a compose file and run it.

    The planner (the `mock` model offline; a real model with --model) picks agent definitions
    (`rnix agents`) and chains them into a DAG. Its proposal is checked like `compose config -q`;
    a real model gets every problem back and up to 3 repair turns. The plan is printed as
    `compose plan` and `compose graph --format text` print it, and written to FILE. It runs (as
    `rnix compose -f FILE up`) after you confirm on a terminal, or at once with --yes; without a
    terminal and without --yes it is only written. --dry-run never runs it. With a real model,
    agents that set no model of their own use the planner's model.

    When agents fail, the planner replaces them (and what they left undone) while the completed
    agents are kept; the new plan is written next to FILE as STEM.replan-N.yaml and run, reusing
    the completed agents' results; at most --max-replans times.

    Every planner call (the mock's too) is counted against --budget before it is made and recorded:
    `rnix log --planner ID` shows the planning (ID is printed, and written in FILE's header).

    \b
    Exit status: 0 planned (and, if run, every agent completed, or you declined to run it); 1 the
    planner gave no valid plan (or its next call would exceed --budget), or the run did not fully
    succeed; 2 usage error, or a file exists (use --force).
    """
    from rnix.cli.apply_log import PlannerLog
    from rnix.cli.apply_model import PlanningFailed, Spend

    env: Env = ctx.ensure_object(Env)
    if not intent.strip():
        raise UsageError("the intent is empty", 'say what you want: rnix apply "Review the code in src/"')
    path = Path(env.cwd / output)
    replan_paths = [replan_path(path, n) for n in range(1, max_replans + 1)]
    for target in (path, *([] if dry_run else replan_paths)):
        if target.is_dir():
            raise UsageError(f"{_shown(env, target)} is a directory", "pass -o FILE.yaml")
        if target.exists() and not force:
            shown = _shown(env, target)
            raise UsageError(
                f"{shown} already exists; rnix apply does not overwrite it",
                f"pass --force to replace it or -o OTHER.yaml; to run it: rnix compose -f {shown} up",
            )
    model = model or env.environ.get("RNIX_MODEL") or "mock"
    lib = _library(env, path.parent)
    log = PlannerLog(env, intent=intent, model=model, budget=budget, file=path)
    spend = Spend(budget, log=log)
    try:
        code, result, last = _apply(
            ctx, env, intent, model, api_base, lib, path, replan_paths, spend, (yes, dry_run, as_json)
        )
    except BaseException as exc:
        log.finished("failed", spend.calls, spend.used, _why(exc))
        if isinstance(exc, PlanningFailed):
            exc.hint = f"{exc.hint}; the planner's calls: {log.command}"
        raise
    log.finished("planned", spend.calls, spend.used)
    result["planner"] = {
        "id": log.id,
        "model": model,
        "calls": spend.calls,
        "tokens_used": spend.used,
        "budget": budget,
        "log": log.command,
    }
    if as_json:
        out: dict[str, Any] = {"ok": code == ExitCode.OK, "data": result}
        if last and "error" in last:
            out["error"] = last["error"]
        jsonout.write_document(env.stdout, out)
    return code


def _apply(
    ctx: click.Context,
    env: Env,
    intent: str,
    model: str,
    api_base: str | None,
    lib: list[planner.Available],
    path: Path,
    replan_paths: list[Path],
    spend: Spend,
    flags: tuple[bool, bool, bool],
) -> tuple[int, dict[str, Any], dict[str, Any] | None]:
    """Plan, write, show, maybe run, and replan: (exit status, the --json data, the last run's document)."""
    yes, dry_run, as_json = flags
    log = spend.log
    document = _plan(env, model, api_base, intent, lib, path.parent, spend)
    _write(env, path, intent, model, document, spend)
    result: dict[str, Any] = {"file": str(path), "intent": intent}
    project, result["plan"] = _show(env, path, as_json)
    run = _should_run(env, yes, dry_run, _shown(env, path))
    result["ran"] = run
    code: int = ExitCode.OK
    last: dict[str, Any] | None = None
    if run:
        code, last = _up(ctx, env, path, project, as_json, fresh=True, log=log)
        result["run"] = last.get("data") if last else None
        result["replans"] = []
        for n, target in enumerate(replan_paths, start=1):
            if code != ExitCode.FAILURE:
                break
            settled = _settled(env, project, document)
            failed = [s for s in settled if not s.completed]
            if not failed:
                break
            env.stderr.write(
                f"rnix: {', '.join(s.name for s in failed)} did not complete; replanning "
                f"({n} of {len(replan_paths)})\n"
            )
            env.stderr.flush()
            document = _replan(env, model, api_base, intent, document, settled, path.parent, spend)
            _write(env, target, intent, model, document, spend, replan=n)
            project, shown_plan = _show(env, target, as_json)
            code, last = _up(ctx, env, target, project, as_json, fresh=False, log=log)
            result["replans"].append(
                {
                    "file": str(target),
                    "replaced": [s.name for s in failed],
                    "plan": shown_plan,
                    "run": last.get("data") if last else None,
                }
            )
    return code, result, last


def _why(exc: BaseException) -> str:
    """How planning ended, for its log: the error's message (its hint is for the terminal)."""
    if isinstance(exc, RnixError):
        return exc.message
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted"
    return type(exc).__name__


def replan_path(path: Path, n: int) -> Path:
    """`compose.yaml` -> `compose.replan-1.yaml`, beside it."""
    return path.with_name(f"{path.stem}.replan-{n}{path.suffix or '.yaml'}")


def _plan(
    env: Env,
    model: str,
    api_base: str | None,
    intent: str,
    lib: list[planner.Available],
    base_dir: Path,
    spend: Spend,
) -> dict[str, Any]:
    """The first plan: the mock's, or a real model's (accepted once it validates)."""
    from rnix.core.models import is_mock

    messages: list[dict[str, Any]] = [
        {"role": "system", "content": planner.system_prompt(lib)},
        {"role": "user", "content": intent},
    ]
    if is_mock(model):
        started = time.monotonic()
        document = planner.mock_plan(intent, lib)
        _mock_call(spend, messages, document, started)
        return document
    from rnix.cli.apply_model import converse, problems_of, resolve_model

    target, target_base = resolve_model(env, model, api_base)

    def accept(proposal: dict[str, Any]) -> tuple[dict[str, Any] | None, list[str]]:
        document = _on_model(proposal, model, api_base)
        return document, problems_of(env, document, base_dir)

    return converse(env, target, target_base, messages, spend, accept)


def _replan(
    env: Env,
    model: str,
    api_base: str | None,
    intent: str,
    document: dict[str, Any],
    settled: list[planner.Settled],
    base_dir: Path,
    spend: Spend,
) -> dict[str, Any]:
    """The plan with the agents that did not complete replaced (the completed ones kept as they are)."""
    import yaml

    from rnix.cli.apply_model import PlanningFailed, converse, problems_of, resolve_model
    from rnix.core.models import is_mock

    completed = [s.name for s in settled if s.completed]
    text = yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=100)
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": planner.system_prompt(_library(env, base_dir))},
        {"role": "user", "content": planner.replan_message(intent, text, settled)},
    ]
    if is_mock(model):
        started = time.monotonic()
        proposal = planner.mock_replan(document, [s for s in settled if not s.completed])
        _mock_call(spend, messages, proposal, started)
        merged, problems = planner.merge_replacement(document, completed, proposal)
        problems = problems or problems_of(env, merged, base_dir)
        if problems:
            raise PlanningFailed("the offline replan is not valid: " + "; ".join(problems))
        return merged
    target, target_base = resolve_model(env, model, api_base)

    def accept(proposal: dict[str, Any]) -> tuple[dict[str, Any] | None, list[str]]:
        merged, problems = planner.merge_replacement(document, completed, proposal)
        return merged, problems or problems_of(env, merged, base_dir)

    return converse(env, target, target_base, messages, spend, accept)


def _mock_call(
    spend: Spend, messages: list[dict[str, Any]], proposal: dict[str, Any], started: float
) -> None:
    """The offline planner's answer, counted and recorded as a model's call is: its prompt (the
    tool's schema included) and its `submit_compose` call, counted with the mock's tokenizer; it
    is refused, like a model's call, when that does not fit in what is left of the budget."""
    from rnix.core.fields import json_schema
    from rnix.llm import tokens

    tools = [planner.submit_tool(json_schema())]
    arguments = json.dumps(proposal, ensure_ascii=False)
    tool_calls = [
        {"id": "call_1", "type": "function", "function": {"name": planner.TOOL_NAME, "arguments": arguments}}
    ]
    prompt = tokens.count_prompt(messages, "mock", tools)
    completion = tokens.count_answer("", tool_calls, "mock")
    spend.admit("mock", prompt + completion)
    usage = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
    spend.charge(
        "mock",
        (prompt, completion),
        latency_ms=(time.monotonic() - started) * 1000,
        max_tokens=None,
        messages=messages,
        tools=tools,
        response={"content": "", "tool_calls": tool_calls, "finish_reason": "tool_calls", "usage": usage},
    )


def _on_model(proposal: dict[str, Any], model: str, api_base: str | None) -> dict[str, Any]:
    """The agents run on the planner's model (and server) unless the proposal chose one."""
    document = dict(proposal)
    document.setdefault("model", model)
    if api_base:
        document.setdefault("api_base", api_base)
    return document


def _library(env: Env, project_dir: Path) -> list[planner.Available]:
    """The valid definitions the planner may name (invalid ones are left out: they could not run)."""
    from rnix.cli.compose import library

    lib: Library = library(env, project_dir)
    seen: dict[str, planner.Available] = {}
    for entry in lib.entries():
        d = entry.definition
        if d is None or entry.shadowed_by is not None or entry.name in seen:
            continue
        seen[entry.name] = planner.Available(d.name, d.description, tuple(d.capabilities), tuple(d.tools))
    return list(seen.values())


def _write(
    env: Env,
    path: Path,
    intent: str,
    model: str,
    document: dict[str, Any],
    spend: Spend,
    replan: int = 0,
) -> None:
    import yaml

    seen = f"# The planner's calls: `{spend.log.command}`.\n" if spend.log else ""
    header = (
        f"# Planned by `rnix apply` ({model}) for:\n#   {' '.join(intent.split())}\n"
        f"# Review it, then run it with `rnix compose -f FILE up`.\n{seen}"
    )
    path.write_text(header + yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=100))
    agents = len(document.get("agents") or {})
    if spend.log is not None:
        spend.log.wrote(path, replan, agents)
    calls = f"{spend.calls} call{'s' if spend.calls != 1 else ''}, {spend.used:,} of {spend.budget:,} tokens"
    env.stderr.write(f"rnix: wrote {_shown(env, path)} ({agents} agents, planned by {model}: {calls})\n")
    if spend.log is not None and not replan:
        env.stderr.write(f"rnix: the planner's calls: {spend.log.command}\n")
    env.stderr.flush()


def _show(env: Env, path: Path, as_json: bool) -> tuple[str, dict[str, Any]]:
    """Load the file written as `up` will; print it as `compose plan` and `graph --format text` do.
    Returns the project and the plan as `compose plan --json` gives it."""
    from rnix.cli.compose import load
    from rnix.cli.reputation import plan_with_ledger
    from rnix.core.plan import plan_as_dict
    from rnix.ui.graph import graph_document, render

    loaded = load(env, str(path), None)
    plan = plan_with_ledger(env, loaded.spec, loaded.project, None)
    secrets = secret_values(env.environ)
    if not as_json:
        from rnix.ui.render import render_plan

        render_plan(env, plan)
        env.stdout.write("\n" + render(graph_document(loaded.spec, loaded.project, secrets), "text"))
        env.stdout.flush()
    return loaded.project, mask(plan_as_dict(plan), secrets)


def _shown(env: Env, path: Path) -> str:
    try:
        return str(path.relative_to(env.cwd))
    except ValueError:
        return str(path)


def _should_run(env: Env, yes: bool, dry_run: bool, shown: str) -> bool:
    """--yes runs; --dry-run never; a terminal asks; otherwise it is written, not run."""
    how = f"rnix compose -f {shown} up"
    if dry_run:
        env.stderr.write(f"rnix: --dry-run: not run; run it with `{how}`\n")
        return False
    if yes:
        return True
    if env.stdin_isatty:
        if click.confirm("Run this plan now?", default=True, err=True):
            return True
        env.stderr.write(f"rnix: not run; run it with `{how}`\n")
        return False
    env.stderr.write(f"rnix: not run (no terminal to confirm on, and no --yes); run it with `{how}`\n")
    return False


def _up(
    ctx: click.Context,
    env: Env,
    path: Path,
    project: str,
    as_json: bool,
    *,
    fresh: bool,
    log: PlannerLog | None,
) -> tuple[int, dict[str, Any] | None]:
    """`rnix compose -f FILE up [--fresh]` in this process; with --json its document, captured.
    The run it became is recorded in the planning's log."""
    from rnix.store.db import Store

    before = time.time()
    code, document = _up_document(ctx, env, str(path), as_json, fresh=fresh)
    if log is not None:
        with Store.open(env.home, readonly=True) as store:
            run = store.latest_run(project)
        log.ran(run.id if run is not None and run.started_at >= before else None, path, code)
    return code, document


def _up_document(
    ctx: click.Context, env: Env, file: str, as_json: bool, *, fresh: bool
) -> tuple[int, dict[str, Any] | None]:
    from rnix.cli.compose_run import up_cmd

    kwargs: dict[str, Any] = {
        "file": file,
        "project": None,
        "as_json": as_json,
        "detach": False,
        "abort_on_failure": False,
        "fresh": fresh,
        "no_compensate": False,
        "from_agent": None,
        "run_id": None,
        "seed": None,
        "agents": (),
    }
    if not as_json:
        return int(ctx.invoke(up_cmd, **kwargs)), None
    stdout, env.stdout = env.stdout, io.StringIO()
    try:
        code = int(ctx.invoke(up_cmd, **kwargs))
        captured = env.stdout.getvalue()
    finally:
        env.stdout = stdout
    try:
        return code, json.loads(captured)
    except ValueError:
        return code, None


def _settled(env: Env, project: str, document: dict[str, Any]) -> list[planner.Settled]:
    """How each agent of `document` ended in the project's latest run (read back from the store)."""
    from rnix.cli.procs import read_output
    from rnix.store.db import Store

    names = list(document.get("agents") or {})
    with Store.open(env.home, readonly=True) as store:
        run = store.latest_run(project)
        rows = {r.agent: r for r in store.processes(run_id=run.id)} if run else {}
    out = []
    for name in names:
        row = rows.get(name)
        if row is None:
            out.append(planner.Settled(name, False, "it did not run"))
        elif row.state == "completed":
            out.append(planner.Settled(name, True, result=read_output(env, row)["result"]))
        else:
            out.append(planner.Settled(name, False, row.error or row.state))
    return out
