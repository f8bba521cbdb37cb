"""The lean Backend: OpenAI's chat-completions protocol over aiohttp, for the providers that speak it.

Which models come here, and where their calls go, is rnix.llm.routing. One `complete` is one HTTP
POST to `<base>/chat/completions`; retries are rnix.llm.retry's. It behaves as LiteLLMBackend does
(the same tests run against both, tests/llm/test_backends.py): the same request body (`max_tokens`,
or `max_completion_tokens` for OpenAI's reasoning models, as litellm sends it; `usage: {include:
true}` for OpenRouter), the same Completion, the same errors in the same words (rnix.llm.failures),
`max_tokens` kept within the model's output limit from litellm's bundled model map (read as a file,
rnix.llm.limits), and usage counted by rnix when the provider reports none.

The API key is read from the environment at each call and goes only into the Authorization header.
One aiohttp.ClientSession per backend and event loop, created at the first call (inside the running
loop, as aiohttp requires) and closed by `aclose()`, which the gateway calls when it closes. Its
connection pool holds up to `max_connections` connections per host (the gateway's per-provider
concurrency), not aiohttp's default of 100 in all, so hundreds of agents calling at once do not queue
inside the client while their timeouts run. HTTP(S)_PROXY and NO_PROXY are honoured, looked up once
per URL. aiohttp itself is imported at the first call, in a worker thread.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import re
import threading
import urllib.parse
import urllib.request
from typing import TYPE_CHECKING, Any

from rnix.llm import failures, limits, routing, tokens
from rnix.llm.backend import Completion, ProviderError, Usage

if TYPE_CHECKING:
    import aiohttp

_REASONING = re.compile(r"^o\d|gpt-5(?!-chat)")  # OpenAI models that take max_completion_tokens


def preload() -> None:
    """Begin `import aiohttp` in a daemon thread (commands that will call a model start it as soon
    as they know; `load_aiohttp` then finds it imported or waits on the import lock)."""
    threading.Thread(target=importlib.import_module, args=("aiohttp",), daemon=True).start()


async def load_aiohttp() -> Any:
    """aiohttp (~0.3 s to import), imported off the event loop."""
    return await asyncio.to_thread(importlib.import_module, "aiohttp")


def request_body(
    target: routing.Endpoint,
    messages: list[dict[str, Any]],
    max_tokens: int,
    tools: list[Any] | None,
    temperature: float | None,
) -> dict[str, Any]:
    body: dict[str, Any] = {"model": target.model, "messages": messages}
    reasoning = target.provider == "openai" and _REASONING.search(target.model.rsplit("/", 1)[-1])
    body["max_completion_tokens" if reasoning else "max_tokens"] = max_tokens
    if tools:
        body["tools"] = tools
    if temperature is not None:
        body["temperature"] = temperature
    if target.provider == "openrouter":
        body["usage"] = {"include": True}  # as litellm asks: OpenRouter then reports usage and cost
    return body


def _error_text(body: bytes) -> str:
    """The provider's own message from an error body (`{"error": {"message": ...}}`), else the body."""
    text = body.decode("utf-8", "replace")
    try:
        data = json.loads(text)
    except ValueError:
        return " ".join(text.split())
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict) and error.get("message"):
        return str(error["message"])
    if isinstance(error, str):
        return error
    if isinstance(data, dict) and isinstance(data.get("message"), str):
        return str(data["message"])
    return " ".join(text.split())


def _tool_calls(message: dict[str, Any]) -> list[dict[str, Any]] | None:
    calls = message.get("tool_calls")
    if not calls:
        return None
    out = []
    for call in calls:
        function = call.get("function") or {}
        out.append(
            {
                "function": {"arguments": function.get("arguments"), "name": function.get("name")},
                "id": call.get("id"),
                "type": call.get("type") or "function",
            }
        )
    return out


