"""LiteLLMBackend against a real loopback HTTP server: usage, errors, Retry-After, timeouts, masking.

litellm is imported once for the whole test process (it costs ~5 s) by the first test that calls it.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from rnix.llm import tokens
from rnix.llm.backend import CallTimeout, Completion, ProviderError
from rnix.llm.litellm_backend import LiteLLMBackend, parse_retry_after
from rnix.llm.retry import call_with_retries
from tests.fakes.openai_server import Drop, OpenAIServer, Reply, Slow, Status, ToolCall

CANARY = "sk-canary-3f9a1c7e5b2d4f60"
MODEL = "openai/test-model"
MESSAGES = [{"role": "user", "content": "Your task: say hi"}]


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[OpenAIServer]:
    monkeypatch.setenv("OPENAI_API_KEY", CANARY)
    with OpenAIServer() as running:
        yield running


def complete(api_base: str | None, timeout: float = 10.0, **kw: Any) -> Completion:
    call = LiteLLMBackend().complete(
        model=MODEL, messages=MESSAGES, max_tokens=50, api_base=api_base, timeout=timeout, **kw
    )
    return asyncio.run(call)


def failure(api_base: str | None, timeout: float = 10.0) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        complete(api_base, timeout)
    error = caught.value
    assert CANARY not in error.message and CANARY not in str(error) and CANARY not in repr(error)
    assert "\n" not in error.message
    assert error.__cause__ is None and error.__suppress_context__  # no chained exception to leak from
    return error


def unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_success_reports_usage_and_sends_the_key_from_the_environment(server: OpenAIServer) -> None:
    server.script([Reply("hello there", prompt_tokens=11, completion_tokens=3)])
    result = complete(server.base_url, temperature=0.5)
    assert result.content == "hello there"
    assert (result.usage.prompt_tokens, result.usage.completion_tokens, result.usage.total_tokens) == (
        11,
        3,
        14,
    )
    assert result.finish_reason == "stop" and not result.usage_counted
    [request] = server.requests
    assert request.path == "/v1/chat/completions"
    assert request.headers["authorization"] == f"Bearer {CANARY}"
    assert request.body["model"] == "test-model"
    assert request.body["max_tokens"] == 50 and request.body["temperature"] == 0.5
    assert request.body["messages"] == MESSAGES


def test_max_tokens_is_kept_within_a_known_models_output_limit(server: OpenAIServer) -> None:
    call = LiteLLMBackend().complete(
        model="openai/gpt-4o", messages=MESSAGES, max_tokens=1_000_000, api_base=server.base_url, timeout=10
    )
    asyncio.run(call)
    assert server.requests[0].body["max_tokens"] == 16384  # gpt-4o's limit in litellm's local model map


def test_missing_usage_is_counted_by_rnix(server: OpenAIServer) -> None:
    server.script([Reply("counted answer", usage=False)])
    result = complete(server.base_url)
    assert result.usage_counted
    assert result.usage.prompt_tokens == tokens.count_messages(MESSAGES, MODEL)
    assert result.usage.completion_tokens == tokens.count_text("counted answer", MODEL)


def test_tool_calls_come_back_as_plain_dicts(server: OpenAIServer) -> None:
    server.script([ToolCall("search", {"q": "rnix"})])
    tools = [{"type": "function", "function": {"name": "search", "parameters": {"type": "object"}}}]
    result = complete(server.base_url, tools=tools)
    assert result.finish_reason == "tool_calls"
    assert result.tool_calls is not None
    assert result.tool_calls[0]["function"] == {"name": "search", "arguments": '{"q": "rnix"}'}
    assert server.requests[0].body["tools"] == tools


def test_429_retry_after_is_honoured_then_success(server: OpenAIServer) -> None:
    server.script([Status(429, retry_after=1, message=f"slow down {CANARY}"), Reply("finally")])
    errors: list[ProviderError] = []

    def on_attempt(attempt: int, outcome: Completion | ProviderError, latency: float) -> None:
        if isinstance(outcome, ProviderError):
            errors.append(outcome)

    async def call() -> Completion:
        backend = LiteLLMBackend()
        return await call_with_retries(
            lambda: backend.complete(
                model=MODEL, messages=MESSAGES, max_tokens=5, api_base=server.base_url, timeout=10
            ),
            on_attempt=on_attempt,
        )

    assert asyncio.run(call()).content == "finally"
    [error] = errors
    assert error.status == 429 and error.retry_after == 1.0 and error.retryable
    assert CANARY not in error.message and "***" in error.message
    first, second = server.requests
    assert second.at - first.at >= 0.95


def test_500s_are_retryable_provider_errors(server: OpenAIServer) -> None:
    server.script([Status(500, message=f"internal {CANARY}"), Status(503, retry_after=2.5)])
    error = failure(server.base_url)
    assert error.status == 500 and error.retryable and error.retry_after is None
    assert "HTTP 500" in error.message and "***" in error.message
    unavailable = failure(server.base_url)
    assert unavailable.status == 503 and unavailable.retryable and unavailable.retry_after == 2.5


def test_400_is_not_retryable(server: OpenAIServer) -> None:
    server.script([Status(400, message="bad request")])
    error = failure(server.base_url)
    assert error.status == 400 and not error.retryable


def test_slow_response_beyond_the_timeout_is_a_call_timeout(server: OpenAIServer) -> None:
    server.script([Slow(3.0, Reply("too late"))])
    error = failure(server.base_url, timeout=0.5)
    assert isinstance(error, CallTimeout) and error.retryable


def test_connection_refused_is_retryable_with_a_clear_message(server: OpenAIServer) -> None:
    base = f"http://127.0.0.1:{unused_port()}/v1"
    error = failure(base)
    assert error.status is None and error.retryable
    assert error.message.startswith(f"cannot connect to {MODEL} at {base}")


def test_dropped_connection_is_retryable(server: OpenAIServer) -> None:
    server.script([Drop()])
    error = failure(server.base_url)
    assert error.retryable


def test_parse_retry_after() -> None:
    assert parse_retry_after({"Retry-After": "3"}) == 3.0
    assert parse_retry_after({"retry-after-ms": "1500"}) == 1.5
    assert parse_retry_after({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0.0
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after({}) is None and parse_retry_after(None) is None


def test_provider_messages_lose_litellms_boilerplate() -> None:
    from rnix.llm.litellm_backend import plain

    raw = (
        "litellm.BadRequestError: LLM Provider NOT provided. You passed model=haiku\n Pass model as E.g. "
        "For 'Huggingface' inference endpoints pass in `completion(model='huggingface/starcoder',..)` "
        "Learn more: https://docs.litellm.ai/docs/providers"
    )
    assert plain(raw) == "LLM Provider NOT provided. You passed model=haiku"
    auth = "litellm.AuthenticationError: AuthenticationError: OpenAIException - Incorrect API key provided"
    assert plain(auth) == "Incorrect API key provided"
