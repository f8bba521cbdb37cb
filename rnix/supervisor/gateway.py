"""The gateway: the one place where agents' LLM calls meet providers, keys, budgets and retries.

It serves `rnix.agent.protocol` on a Unix socket (mode 0600). A connection must first say `hello`
with a live nonce; the nonce names the agent and so its Account. Per `complete` request:

1. Count the prompt (messages + tool schemas) with the account model's tokenizer. When the prompt
   plus one answer token does not fit in what is left, refuse with `budget_exceeded` without calling
   the backend. "Left" excludes tokens reserved by the agent's other calls still in flight, so
   concurrent calls cannot jointly overspend.
2. Cap `max_tokens` to what is left after the prompt, and reserve prompt + max_tokens.
3. Call the backend through `call_with_retries`. Every attempt is charged (its reported usage; a
   failed attempt without usage costs 0) and reported to `on_call`. A provider that reports more
   than was left is charged in full: `used` may exceed `budget`, and every later call is refused.
4. Reply with the completion, or with `provider_error` / `timeout` after the last attempt.

The journal (rnix.core.journal): each `complete` is keyed by `request_hash` of what the agent asked
(the model, messages, tools, temperature and its own `max_tokens`, not the cap), and every reply
carries it. An account registered with a `Replay` answers a request found there from the journal:
the same reply shape plus `replayed: true`, no backend call, nothing charged or reserved, never
refused for the budget, reported to `on_call` with status "replayed" and the usage it saved. Every
successful live call, every replayed one, and every tool result the built-in agent reports
(`tool_record`; `tool_replay` asks for one) goes to `on_journal(account, attempt, entry)`, numbered by
`seq` within the account's attempt. A live answer is sent only after `on_journal` returned, so an
answer an agent has seen is durable; a failing `on_journal` is logged and the answer still goes out.
Failed calls and `complete_internal` (the SLA judge) are neither journalled nor replayed.

The backend call runs in its own task: an agent that disconnects mid-call does not stop it, so its
usage is still charged and recorded. Everything returned or recorded is masked with the secret
values of the supervisor's environment. Concurrency is limited per provider (the api_base, else the
model's provider prefix), and per model by its alias's max_concurrency and rpm (ModelGate); a call
that waits for those, or for a retry after HTTP 429, is reported to `on_wait`.

on_call data: {attempt (the agent's request number), try (1..max_attempts; 0 for a refusal or a
replay), model, status ("ok" | "retry" | "provider_error" | "timeout" | "budget_exceeded" |
"cancelled" | "replayed"),
prompt_tokens, completion_tokens, total_tokens, latency_ms, max_tokens, used, remaining,
usage_counted?, error?}.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import secrets
import stat
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from rnix.agent import protocol
from rnix.core import journal
from rnix.core.journal import JournalEntry, Replay
from rnix.core.secrets import mask, secret_values
from rnix.llm import routing, tokens
from rnix.llm.backend import CALLER, Backend, CallTimeout, Completion, ProviderError, Usage, one_line
from rnix.llm.retry import call_with_retries, will_retry
from rnix.supervisor.ratelimit import ModelGate, OnWait, Waits

log = logging.getLogger(__name__)

OnCall = Callable[[str, dict[str, Any]], None]
OnJournal = Callable[[str, int, JournalEntry], Awaitable[None]]  # (account, attempt, entry)
MAX_TOOL_KEY = 256  # characters; the built-in agent's keys are 64


def _timeout_slack(timeout: float) -> float:
    """How long past its own timeout a backend may take to report it before the gateway cuts it off."""
    return min(1.0, timeout / 10)


@dataclass
class Account:
    agent: str
    model: str
    api_base: str | None
    budget: int
    used: int = 0
    calls: int = 0
    reserved: int = 0  # prompt + max_tokens of calls in flight
    attempt: int = 1  # the attempt its journal entries belong to
    replay: Replay | None = None  # the journal of an earlier attempt, answered from before the provider
    journalled: int = 0  # the seq of its attempt's last journal entry
    sent: list[dict[str, Any]] = field(default_factory=list)  # the last request's messages (masked)
    # Why its last call failed when the failure was the provider's or the setup's, not the agent's
    # (unreachable, no or bad credentials, rate limited, 5xx, no answer): such a failure must never
    # lower its definition's reputation. None after a call that succeeded.
    infra_error: str | None = None

    @property
    def remaining(self) -> int:
        return max(0, self.budget - self.used)

    @property
    def available(self) -> int:
        """What a new call may spend: the remaining budget less what calls in flight may still use."""
        return max(0, self.budget - self.used - self.reserved)


@dataclass(frozen=True)
class _Request:
    messages: list[dict[str, Any]]
    max_tokens: int | None
    temperature: float | None
    tools: list[Any] | None


def _parse_complete(message: dict[str, Any]) -> _Request | str:
    """The request's fields, or what is wrong with them."""
    messages = message.get("messages")
    if not isinstance(messages, list) or not messages:
        return "messages must be a non-empty list"
    if not all(isinstance(m, dict) and isinstance(m.get("role"), str) for m in messages):
        return "every message must be an object with a string role"
    max_tokens = message.get("max_tokens")
    if max_tokens is not None and (isinstance(max_tokens, bool) or not isinstance(max_tokens, int)):
        return "max_tokens must be an integer"
    if isinstance(max_tokens, int) and max_tokens < 1:
        return "max_tokens must be at least 1"
    temperature = message.get("temperature")
    if temperature is not None and (
        isinstance(temperature, bool)
        or not isinstance(temperature, (int, float))
        or not math.isfinite(temperature)
    ):
        return "temperature must be a number"
    tools = message.get("tools")
    if tools is not None and not isinstance(tools, list):
        return "tools must be a list"
    return _Request(messages, max_tokens, None if temperature is None else float(temperature), tools or None)