def to_completion(
    data: Any, model: str, messages: list[dict[str, Any]], tools: list[Any] | None
) -> Completion:
    """A Completion from a decoded response; KeyError/TypeError/IndexError when it is not one."""
    if isinstance(data, dict) and "choices" not in data and data.get("error"):
        raise ValueError(f"an error with status 200: {_error_text(json.dumps(data).encode())}")
    choice = data["choices"][0]
    message = choice["message"]
    content = message.get("content") or ""
    if not isinstance(content, str):
        raise TypeError(f"content is a {type(content).__name__}, not text")
    calls = _tool_calls(message)
    finish = choice.get("finish_reason")
    usage = data.get("usage") or {}
    prompt = int(usage.get("prompt_tokens") or 0)
    completion = int(usage.get("completion_tokens") or 0)
    if prompt or completion:
        total = int(usage.get("total_tokens") or 0) or prompt + completion
        return Completion(content, Usage(prompt, completion, total), finish, calls)
    counted = Usage.of(
        tokens.count_prompt(messages, model, tools), tokens.count_answer(content, calls, model)
    )
    return Completion(content, counted, finish, calls, usage_counted=True)


class OpenAIHTTPBackend:
    def __init__(self, *, max_connections: int = 1024) -> None:
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._aiohttp: Any = None
        self._proxies: dict[str, str | None] = {}

    async def _client(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._session is not None and not self._session.closed and self._loop is loop:
            return self._session
        if self._aiohttp is None:
            self._aiohttp = await load_aiohttp()
        if self._session is not None and not self._session.closed and self._loop is loop:
            return self._session  # another call created it while this one waited for the import
        http = self._aiohttp
        # Per host, like the gateway's per-provider semaphore; no total cap across providers.
        connector = http.TCPConnector(limit=0, limit_per_host=self._max_connections, ttl_dns_cache=300)
        # Not trust_env=True: it looks the proxy up again at every request (~0.5 ms of CPU, half of
        # a call's); _proxy_for looks it up once per URL.
        session: aiohttp.ClientSession = http.ClientSession(connector=connector)
        self._session, self._loop = session, loop
        return session

    async def warm(self) -> None:
        """aiohttp imported, the session open and the output-limit table read: what the first call
        would otherwise wait for (the gateway calls it before any agent is spawned)."""
        await asyncio.gather(self._client(), limits.load())

    def _proxy_for(self, url: str) -> str | None:
        """The proxy for `url` from HTTP(S)_PROXY / NO_PROXY, as httpx (under litellm) uses them."""
        if url not in self._proxies:
            parts = urllib.parse.urlsplit(url)
            proxies = urllib.request.getproxies_environment()
            bypass = bool(proxies) and urllib.request.proxy_bypass(parts.hostname or "")
            self._proxies[url] = None if bypass else proxies.get(parts.scheme)
        return self._proxies[url]

    async def aclose(self) -> None:
        session, self._session = self._session, None
        if session is not None and not session.closed and self._loop is asyncio.get_running_loop():
            await session.close()

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
        try:
            target = routing.endpoint(model, api_base, os.environ)
        except routing.NoEndpoint as exc:
            raise ProviderError(str(exc), retryable=False) from None
        limit = await limits.output_limit(model)
        if limit is not None:
            max_tokens = min(max_tokens, limit)
        payload = json.dumps(request_body(target, messages, max_tokens, tools, temperature)).encode()
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if target.key:
            headers["Authorization"] = f"Bearer {target.key}"
        session = await self._client()
        http = self._aiohttp
        try:
            async with session.post(
                target.url,
                data=payload,
                headers=headers,
                timeout=http.ClientTimeout(total=timeout),
                proxy=self._proxy_for(target.url),
            ) as response:
                status = response.status
                answer_headers = dict(response.headers)
                body = await response.read()
        except asyncio.CancelledError:
            raise
        except asyncio.TimeoutError:  # aiohttp's ServerTimeoutError is one too
            raise failures.no_answer(model, api_base, timeout) from None
        except http.ClientConnectorError as exc:
            raise failures.unreachable(str(exc.os_error) or str(exc), model, api_base) from None
        except (http.ClientError, OSError) as exc:
            raise failures.unreachable(str(exc) or type(exc).__name__, model, api_base) from None
        if status >= 300:
            raise failures.http_error(status, _error_text(body), model, api_base, answer_headers) from None
        text = body.decode("utf-8", "replace")
        try:
            data = json.loads(text)
        except ValueError:
            raise failures.not_json(text, model, api_base) from None
        try:
            return to_completion(data, model, messages, tools)
        except (AttributeError, IndexError, KeyError, TypeError, ValueError) as exc:
            detail = f"{type(exc).__name__}: {exc}" if isinstance(exc, KeyError) else str(exc)
            raise failures.malformed(detail, model, api_base) from None
