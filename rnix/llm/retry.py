"""rnix's retry policy for LLM calls: exponential backoff with full jitter, honouring Retry-After.

Attempt n (1-based) that fails retryably is followed by a wait of `rng() * min(max_delay,
base_delay * 2**(n-1))` ("full jitter": concurrent agents that failed together do not retry
together), or, when the provider sent Retry-After, exactly `min(retry_after, max_retry_after)`
(a provider asking for ten minutes does not stall a run for ten minutes; the next attempt may fail
again and is charged like any other). Non-retryable errors end the call at once. `on_attempt` sees
every attempt, successful or not, so the gateway can record and charge each of them.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable

from rnix.llm.backend import Completion, ProviderError

OnAttempt = Callable[[int, Completion | ProviderError, float], None]


def will_retry(outcome: Completion | ProviderError, attempt: int, max_attempts: int) -> bool:
    """Whether attempt number `attempt` with this outcome is followed by another one."""
    return isinstance(outcome, ProviderError) and outcome.retryable and attempt < max_attempts


def backoff_delay(
    error: ProviderError,
    attempt: int,
    *,
    base_delay: float,
    max_delay: float,
    max_retry_after: float,
    rng: Callable[[], float],
) -> float:
    if error.retry_after is not None:
        return max(0.0, min(error.retry_after, max_retry_after))
    return rng() * min(max_delay, base_delay * 2.0 ** (attempt - 1))


async def call_with_retries(
    fn: Callable[[], Awaitable[Completion]],
    *,
    max_attempts: int = 4,
    base_delay: float = 0.5,
    max_delay: float = 8.0,
    max_retry_after: float = 30.0,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    rng: Callable[[], float] = random.random,
    on_attempt: OnAttempt | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> Completion:
    """The first successful Completion; raises the last ProviderError when every attempt failed."""
    if max_attempts < 1:
        raise ValueError("max_attempts must be at least 1")
    attempt = 0
    while True:
        attempt += 1
        started = clock()
        outcome: Completion | ProviderError
        try:
            outcome = await fn()
        except ProviderError as exc:
            outcome = exc
        if on_attempt is not None:
            on_attempt(attempt, outcome, clock() - started)
        if isinstance(outcome, Completion):
            return outcome
        if not will_retry(outcome, attempt, max_attempts):
            raise outcome
        await sleep(
            backoff_delay(
                outcome,
                attempt,
                base_delay=base_delay,
                max_delay=max_delay,
                max_retry_after=max_retry_after,
                rng=rng,
            )
        )