def _error(request_id: Any, code: str, message: str, account: Account | None = None) -> dict[str, Any]:
    reply: dict[str, Any] = {
        "id": request_id,
        "ok": False,
        "error": {"code": code, "message": one_line(message)},
    }
    if account is not None:
        reply.update(used=account.used, remaining=account.remaining)
    return reply


class Gateway:
    def __init__(
        self,
        socket_path: str,
        *,
        on_call: OnCall,
        backends: Mapping[str, Backend] | None = None,
        concurrency_per_provider: int = 1024,
        call_timeout: float = 120.0,
        max_attempts: int = 4,
        max_retry_after: float = 30.0,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        on_journal: OnJournal | None = None,
        on_wait: OnWait | None = None,
    ) -> None:
        """`backends` maps a model ("mock?fail=1"), a model name ("mock") or "*" to a Backend; models
        not found there use the built-in one rnix.llm.routing picks: MockBackend for `mock`, the lean
        OpenAIHTTPBackend for OpenAI-protocol providers, LiteLLMBackend for the rest. The built-in
        ones are closed with the gateway.
        `sleep` paces the waits between retries (tests inject a fake one). `on_journal` makes each
        journal entry durable (see the module docstring); without it nothing is journalled.
        `on_wait` hears when an agent's call waits for its model's limits or for a retry after HTTP
        429, and when it stops (rnix.supervisor.ratelimit.Waits): `ps` shows it rate_limited."""
        self.socket_path = socket_path
        self._on_call = on_call
        self._on_journal = on_journal
        self._backends = dict(backends or {})
        self._builtin: dict[str, Backend] = {}
        self._concurrency = concurrency_per_provider
        self._call_timeout = call_timeout
        self._max_attempts = max_attempts
        self._max_retry_after = max_retry_after
        self._sleep = sleep
        self._accounts: dict[str, Account] = {}
        self._nonces: dict[str, str] = {}  # live nonce -> agent
        self._nonce_of: dict[str, str] = {}  # agent -> its live nonce
        self._semaphores: dict[str, asyncio.Semaphore] = {}
        self._model_limits: dict[str, tuple[int | None, int | None]] = {}
        self._gates: dict[str, ModelGate] = {}
        self._waits = Waits(on_wait)
        self._server: asyncio.AbstractServer | None = None
        self._tcp_server: asyncio.Server | None = None  # listen_tcp: agents of other nodes
        self._handlers: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._calls: set[asyncio.Task[dict[str, Any]]] = set()
        # The secret values to mask, read from the environment once (at start again): computing
        # them per call cost a 500-agent run 0.8 s of the loop's time.
        self._secrets = secret_values(os.environ)

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        self._secrets = secret_values(os.environ)
        self._server = await asyncio.start_unix_server(
            self._serve, path=self.socket_path, limit=protocol.MAX_LINE
        )
        os.chmod(self.socket_path, 0o600)

    async def listen_tcp(self, host: str, port: int = 0) -> str:
        """Also serve agents of other machines over TCP (the Ray engine); returns the address they
        are given, `tcp://HOST:PORT`. The nonce is the only credential, as on the Unix socket: it
        names one agent attempt and is revoked when that attempt ends."""
        if self._tcp_server is None:
            self._tcp_server = await asyncio.start_server(
                self._serve, host=host, port=port, limit=protocol.MAX_LINE
            )
        bound = self._tcp_server.sockets[0].getsockname()
        return protocol.tcp_address(host, int(bound[1]))

    async def close(self) -> None:
        if self._tcp_server is not None:
            self._tcp_server.close()
        if self._server is not None:
            self._server.close()
        pending = [*self._calls, *self._handlers]
        for task in pending:
            task.cancel()
        for writer in list(self._writers):
            writer.close()
        await asyncio.gather(*pending, return_exceptions=True)
        for backend in self._builtin.values():
            aclose = getattr(backend, "aclose", None)  # the lean client's connection pool
            if aclose is not None:
                with contextlib.suppress(Exception):
                    await aclose()
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None
        if self._tcp_server is not None:
            await self._tcp_server.wait_closed()
            self._tcp_server = None
        with contextlib.suppress(FileNotFoundError):
            if stat.S_ISSOCK(os.lstat(self.socket_path).st_mode):
                os.unlink(self.socket_path)

    # -- accounts and nonces --------------------------------------------------------------------

    def register(
        self,
        agent: str,
        *,
        model: str,
        api_base: str | None,
        budget: int,
        replay: Replay | None = None,
        attempt: int = 1,
    ) -> Account:
        """Open `agent`'s account. `replay`: the journal its calls are answered from first;
        `attempt`: the attempt its journal entries are recorded under."""
        if agent in self._accounts:
            raise ValueError(f"agent {agent!r} is already registered with the gateway")
        if budget < 0:
            raise ValueError("budget must not be negative")
        account = self._accounts[agent] = Account(agent, model, api_base, budget)
        account.attempt, account.replay = attempt, replay
        return account

    def begin_attempt(self, agent: str, attempt: int, replay: Replay | None = None) -> None:
        """A new attempt of a registered agent (a retry): its journal entries go under `attempt`,
        numbered from 1 again, and its calls are answered from `replay` (None: none are)."""
        account = self._accounts[agent]
        account.attempt, account.replay, account.journalled = attempt, replay, 0
        account.sent = []

    def account(self, agent: str) -> Account:
        return self._accounts[agent]

    def infra_error(self, agent: str) -> str | None:
        account = self._accounts.get(agent)
        return None if account is None else account.infra_error

    def issue_nonce(self, agent: str) -> str:
        if agent not in self._accounts:
            raise KeyError(f"agent {agent!r} is not registered with the gateway")
        self.revoke(agent)
        nonce = secrets.token_urlsafe(32)
        self._nonces[nonce] = agent
        self._nonce_of[agent] = nonce
        return nonce

    def revoke(self, agent: str) -> None:
        old = self._nonce_of.pop(agent, None)
        if old is not None:
            self._nonces.pop(old, None)

    # -- connections ----------------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
        self._writers.add(writer)
        try:
            nonce: str | None = None
            while True:
                try:
                    line = await reader.readline()
                except ValueError:  # longer than protocol.MAX_LINE: the stream cannot be resynchronised
                    await self._send(writer, _error(None, protocol.BAD_REQUEST, "message too long"))
                    return
                if not line:
                    return
                reply, nonce, keep_open = await self._handle(line, nonce)
                await self._send(writer, reply)
                if not keep_open:
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the agent went away; any call it started has been charged already
        except asyncio.CancelledError:
            # Only close() cancels a handler. asyncio (3.11) reports a handler that ends cancelled as
            # an unhandled error, so it ends normally instead.
            pass
        finally:
            self._writers.discard(writer)
            if task is not None:
                self._handlers.discard(task)
            writer.close()

    async def _send(self, writer: asyncio.StreamWriter, reply: dict[str, Any]) -> None:
        writer.write(protocol.encode(mask(reply, self._secrets)))
        await writer.drain()

    async def _handle(self, line: bytes, nonce: str | None) -> tuple[dict[str, Any], str | None, bool]:
        """(reply, the connection's nonce, whether to keep the connection open)."""
        try:
            message = protocol.decode(line)
        except (ValueError, UnicodeDecodeError):
            if nonce is None:
                return _error(None, protocol.UNAUTHORIZED, "say hello with a valid nonce first"), None, False
            return _error(None, protocol.BAD_REQUEST, "not a JSON object"), nonce, True
        request_id, op = message.get("id"), message.get("op")
        if op == "hello":
            offered = message.get("nonce")
            agent = self._nonces.get(offered) if isinstance(offered, str) else None
            if agent is None:
                return (
                    _error(request_id, protocol.UNAUTHORIZED, "unknown, expired or revoked nonce"),
                    None,
                    False,
                )
            account = self._accounts[agent]
            hello = {"id": request_id, "ok": True, "agent": agent, "budget": account.budget}
            hello.update(used=account.used, remaining=account.remaining, model=account.model)
            return hello, offered, True
        agent = self._nonces.get(nonce) if nonce is not None else None
        if agent is None:
            # No hello yet, or this agent's nonce was revoked or replaced since.
            return (
                _error(request_id, protocol.UNAUTHORIZED, "say hello with a valid nonce first"),
                None,
                False,
            )
        if op == "complete":
            return await self._complete(agent, request_id, message), nonce, True
        if op == "tool_replay":
            return await self._tool_replay(agent, request_id, message), nonce, True
        if op == "tool_record":
            return await self._tool_record(agent, request_id, message), nonce, True
        return _error(request_id, protocol.BAD_REQUEST, f"unknown op {op!r}"), nonce, True

    async def complete_internal(
        self, agent: str, messages: list[dict[str, Any]], max_tokens: int | None = None
    ) -> dict[str, Any]:
        """A call the supervisor makes itself (the SLA judge), charged to `agent`'s own account.

        Returns the same reply an agent would get (`ok`, `content`, `usage`, or `error`).
        """
        message: dict[str, Any] = {"op": "complete", "messages": messages}
        if max_tokens is not None:
            message["max_tokens"] = max_tokens
        return await self._complete(agent, None, message, journalled=False)

    # -- calls ----------------------------------------------------------------------------------

    async def _complete(
        self, agent: str, request_id: Any, message: dict[str, Any], *, journalled: bool = True
    ) -> dict[str, Any]:
        account = self._accounts[agent]
        request = _parse_complete(message)
        if isinstance(request, str):
            return _error(request_id, protocol.BAD_REQUEST, request, account)
        account.calls += 1
        number = account.calls
        key = await _hash_request(request, account.model) if journalled else None
        if key is not None and account.replay is not None:
            entry = account.replay.take(journal.LLM, key)
            if entry is not None:
                account.sent = mask(request.messages, self._secrets)
                return await self._replayed(account, number, entry, request_id, key)
        prompt = await _count_prompt(request, account.model, account.available)
        available = account.available
        if prompt + 1 > available:
            text = (
                f"token budget exhausted: the prompt needs {prompt} tokens plus the answer, {available} left"
            )
            self._record(agent, number, 0, "budget_exceeded", None, 0.0, 0, text)
            return _error(request_id, protocol.BUDGET_EXCEEDED, text, account)
        cap = available - prompt
        max_tokens = cap if request.max_tokens is None else min(request.max_tokens, cap)
        reservation = [prompt + max_tokens]
        account.reserved += reservation[0]

        def release() -> None:  # once: when the provider answered, or when the task ends otherwise
            if reservation:
                account.reserved -= reservation.pop()

        task = asyncio.create_task(self._live(account, number, request, max_tokens, request_id, key, release))
        self._calls.add(task)

        def settle(_: asyncio.Task[dict[str, Any]]) -> None:
            self._calls.discard(task)
            release()

        task.add_done_callback(settle)
        # shield: if this connection's handler is cancelled, the call still finishes, is charged and
        # journalled.
        return await asyncio.shield(task)

    async def _live(
        self,
        account: Account,
        number: int,
        request: _Request,
        max_tokens: int,
        request_id: Any,
        key: str | None,
        release: Callable[[], None],
    ) -> dict[str, Any]:
        """The provider call, then (when it succeeded) its journal entry, durable before the reply."""
        try:
            reply = await self._call(account, number, request, max_tokens, request_id)
        finally:
            release()  # the usage is charged now: the reservation must not count it twice meanwhile
        if key is None or not reply["ok"]:
            return reply
        response = {name: reply[name] for name in journal.LLM_FIELDS}
        sent = mask(request.messages, self._secrets)
        shown = journal.new_messages(account.sent, sent)
        account.sent = sent
        await self._journal(
            account, journal.LLM, key, response, reply["usage"], replayed=False, request=shown
        )
        return {**reply, "request_hash": key}

    async def _replayed(
        self, account: Account, number: int, entry: JournalEntry, request_id: Any, key: str
    ) -> dict[str, Any]:
        """Answer from the journal: the live reply's shape, nothing charged, journalled again."""
        saved = Usage(entry.prompt_tokens, entry.completion_tokens, entry.total_tokens)
        self._record(account.agent, number, 0, "replayed", saved, 0.0, 0, None)
        await self._journal_again(account, entry)
        reply = {"id": request_id, "ok": True}
        reply.update({name: entry.response.get(name) for name in journal.LLM_FIELDS})
        reply.update(used=account.used, remaining=account.remaining, replayed=True, request_hash=key)
        return reply

    async def _tool_replay(self, agent: str, request_id: Any, message: dict[str, Any]) -> dict[str, Any]:
        account = self._accounts[agent]
        key = message.get("key")
        if not isinstance(key, str) or not key or len(key) > MAX_TOOL_KEY:
            return _error(request_id, protocol.BAD_REQUEST, f"key must be a string of 1 to {MAX_TOOL_KEY}")
        entry = account.replay.take(journal.TOOL, key) if account.replay is not None else None
        if entry is None:
            return {"id": request_id, "ok": True, "hit": False}
        await self._journal_again(account, entry)
        return {"id": request_id, "ok": True, "hit": True, "output": entry.response}

    async def _tool_record(self, agent: str, request_id: Any, message: dict[str, Any]) -> dict[str, Any]:
        account = self._accounts[agent]
        key, output = message.get("key"), message.get("output")
        if not isinstance(key, str) or not key or len(key) > MAX_TOOL_KEY:
            return _error(request_id, protocol.BAD_REQUEST, f"key must be a string of 1 to {MAX_TOOL_KEY}")
        if not isinstance(output, dict):
            return _error(request_id, protocol.BAD_REQUEST, "output must be an object")
        await self._journal(account, journal.TOOL, key, output, None, replayed=False)
        return {"id": request_id, "ok": True}

    async def _journal(
        self,
        account: Account,
        kind: str,
        key: str,
        response: dict[str, Any],
        usage: Mapping[str, int] | None,
        *,
        replayed: bool,
        request: dict[str, Any] | None = None,
    ) -> None:
        usage = usage or {}
        entry = JournalEntry(
            kind=kind,
            key=key,
            response=mask(response, self._secrets),
            prompt_tokens=int(usage.get("prompt_tokens", 0)),
            completion_tokens=int(usage.get("completion_tokens", 0)),
            total_tokens=int(usage.get("total_tokens", 0)),
            replayed=replayed,
            request=request,
        )
        await self._write_journal(account, entry)

    async def _journal_again(self, account: Account, entry: JournalEntry) -> None:
        """Journal a replayed entry in this attempt too, so that a later resume finds it here."""
        await self._write_journal(account, replace(entry, replayed=True))

    async def _write_journal(self, account: Account, entry: JournalEntry) -> None:
        if self._on_journal is None:
            return
        account.journalled += 1
        entry = replace(entry, seq=account.journalled)
        try:
            await self._on_journal(account.agent, account.attempt, entry)
        except Exception:  # the answer must still reach the agent; a resume would pay for it again
            log.exception("on_journal failed for agent %s (entry %s)", account.agent, entry.seq)

    async def _call(
        self, account: Account, number: int, request: _Request, max_tokens: int, request_id: Any
    ) -> dict[str, Any]:
        CALLER.set(account.agent)  # this task's own context: the backend sees whose call it is
        backend = self._backend(account.model)
        semaphore = self._semaphore(account)
        gate = self._gate(account.model)
        tries, cut_off, rate_limited = 0, False, False
        # A known secret value never reaches a provider, whatever an agent put in its messages (a
        # tool that read a key file, an upstream result that echoed one): it goes out as ***.
        outgoing = mask(request.messages, self._secrets)

        async def attempt() -> Completion:
            nonlocal cut_off
            async with semaphore, self._gated(account.agent, gate):
                try:
                    return await asyncio.wait_for(
                        backend.complete(
                            model=account.model,
                            messages=outgoing,
                            max_tokens=max_tokens,
                            api_base=account.api_base,
                            timeout=self._call_timeout,
                            tools=request.tools,
                            temperature=request.temperature,
                        ),
                        self._call_timeout + _timeout_slack(self._call_timeout),
                    )
                except ProviderError:
                    raise
                except asyncio.CancelledError:
                    cut_off = True  # cancelled mid-request: the provider may have charged for it
                    raise
                except asyncio.TimeoutError:
                    raise CallTimeout(f"{account.model}: no answer within {self._call_timeout:g}s") from None
                except Exception as exc:  # a backend bug must not kill the gateway; do not repeat it
                    raise ProviderError(
                        f"{account.model}: backend failed: {type(exc).__name__}: {exc}", retryable=False
                    ) from None

        def on_attempt(n: int, outcome: Completion | ProviderError, latency: float) -> None:
            nonlocal tries, rate_limited
            tries = n
            rate_limited = isinstance(outcome, ProviderError) and outcome.status == 429
            if isinstance(outcome, Completion):
                account.used += outcome.usage.total_tokens
                self._record(account.agent, number, n, "ok", outcome, latency, max_tokens, None)
                return
            status = "retry" if will_retry(outcome, n, self._max_attempts) else _code(outcome)
            self._record(account.agent, number, n, status, None, latency, max_tokens, outcome.message)

        async def sleep(delay: float) -> object:
            """The wait before a retry: after a 429 the agent is rate limited meanwhile."""
            if not rate_limited:
                return await self._sleep(delay)
            with self._waits.watch(account.agent, "http_429", delay):
                return await self._sleep(delay)

        try:
            completion = await call_with_retries(
                attempt,
                max_attempts=self._max_attempts,
                max_retry_after=self._max_retry_after,
                sleep=sleep,
                on_attempt=on_attempt,
            )
        except ProviderError as exc:
            account.infra_error = exc.message if _not_the_agents(exc) else None
            return _error(request_id, _code(exc), exc.message, account)
        except asyncio.CancelledError:
            if cut_off:  # its cost is unknown, but the attempt must not go unrecorded
                self._record(
                    account.agent, number, tries + 1, "cancelled", None, 0.0, max_tokens, "gateway closed"
                )
            raise
        account.infra_error = None
        return {
            "id": request_id,
            "ok": True,
            "content": completion.content,
            "tool_calls": completion.tool_calls,
            "finish_reason": completion.finish_reason,
            "usage": completion.usage.as_dict(),
            "used": account.used,
            "remaining": account.remaining,
        }

    def _record(
        self,
        agent: str,
        number: int,
        tried: int,
        status: str,
        completion: Completion | Usage | None,
        latency: float,
        max_tokens: int,
        error: str | None,
    ) -> None:
        account = self._accounts[agent]
        usage = completion.usage if isinstance(completion, Completion) else completion
        data: dict[str, Any] = {
            "attempt": number,
            "try": tried,
            "model": account.model,
            "status": status,
            "prompt_tokens": usage.prompt_tokens if usage else 0,
            "completion_tokens": usage.completion_tokens if usage else 0,
            "total_tokens": usage.total_tokens if usage else 0,
            "latency_ms": round(latency * 1000, 1),
            "max_tokens": max_tokens,
            "used": account.used,
            "remaining": account.remaining,
        }
        if isinstance(completion, Completion) and completion.usage_counted:
            data["usage_counted"] = True
        if error is not None:
            data["error"] = one_line(error)
        try:
            self._on_call(agent, mask(data, self._secrets))
        except Exception:  # a broken recorder must not lose the reply; it is logged instead
            log.exception("on_call failed for agent %s", agent)

    async def warm(self, models: Iterable[str]) -> None:
        """Get the clients of `models` ready before the run's agents exist (imports, sessions,
        tables), so that no first call pays for them: a backend may offer `warm()`."""
        backends = {id(b): b for b in (self._backend(model) for model in models)}
        await asyncio.gather(
            *(b.warm() for b in backends.values() if callable(getattr(b, "warm", None))),  # type: ignore[attr-defined]
            return_exceptions=True,  # a warm-up that fails is only a first call that pays
        )

    def _backend(self, model: str) -> Backend:
        name = model.split("?", 1)[0]
        for key in (model, name, "*"):
            if key in self._backends:
                return self._backends[key]
        kind = routing.client_for(model, os.environ)
        if kind not in self._builtin:
            # Imported here so that a run never imports the client it does not use (litellm above all).
            if kind == routing.MOCK:
                from rnix.llm.mock import MockBackend

                self._builtin[kind] = MockBackend()
            elif kind == routing.LEAN:
                from rnix.llm.openai_http import OpenAIHTTPBackend

                self._builtin[kind] = OpenAIHTTPBackend(max_connections=self._concurrency)
            else:
                from rnix.llm.litellm_backend import LiteLLMBackend

                self._builtin[kind] = LiteLLMBackend()
        return self._builtin[kind]

    def limit_model(self, model: str, max_concurrency: int | None, rpm: int | None) -> None:
        """Calls to `model` at most `max_concurrency` at once and `rpm` a minute (a model alias's
        limits); set before the run's first call."""
        if max_concurrency or rpm:
            self._model_limits[model] = (max_concurrency, rpm)

    def _gate(self, model: str) -> ModelGate | None:
        limits = self._model_limits.get(model)
        if limits is None:
            return None
        if model not in self._gates:
            self._gates[model] = ModelGate(*limits)
        return self._gates[model]

    def _gated(self, agent: str, gate: ModelGate | None) -> contextlib.AbstractAsyncContextManager[object]:
        """Inside `gate` (none: no limits), the agent's wait to get there watched by `_waits`."""
        return contextlib.nullcontext() if gate is None else self._watched(agent, gate)

    @contextlib.asynccontextmanager
    async def _watched(self, agent: str, gate: ModelGate) -> AsyncIterator[None]:
        with self._waits.watch(agent, gate.blocking):
            await gate.__aenter__()
        try:
            yield
        finally:
            await gate.__aexit__(None, None, None)

    def _semaphore(self, account: Account) -> asyncio.Semaphore:
        model = account.model.split("?", 1)[0]
        provider = account.api_base or model.split("/", 1)[0]
        if provider not in self._semaphores:
            self._semaphores[provider] = asyncio.Semaphore(self._concurrency)
        return self._semaphores[provider]


