"""Both clients, one behaviour: every test runs against the lean client (OpenAIHTTPBackend) and
against litellm (LiteLLMBackend), through a real loopback HTTP server (tests/fakes/openai_server).

Usage, tool calls, the request body, Retry-After (seconds and HTTP date), retryable statuses,
connection errors vs timeouts, 4xx not retried, max_tokens kept within the model's limit, a 200 whose
body is not JSON, and the wording of every error. litellm is imported once for the whole test process
(~5 s) by the first litellm test.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import socket
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest

from rnix.llm import tokens
from rnix.llm.backend import Backend, CallTimeout, Completion, ProviderError
from rnix.llm.failures import parse_retry_after
from rnix.llm.litellm_backend import LiteLLMBackend
from rnix.llm.openai_http import OpenAIHTTPBackend
from rnix.llm.retry import call_with_retries
from tests.fakes.openai_server import Behaviour, Drop, OpenAIServer, Raw, Reply, Slow, Status, ToolCall

# litellm's own pydantic models warn when first built (a third-party detail, not rnix's).
pytestmark = pytest.mark.filterwarnings("ignore:.*`ReadOnly` qualifier:UserWarning")

CANARY = "sk-canary-3f9a1c7e5b2d4f60"
MODEL = "openai/test-model"
MESSAGES = [{"role": "user", "content": "Your task: say hi"}]
CLIENTS = ("openai", "litellm")


@pytest.fixture(params=CLIENTS)
def client(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[OpenAIServer]:
    monkeypatch.setenv("OPENAI_API_KEY", CANARY)
    with OpenAIServer() as running:
        yield running


def backend_for(client: str) -> Backend:
    return OpenAIHTTPBackend() if client == "openai" else LiteLLMBackend()


def within(client: str, use: Callable[[Backend], Awaitable[Completion]]) -> Completion:
    """Run `use(backend)` in a fresh event loop, and close the backend's connections in it."""

    async def main() -> Completion:
        backend = backend_for(client)
        try:
            return await use(backend)
        finally:
            aclose = getattr(backend, "aclose", None)
            if aclose is not None:
                await aclose()

    return asyncio.run(main())


def complete(
    client: str, api_base: str | None, *, model: str = MODEL, timeout: float = 10.0, **kw: Any
) -> Completion:
    options: dict[str, Any] = {"max_tokens": 50, **kw}
    return within(
        client,
        lambda b: b.complete(model=model, messages=MESSAGES, api_base=api_base, timeout=timeout, **options),
    )


def failure(client: str, api_base: str | None, timeout: float = 10.0, **kw: Any) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        complete(client, api_base, timeout=timeout, **kw)
    error = caught.value
    assert CANARY not in error.message and CANARY not in str(error) and CANARY not in repr(error)
    assert "\n" not in error.message
    # no chained exception to leak from
    assert error.__cause__ is None and (error.__suppress_context__ or error.__context__ is None)
    return error


def unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_success_reports_usage_and_sends_the_key_only_in_the_header(
    client: str, server: OpenAIServer
) -> None:
    server.script([Reply("hello there", prompt_tokens=11, completion_tokens=3)])
    result = complete(client, server.base_url, temperature=0.5)
    assert result.content == "hello there"
    assert (result.usage.prompt_tokens, result.usage.completion_tokens, result.usage.total_tokens) == (
        11,
        3,
        14,
    )
    assert result.finish_reason == "stop" and not result.usage_counted and result.tool_calls is None
    [request] = server.requests
    assert request.path == "/v1/chat/completions"
    assert request.headers["authorization"] == f"Bearer {CANARY}"
    assert request.body == {"model": "test-model", "messages": MESSAGES, "max_tokens": 50, "temperature": 0.5}


def test_max_tokens_is_kept_within_a_known_models_output_limit(client: str, server: OpenAIServer) -> None:
    complete(client, server.base_url, model="openai/gpt-4o", max_tokens=1_000_000)
    assert server.requests[0].body["max_tokens"] == 16384  # gpt-4o's limit in litellm's local model map
    complete(client, server.base_url, max_tokens=1_000_000)
    assert server.requests[1].body["max_tokens"] == 1_000_000  # an unknown model: the budget's cap only


def test_openais_reasoning_models_get_max_completion_tokens(client: str, server: OpenAIServer) -> None:
    complete(client, server.base_url, model="openai/gpt-5-mini", max_tokens=40)
    body = server.requests[0].body
    assert body["max_completion_tokens"] == 40 and "max_tokens" not in body


