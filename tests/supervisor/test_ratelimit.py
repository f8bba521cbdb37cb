"""Per-model limits: calls at once, and calls a minute (a sliding window), with a fake clock."""

from __future__ import annotations

import asyncio

from rnix.supervisor.ratelimit import ModelGate


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
