"""`rnix apply`'s conversation with a real planner model: one call at a time through the lean client
or litellm, the `submit_compose` tool, and repair turns until a proposal is accepted.

Contract: `converse(...)` sends `messages` with the one tool; each answer's proposal goes to `accept`,
which returns the document to keep, or the problems to send back as the tool's result. At most
`MAX_REPAIRS` repair turns, then `PlanningFailed` listing the last problems. Every call's tokens are
added to `Spend`, which records each call (`rnix.cli.apply_log`). A call is made only when its
prompt (counted before it is sent, tool definitions included) and at least one answer token fit in
what is left of `Spend.budget`; its `max_tokens` is capped to the rest. A call that would not fit is
recorded as refused (`budget_exceeded`) and stops planning with `PlanningFailed`. Provider errors
become `PlanningFailed` with secrets masked; nothing here prints a traceback.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rnix.core import planner
from rnix.core.secrets import mask_text, secret_values
from rnix.env import Env
from rnix.errors import InvalidCompose, RnixError, UsageError

if TYPE_CHECKING:
    from rnix.cli.apply_log import PlannerLog

PLAN_MAX_TOKENS = 4_000  # per planner call
PLAN_TIMEOUT = 120.0  # seconds per planner call
DISPLAY = "<planner>"  # how problems of a proposal name it

Accept = Callable[[dict[str, Any]], tuple[dict[str, Any] | None, list[str]]]


class PlanningFailed(RnixError):
    """The planner gave no valid compose document within its repair turns or its budget."""

    code = "PLANNING_FAILED"


@dataclass
class Spend:
    """The planner's tokens: its budget for every call of one `apply`, what was used so far, and
    where each call is recorded."""

    budget: int
    used: int = 0
    calls: int = 0
    log: PlannerLog | None = None

    @property
    def left(self) -> int:
        return max(0, self.budget - self.used)

    def admit(self, model: str, need: int) -> None:
        """Refuse a call that needs `need` tokens when fewer are left: recorded, then PlanningFailed."""
        if need <= self.left:
            return
        message = (
            f"the planner's next call would exceed its budget: it needs about {need:,} tokens and "
            f"{self.left:,} of --budget {self.budget:,} are left "
            f"({self.calls} call{'s' if self.calls != 1 else ''} made)"
        )
        if self.log is not None:
            self.log.call(
                self.calls + 1, model, "budget_exceeded", used=self.used, remaining=self.left, error=message
            )
        raise PlanningFailed(
            message,
            "raise --budget, or write the compose file yourself (`rnix compose schema`)",
        )

    def charge(
        self,
        model: str,
        usage: tuple[int, int],
        *,
        latency_ms: float,
        max_tokens: int | None,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]],
        response: dict[str, Any],
    ) -> None:
        """Count an answered call (its prompt and completion tokens) and record it."""
        self.used += sum(usage)
        self.calls += 1
        if self.log is not None:
            self.log.call(
                self.calls,
                model,
                "ok",
                usage=usage,
                latency_ms=latency_ms,
                max_tokens=max_tokens,
                used=self.used,
                remaining=self.left,
                messages=messages,
                tools=tools,
                response=response,
            )

    def failed(self, model: str, error: str, *, latency_ms: float, max_tokens: int | None) -> None:
        """Count and record a call the provider failed (it charged nothing rnix was told of)."""
        self.calls += 1
        if self.log is not None:
            self.log.call(
                self.calls,
                model,
                "provider_error",
                latency_ms=latency_ms,
                max_tokens=max_tokens,
                used=self.used,
                remaining=self.left,
                error=error,
            )


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
    from rnix.llm import tokens

    tools = [planner.submit_tool(json_schema())]
    secrets = secret_values(env.environ)
    problems: list[str] = []
    for turn in range(planner.MAX_REPAIRS + 1):
        prompt = tokens.count_prompt(messages, model, tools)
        spend.admit(model, prompt + 1)  # the prompt and at least one token of answer
        max_tokens = min(PLAN_MAX_TOKENS, spend.left - prompt)
        started = time.monotonic()
        try:
            completion = _complete(env, model, api_base, messages, tools, max_tokens)
        except PlanningFailed as exc:
            latency = (time.monotonic() - started) * 1000
            spend.failed(model, exc.message, latency_ms=latency, max_tokens=max_tokens)
            raise
        usage = completion.usage
        spend.charge(
            model,
            (usage.prompt_tokens, usage.completion_tokens),
            latency_ms=(time.monotonic() - started) * 1000,
            max_tokens=max_tokens,
            messages=list(messages),
            tools=tools,
            response={
                "content": completion.content,
                "tool_calls": completion.tool_calls,
                "finish_reason": completion.finish_reason,
                "usage": usage.as_dict(),
            },
        )
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
    max_tokens: int,
) -> Any:
    from rnix.llm.backend import ProviderError

    backend = _backend(env, model)

    async def call() -> Any:
        try:
            return await backend.complete(
                model=model,
                messages=messages,
                max_tokens=max_tokens,
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
