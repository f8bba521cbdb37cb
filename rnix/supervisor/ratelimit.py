"""Per-model limits from a model alias: `max_concurrency` calls at once and `rpm` calls a minute.

`ModelGate` is an async context manager the gateway enters around each provider attempt, inside
the provider-wide semaphore. Concurrency is a semaphore; the rate is a sliding window: a call may
start when fewer than `rpm` calls started in the last 60 seconds, else it waits for the oldest to
leave the window. Waiting costs no tokens and does not count against the call's timeout (the
timeout covers the provider's answer, once the call is sent).

`Waits` says which agents wait (for a gate, or before a retry after HTTP 429), so that `ps` can show
them `rate_limited`: `on_wait(agent, True, reason, seconds)` once an agent's first wait has lasted
`threshold` seconds (at once for a wait of known length at least that long; `seconds` is then its
length), and `on_wait(agent, False, reason, None)` when its last one ends. Shorter waits are not
reported, which keeps the event log small under ordinary contention.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable, Iterator
from types import TracebackType

log = logging.getLogger(__name__)

WINDOW = 60.0
WAIT_REPORTED_AFTER = 0.25  # seconds

OnWait = Callable[[str, bool, str, float | None], None]  # (agent, waiting, reason, seconds)


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

    def blocking(self) -> str:
        """What a call waiting at this gate waits for: `max_concurrency` or `rpm`."""
        return "max_concurrency" if self._semaphore is not None and self._semaphore.locked() else "rpm"

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


class Waits:
    """Reports agents' waits to `on_wait` (see the module docstring); counts overlapping waits of
    one agent (a command agent may have several calls in flight) as one."""

    def __init__(self, on_wait: OnWait | None, threshold: float = WAIT_REPORTED_AFTER) -> None:
        self._on_wait = on_wait
        self._threshold = threshold
        self._waiting: dict[str, tuple[int, str]] = {}  # agent -> (reported waits, first reason)

    @contextlib.contextmanager
    def watch(
        self, agent: str, reason: str | Callable[[], str], seconds: float | None = None
    ) -> Iterator[None]:
        """Around one wait of one of `agent`'s calls; `seconds`: its length when known."""
        if self._on_wait is None or (seconds is not None and seconds < self._threshold):
            yield
            return
        reported = False

        def report() -> None:
            nonlocal reported
            reported = True
            count, first = self._waiting.get(agent, (0, ""))
            if count == 0:
                first = reason() if callable(reason) else reason
                self._emit(agent, True, first, seconds)
            self._waiting[agent] = (count + 1, first)

        timer = None
        if seconds is None:
            timer = asyncio.get_running_loop().call_later(self._threshold, report)
        else:
            report()
        try:
            yield
        finally:
            if timer is not None:
                timer.cancel()
            if reported:
                count, first = self._waiting.pop(agent)
                if count > 1:
                    self._waiting[agent] = (count - 1, first)
                else:
                    self._emit(agent, False, first, None)

    def _emit(self, agent: str, waiting: bool, reason: str, seconds: float | None) -> None:
        assert self._on_wait is not None
        try:
            self._on_wait(agent, waiting, reason, seconds)
        except Exception:  # a broken recorder must not break the call
            log.exception("on_wait failed for agent %s", agent)
