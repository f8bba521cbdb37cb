"""`rnix apply "INTENT"`: a planner turns the intent into a compose file, which is shown, written and run.

Contract: the planner is the offline `mock` (rnix.core.planner.mock_plan: deterministic, no key) or a
real model asked once through the lean client or litellm, with one tool, `submit_compose`, whose
parameters are the compose JSON Schema. Each proposal is validated exactly as `compose config -q`
validates a file (rnix.cli.compose.check_document); every problem goes back to the model as the tool
result, for at most `MAX_REPAIRS` repair turns, then apply fails (exit 1) listing them. The plan is
shown as `compose plan` and `compose graph --format text` show it (stdout), written to -o FILE
(never over an existing file without --force: exit 2), and run as `compose up --fresh` after a
confirmation on a terminal or with --yes. Without a terminal and without --yes it is written, not
run (exit 0, the command to run it on stderr).
"""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from rnix.core import planner
from rnix.core.secrets import mask, mask_text, secret_values
from rnix.env import Env
from rnix.errors import ExitCode, InvalidCompose, RnixError, UsageError
from rnix.ui import jsonout

if TYPE_CHECKING:
    from rnix.store.definitions import Library

DEFAULT_BUDGET = 20_000  # tokens for all the planner's calls together
PLAN_MAX_TOKENS = 4_000  # per planner call
PLAN_TIMEOUT = 120.0  # seconds per planner call
DISPLAY = "<planner>"  # how problems of a proposal name it


class PlanningFailed(RnixError):
    """The planner gave no valid compose document within its repair turns or its budget."""

    code = "PLANNING_FAILED"


