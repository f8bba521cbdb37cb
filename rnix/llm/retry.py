"""rnix's retry policy for LLM calls: exponential backoff with full jitter, honouring Retry-After.

Attempt n (1-based) that fails retryably is followed by a wait of `rng() * min(max_delay,
base_delay * 2**(n-1))` ("full jitter": concurrent agents that failed together do not retry
together), or, when the provider sent Retry-After, exactly `min(retry_after, max_retry_after)`
(a provider asking for ten minutes does not stall a run for ten minutes; the next attempt may fail
again and is charged like any other). Non-retryable errors end the call at once. `on_attempt` sees
every attempt, successful or not, so the gateway can record and charge each of them.

What the policy did is said in the errors themselves, so that it shows wherever they go (the
agent's error in `--json`, `rnix log`, `rnix log --llm`): an error that is retried reaches
`on_attempt` as `...; retry 2 of 4 in 1.2s`, the error that ends the call is raised as `...; gave up
after 4 attempts` (or `...; not retried`, or `...; attempt 2 of 4, not retried`), and each adds
`Retry-After 600s capped at 30s` when the provider asked for longer than the cap (the largest
request of the call so far). The provider's own message comes first and is unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import math
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from rnix.llm.backend import MAX_ERROR_LENGTH, Completion, ProviderError, one_line

OnAttempt = Callable[[int, Completion | ProviderError, float], None]

MAX_ATTEMPTS_VARIABLE = "RNIX_LLM_MAX_ATTEMPTS"
MAX_RETRY_AFTER_VARIABLE = "RNIX_LLM_MAX_RETRY_AFTER"


@dataclass(frozen=True)
class Settings:
    """The two limits a user may change (tests make them small): attempts per call, and the longest
    Retry-After waited."""

    max_attempts: int = 4
    max_retry_after: float = 30.0

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> Settings:
        """`RNIX_LLM_MAX_ATTEMPTS` (an integer >= 1) and `RNIX_LLM_MAX_RETRY_AFTER` (seconds >= 0);
        a value that is not one is ignored (the default stays)."""
        default = cls()
        attempts, cap = default.max_attempts, default.max_retry_after
        with contextlib.suppress(ValueError):
            attempts = max(1, int(environ.get(MAX_ATTEMPTS_VARIABLE) or attempts))
        with contextlib.suppress(ValueError):
            value = float(environ.get(MAX_RETRY_AFTER_VARIABLE) or cap)
            cap = value if math.isfinite(value) and value >= 0 else cap
        return cls(attempts, cap)


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


def annotated(error: ProviderError, note: str) -> ProviderError:
    """A copy of `error` (same class, status, retry_after) whose message ends with `; note`; the
    provider's part is shortened so that the note survives the one-line limit."""
    out = copy.copy(error)
    out.message = f"{one_line(error.message, MAX_ERROR_LENGTH - len(note) - 2)}; {note}"
    out.args = (out.message,)
    return out


def _seconds(value: float) -> str:
    return f"{value:.1f}s" if value < 10 else f"{value:.0f}s"


def policy_note(
    error: ProviderError,
    attempt: int,
    max_attempts: int,
    delay: float | None,
    asked: float | None,
    max_retry_after: float,
) -> str:
    """What the policy does after this failed attempt (see the module docstring). `delay`: the wait
    before the next attempt, None when there is none; `asked`: the largest Retry-After so far."""
    if delay is not None:
        note = f"retry {attempt + 1} of {max_attempts} in {_seconds(delay)}"
    elif not error.retryable:
        note = "not retried" if attempt == 1 else f"attempt {attempt} of {max_attempts}, not retried"
    else:
        note = f"gave up after {attempt} attempt" + ("s" if attempt != 1 else "")
    if asked is not None and asked > max_retry_after:
        note += f", Retry-After {_seconds(asked)} capped at {_seconds(max_retry_after)}"
    return note


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
    asked: float | None = None  # the largest Retry-After of this call
    while True:
        attempt += 1
        started = clock()
        outcome: Completion | ProviderError
        try:
            outcome = await fn()
        except ProviderError as exc:
            outcome = exc
        latency = clock() - started
        if isinstance(outcome, Completion):
            if on_attempt is not None:
                on_attempt(attempt, outcome, latency)
            return outcome
        if outcome.retry_after is not None:
            asked = max(asked or 0.0, outcome.retry_after)
        delay: float | None = None
        if will_retry(outcome, attempt, max_attempts):
            delay = backoff_delay(
                outcome,
                attempt,
                base_delay=base_delay,
                max_delay=max_delay,
                max_retry_after=max_retry_after,
                rng=rng,
            )
        described = annotated(
            outcome, policy_note(outcome, attempt, max_attempts, delay, asked, max_retry_after)
        )
        if on_attempt is not None:
            on_attempt(attempt, described, latency)
        if delay is None:
            raise described
        await sleep(delay)
