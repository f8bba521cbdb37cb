"""Per-model limits from a model alias: `max_concurrency` calls at once and `rpm` calls a minute.

`ModelGate` is an async context manager the gateway enters around each provider attempt, inside
the provider-wide semaphore. Concurrency is a semaphore; the rate is a sliding window: a call may
start when fewer than `rpm` calls started in the last 60 seconds, else it waits for the oldest to
leave the window. Waiting costs no tokens and does not count against the call's timeout (the
timeout covers the provider's answer, once the call is sent).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from types import TracebackType

WINDOW = 60.0


class ModelGate:
    def __init__(
        self,
        max_concurrency: int | None,
        rpm: int | None,
        clock: Callable[[], float] | None = None,
        sleep: Callable[[float], object] = asyncio.sleep,
    ) -> None:
        self._semaphore = asyncio.Semaphore(max_concurrency) if max_concurrency else None
        self._rpm = rpm
        self._started: deque[float] = deque()
        self._clock = clock or asyncio.get_running_loop().time
        self._sleep = sleep
        self._lock = asyncio.Lock()

    async def __aenter__(self) -> ModelGate:
        if self._semaphore is not None:
            await self._semaphore.acquire()
        try:
            await self._wait_for_rate()
        except BaseException:
            if self._semaphore is not None:
                self._semaphore.release()
            raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._semaphore is not None:
            self._semaphore.release()

    async def _wait_for_rate(self) -> None:
        if not self._rpm:
            return
        async with self._lock:  # one waiter at a time keeps the order of calls
            while True:
                now = self._clock()
                while self._started and now - self._started[0] >= WINDOW:
                    self._started.popleft()
                if len(self._started) < self._rpm:
                    self._started.append(now)
                    return
                await self._sleep(WINDOW - (now - self._started[0]))  # type: ignore[misc]
