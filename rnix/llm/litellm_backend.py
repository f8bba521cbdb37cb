"""The Backend for real providers, through litellm (imported lazily: it costs seconds and ~165 MB).

One `complete` call is one HTTP attempt: litellm's and the OpenAI SDK's own retries are switched off
(`num_retries=0, max_retries=0`) because rnix retries itself and charges every attempt. API keys are
never passed here: litellm reads them from the supervisor's environment (`OPENAI_API_KEY`, ...).

Errors become ProviderError with one masked line. What litellm 1.106.2 does, measured against a
loopback server: an HTTP error is an `APIStatusError` subclass with `status_code`; its `response`
is rebuilt *without* the provider's headers, which survive only as `litellm_response_headers`
(that is where Retry-After is read). Connection refused or reset arrives as `InternalServerError`
with status 500 and an `openai.APIConnectionError` in its cause chain, so the chain decides (a
connection failure has no HTTP status). A timeout is `litellm.Timeout` (status 408). A 200 that
litellm cannot use also arrives as a status 500, but without the `httpx.HTTPStatusError` a real
HTTP error has in its chain: a body that is not JSON ("Empty or invalid response from LLM
endpoint", or a JSONDecodeError) and JSON that is not a completion are reported as what they are. A
missing `usage` object comes back as zeros, which is treated as "not reported" and counted here.
The wording of every error is `rnix.llm.failures`', shared with the lean client (openai_http).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import logging
import os
import re
import threading
from typing import Any

from rnix.core.secrets import mask_text, secret_values
from rnix.llm import failures, tokens
from rnix.llm.backend import Completion, ProviderError, Usage

_OFFLINE_DEFAULTS = {
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # else litellm fetches a price map over the network
    "HF_HUB_OFFLINE": "1",  # else some models stall ~23 s retrying a tokenizer download
}
_QUIET_LOGGERS = ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy", "litellm", "httpx", "openai")

_litellm: Any = None
_import_lock = threading.Lock()
# What litellm 1.106.2 imports lazily during its first call to an OpenAI-compatible endpoint (~0.5 s,
# 470 modules, measured): imported with litellm, off the event loop, so the first call of a run does
# not stall every other call and agent behind it.
_FIRST_CALL_MODULES = (
    "jiter",
    "openai.resources",
    "litellm._service_logger",
    "litellm.llms.openai.openai",
    "litellm.llms.openai_like.chat.handler",
    "litellm.proxy._types",
)


def _import_litellm() -> Any:
    global _litellm
    with _import_lock:
        if _litellm is not None:
            return _litellm
        for name, value in _OFFLINE_DEFAULTS.items():
            os.environ.setdefault(name, value)
        litellm: Any = importlib.import_module("litellm")  # untyped in practice: treat it as Any

        litellm.suppress_debug_info = True  # no "Give Feedback / Get Help" banners on stderr
        litellm.telemetry = False  # no such switch in 1.106.2 (nothing phones home); older releases had one
        litellm.set_verbose = False
        litellm.callbacks = []
        litellm.success_callback = []
        litellm.failure_callback = []
        litellm.input_callback = []
        litellm.service_callback = []
        for name in _QUIET_LOGGERS:
            logging.getLogger(name).setLevel(logging.ERROR)  # rnix reports failures itself, once
        for name in _FIRST_CALL_MODULES:
            with contextlib.suppress(ImportError):
                importlib.import_module(name)
        _litellm = litellm
        return litellm


_loading: tuple[asyncio.AbstractEventLoop, asyncio.Future[Any]] | None = None


async def load_litellm() -> Any:
    """Import litellm in a worker thread, once, so the gateway's event loop keeps serving meanwhile.

    Concurrent first calls share one import future: parking a worker thread per caller on the
    import lock would starve the small default thread pool that token counting also uses (seen with
    500 agents calling at once).
    """
    global _loading
    if _litellm is not None:
        return _litellm
    loop = asyncio.get_running_loop()
    if _loading is None or _loading[0] is not loop or (_loading[1].done() and _loading[1].exception()):
        _loading = (loop, asyncio.ensure_future(asyncio.to_thread(_import_litellm)))
    return await asyncio.shield(_loading[1])


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def _is_connection_error(chain: list[BaseException]) -> bool:
    import httpx
    import openai

    for item in chain:
        if isinstance(item, (openai.APITimeoutError, httpx.TimeoutException)):
            return False
        if isinstance(item, (openai.APIConnectionError, httpx.TransportError, ConnectionError)):
            return True
    return False


# litellm's wrapping around a provider's message: exception class prefixes, links, usage advice.
_BOILERPLATE = (
    re.compile(r"\blitellm\.[A-Za-z]+(?:Error|Exception)?:\s*"),
    re.compile(r"\b[A-Za-z]+Exception\s+-\s+"),
    re.compile(r"^\s*[A-Z][A-Za-z]+Error:\s*"),
    re.compile(r"\s*Learn more:\s*\S+"),
    re.compile(r"\s*Pass model as E\.g\..*?(?=$|\s{2}|\n)", re.S),
    re.compile(r"\s*(?:Received Model Group|Available Model Group Fallbacks|LiteLLM Retried)[^\n]*"),
)


def plain(text: str) -> str:
    """A provider's message without litellm's boilerplate, on one line."""
    for pattern in _BOILERPLATE:
        text = pattern.sub(" ", text)
    return " ".join(text.split()).strip(" :-")


_NOT_JSON = "Empty or invalid response from LLM endpoint"  # litellm's words for a 200 it cannot parse


def _answered_with_an_error(chain: list[BaseException]) -> bool:
    """Whether the provider answered with an HTTP error status (the OpenAI SDK and litellm's own
    HTTP handler raise from an `httpx.HTTPStatusError`), as opposed to a status 500 litellm made up
    because it could not use a 200 answer."""
    import httpx

    return any(isinstance(item, httpx.HTTPStatusError) for item in chain)


def _unparsable(chain: list[BaseException]) -> str | None:
    """The body (or the parser's complaint) when the 200 answer was not JSON at all."""
    for item in chain:
        text = str(item)
        if isinstance(item, json.JSONDecodeError):
            return text
        if text.startswith(_NOT_JSON):
            received = re.search(r"Received: '(.*)'", text, re.S)
            return received.group(1) if received else text
    return None


def to_provider_error(
    exc: BaseException, model: str, api_base: str | None, timeout: float | None = None
) -> ProviderError:
    """Map a litellm exception to a masked one-line ProviderError (worded by rnix.llm.failures)."""
    chain = _chain(exc)
    lm = _litellm
    if (lm is not None and isinstance(exc, lm.Timeout)) or isinstance(exc, asyncio.TimeoutError):
        return failures.no_answer(model, api_base, timeout)
    if _is_connection_error(chain):
        root = chain[-1]
        return failures.unreachable(str(root) or type(root).__name__, model, api_base)
    status = getattr(exc, "status_code", None)
    status = status if isinstance(status, int) else None
    text = plain(str(exc)) or type(exc).__name__
    if status == 500 and not _answered_with_an_error(chain):  # a 200 litellm could not use
        body = _unparsable(chain)
        if body is not None:
            return failures.not_json(body, model, api_base)
        return failures.malformed(re.sub(r"^LiteLLM:\s*", "", text), model, api_base)
    if status is not None:
        headers = getattr(exc, "litellm_response_headers", None) or getattr(exc, "headers", None)
        return failures.http_error(status, text, model, api_base, headers)
    # Unknown exception types (a bug, an unsupported parameter) are not worth repeating.
    message = f"{type(exc).__name__} from {failures.where(model, api_base)}: {text}"
    return ProviderError(mask_text(message, secret_values(os.environ)), retryable=False)


_output_limits: dict[str, int | None] = {}


def output_limit(model: str) -> int | None:
    """The model's own cap on answer tokens when litellm's (local) model map knows it.

    The gateway caps max_tokens by the budget only; a budget of a million tokens would otherwise ask
    gpt-4o for a million-token answer, which the provider refuses with a 400.
    """
    if model not in _output_limits:
        try:
            info = _litellm.get_model_info(model)
            limit = info.get("max_output_tokens") or info.get("max_tokens")
            _output_limits[model] = int(limit) if limit else None
        except Exception:  # unmapped (custom or local) models: no known limit
            _output_limits[model] = None
    return _output_limits[model]


def _tool_calls(message: Any) -> list[dict[str, Any]] | None:
    calls = getattr(message, "tool_calls", None)
    if not calls:
        return None
    return [c.model_dump() if hasattr(c, "model_dump") else dict(c) for c in calls]


def to_completion(
    response: Any, model: str, messages: list[dict[str, Any]], tools: list[Any] | None
) -> Completion:
    choice = response.choices[0]
    message = choice.message
    content = message.content or ""
    tool_calls = _tool_calls(message)
    usage = getattr(response, "usage", None)
    prompt = int(getattr(usage, "prompt_tokens", 0) or 0)
    completion = int(getattr(usage, "completion_tokens", 0) or 0)
    if prompt or completion:
        total = int(getattr(usage, "total_tokens", 0) or 0) or prompt + completion
        return Completion(content, Usage(prompt, completion, total), choice.finish_reason, tool_calls)
    # litellm reports a missing usage object as zeros; no real prompt costs 0 tokens.
    counted = Usage.of(
        tokens.count_prompt(messages, model, tools), tokens.count_answer(content, tool_calls, model)
    )
    return Completion(content, counted, choice.finish_reason, tool_calls, usage_counted=True)


class LiteLLMBackend:
    async def complete(
        self,
        *,
        model: str,
        messages: list[dict[str, Any]],
        max_tokens: int,
        api_base: str | None,
        timeout: float,
        tools: list[Any] | None = None,
        temperature: float | None = None,
    ) -> Completion:
        litellm = await load_litellm()
        limit = output_limit(model)
        if limit is not None:
            max_tokens = min(max_tokens, limit)
        options: dict[str, Any] = {}
        if tools:
            options["tools"] = tools
        if temperature is not None:
            options["temperature"] = temperature
        try:
            response = await litellm.acompletion(
                model=model,
                messages=messages,
                max_tokens=max_tokens,
                api_base=api_base,
                timeout=timeout,
                num_retries=0,
                max_retries=0,
                **options,
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            raise to_provider_error(exc, model, api_base, timeout) from None
        try:
            return to_completion(response, model, messages, tools)
        except (AttributeError, IndexError, TypeError, ValueError) as exc:
            raise failures.malformed(str(exc), model, api_base) from None