_AGENTS_FAULT = frozenset({400, 413, 422})  # a malformed or oversized request: what the agent sent


def _not_the_agents(error: ProviderError) -> bool:
    """Unreachable, timed out, credentials, unknown model, rate limits and 5xx are the setup's or
    the provider's; a request the provider rejected as malformed or too large is the agent's."""
    return isinstance(error, CallTimeout) or error.status not in _AGENTS_FAULT


def _code(error: ProviderError) -> str:
    return protocol.TIMEOUT if isinstance(error, CallTimeout) else protocol.PROVIDER_ERROR


INLINE_COUNT_CHARS = 32_000  # below this, counting costs microseconds: a thread hop would cost more
# Hashing (json + sha256) measured ~22 ms per MB of content, ~6x cheaper than counting: prompts
# under this size (~2 ms) are hashed on the loop, larger ones in a worker thread.
INLINE_HASH_CHARS = 100_000


async def _hash_request(request: _Request, model: str) -> str:
    """The request's journal key (rnix.core.journal.request_hash)."""
    args = (model, request.messages, request.tools, request.temperature, request.max_tokens)
    if sum(len(str(m.get("content") or "")) for m in request.messages) < INLINE_HASH_CHARS:
        return journal.request_hash(*args)
    return await asyncio.to_thread(journal.request_hash, *args)


async def _count_prompt(request: _Request, model: str, available: int) -> int:
    """The prompt's tokens as far as the budget needs them. For a provider's model, a prompt whose
    byte bound (tokens.upper_bound) fits in half of what is left is not counted: the bound decides,
    and the call needs no encoding at all (loading one takes ~0.3 s, half of it holding the GIL);
    the provider's usage is what is charged. Otherwise, and for the mock, it is counted exactly:
    small prompts on the loop, large ones in a worker thread so the loop keeps serving.

    Measured with 500 agents calling at once: a thread hop per call cost ~14% of the gateway's CPU
    in call_soon_threadsafe, while tiktoken counts a few hundred tokens in ~20 us.
    """
    if not tokens.needs_encoding(model):
        bound = tokens.upper_bound(request.messages, request.tools)
        if bound <= available // 2:
            return bound
    size = sum(len(str(m.get("content") or "")) for m in request.messages)
    loaded = tokens.get_encoding_if_loaded(model) is not None
    if size < INLINE_COUNT_CHARS and loaded:
        return tokens.count_prompt(request.messages, model, request.tools)
    return await asyncio.to_thread(tokens.count_prompt, request.messages, model, request.tools)
