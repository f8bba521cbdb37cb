"""What the gateway needs from an LLM: one async `complete` call, a Completion, or a ProviderError.

A backend makes exactly one attempt per call (retries belong to `rnix.llm.retry`, so that every
attempt is visible and charged). Error messages are one line and already masked: they are safe to
return to an agent and to record.

`CALLER` names the agent on whose behalf a call is made. The gateway sets it around each call; a
backend that keeps per-agent state (the mock's `fail=N`) reads it instead of widening `complete`.
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass
from typing import Any, Protocol

MAX_ERROR_LENGTH = 500

CALLER: contextvars.ContextVar[str | None] = contextvars.ContextVar("rnix_llm_caller", default=None)


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int

    @classmethod
    def of(cls, prompt_tokens: int, completion_tokens: int) -> Usage:
        return cls(prompt_tokens, completion_tokens, prompt_tokens + completion_tokens)

    def as_dict(self) -> dict[str, int]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
        }


@dataclass(frozen=True)
class Completion:
    content: str
    usage: Usage
    finish_reason: str | None = "stop"
    tool_calls: list[dict[str, Any]] | None = None
    usage_counted: bool = False  # True when rnix counted usage because the provider reported none


def one_line(text: str, limit: int = MAX_ERROR_LENGTH) -> str:
    """Collapse whitespace runs (newlines included) and cut to `limit` characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


class ProviderError(Exception):
    """One failed attempt. `retryable`: 429, 5xx, connection errors and timeouts."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        retryable: bool | None = None,
    ) -> None:
        self.message = one_line(message)
        super().__init__(self.message)
        self.status = status
        self.retry_after = retry_after
        self.retryable = is_retryable_status(status) if retryable is None else retryable

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, status={self.status}, retryable={self.retryable})"


class CallTimeout(ProviderError):
    """The provider did not answer within the call's timeout (retryable)."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message, status=status, retryable=True)


def is_retryable_status(status: int | None) -> bool:
    """None means no HTTP answer at all (connection refused or reset): worth another try."""
    return status is None or status == 429 or status >= 500


class Backend(Protocol):
    async def complete(
        self,
        *,
        model: str,
        messages: list[dict[str, Any]],
        max_tokens: int,
        api_base: str | None,
        timeout: float,
        tools: list[Any] | None = None,
        temperature: float | None = None,
    ) -> Completion: ...
