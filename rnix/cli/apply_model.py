"""`rnix apply`'s conversation with a real planner model: one call at a time through the lean client
or litellm, the `submit_compose` tool, and repair turns until a proposal is accepted.

Contract: `converse(...)` sends `messages` with the one tool; each answer's proposal goes to `accept`,
which returns the document to keep, or the problems to send back as the tool's result. At most
`MAX_REPAIRS` repair turns, then `PlanningFailed` listing the last problems. Every call's tokens are
added to `Spend`; a call is not made once `Spend.budget` is used up. Provider errors become
`PlanningFailed` with secrets masked; nothing here prints a traceback.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rnix.core import planner
from rnix.core.secrets import mask_text, secret_values
from rnix.env import Env
from rnix.errors import InvalidCompose, RnixError, UsageError

PLAN_MAX_TOKENS = 4_000  # per planner call
PLAN_TIMEOUT = 120.0  # seconds per planner call
DISPLAY = "<planner>"  # how problems of a proposal name it

Accept = Callable[[dict[str, Any]], tuple[dict[str, Any] | None, list[str]]]


class PlanningFailed(RnixError):
    """The planner gave no valid compose document within its repair turns or its budget."""

    code = "PLANNING_FAILED"


@dataclass
class Spend:
    """The planner's tokens: its budget for every call of one `apply`, and what was used so far."""

    budget: int
    used: int = 0
    calls: int = 0


def resolve_model(env: Env, model: str, api_base: str | None) -> tuple[str, str | None]:
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


def converse(
    env: Env,
    model: str,
    api_base: str | None,
    messages: list[dict[str, Any]],
    spend: Spend,
    accept: Accept,
) -> dict[str, Any]:
    """Ask until a proposal is accepted (see the module docstring)."""
    from rnix.core.fields import json_schema

    tools = [planner.submit_tool(json_schema())]
    secrets = secret_values(env.environ)
    problems: list[str] = []
    for turn in range(planner.MAX_REPAIRS + 1):
        if spend.used >= spend.budget:
            raise PlanningFailed(
                f"the planner's budget ({spend.budget:,} tokens) is spent after {spend.calls} calls",
                "raise it with --budget, or write the compose file yourself (`rnix compose schema`)",
            )
        completion = _complete(env, model, api_base, messages, tools, spend.budget - spend.used)
        spend.used += completion.usage.total_tokens
        spend.calls += 1
        call = (completion.tool_calls or [None])[0]
        if call is None:
            problems = [f"answer by calling the {planner.TOOL_NAME} tool, not with text"]
            messages += [
                {"role": "assistant", "content": completion.content},
                {"role": "user", "content": planner.repair_message(problems)},
            ]
            continue
        function = call.get("function") or {}
        proposal, why = planner.proposal_of(function.get("arguments"))
        kept: dict[str, Any] | None = None
        if why is not None or proposal is None:
            problems = [why or "no compose document"]
        else:
            kept, problems = accept(proposal)
        if kept is not None and not problems:
            return kept
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
            env.stderr.flush()
    listed = "; ".join(mask_text(p, secrets) for p in problems)
    raise PlanningFailed(
        f"the planner gave no valid compose file after {planner.MAX_REPAIRS} repair turns: {listed}",
        "try again, use another --model, or write the compose file yourself (`rnix compose schema`)",
    )


def problems_of(env: Env, document: dict[str, Any], base_dir: Path) -> list[str]:
    """Every problem of a document, as `compose config -q` reports them (lines of its YAML)."""
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

    if routing.client_for(model, env.environ) == routing.LEAN:
        from rnix.llm.openai_http import OpenAIHTTPBackend

        return OpenAIHTTPBackend(max_connections=4)
    from rnix.llm.litellm_backend import LiteLLMBackend

    return LiteLLMBackend()


def _complete(
    env: Env,
    model: str,
    api_base: str | None,
    messages: list[dict[str, Any]],
    tools: list[dict[str, Any]],
    left: int,
) -> Any:
    from rnix.llm.backend import ProviderError

    backend = _backend(env, model)

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
            f"the planner model {model} failed: {mask_text(exc.message, secret_values(env.environ))}",
            "check --model, --api-base and the provider's key (`rnix models`)",
        ) from None
