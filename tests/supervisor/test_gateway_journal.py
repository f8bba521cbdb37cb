"""The gateway's journal: live calls journalled before their answer, replays that cost nothing, tool
results recorded and replayed. A real socket and the real GatewayClient, scripted backends; a
"resume" is a second gateway registered with a Replay of what the first one journalled.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest

from rnix.agent import protocol
from rnix.agent.client import GatewayClient, GatewayError
from rnix.core.journal import LLM, TOOL, JournalEntry, Replay, request_hash
from rnix.llm.backend import Completion, ProviderError, Usage
from rnix.supervisor.gateway import Gateway
from tests.supervisor.test_gateway import (
    CANARY,
    MESSAGES,
    RecordingBackend,
    Records,
    complete,
    connect,
    sock_path,
    statuses,
)

__all__ = ["sock_path"]  # the fixture, imported for pytest

Journal = list[tuple[str, int, JournalEntry]]
TOOL_CALLS = [{"id": "c1", "type": "function", "function": {"name": "list_dir", "arguments": "{}"}}]
OTHER = [{"role": "user", "content": "Your task: something else"}]


@contextlib.asynccontextmanager
async def journalling(
    path: str, backend: RecordingBackend, on_journal: Any = None
) -> AsyncIterator[tuple[Gateway, Records, Journal]]:
    records: Records = []
    journal: Journal = []

    async def remember(agent: str, attempt: int, entry: JournalEntry) -> None:
        journal.append((agent, attempt, entry))

    gateway = Gateway(
        path,
        on_call=lambda agent, data: records.append((agent, data)),
        backends={"*": backend},
        on_journal=on_journal or remember,
    )
    await gateway.start()
    try:
        yield gateway, records, journal
    finally:
        await gateway.close()


async def client_of(gateway: Gateway, path: str, agent: str, **register: Any) -> GatewayClient:
    gateway.register(agent, model="fake", api_base=None, **{"budget": 1000, **register})
    return await connect(path, gateway.issue_nonce(agent))


def entries(journal: Journal) -> list[JournalEntry]:
    return [entry for _, _, entry in journal]


async def run_once(path: str, *requests: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], Journal]:
    """A first attempt of agent `a` making `requests` live; its replies and its journal."""
    backend = RecordingBackend(
        script=[Completion(f"answer {i}", Usage.of(20 + i, 5), "tool_calls", TOOL_CALLS) for i in range(9)]
    )
    async with journalling(path, backend) as (gateway, _, journal):
        client = await client_of(gateway, path, "a")
        replies = [await complete(client, messages) for messages in requests]
        client.close()
    return replies, journal


def test_a_live_call_is_journalled_under_the_hash_of_what_the_agent_asked(sock_path: str) -> None:
    async def main() -> None:
        backend = RecordingBackend(script=[Completion("hi", Usage.of(30, 7), "tool_calls", TOOL_CALLS)])
        async with journalling(sock_path, backend) as (gateway, records, journal):
            client = await client_of(gateway, sock_path, "a", attempt=3)
            reply = await complete(client, temperature=0.5)
            client.close()
        key = request_hash("fake", MESSAGES, None, 0.5, None)  # max_tokens: what the agent asked
        assert backend.calls[0]["max_tokens"] is not None  # while the provider got the budget cap
        assert reply["request_hash"] == key and "replayed" not in reply
        response: dict[str, Any] = {"content": "hi", "tool_calls": TOOL_CALLS, "finish_reason": "tool_calls"}
        response["usage"] = {"prompt_tokens": 30, "completion_tokens": 7, "total_tokens": 37}
        asked = {"from": 0, "messages": MESSAGES}  # for `log --llm`: what this call added, all of it
        expected = JournalEntry(LLM, key, response, 30, 7, 37, replayed=False, seq=1, request=asked)
        assert journal == [("a", 3, expected)]
        assert {k: reply[k] for k in response} == response
        assert statuses(records) == ["ok"]

    asyncio.run(main())


def test_a_resume_answers_journalled_calls_without_the_backend_and_free(sock_path: str) -> None:
    async def main() -> None:
        live, first = await run_once(sock_path, MESSAGES)
        backend = RecordingBackend()
        async with journalling(sock_path, backend) as (gateway, records, journal):
            replay = Replay(entries(first))
            client = await client_of(gateway, sock_path, "a", budget=500, replay=replay, attempt=2)
            replayed = await complete(client)
            assert backend.calls == []  # no request went to the provider
            assert gateway.account("a").used == 0 and gateway.account("a").reserved == 0
            expected = {**live[0], "id": replayed["id"], "used": 0, "remaining": 500, "replayed": True}
            assert replayed == expected  # the live reply's shape and fields, nothing charged
            assert (replay.taken_calls, replay.taken_tokens) == (1, 25)

            fresh = await complete(client, OTHER)  # a request the journal does not hold goes live
            again = await complete(client)  # journalled once, so answered from the journal once
            client.close()
        assert len(backend.calls) == 2 and "replayed" not in fresh and "replayed" not in again
        assert fresh["request_hash"] == request_hash("fake", OTHER, None, None, None)
        assert again["request_hash"] == replayed["request_hash"]
        charged = fresh["usage"]["total_tokens"] + again["usage"]["total_tokens"]
        assert again["used"] == charged == gateway.account("a").used
        assert statuses(records) == ["replayed", "ok", "ok"]
        saved = records[0][1]
        assert (saved["try"], saved["total_tokens"], saved["used"], saved["remaining"]) == (0, 25, 0, 500)
        # the resumed attempt's journal is complete: the replayed call, then the live ones, in order
        assert [(a, n, e.seq, e.replayed) for a, n, e in journal] == [
            ("a", 2, 1, True),
            ("a", 2, 2, False),
            ("a", 2, 3, False),
        ]
        assert journal[0][2].response == first[0][2].response
        assert journal[0][2].total_tokens == 25

    asyncio.run(main())


def test_a_request_journalled_twice_is_answered_twice(sock_path: str) -> None:
    async def main() -> None:
        _, first = await run_once(sock_path, MESSAGES, MESSAGES)
        assert [e.seq for e in entries(first)] == [1, 2] and len({e.key for e in entries(first)}) == 1
        backend = RecordingBackend()
        async with journalling(sock_path, backend) as (gateway, _, _):
            client = await client_of(gateway, sock_path, "a", replay=Replay(entries(first)))
            replies = [await complete(client) for _ in range(3)]
            client.close()
        assert [r["content"] for r in replies[:2]] == ["answer 0", "answer 1"]  # in journal order
        assert [r.get("replayed", False) for r in replies] == [True, True, False]
        assert len(backend.calls) == 1

    asyncio.run(main())


def test_a_replay_is_not_refused_for_the_budget(sock_path: str) -> None:
    async def main() -> None:
        _, first = await run_once(sock_path, MESSAGES)
        backend = RecordingBackend()
        async with journalling(sock_path, backend) as (gateway, records, _):
            client = await client_of(gateway, sock_path, "a", budget=0, replay=Replay(entries(first)))
            assert (await complete(client))["replayed"] is True
            with pytest.raises(GatewayError) as refused:
                await complete(client, OTHER)
            client.close()
        assert refused.value.code == protocol.BUDGET_EXCEEDED and backend.calls == []
        assert statuses(records) == ["replayed", "budget_exceeded"]

    asyncio.run(main())


def test_any_change_to_the_request_misses_the_journal(sock_path: str) -> None:
    async def main() -> None:
        _, first = await run_once(sock_path, MESSAGES)
        backend = RecordingBackend()
        async with journalling(sock_path, backend) as (gateway, _, _):
            client = await client_of(gateway, sock_path, "a", replay=Replay(entries(first)))
            await complete(client, max_tokens=50)
            await complete(client, temperature=0.0)
            await complete(client, tools=[{"type": "function", "function": {"name": "x"}}])
            client.close()
            gateway.register(
                "b", model="other-model", api_base=None, budget=1000, replay=Replay(entries(first))
            )
            other = await connect(sock_path, gateway.issue_nonce("b"))
            await complete(other)
            other.close()
        assert len(backend.calls) == 4

    asyncio.run(main())


def test_failed_calls_and_the_judge_are_not_journalled(sock_path: str) -> None:
    async def main() -> None:
        backend = RecordingBackend(script=[ProviderError("bad request", status=400)])
        async with journalling(sock_path, backend) as (gateway, _, journal):
            client = await client_of(gateway, sock_path, "a", budget=1000)
            with pytest.raises(GatewayError):
                await complete(client)
            with pytest.raises(GatewayError):
                await complete(client, [{"role": "user", "content": "word " * 2000}])  # over budget
            client.close()
            judged = await gateway.complete_internal("a", MESSAGES)
            assert judged["ok"] and "request_hash" not in judged
            assert journal == []
            # nor is a journalled call replayed to the judge
            _, first = await run_once(sock_path + "2", MESSAGES)
            gateway.register("j", model="fake", api_base=None, budget=1000, replay=Replay(entries(first)))
            calls = len(backend.calls)
            assert "replayed" not in await gateway.complete_internal("j", MESSAGES)
            assert len(backend.calls) == calls + 1 and journal == []

    asyncio.run(main())


def test_a_live_answer_waits_until_its_journal_entry_is_durable(sock_path: str) -> None:
    async def main() -> None:
        release, called = asyncio.Event(), asyncio.Event()
        seen: list[JournalEntry] = []

        async def slow_commit(agent: str, attempt: int, entry: JournalEntry) -> None:
            called.set()
            await release.wait()
            seen.append(entry)

        async with journalling(sock_path, RecordingBackend(), slow_commit) as (gateway, _, _):
            client = await client_of(gateway, sock_path, "a")
            answer = asyncio.ensure_future(complete(client))
            await asyncio.wait_for(called.wait(), 10)
            await asyncio.sleep(0.2)
            assert not answer.done()  # the provider answered, the journal has not committed yet
            assert gateway.account("a").reserved == 0  # but the reservation is already released
            release.set()
            reply = await asyncio.wait_for(answer, 10)
            client.close()
        assert reply["ok"] and [e.key for e in seen] == [reply["request_hash"]]

    asyncio.run(main())


def test_a_failing_journal_is_logged_and_the_answer_still_sent(
    sock_path: str, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(agent: str, attempt: int, entry: JournalEntry) -> None:
        raise OSError("disk full")

    async def main() -> dict[str, Any]:
        async with journalling(sock_path, RecordingBackend(), broken) as (gateway, _, _):
            client = await client_of(gateway, sock_path, "a")
            reply = await complete(client)
            client.close()
        return reply

    with caplog.at_level(logging.ERROR, logger="rnix.supervisor.gateway"):
        reply = asyncio.run(main())
    assert reply["ok"] and reply["content"] == "fine"
    assert "on_journal failed for agent a" in caplog.text and "disk full" in caplog.text


def test_a_call_whose_agent_disconnected_is_still_journalled(sock_path: str) -> None:
    async def main() -> None:
        backend = RecordingBackend(gate=asyncio.Event())
        async with journalling(sock_path, backend) as (gateway, _, journal):
            gateway.register("a", model="fake", api_base=None, budget=1000)
            reader, writer = await asyncio.open_unix_connection(sock_path)
            writer.write(protocol.encode({"op": "hello", "id": 1, "nonce": gateway.issue_nonce("a")}))
            assert protocol.decode(await reader.readline())["ok"]
            writer.write(protocol.encode({"op": "complete", "id": 2, "messages": MESSAGES}))
            await writer.drain()
            await asyncio.wait_for(backend.started.wait(), 5)
            writer.close()  # the agent dies while its call is in flight: it is paid for all the same
            await writer.wait_closed()
            assert backend.gate is not None and journal == []
            backend.gate.set()
            for _ in range(250):
                if journal:
                    break
                await asyncio.sleep(0.02)
        assert [(e.kind, e.key) for e in entries(journal)] == [
            (LLM, request_hash("fake", MESSAGES, None, None, None))
        ]

    asyncio.run(main())


def test_tool_results_are_recorded_and_replayed_once(sock_path: str) -> None:
    output = {"ok": True, "denied": False, "output": "a.txt\nb.txt", "summary": "list_dir . -> 2 entries"}

    async def main() -> None:
        async with journalling(sock_path, RecordingBackend()) as (gateway, _, first):
            client = await client_of(gateway, sock_path, "a")
            assert await asyncio.to_thread(client.tool_replay, "k1") is None  # no replay: a miss
            await asyncio.to_thread(client.tool_record, "k1", output)
            client.close()
        assert first == [("a", 1, JournalEntry(TOOL, "k1", output, seq=1))]

        async with journalling(sock_path, RecordingBackend()) as (gateway, records, second):
            client = await client_of(gateway, sock_path, "a", replay=Replay(entries(first)), attempt=2)
            assert await asyncio.to_thread(client.tool_replay, "k1") == output
            assert await asyncio.to_thread(client.tool_replay, "k1") is None  # recorded once
            assert await asyncio.to_thread(client.tool_replay, "k2") is None
            client.close()
        assert second == [("a", 2, JournalEntry(TOOL, "k1", output, replayed=True, seq=1))]
        assert records == []  # tool results are not LLM calls

    asyncio.run(main())


def test_tool_ops_check_their_fields(sock_path: str) -> None:
    async def main() -> None:
        async with journalling(sock_path, RecordingBackend()) as (gateway, _, journal):
            client = await client_of(gateway, sock_path, "a")
            bad: list[dict[str, Any]] = [
                {"op": "tool_replay"},
                {"op": "tool_replay", "key": 7},
                {"op": "tool_replay", "key": "x" * 257},
                {"op": "tool_record", "key": "k"},
                {"op": "tool_record", "key": "k", "output": "text"},
                {"op": "tool_record", "key": "", "output": {}},
            ]
            for message in bad:
                with pytest.raises(GatewayError) as caught:
                    await asyncio.to_thread(client._request, message)
                assert caught.value.code == protocol.BAD_REQUEST, message
            client.close()
        assert journal == []

    asyncio.run(main())


def test_journalled_answers_and_tool_outputs_are_masked(
    sock_path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ACME_API_KEY", CANARY)

    async def main() -> None:
        backend = RecordingBackend(script=[Completion(f"the key is {CANARY}", Usage.of(5, 5))])
        async with journalling(sock_path, backend) as (gateway, _, journal):
            client = await client_of(gateway, sock_path, "a")
            reply = await complete(client)
            await asyncio.to_thread(client.tool_record, "k", {"output": f"env: {CANARY}"})
            client.close()
        assert CANARY not in json.dumps(reply) and CANARY not in json.dumps(
            [e.to_dict() for e in entries(journal)]
        )
        assert entries(journal)[0].response["content"] == "the key is ***"
        assert entries(journal)[1].response == {"output": "env: ***"}

    asyncio.run(main())


def test_a_retry_in_the_same_gateway_journals_under_its_own_attempt(sock_path: str) -> None:
    async def main() -> None:
        async with journalling(sock_path, RecordingBackend()) as (gateway, _, journal):
            client = await client_of(gateway, sock_path, "a")
            await complete(client)
            client.close()
            gateway.begin_attempt("a", 2, Replay(entries(journal)))
            client = await connect(sock_path, gateway.issue_nonce("a"))
            assert (await complete(client))["replayed"] is True
            await complete(client, OTHER)
            client.close()
        assert [(n, e.seq, e.replayed) for _, n, e in journal] == [(1, 1, False), (2, 1, True), (2, 2, False)]

    asyncio.run(main())
