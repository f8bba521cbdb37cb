"""The retry policy, with an injected sleep and jitter: exact delays, Retry-After, what is retried."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable

import pytest

from rnix.llm.backend import CallTimeout, Completion, ProviderError, Usage
from rnix.llm.retry import call_with_retries

OK = Completion("done", Usage.of(3, 4))
Outcome = Completion | ProviderError


class FakeSleep:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


def scripted(outcomes: Iterable[Outcome]) -> tuple[Callable[[], Awaitable[Completion]], list[int]]:
    queue = list(outcomes)
    calls: list[int] = []

    async def fn() -> Completion:
        calls.append(len(calls) + 1)
        outcome = queue.pop(0)
        if isinstance(outcome, ProviderError):
            raise outcome
        return outcome

    return fn, calls


def run(
    outcomes: Iterable[Outcome], rng: float = 1.0, **options: float
) -> tuple[Completion | ProviderError, list[float], list[tuple[int, str]]]:
    fn, _ = scripted(outcomes)
    sleep = FakeSleep()
    seen: list[tuple[int, str]] = []

    def on_attempt(attempt: int, outcome: Outcome, latency: float) -> None:
        assert latency >= 0
        seen.append((attempt, "ok" if isinstance(outcome, Completion) else str(outcome.status)))

    async def main() -> Completion:
        return await call_with_retries(
            fn,
            sleep=sleep,
            rng=lambda: rng,
            on_attempt=on_attempt,
            **options,  # type: ignore[arg-type]
        )

    try:
        result: Completion | ProviderError = asyncio.run(main())
    except ProviderError as exc:
        result = exc
    return result, sleep.delays, seen


def test_success_first_time_does_not_sleep() -> None:
    result, delays, seen = run([OK])
    assert result is OK and delays == [] and seen == [(1, "ok")]


def test_exponential_backoff_with_full_jitter() -> None:
    errors = [ProviderError("boom", status=500) for _ in range(3)]
    result, delays, seen = run([*errors, OK], rng=0.5, base_delay=0.5, max_delay=8)
    assert result is OK
    assert delays == [0.25, 0.5, 1.0]  # rng * base * 2**(n-1)
    assert seen == [(1, "500"), (2, "500"), (3, "500"), (4, "ok")]


def test_backoff_is_capped_by_max_delay() -> None:
    errors = [ProviderError("boom", status=503) for _ in range(5)]
    _, delays, _ = run([*errors, OK], rng=1.0, max_attempts=6, base_delay=1, max_delay=3)
    assert delays == [1.0, 2.0, 3.0, 3.0, 3.0]


def test_retry_after_is_waited_exactly_and_capped() -> None:
    outcomes: list[Outcome] = [
        ProviderError("slow down", status=429, retry_after=2.0),
        ProviderError("x", status=429, retry_after=90),
        OK,
    ]
    result, delays, _ = run(outcomes, rng=0.0, max_retry_after=30)
    assert result is OK
    assert delays == [2.0, 30.0]


def test_gives_up_after_max_attempts_with_the_last_error() -> None:
    errors = [ProviderError(f"boom {i}", status=502) for i in range(4)]
    result, delays, seen = run(errors, rng=0.0, max_attempts=4)
    assert isinstance(result, ProviderError) and result.message == "boom 3; gave up after 4 attempts"
    assert result.status == 502 and result.retryable
    assert len(delays) == 3
    assert [n for n, _ in seen] == [1, 2, 3, 4]


def test_each_error_says_what_the_policy_did_with_it() -> None:
    messages: list[str] = []
    outcomes: list[Outcome] = [
        ProviderError("slow down", status=429, retry_after=600),
        CallTimeout("late"),
        ProviderError("slow down", status=429, retry_after=1.5),
        ProviderError("still", status=503),
    ]

    async def main() -> Completion:
        fn, _ = scripted(outcomes)
        return await call_with_retries(
            fn,
            sleep=FakeSleep(),
            rng=lambda: 0.5,
            max_retry_after=30,
            on_attempt=lambda n, outcome, _: messages.append(str(outcome)),
        )

    with pytest.raises(ProviderError) as caught:
        asyncio.run(main())
    assert messages == [
        "slow down; retry 2 of 4 in 30s, Retry-After 600s capped at 30s",
        "late; retry 3 of 4 in 0.5s, Retry-After 600s capped at 30s",
        "slow down; retry 4 of 4 in 1.5s, Retry-After 600s capped at 30s",
        "still; gave up after 4 attempts, Retry-After 600s capped at 30s",
    ]
    assert caught.value.message == messages[-1] and caught.value.status == 503


def test_an_error_that_is_not_retried_says_so() -> None:
    result, _, _ = run([ProviderError("bad", status=400)])
    assert isinstance(result, ProviderError) and result.message == "bad; not retried"
    later, _, _ = run([CallTimeout("late"), ProviderError("gone", status=404)], rng=0.0)
    assert isinstance(later, ProviderError) and later.message == "gone; attempt 2 of 4, not retried"
    once, _, _ = run([CallTimeout("late")], max_attempts=1)
    assert isinstance(once, CallTimeout) and once.message == "late; gave up after 1 attempt"


def test_the_note_survives_the_one_line_limit() -> None:
    result, _, _ = run([ProviderError("x" * 2000, status=400)])
    assert isinstance(result, ProviderError) and result.message.endswith("...; not retried")
    assert len(result.message) <= 500


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_client_errors_are_not_retried(status: int) -> None:
    result, delays, seen = run([ProviderError("bad", status=status), OK])
    assert isinstance(result, ProviderError) and result.status == status
    assert delays == [] and seen == [(1, str(status))]


def test_timeouts_and_connection_errors_are_retried() -> None:
    outcomes: list[Outcome] = [CallTimeout("late"), ProviderError("refused", status=None), OK]
    result, delays, seen = run(outcomes, rng=0.0)
    assert result is OK and len(delays) == 2 and len(seen) == 3


def test_provider_error_is_one_line() -> None:
    error = ProviderError("first line\nsecond   line\n" + "x" * 1000, status=500)
    assert "\n" not in error.message and error.message.startswith("first line second line")
    assert len(error.message) <= 500