@click.command("apply")
@click.argument("intent")
@click.option(
    "--model", help="The planner's model (default: $RNIX_MODEL, else mock: offline, deterministic)."
)
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
@click.option("--force", is_flag=True, help="Overwrite FILE when it exists.")
@click.option("-y", "--yes", is_flag=True, help="Run the plan without asking.")
@click.option("--dry-run", is_flag=True, help="Plan, show and write the file; do not run it.")
@click.option(
    "--budget",
    type=click.IntRange(min=1),
    default=DEFAULT_BUDGET,
    show_default=True,
    help="Tokens for the planner's calls, repairs included (not the run's).",
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

    \b
    Exit status: 0 planned (and, if run, every agent completed); 1 the planner gave no valid
    plan, or the run did not fully succeed; 2 usage error, or FILE exists (use --force).
    """
    env: Env = ctx.ensure_object(Env)
    if not intent.strip():
        raise UsageError("the intent is empty", 'say what you want: rnix apply "Review the code in src/"')
    path = Path(env.cwd / output)
    if path.is_dir():
        raise UsageError(f"{output} is a directory", "pass -o FILE.yaml")
    if path.exists() and not force:
        raise UsageError(
            f"{output} already exists; rnix apply does not overwrite it",
            f"pass --force to replace it or -o OTHER.yaml; to run it: rnix compose -f {output} up",
        )
    model = model or env.environ.get("RNIX_MODEL") or "mock"
    lib = _library(env, path.parent)
    if _is_mock(model):
        document: dict[str, Any] = planner.mock_plan(intent, lib)
        usage = 0
    else:
        target, target_base = _resolve_model(env, model, api_base)
        document, usage = _ask(env, target, target_base, intent, lib, path.parent, budget)
        document.setdefault("model", model)  # the agents run on the planner's model unless it chose
        if api_base and "api_base" not in document:
            document["api_base"] = api_base
    text = _yaml(intent, model, document)
    path.write_text(text, encoding="utf-8")
    shown = _shown(env, path)
    env.stderr.write(
        f"rnix: wrote {shown} ({len(document.get('agents') or {})} agents, planned by {model}"
        + (f", {usage} tokens" if usage else "")
        + ")\n"
    )
    env.stderr.flush()
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
    run = _should_run(env, yes, dry_run, shown)
    result: dict[str, Any] = {
        "file": str(path),
        "intent": intent,
        "planner": {"model": model, "tokens_used": usage, "budget": budget},
        "plan": mask(plan_as_dict(plan), secrets),
        "ran": run,
    }
    if not run:
        if as_json:
            jsonout.write_ok(env.stdout, result)
        return ExitCode.OK
    code, run_doc = _up(ctx, env, str(path), as_json)
    if as_json:
        result["run"] = run_doc.get("data") if run_doc else None
        document_out: dict[str, Any] = {"ok": code == ExitCode.OK, "data": result}
        if run_doc and "error" in run_doc:
            document_out["error"] = run_doc["error"]
        jsonout.write_document(env.stdout, document_out)
    return code


def _is_mock(model: str) -> bool:
    from rnix.core.models import is_mock

    return is_mock(model)


def _resolve_model(env: Env, model: str, api_base: str | None) -> tuple[str, str | None]:
    """An alias (`rnix models`) -> its model and api_base; a name with no provider is a usage error."""
    from rnix.core.models import aliases_by_name, provider_of
    from rnix.store.models_file import user_aliases

    alias = aliases_by_name(user_aliases(env.config_home)).get(model)
    if alias is not None:
        return alias.model, api_base or alias.api_base
    if provider_of(model) is None:
        raise UsageError(
            f"--model: '{model}' is neither mock, an alias nor provider/model",
            "`rnix models` lists the aliases; e.g. --model openai/gpt-4o-mini",
        )
    return model, api_base


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


def _yaml(intent: str, model: str, document: dict[str, Any]) -> str:
    import yaml

    header = (
        f"# Planned by `rnix apply` ({model}) for:\n#   {' '.join(intent.split())}\n"
        "# Review it, then run it with `rnix compose -f FILE up`.\n"
    )
    return header + yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=100)


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
        return click.confirm("Run this plan now?", default=True, err=True)
    env.stderr.write(f"rnix: not run (no terminal to confirm on, and no --yes); run it with `{how}`\n")
    return False


def _up(ctx: click.Context, env: Env, file: str, as_json: bool) -> tuple[int, dict[str, Any] | None]:
    """`rnix compose -f FILE up --fresh` in this process; with --json its document, captured."""
    from rnix.cli.compose_run import up_cmd

    kwargs: dict[str, Any] = {
        "file": file,
        "project": None,
        "as_json": as_json,
        "detach": False,
        "abort_on_failure": False,
        "fresh": True,
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


def _ask(
    env: Env,
    model: str,
    api_base: str | None,
    intent: str,
    lib: list[planner.Available],
    base_dir: Path,
    budget: int,
) -> tuple[dict[str, Any], int]:
    """Ask the planner model for a compose document; repair turns until it validates (or give up)."""
    from rnix.core.fields import json_schema

    messages: list[dict[str, Any]] = [
        {"role": "system", "content": planner.system_prompt(lib)},
        {"role": "user", "content": intent},
    ]
    tools = [planner.submit_tool(json_schema())]
    backend = _backend(env, model)
    secrets = secret_values(env.environ)
    used = 0
    problems: list[str] = []
    for turn in range(planner.MAX_REPAIRS + 1):
        if used >= budget:
            raise PlanningFailed(
                f"the planner's budget ({budget:,} tokens) is spent after {turn} calls",
                "raise it with --budget, or write the compose file yourself (`rnix compose schema`)",
            )
        completion = _complete(env, backend, model, api_base, messages, tools, budget - used, secrets)
        used += completion.usage.total_tokens
        call = (completion.tool_calls or [None])[0]
        if call is None:
            problems = [f"answer by calling the {planner.TOOL_NAME} tool, not with text"]
            messages += [
                {"role": "assistant", "content": completion.content},
                {"role": "user", "content": planner.repair_message(problems)},
            ]
            continue
        function = call.get("function") or {}
        document, why = planner.proposal_of(function.get("arguments"))
        problems = [why] if why else _problems(env, document, base_dir)
        if not problems and document is not None:
            return document, used
        messages += [
            {"role": "assistant", "content": completion.content or None, "tool_calls": [call]},
            {
                "role": "tool",
                "tool_call_id": call.get("id") or "call",
                "content": planner.repair_message(problems),
            },
        ]
        if turn < planner.MAX_REPAIRS:
            env.stderr.write(
                f"rnix: the planner's proposal has {len(problems)} problem(s); asking it to repair them\n"
            )
    listed = "; ".join(mask_text(p, secrets) for p in problems)
    raise PlanningFailed(
        f"the planner gave no valid compose file after {planner.MAX_REPAIRS} repair turns: {listed}",
        "try again, use another --model, or write the compose file yourself (`rnix compose schema`)",
    )


def _problems(env: Env, document: dict[str, Any] | None, base_dir: Path) -> list[str]:
    """Every problem of a proposal, as `compose config -q` reports them (lines of the YAML written)."""
    import yaml

    from rnix.cli.compose import check_document
    from rnix.store.yaml_lines import parse_yaml

    tree = parse_yaml(yaml.safe_dump(document, sort_keys=False, allow_unicode=True), DISPLAY)
    if tree.problems:
        return [str(p) for p in tree.problems]
    try:
        check_document(env, tree.data, tree.lines, DISPLAY, base_dir)
    except InvalidCompose as exc:
        return [str(p) for p in exc.problems] or [exc.message]
    return []


def _backend(env: Env, model: str) -> Any:
    from rnix.llm import routing

    kind = routing.client_for(model, env.environ)
    if kind == routing.LEAN:
        from rnix.llm.openai_http import OpenAIHTTPBackend

        return OpenAIHTTPBackend(max_connections=4)
    from rnix.llm.litellm_backend import LiteLLMBackend

    return LiteLLMBackend()


def _complete(
    env: Env,
    backend: Any,
    model: str,
    api_base: str | None,
    messages: list[dict[str, Any]],
    tools: list[dict[str, Any]],
    left: int,
    secrets: Any,
) -> Any:
    from rnix.llm.backend import ProviderError

    async def call() -> Any:
        try:
            return await backend.complete(
                model=model,
                messages=messages,
                max_tokens=min(PLAN_MAX_TOKENS, left),
                api_base=api_base,
                timeout=PLAN_TIMEOUT,
                tools=tools,
            )
        finally:
            close = getattr(backend, "aclose", None)
            if close is not None:
                await close()

    try:
        return asyncio.run(call())
    except ProviderError as exc:
        raise PlanningFailed(
            f"the planner model {model} failed: {mask_text(exc.message, secrets)}",
            "check --model, --api-base and the provider's key (`rnix models`)",
        ) from None
