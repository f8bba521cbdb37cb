"""Recognising secrets so that no output, log or record ever shows one.

Two layers: variables whose *name* says they hold a secret (`OPENAI_API_KEY`, `GITHUB_TOKEN`, ...), and
the *values* of such variables wherever they turn up (an intent that interpolated `${OPENAI_API_KEY}`
is masked too).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

MASK = "***"
MIN_SECRET_LENGTH = 6  # shorter values are too likely to occur by chance in ordinary text
_SECRET_NAME = re.compile(
    r"(^|_)(API_?KEY|TOKEN|SECRET|PASSWORD|PASSWD|PASSPHRASE|CREDENTIALS?|PRIVATE_KEY|ACCESS_KEY|SESSION_KEY)(_|$)",
    re.IGNORECASE,
)


def is_secret_name(name: str) -> bool:
    """True for variable names that conventionally hold credentials."""
    return bool(_SECRET_NAME.search(name))


def secret_values(environ: Mapping[str, str]) -> tuple[str, ...]:
    """The values of secret-named variables, longest first (so a longer one masks before its prefix)."""
    values = {v for k, v in environ.items() if is_secret_name(k) and len(v) >= MIN_SECRET_LENGTH}
    return tuple(sorted(values, key=len, reverse=True))


def dotenv_credentials(dotenv: Mapping[str, str], environ: Mapping[str, str]) -> dict[str, str]:
    """The secret-named `.env` values the gateway gets: those not already set in the real environment
    (the real environment wins, as in docker compose). Agents never get them."""
    return {k: v for k, v in dotenv.items() if is_secret_name(k) and k not in environ}


def merge_secrets(*groups: Iterable[str]) -> tuple[str, ...]:
    """Several sets of secret values as one, longest first."""
    return tuple(sorted({value for group in groups for value in group}, key=len, reverse=True))


def mask_text(text: str, secrets: Iterable[str]) -> str:
    for value in secrets:
        if value in text:
            text = text.replace(value, MASK)
    return text


def mask(obj: Any, secrets: tuple[str, ...]) -> Any:
    """A copy of a JSON-like tree with every secret value replaced by `***`."""
    if not secrets:
        return obj
    if isinstance(obj, str):
        return mask_text(obj, secrets)
    if isinstance(obj, dict):
        return {mask(k, secrets): mask(v, secrets) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [mask(v, secrets) for v in obj]
    return obj


def redact_environment(env: Mapping[str, str | None]) -> dict[str, str | None]:
    """An `environment:` mapping for display: values of secret-named keys become `***`."""
    return {k: (MASK if v is not None and is_secret_name(k) else v) for k, v in env.items()}