def test_openrouter_is_asked_for_usage_with_its_own_key(
    client: str, server: OpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENROUTER_API_KEY", CANARY + "-or")
    complete(client, server.base_url, model="openrouter/openai/gpt-4o-mini")
    [request] = server.requests
    assert request.body["model"] == "openai/gpt-4o-mini" and request.body["usage"] == {"include": True}
    assert request.headers["authorization"] == f"Bearer {CANARY}-or"


def test_missing_usage_is_counted_by_rnix(client: str, server: OpenAIServer) -> None:
    server.script([Reply("counted answer", usage=False)])
    result = complete(client, server.base_url)
    assert result.usage_counted
    assert result.usage.prompt_tokens == tokens.count_messages(MESSAGES, MODEL)
    assert result.usage.completion_tokens == tokens.count_text("counted answer", MODEL)


def test_tool_calls_come_back_as_plain_dicts(client: str, server: OpenAIServer) -> None:
    server.script([ToolCall("search", {"q": "rnix"})])
    tools = [{"type": "function", "function": {"name": "search", "parameters": {"type": "object"}}}]
    result = complete(client, server.base_url, tools=tools)
    assert result.finish_reason == "tool_calls" and result.content == ""
    assert result.tool_calls == [
        {"function": {"arguments": '{"q": "rnix"}', "name": "search"}, "id": "call_1", "type": "function"}
    ]
    assert server.requests[0].body["tools"] == tools


def retried(client: str, server: OpenAIServer, **options: Any) -> tuple[Completion, list[ProviderError]]:
    errors: list[ProviderError] = []

    def on_attempt(attempt: int, outcome: Completion | ProviderError, latency: float) -> None:
        if isinstance(outcome, ProviderError):
            errors.append(outcome)

    def use(backend: Backend) -> Awaitable[Completion]:
        return call_with_retries(
            lambda: backend.complete(
                model=MODEL, messages=MESSAGES, max_tokens=5, api_base=server.base_url, timeout=10
            ),
            on_attempt=on_attempt,
            **options,
        )

    return within(client, use), errors


def test_429_retry_after_is_honoured_then_success(client: str, server: OpenAIServer) -> None:
    server.script([Status(429, retry_after=1, message=f"slow down {CANARY}"), Reply("finally")])
    result, [error] = retried(client, server)
    assert result.content == "finally"
    assert error.status == 429 and error.retry_after == 1.0 and error.retryable
    assert CANARY not in error.message and "slow down ***" in error.message
    hint = "(rate limited: lower max_concurrency or rpm for this model, or retry later)"
    assert error.message.endswith(f"{hint}; retry 2 of 4 in 1.0s")
    first, second = server.requests
    assert second.at - first.at >= 0.95


def test_retry_after_as_an_http_date(client: str, server: OpenAIServer) -> None:
    when = email.utils.formatdate(time.time() + 2, usegmt=True)
    body = json.dumps({"error": {"message": "later"}})
    server.script([Raw(503, body, "application/json", (("Retry-After", when),))])
    error = failure(client, server.base_url)
    assert error.status == 503 and error.retryable
    assert error.retry_after is not None and 0.0 < error.retry_after <= 2.0


def test_5xx_are_retryable_with_the_providers_message(client: str, server: OpenAIServer) -> None:
    server.script([Status(500, message=f"internal {CANARY}"), Status(503, retry_after=2.5), Status(502)])
    error = failure(client, server.base_url)
    assert error.status == 500 and error.retryable and error.retry_after is None
    assert error.message == f"HTTP 500 from {MODEL} at {server.base_url}: internal ***"
    unavailable = failure(client, server.base_url)
    assert unavailable.status == 503 and unavailable.retryable and unavailable.retry_after == 2.5
    assert failure(client, server.base_url).status == 502


@pytest.mark.parametrize(
    ("status", "hint"),
    [(400, ""), (401, " (check the provider's API key"), (404, " (check the model name"), (422, "")],
)
def test_4xx_are_not_retried(client: str, server: OpenAIServer, status: int, hint: str) -> None:
    server.script([Status(status, message="no such thing"), Reply("never")])
    with pytest.raises(ProviderError) as caught:
        retried(client, server)
    error = caught.value
    assert error.status == status and not error.retryable and len(server.requests) == 1
    assert error.message.startswith(f"HTTP {status} from {MODEL} at {server.base_url}: no such thing{hint}")
    assert error.message.endswith("; not retried")


def test_slow_response_beyond_the_timeout_is_a_call_timeout(client: str, server: OpenAIServer) -> None:
    server.script([Slow(3.0, Reply("too late"))])
    started = time.monotonic()
    error = failure(client, server.base_url, timeout=0.5)
    assert isinstance(error, CallTimeout) and error.retryable and error.status is None
    assert error.message == f"{MODEL} at {server.base_url}: no answer within 0.5s"
    assert time.monotonic() - started < 2.5


def test_connection_refused_is_retryable_and_names_the_endpoint(client: str, server: OpenAIServer) -> None:
    base = f"http://127.0.0.1:{unused_port()}/v1"
    error = failure(client, base)
    assert error.status is None and error.retryable and not isinstance(error, CallTimeout)
    assert error.message.startswith(f"cannot connect to {MODEL} at {base}: ")
    assert error.message.endswith(" (is the server running, and is api_base right?)")


def test_dropped_connection_is_retryable(client: str, server: OpenAIServer) -> None:
    server.script([Drop()])
    error = failure(client, server.base_url)
    assert error.retryable and error.status is None and not isinstance(error, CallTimeout)


@pytest.mark.parametrize(
    ("body", "content_type", "shown"),
    [
        ("<html><body>Welcome to nginx!</body></html>", "text/html", "Welcome to nginx!"),
        ('{"choices": [', "application/json", ""),
    ],
)
def test_a_200_whose_body_is_not_json_is_said_to_be_so(
    client: str, server: OpenAIServer, body: str, content_type: str, shown: str
) -> None:
    server.script([Raw(200, body, content_type), Reply("never")])
    with pytest.raises(ProviderError) as caught:
        retried(client, server)
    error = caught.value
    assert error.status == 200 and not error.retryable and len(server.requests) == 1
    assert error.message.startswith(f"HTTP 200 from {MODEL} at {server.base_url} but the body is not JSON")
    assert shown in error.message and "HTTP 500" not in error.message
    assert "(check api_base: an OpenAI-compatible server answers JSON under .../v1)" in error.message


def test_json_that_is_not_a_completion_is_a_malformed_response(client: str, server: OpenAIServer) -> None:
    server.script([Raw(200, '{"object": "list", "data": []}', "application/json")])
    error = failure(client, server.base_url)
    assert error.status == 502 and error.retryable
    assert error.message.startswith(f"malformed response from {MODEL} at {server.base_url}")


ALIKE: list[Behaviour] = [
    Status(429, retry_after=3, message="Rate limit reached for requests"),
    Status(500, message="The server had an error"),
    Status(401, message="Incorrect API key provided"),
    Status(400, message="Invalid 'messages': empty array"),
    Raw(200, "<!doctype html><title>Open WebUI</title>", "text/html"),
]


def test_both_clients_word_every_error_alike(server: OpenAIServer) -> None:
    worded: dict[str, list[tuple[str, int | None, bool, float | None]]] = {}
    for client in CLIENTS:
        server.script(ALIKE)
        worded[client] = []
        for _ in ALIKE:
            error = failure(client, server.base_url)
            worded[client].append((error.message, error.status, error.retryable, error.retry_after))
    assert worded["openai"] == worded["litellm"]


def test_both_clients_send_the_same_request(server: OpenAIServer) -> None:
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    for client in CLIENTS:
        complete(client, server.base_url, tools=tools, temperature=0.0)
    lean, litellm = server.requests
    assert lean.body == litellm.body
    assert lean.headers["authorization"] == litellm.headers["authorization"]


def test_parse_retry_after() -> None:
    assert parse_retry_after({"Retry-After": "3"}) == 3.0
    assert parse_retry_after({"retry-after-ms": "1500"}) == 1.5
    assert parse_retry_after({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0.0
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after({}) is None and parse_retry_after(None) is None


def test_redirects_are_followed_alike(client: str, server: OpenAIServer) -> None:
    """A 308 (an http -> https move, say) is followed with the same POST by both clients."""
    moved = (("Location", f"{server.base_url}/chat/completions"),)
    server.script([Raw(308, "", "text/plain", moved), Reply("after the move")])
    assert complete(client, server.base_url).content == "after the move"
    assert [r.path for r in server.requests] == ["/v1/chat/completions"] * 2
    assert server.requests[1].body == server.requests[0].body
