"""What is the lean client's own (rnix.llm.openai_http): its connection pool and its lifecycle.

Its behaviour on the wire is tested with litellm's, by the same tests: tests/llm/test_backends.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from rnix.llm.backend import Completion, ProviderError
from rnix.llm.openai_http import OpenAIHTTPBackend
from tests.fakes.openai_server import OpenAIServer, Raw, Reply, Slow

MESSAGES = [{"role": "user", "content": "hi"}]


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[OpenAIServer]:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    with OpenAIServer() as running:
        yield running


async def call(backend: OpenAIHTTPBackend, base: str | None, model: str = "openai/m") -> Completion:
    return await backend.complete(model=model, messages=MESSAGES, max_tokens=5, api_base=base, timeout=10)


def test_one_session_for_all_calls_closed_by_aclose(server: OpenAIServer) -> None:
    async def main() -> None:
        backend = OpenAIHTTPBackend(max_connections=300)
        await asyncio.gather(*(call(backend, server.base_url) for _ in range(5)))
        session = backend._session
        assert session is not None and session.connector is not None
        assert session.connector.limit_per_host == 300 and session.connector.limit == 0  # not 100 in all
        await call(backend, server.base_url)
        assert backend._session is session
        await backend.aclose()
        assert session.closed and backend._session is None
        await backend.aclose()  # twice is harmless

    asyncio.run(main())
    assert len(server.requests) == 6


def test_a_new_event_loop_gets_a_new_session(server: OpenAIServer) -> None:
    backend = OpenAIHTTPBackend()

    async def once() -> object:
        await call(backend, server.base_url)
        return backend._session

    first = asyncio.run(once())
    second = asyncio.run(once())
    assert first is not second
    asyncio.run(backend.aclose())  # the session of a closed loop is let go, not awaited
    assert backend._session is None


def test_more_calls_at_once_than_aiohttps_default_pool(server: OpenAIServer) -> None:
    """150 calls of 1 s each at once: one round with rnix's pool, two with aiohttp's 100."""
    server.script([Slow(1.0, Reply("late"))] * 151)

    async def main() -> float:
        backend = OpenAIHTTPBackend()
        loop = asyncio.get_running_loop()
        await call(backend, server.base_url)  # warm up: import aiohttp, read the model map
        started = loop.time()
        await asyncio.gather(*(call(backend, server.base_url) for _ in range(150)))
        elapsed = loop.time() - started
        await backend.aclose()
        return elapsed

    assert asyncio.run(main()) < 1.9


def test_a_self_hosted_model_without_api_base_fails_without_a_request(server: OpenAIServer) -> None:
    async def main() -> None:
        backend = OpenAIHTTPBackend()
        with pytest.raises(ProviderError) as caught:
            await call(backend, None, model="hosted_vllm/qwen")
        assert not caught.value.retryable and "needs an api_base" in caught.value.message
        await backend.aclose()

    asyncio.run(main())
    assert server.requests == []


def test_proxies_come_from_the_environment_once_per_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", "localhost,127.0.0.1,.internal")
    backend = OpenAIHTTPBackend()
    assert backend._proxy_for("https://api.openai.com/v1/chat/completions") == "http://proxy.example:3128"
    assert backend._proxy_for("http://127.0.0.1:8000/v1/chat/completions") is None
    assert backend._proxy_for("https://gpu.internal/v1/chat/completions") is None
    monkeypatch.delenv("HTTPS_PROXY")
    assert backend._proxy_for("https://api.openai.com/v1/chat/completions") == "http://proxy.example:3128"


def test_an_error_object_answered_with_200_shows_its_message(server: OpenAIServer) -> None:
    server.script([Raw(200, '{"error": {"message": "model is loading"}}', "application/json")])

    async def main() -> None:
        backend = OpenAIHTTPBackend()
        with pytest.raises(ProviderError) as caught:
            await call(backend, server.base_url)
        await backend.aclose()
        assert caught.value.status == 502 and caught.value.retryable
        assert caught.value.message.endswith(": an error with status 200: model is loading")

    asyncio.run(main())
