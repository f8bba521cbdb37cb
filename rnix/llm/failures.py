"""How a failed attempt is described: one wording for both clients (the lean one and litellm).

Every function returns a ProviderError whose message is one line, masked with the secret values of
the supervisor's environment, and starts with where the call went (`model at api_base`):

- `http_error`: the provider answered an HTTP error: `HTTP 429 from M at B: <its message> (hint)`;
  429 and 5xx are retryable, other statuses are not; Retry-After is kept for the retry policy.
- `not_json`: the provider answered 200 with a body that is not JSON (a proxy's or a web UI's page,
  an api_base missing its `/v1`): said as such, with the start of the body, and not retried (the
  same URL gives the same page). Never "HTTP 500".
- `malformed`: JSON, but not a chat completion (no `choices`): a retryable 502, as a bad gateway.
- `unreachable`: no HTTP answer (refused, reset, DNS): retryable, status None.
- `no_answer`: the call's timeout passed: a CallTimeout.
"""

from __future__ import annotations

import email.utils
import os
import time
from collections.abc import Mapping

from rnix.core.secrets import mask_text, secret_values
from rnix.llm.backend import CallTimeout, ProviderError

HINTS = {
    401: " (check the provider's API key: `rnix models` shows which variable it comes from)",
    403: " (the key is not allowed to use this model)",
    404: " (check the model name and api_base: `rnix models` lists the aliases)",
    429: " (rate limited: lower max_concurrency or rpm for this model, or retry later)",
}
UNREACHABLE_HINT = " (is the server running, and is api_base right?)"
NOT_JSON_HINT = " (check api_base: an OpenAI-compatible server answers JSON under .../v1)"
SNIPPET = 120  # characters of an unexpected body worth showing


def where(model: str, api_base: str | None) -> str:
    return model + (f" at {api_base}" if api_base else "")


def _masked(text: str) -> str:
    return mask_text(text, secret_values(os.environ))


def parse_retry_after(headers: Mapping[str, str] | None) -> float | None:
    """Seconds from `retry-after-ms` or `retry-after` (seconds or an HTTP date); None if absent."""
    if not headers:
        return None
    lowered = {str(k).lower(): str(v) for k, v in headers.items()}
    try:
        if "retry-after-ms" in lowered:
            return max(0.0, float(lowered["retry-after-ms"]) / 1000)
        value = lowered.get("retry-after")
        if value is None:
            return None
        try:
            return max(0.0, float(value))
        except ValueError:
            when = email.utils.parsedate_to_datetime(value)
            return max(0.0, when.timestamp() - time.time())
    except (ValueError, TypeError, OverflowError):
        return None


def http_error(
    status: int, text: str, model: str, api_base: str | None, headers: Mapping[str, str] | None = None
) -> ProviderError:
    message = f"HTTP {status} from {where(model, api_base)}: {text or 'no message'}{HINTS.get(status, '')}"
    return ProviderError(_masked(message), status=status, retry_after=parse_retry_after(headers))


def not_json(body: str, model: str, api_base: str | None) -> ProviderError:
    start = " ".join(body.split())[:SNIPPET]
    message = f"HTTP 200 from {where(model, api_base)} but the body is not JSON: {start!r}{NOT_JSON_HINT}"
    return ProviderError(_masked(message), status=200, retryable=False)


def malformed(detail: str, model: str, api_base: str | None) -> ProviderError:
    message = f"malformed response from {where(model, api_base)}: {detail}"
    return ProviderError(_masked(message), status=502)


def unreachable(detail: str, model: str, api_base: str | None) -> ProviderError:
    message = f"cannot connect to {where(model, api_base)}: {detail}{UNREACHABLE_HINT}"
    return ProviderError(_masked(message), status=None)


def no_answer(model: str, api_base: str | None, timeout: float | None) -> CallTimeout:
    within = f"{timeout:g}s" if timeout else "the timeout"
    return CallTimeout(_masked(f"{where(model, api_base)}: no answer within {within}"))
