"""Per-model limits: calls at once, and calls a minute (a sliding window), with a fake clock; and
the waits the gateway reports (an agent waiting for them, or for a retry after HTTP 429)."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile

from rnix.llm.backend import Completion, ProviderError
from rnix.supervisor.ratelimit import ModelGate, Waits
from tests.supervisor.test_gateway import FakeSleep, RecordingBackend, complete, connect, running, statuses


def test_at_most_max_concurrency_calls_at_once() -> None:
    async def main() -> int:
        gate, inside, most = ModelGate(2, None), 0, 0

        async def call() -> None:
            nonlocal inside, most
            async with gate:
                inside += 1
                most = max(most, inside)
                await asyncio.sleep(0.01)
                inside -= 1

        await asyncio.gather(*(call() for _ in range(7)))
        return most

    assert asyncio.run(main()) == 2


def test_rpm_spreads_calls_over_the_minute() -> None:
    now = [0.0]
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    async def main() -> list[float]:
        gate = ModelGate(None, 3, clock=lambda: now[0], sleep=sleep)
        starts = []
        for _ in range(7):
            async with gate:
                starts.append(now[0])
            now[0] += 1.0  # each call takes a second
        return starts

    assert asyncio.run(main()) == [0.0, 1.0, 2.0, 60.0, 61.0, 62.0, 120.0]
    assert slept == [57.0, 57.0]


# -- waits: who is rate limited -------------------------------------------------------------------------

Heard = list[tuple[str, bool, str, float | None]]


def test_a_wait_is_reported_once_it_lasts_and_overlapping_waits_count_once() -> None:
    heard: Heard = []

    async def main() -> None:
        waits = Waits(lambda *report: heard.append(report), threshold=0.05)
        with waits.watch("a", "rpm"):
            await asyncio.sleep(0.01)  # too short to say anything
        assert heard == []
        with waits.watch("a", lambda: "max_concurrency"):
            await asyncio.sleep(0.1)
            with waits.watch("a", "http_429", seconds=2.0):  # known and long enough: at once
                assert heard == [("a", True, "max_concurrency", None)]
            with waits.watch("a", "http_429", seconds=0.01):  # known and short: never
                pass
        assert heard == [("a", True, "max_concurrency", None), ("a", False, "max_concurrency", None)]
        heard.clear()
        with waits.watch("b", "http_429", seconds=1.0):
            pass
        assert heard == [("b", True, "http_429", 1.0), ("b", False, "http_429", None)]

    asyncio.run(main())


def test_a_failing_listener_does_not_break_the_wait() -> None:
    def broken(*report: object) -> None:
        raise RuntimeError("recorder gone")

    async def main() -> None:
        with Waits(broken, threshold=0.0).watch("a", "rpm", seconds=1.0):
            pass

    asyncio.run(main())


def test_the_gateway_reports_waits_for_a_429s_retry_and_for_max_concurrency() -> None:
    heard: Heard = []
    directory = tempfile.mkdtemp(prefix="rnix-gw-", dir="/tmp")  # short: a Unix socket path's limit
    sock_path = os.path.join(directory, "gw.sock")

    async def main() -> None:
        sleep = FakeSleep()
        script: list[Completion | ProviderError | float] = [
            ProviderError("HTTP 429", status=429, retry_after=3.0),
            ProviderError("HTTP 500", status=500, retry_after=4.0),  # a retry, but not a rate limit
        ]
        backend = RecordingBackend(script=script)
        options = {"backends": {"*": backend}, "sleep": sleep, "on_wait": lambda *r: heard.append(r)}
        async with running(sock_path, **options) as (gateway, records):
            gateway.register("a", model="fake", api_base=None, budget=10_000)
            client = await connect(sock_path, gateway.issue_nonce("a"))
            assert (await complete(client))["ok"]
            client.close()
        assert statuses(records) == ["retry", "retry", "ok"] and sleep.delays == [3.0, 4.0]
        assert heard == [("a", True, "http_429", 3.0), ("a", False, "http_429", None)]

        heard.clear()
        backend = RecordingBackend(gate=asyncio.Event())
        options = {"backends": {"*": backend}, "on_wait": lambda *r: heard.append(r)}
        async with running(sock_path, **options) as (gateway, records):
            gateway.limit_model("fake", 1, None)
            gateway.register("a", model="fake", api_base=None, budget=10_000)
            gateway.register("b", model="fake", api_base=None, budget=10_000)
            one = await connect(sock_path, gateway.issue_nonce("a"))
            two = await connect(sock_path, gateway.issue_nonce("b"))
            first = asyncio.ensure_future(complete(one))
            await asyncio.wait_for(backend.started.wait(), 5)
            second = asyncio.ensure_future(complete(two))
            for _ in range(200):
                if heard:
                    break
                await asyncio.sleep(0.01)
            assert heard == [("b", True, "max_concurrency", None)] and len(backend.calls) == 1
            assert backend.gate is not None
            backend.gate.set()
            await asyncio.gather(first, second)
            one.close()
            two.close()
        assert heard == [("b", True, "max_concurrency", None), ("b", False, "max_concurrency", None)]

    try:
        asyncio.run(main())
    finally:
        shutil.rmtree(directory, ignore_errors=True)
