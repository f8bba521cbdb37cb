"""The gateway end to end: a real Unix socket, the real blocking GatewayClient (in a thread), and
scripted or recording backends. Budgets, retries, auth, disconnects and masking are asserted on the
replies, on what the backend was asked, and on what `on_call` recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from rnix.agent import protocol
from rnix.agent.client import GatewayClient, GatewayError
from rnix.core.task import build_messages
from rnix.llm import tokens
from rnix.llm.backend import Completion, ProviderError, Usage
from rnix.supervisor.gateway import Gateway
from tests.fakes.openai_server import OpenAIServer, Reply, Status

CANARY = "sk-canary-9d8e7f6a5b4c3d2e"
MESSAGES = build_messages("writer", "Write the report", {"research": "facts", "outline": "plan"})
Records = list[tuple[str, dict[str, Any]]]


@pytest.fixture
def sock_path() -> Iterator[str]:
    # tmp_path can exceed the ~104-byte limit of a Unix socket path; a short private dir cannot.
    directory = tempfile.mkdtemp(prefix="rnix-gw-", dir="/tmp")
    try:
        yield os.path.join(directory, "gw.sock")
    finally:
        shutil.rmtree(directory, ignore_errors=True)


class FakeSleep:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


@dataclass
class RecordingBackend:
    """Answers from a script (Completion, ProviderError, or a number of seconds to hang), else `default`."""

    script: list[Completion | ProviderError | float] = field(default_factory=list)
    default: Completion = field(default_factory=lambda: Completion("fine", Usage.of(10, 5)))
    calls: list[dict[str, Any]] = field(default_factory=list)
    gate: asyncio.Event | None = None  # when set up, every call waits for it
    started: asyncio.Event = field(default_factory=asyncio.Event)

    async def complete(self, **request: Any) -> Completion:
        self.calls.append(request)
        self.started.set()
        if self.gate is not None:
            await self.gate.wait()
        outcome = self.script.pop(0) if self.script else self.default
        if isinstance(outcome, float):
            await asyncio.sleep(outcome)
            outcome = self.default
        if isinstance(outcome, ProviderError):
            raise outcome
        return outcome


@contextlib.asynccontextmanager
async def running(path: str, **options: Any) -> AsyncIterator[tuple[Gateway, Records]]:
    records: Records = []
    gateway = Gateway(path, on_call=lambda agent, data: records.append((agent, data)), **options)
    await gateway.start()
    try:
        yield gateway, records
    finally:
        await gateway.close()


async def connect(path: str, nonce: str) -> GatewayClient:
    return await asyncio.to_thread(GatewayClient, path, nonce, 60.0)  # litellm may import meanwhile


async def complete(
    client: GatewayClient, messages: list[dict[str, Any]] = MESSAGES, **kw: Any
) -> dict[str, Any]:
    return await asyncio.to_thread(client.complete, messages, **kw)


async def refused(client: GatewayClient, **kw: Any) -> GatewayError:
    with pytest.raises(GatewayError) as caught:
        await complete(client, **kw)
    return caught.value


def raw_exchange(path: str, lines: list[bytes]) -> list[dict[str, Any] | None]:
    """Send lines one by one on a raw connection; each reply, or None once the gateway hung up."""
    replies: list[dict[str, Any] | None] = []
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(10)
        sock.connect(path)
        reader = sock.makefile("rb")
        for line in lines:
            try:
                sock.sendall(line)
                answer = reader.readline()
            except OSError:  # reset: the gateway hung up before or while we wrote
                answer = b""
            replies.append(protocol.decode(answer) if answer else None)
    return replies


def statuses(records: Records) -> list[str]:
    return [data["status"] for _, data in records]


def test_hello_authenticates_and_stale_nonces_are_rejected(sock_path: str) -> None:
    async def main() -> None:
        async with running(sock_path) as (gateway, _):
            gateway.register("writer", model="mock", api_base=None, budget=500)
            with pytest.raises(GatewayError) as caught:
                await connect(sock_path, "not-a-nonce")
            assert caught.value.code == protocol.UNAUTHORIZED

            old = gateway.issue_nonce("writer")
            client = await connect(sock_path, old)
            expected = {"id": 1, "ok": True, "agent": "writer", "model": "mock"}
            assert client.info == {**expected, "budget": 500, "used": 0, "remaining": 500}
            new = gateway.issue_nonce("writer")  # a new attempt of the agent: the old nonce dies
            with pytest.raises(GatewayError) as caught:
                await connect(sock_path, old)
            assert caught.value.code == protocol.UNAUTHORIZED
            assert (await refused(client)).code == protocol.UNAUTHORIZED  # also on a live connection
            client.close()

            fresh = await connect(sock_path, new)
            assert (await complete(fresh))["ok"]
            gateway.revoke("writer")
            assert (await refused(fresh)).code == protocol.UNAUTHORIZED
            fresh.close()
            with pytest.raises(GatewayError):
                await connect(sock_path, new)

    asyncio.run(main())


def test_the_socket_is_private_and_removed_on_close(sock_path: str) -> None:
    async def main() -> None:
        async with running(sock_path):
            assert stat.S_IMODE(os.stat(sock_path).st_mode) == 0o600
        assert not os.path.exists(sock_path)

    asyncio.run(main())


def test_no_hello_means_unauthorized_and_closed(sock_path: str) -> None:
    async def main() -> None:
        async with running(sock_path) as (gateway, _):
            gateway.register("a", model="mock", api_base=None, budget=100)
            request = protocol.encode({"op": "complete", "id": 1, "messages": MESSAGES})
            first, after = await asyncio.to_thread(raw_exchange, sock_path, [request, request])
            assert first is not None and first["error"]["code"] == protocol.UNAUTHORIZED
            assert after is None
            [garbage] = await asyncio.to_thread(raw_exchange, sock_path, [b"{oops\n"])
            assert garbage is not None and garbage["error"]["code"] == protocol.UNAUTHORIZED

    asyncio.run(main())


def test_bad_json_unknown_op_and_bad_fields_are_bad_requests(sock_path: str) -> None:
    async def main() -> None:
        backend = RecordingBackend()
        async with running(sock_path, backends={"*": backend}) as (gateway, _):
            gateway.register("a", model="fake", api_base=None, budget=1000)
            nonce = gateway.issue_nonce("a")
            lines = [
                protocol.encode({"op": "hello", "id": 1, "nonce": nonce}),
                b"this is not json\n",
                b"[1, 2]\n",
                protocol.encode({"op": "dance", "id": 2}),
                protocol.encode({"op": "complete", "id": 3, "messages": []}),
                protocol.encode({"op": "complete", "id": 4, "messages": MESSAGES, "max_tokens": "ten"}),
                protocol.encode({"op": "complete", "id": 5, "messages": MESSAGES, "max_tokens": 0}),
                protocol.encode({"op": "complete", "id": 6, "messages": [{"content": "no role"}]}),
                protocol.encode({"op": "complete", "id": 7, "messages": MESSAGES}),
            ]
            replies = await asyncio.to_thread(raw_exchange, sock_path, lines)
            assert all(r is not None for r in replies)
            codes = [r["error"]["code"] if r and not r["ok"] else "ok" for r in replies]
            assert codes == ["ok", *[protocol.BAD_REQUEST] * 7, "ok"]
            assert [r["id"] for r in replies[3:] if r] == [2, 3, 4, 5, 6, 7]
            assert len(backend.calls) == 1  # the connection survived every bad request

    asyncio.run(main())


def test_mock_success_path(sock_path: str) -> None:
    async def main() -> None:
        async with running(sock_path) as (gateway, records):
            gateway.register("writer", model="mock?words=30", api_base=None, budget=5000)
            client = await connect(sock_path, gateway.issue_nonce("writer"))
            reply = await complete(client, max_tokens=200)
            client.close()
            assert reply["content"].startswith(
                "mock answer to 'Write the report' using results from: outline, research."
            )
            prompt = tokens.count_messages(MESSAGES, "mock")
            usage = reply["usage"]
            assert usage["prompt_tokens"] == prompt
            assert usage["total_tokens"] == prompt + usage["completion_tokens"]
            assert reply["finish_reason"] == "stop" and reply["tool_calls"] is None
            assert reply["used"] == usage["total_tokens"] == gateway.account("writer").used
            assert reply["remaining"] == 5000 - usage["total_tokens"]
            [(agent, data)] = records
            assert agent == "writer"
            assert data["status"] == "ok" and data["attempt"] == 1 and data["try"] == 1
            assert data["total_tokens"] == usage["total_tokens"] and data["used"] == reply["used"]
            assert data["max_tokens"] == 200 and data["model"] == "mock?words=30"
            assert isinstance(data["latency_ms"], float)

    asyncio.run(main())


def test_max_tokens_is_capped_to_what_the_budget_leaves(sock_path: str) -> None:
    async def main() -> None:
        backend = RecordingBackend(default=Completion("x", Usage.of(1, 1)))
        prompt = tokens.count_messages(MESSAGES, "fake")
        budget = prompt + 100
        async with running(sock_path, backends={"fake": backend}) as (gateway, _):
            gateway.register("a", model="fake", api_base="http://127.0.0.1:1/v1", budget=budget)
            client = await connect(sock_path, gateway.issue_nonce("a"))
            await complete(client, max_tokens=10_000)
            await complete(client, max_tokens=5)
            await complete(client)
            client.close()
        caps = [call["max_tokens"] for call in backend.calls]
        assert caps == [100, 5, 100 - 2 - 2]  # two calls of 2 tokens each were charged meanwhile
        first = backend.calls[0]
        assert first["model"] == "fake" and first["api_base"] == "http://127.0.0.1:1/v1"
        assert first["messages"] == MESSAGES and first["timeout"] == 120.0

    asyncio.run(main())


def test_a_prompt_that_cannot_fit_is_refused_without_calling_the_backend(sock_path: str) -> None:
    async def main() -> None:
        backend = RecordingBackend()
        prompt = tokens.count_messages(MESSAGES, "fake")
        async with running(sock_path, backends={"*": backend}) as (gateway, records):
            gateway.register("a", model="fake", api_base=None, budget=prompt)  # no room for one answer token
            client = await connect(sock_path, gateway.issue_nonce("a"))
            error = await refused(client)
            client.close()
            assert error.code == protocol.BUDGET_EXCEEDED and error.remaining == prompt
            assert str(prompt) in error.message
            assert backend.calls == []
            [(_, data)] = records
            assert data["status"] == "budget_exceeded" and data["try"] == 0
            assert (data["prompt_tokens"], data["completion_tokens"], data["total_tokens"]) == (0, 0, 0)
            assert gateway.account("a").used == 0

    asyncio.run(main())


def test_usage_is_charged_across_calls_until_the_budget_is_spent(sock_path: str) -> None:
    async def main() -> None:
        prompt = tokens.count_messages(MESSAGES, "mock")
        budget = 3 * (prompt + 20) + prompt + 5  # three full answers, then room for a 5-token one
        async with running(sock_path) as (gateway, records):
            gateway.register("a", model="mock?words=200", api_base=None, budget=budget)
            client = await connect(sock_path, gateway.issue_nonce("a"))
            totals = []
            for _ in range(4):
                reply = await complete(client, max_tokens=20)
                totals.append(reply["usage"]["total_tokens"])
                assert reply["used"] == sum(totals) and reply["remaining"] == budget - sum(totals)
            assert totals == [prompt + 20] * 3 + [prompt + 5]
            assert reply["finish_reason"] == "length" and reply["remaining"] == 0
            error = await refused(client)
            client.close()
            assert error.code == protocol.BUDGET_EXCEEDED
            assert gateway.account("a").used == sum(totals) <= budget
            assert statuses(records) == ["ok"] * 4 + ["budget_exceeded"]
            assert [data["attempt"] for _, data in records] == [1, 2, 3, 4, 5]

    asyncio.run(main())


def test_provider_overspend_is_charged_and_then_every_call_refused(sock_path: str) -> None:
    async def main() -> None:
        backend = RecordingBackend(default=Completion("long", Usage.of(400, 900)))
        async with running(sock_path, backends={"*": backend}) as (gateway, records):
            gateway.register("a", model="fake", api_base=None, budget=1000)
            client = await connect(sock_path, gateway.issue_nonce("a"))
            reply = await complete(client)
            assert reply["ok"] and reply["used"] == 1300 and reply["remaining"] == 0
            assert (await refused(client)).code == protocol.BUDGET_EXCEEDED
            client.close()
            assert len(backend.calls) == 1
            assert gateway.account("a").used == 1300 and gateway.account("a").remaining == 0
            assert statuses(records) == ["ok", "budget_exceeded"]

    asyncio.run(main())


def test_provider_errors_are_retried_recorded_and_masked(
    sock_path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ACME_API_KEY", CANARY)

    async def main() -> None:
        failure = ProviderError(f"upstream said: invalid key {CANARY}\nsecond line", status=502)
        backend = RecordingBackend(script=[failure, failure, failure])
        sleep = FakeSleep()
        async with running(sock_path, backends={"*": backend}, max_attempts=3, sleep=sleep) as (
            gateway,
            records,
        ):
            gateway.register("a", model="fake", api_base=None, budget=1000)
            client = await connect(sock_path, gateway.issue_nonce("a"))
            error = await refused(client)
            client.close()
        assert error.code == protocol.PROVIDER_ERROR
        assert CANARY not in error.message and "***" in error.message and "\n" not in error.message
        assert len(backend.calls) == 3 and len(sleep.delays) == 2
        assert statuses(records) == ["retry", "retry", "provider_error"]
        assert [data["try"] for _, data in records] == [1, 2, 3]
        assert {data["attempt"] for _, data in records} == {1}
        assert all(CANARY not in json.dumps(data) for _, data in records)
        assert all(data["total_tokens"] == 0 for _, data in records)

    asyncio.run(main())


def test_non_retryable_errors_and_backend_bugs_end_the_call_at_once(sock_path: str) -> None:
    class Broken:
        async def complete(self, **request: Any) -> Completion:
            raise KeyError("oops")

    async def main() -> None:
        backend = RecordingBackend(script=[ProviderError("bad request", status=400)])
        async with running(sock_path, backends={"fake": backend, "broken": Broken()}) as (gateway, records):
            gateway.register("a", model="fake", api_base=None, budget=1000)
            gateway.register("b", model="broken", api_base=None, budget=1000)
            for agent in ("a", "b"):
                client = await connect(sock_path, gateway.issue_nonce(agent))
                assert (await refused(client)).code == protocol.PROVIDER_ERROR
                client.close()
        assert len(backend.calls) == 1
        assert statuses(records) == ["provider_error", "provider_error"]
        assert "KeyError" in records[1][1]["error"]

    asyncio.run(main())


def test_mock_fail_param_is_retried_and_every_attempt_recorded(sock_path: str) -> None:
    async def main() -> None:
        sleep = FakeSleep()
        async with running(sock_path, sleep=sleep) as (gateway, records):
            gateway.register("a", model="mock?fail=2", api_base=None, budget=5000)
            gateway.register("b", model="mock?fail=2", api_base=None, budget=5000)
            client = await connect(sock_path, gateway.issue_nonce("a"))
            reply = await complete(client)
            client.close()
            assert reply["ok"]
            assert statuses(records) == ["retry", "retry", "ok"]
            assert [data["try"] for _, data in records] == [1, 2, 3]
            assert len(sleep.delays) == 2
            assert gateway.account("a").used == reply["usage"]["total_tokens"]
            other = await connect(sock_path, gateway.issue_nonce("b"))  # fail=N counts per agent
            await complete(other)
            other.close()
            assert statuses(records)[3:] == ["retry", "retry", "ok"]

    asyncio.run(main())


def test_timeouts_end_in_a_timeout_error(sock_path: str) -> None:
    async def main() -> None:
        hanging = RecordingBackend(script=[5.0, 5.0])  # ignores its timeout: the gateway cuts it off
        sleep = FakeSleep()
        options: dict[str, Any] = {"backends": {"hang": hanging}, "call_timeout": 0.2, "max_attempts": 2}
        async with running(sock_path, sleep=sleep, **options) as (gateway, records):
            gateway.register("a", model="hang", api_base=None, budget=1000)
            gateway.register("b", model="mock?latency=10s", api_base=None, budget=1000)
            for agent in ("a", "b"):
                client = await connect(sock_path, gateway.issue_nonce(agent))
                assert (await refused(client)).code == protocol.TIMEOUT
                client.close()
        assert statuses(records) == ["retry", "timeout", "retry", "timeout"]

    asyncio.run(main())


def test_a_client_that_disconnects_mid_call_is_still_charged(sock_path: str) -> None:
    async def main() -> None:
        backend = RecordingBackend(default=Completion("late", Usage.of(30, 12)), gate=asyncio.Event())
        async with running(sock_path, backends={"*": backend}) as (gateway, records):
            gateway.register("a", model="fake", api_base=None, budget=1000)
            nonce = gateway.issue_nonce("a")
            reader, writer = await asyncio.open_unix_connection(sock_path)
            writer.write(protocol.encode({"op": "hello", "id": 1, "nonce": nonce}))
            assert protocol.decode(await reader.readline())["ok"]
            writer.write(protocol.encode({"op": "complete", "id": 2, "messages": MESSAGES}))
            await writer.drain()
            await asyncio.wait_for(backend.started.wait(), 5)
            writer.close()  # the agent dies while its call is in flight
            await writer.wait_closed()
            await asyncio.sleep(0.05)
            assert backend.gate is not None
            backend.gate.set()
            for _ in range(200):
                if records and gateway.account("a").reserved == 0:
                    break
                await asyncio.sleep(0.01)
            assert statuses(records) == ["ok"]
            assert gateway.account("a").used == 42 and records[0][1]["used"] == 42
            assert gateway.account("a").reserved == 0
            client = await connect(sock_path, nonce)  # the gateway keeps serving
            assert (await complete(client))["used"] == 42 + 42
            client.close()

    asyncio.run(main())


def test_close_cancels_calls_in_flight_and_records_them(sock_path: str) -> None:
    async def main() -> None:
        backend = RecordingBackend(gate=asyncio.Event())
        async with running(sock_path, backends={"*": backend}) as (gateway, records):
            gateway.register("a", model="fake", api_base=None, budget=1000)
            client = await connect(sock_path, gateway.issue_nonce("a"))
            pending = asyncio.ensure_future(asyncio.to_thread(client.complete, MESSAGES))
            await asyncio.wait_for(backend.started.wait(), 5)
        with pytest.raises(GatewayError):  # the gateway hung up on the waiting agent
            await asyncio.wait_for(pending, 5)
        client.close()
        assert statuses(records) == ["cancelled"]
        assert not os.path.exists(sock_path)

    asyncio.run(main())


def test_concurrency_is_limited_per_provider_and_reservations_prevent_joint_overspend(sock_path: str) -> None:
    async def main() -> None:
        prompt = tokens.count_messages(MESSAGES, "fake")
        gate = asyncio.Event()
        backend = RecordingBackend(gate=gate, default=Completion("x", Usage.of(prompt, 1)))
        async with running(sock_path, backends={"*": backend}, concurrency_per_provider=1) as (gateway, _):
            gateway.register("a", model="fake", api_base=None, budget=2 * prompt + 60)
            gateway.register("b", model="other/x", api_base=None, budget=10_000)
            nonce = gateway.issue_nonce("a")
            one, two = await connect(sock_path, nonce), await connect(sock_path, nonce)
            other = await connect(sock_path, gateway.issue_nonce("b"))
            first = asyncio.ensure_future(complete(one, max_tokens=50))
            await asyncio.wait_for(backend.started.wait(), 5)
            second = asyncio.ensure_future(complete(two))
            third = asyncio.ensure_future(complete(other))  # another provider: not held up by "fake"
            for _ in range(200):
                if len(backend.calls) == 2:
                    break
                await asyncio.sleep(0.01)
            assert len(backend.calls) == 2  # "a"'s second call waits for the provider's only slot
            gate.set()
            await asyncio.gather(first, second, third)
            for client in (one, two, other):
                client.close()
        caps = sorted(call["max_tokens"] for call in backend.calls if call["model"] == "fake")
        assert caps == [10, 50]  # the second call could only have what the first had not reserved

    asyncio.run(main())


@pytest.mark.parametrize("client", ["auto", "litellm"])
def test_a_real_client_through_the_gateway(
    sock_path: str, monkeypatch: pytest.MonkeyPatch, client: str
) -> None:
    """openai/* takes the lean client, or litellm with RNIX_LLM_CLIENT=litellm: the same outcome."""
    monkeypatch.setenv("OPENAI_API_KEY", CANARY)
    monkeypatch.setenv("RNIX_LLM_CLIENT", client)

    async def main() -> None:
        sleep = FakeSleep()
        with OpenAIServer() as server:
            server.script([Status(500, message=f"oops {CANARY}"), Reply("from the server", 20, 5)])
            async with running(sock_path, sleep=sleep) as (gateway, records):
                gateway.register("a", model="openai/test-model", api_base=server.base_url, budget=1000)
                client = await connect(sock_path, gateway.issue_nonce("a"))
                reply = await complete(client, max_tokens=64, temperature=0)
                capped = await complete(client, messages=[{"role": "user", "content": f"key {CANARY}"}])
                client.close()
        assert reply["content"] == "from the server" and reply["used"] == 25
        assert statuses(records) == ["retry", "ok", "ok"]
        assert CANARY not in json.dumps(records) and "***" in records[0][1]["error"]
        assert re.search(r"; retry 2 of 4 in [0-9.]+s$", records[0][1]["error"])
        assert [r.headers["authorization"] for r in server.requests] == [f"Bearer {CANARY}"] * 3
        assert server.requests[1].body["max_tokens"] == 64
        # no max_tokens asked: the budget left after the prompt, bounded by its bytes (it fits in
        # half of what is left, so no encoding is needed); the key went out masked
        last = server.requests[2].body
        assert last["messages"] == [{"role": "user", "content": "key ***"}]
        asked = [{"role": "user", "content": f"key {CANARY}"}]
        assert tokens.upper_bound(asked) >= tokens.count_messages(asked, "openai/test-model")
        assert last["max_tokens"] == 1000 - 25 - tokens.upper_bound(asked)
        assert capped["ok"] and len(sleep.delays) == 1

    asyncio.run(main())


MOCK_ONLY_RUN = """
import asyncio, sys, tempfile, os
from rnix.supervisor.gateway import Gateway
assert "litellm" not in sys.modules and "tiktoken" not in sys.modules
async def main(directory):
    path = os.path.join(directory, "gw.sock")
    gateway = Gateway(path, on_call=lambda agent, data: None)
    await gateway.start()
    gateway.register("a", model="mock", api_base=None, budget=1000)
    reader, writer = await asyncio.open_unix_connection(path)
    writer.write(b'{"op":"hello","nonce":"%s"}\\n' % gateway.issue_nonce("a").encode())
    writer.write(b'{"op":"complete","id":2,"messages":[{"role":"user","content":"Your task: x"}]}\\n')
    await reader.readline()
    reply = await reader.readline()
    writer.close()
    await gateway.close()
    return reply
with tempfile.TemporaryDirectory(dir="/tmp") as directory:
    print(asyncio.run(main(directory)).decode().strip())
print("litellm" in sys.modules)
"""


def test_a_mock_only_run_never_imports_litellm() -> None:
    done = subprocess.run([sys.executable, "-c", MOCK_ONLY_RUN], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    reply, imported = done.stdout.splitlines()
    assert json.loads(reply)["ok"] and imported == "False"


OPENAI_ONLY_RUN = """
import asyncio, json, os, sys
from rnix.supervisor.gateway import Gateway
from tests.fakes.openai_server import OpenAIServer
async def main(base):
    gateway = Gateway(os.path.join(sys.argv[1], "gw.sock"), on_call=lambda agent, data: None)
    await gateway.start()
    gateway.register("a", model="openai/test-model", api_base=base, budget=1000)
    reply = await gateway.complete_internal("a", [{"role": "user", "content": "hi"}])
    await gateway.close()
    return reply
with OpenAIServer() as server:
    reply = asyncio.run(main(server.base_url))
clients = {"litellm", "openai", "httpx", "aiohttp"} & {m.split(".")[0] for m in sys.modules}
print(json.dumps([reply["ok"], sorted(clients)]))
"""


def test_an_openai_protocol_only_run_never_imports_litellm(tmp_path: Path) -> None:
    """In a fresh interpreter: the gateway serves openai/* over the lean client and closes its pool."""
    done = subprocess.run(
        [sys.executable, "-c", OPENAI_ONLY_RUN, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [True, ["aiohttp"]]
    assert "Unclosed" not in done.stderr  # the gateway closed the client's session and connector
