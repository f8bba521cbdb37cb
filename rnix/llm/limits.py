"""A model's own cap on answer tokens, from litellm's bundled model map, read without importing litellm.

The gateway caps max_tokens by the budget only; a budget of a million tokens would otherwise ask
gpt-4o for a million-token answer, which the provider refuses with a 400. LiteLLMBackend asks
`litellm.get_model_info`; the lean client reads the same file litellm reads offline
(`model_prices_and_context_window_backup.json`, ~3 MB, ~50 ms to parse: once, in a worker thread,
keeping ~1 MB: each key's limit and provider) and looks a model up as litellm does: the full
string (`openrouter/openai/gpt-4o`), else the name without its provider (`gpt-4o`) when the entry
is that provider's. tests/llm/test_limits.py compares it with `litellm.get_model_info` for every
chat model of the lean client's providers (all 240 agree in litellm 1.106.2). Unknown models, and a
missing file, have no limit.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from rnix.llm import tokens

MAP_FILE = "model_prices_and_context_window_backup.json"

Limits = dict[str, tuple[int | None, str | None]]  # model key -> (output limit, litellm_provider)

_limits: Limits | None = None
_loading: asyncio.Future[Limits] | None = None


def model_map_path() -> Path | None:
    tokenizers = tokens.bundled_dir()  # litellm/litellm_core_utils/tokenizers, found without importing
    return None if tokenizers is None else tokenizers.parent.parent / MAP_FILE


def _limit(entry: dict[str, Any]) -> int | None:
    value = entry.get("max_output_tokens") or entry.get("max_tokens")
    try:
        return int(value) if value else None
    except (TypeError, ValueError):
        return None


def read(path: Path | None) -> Limits:
    """Only what a lookup needs: the parsed map (~4,000 entries of prices and features) is let go."""
    if path is None:
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {
        key: (_limit(entry), entry.get("litellm_provider"))
        for key, entry in data.items()
        if isinstance(entry, dict)
    }


def lookup(table: Limits, model: str) -> int | None:
    provider, _, name = model.split("?", 1)[0].partition("/")
    for key in (model, name):
        found = table.get(key)
        if found is not None and (key == model or found[1] == provider):
            return found[0]
    return None


async def load() -> Limits:
    """The table, read once in a worker thread (concurrent first callers share the read)."""
    global _limits, _loading
    if _limits is None:
        loop = asyncio.get_running_loop()
        if _loading is None or _loading.get_loop() is not loop:
            _loading = asyncio.ensure_future(asyncio.to_thread(read, model_map_path()))
        _limits = await asyncio.shield(_loading)
    return _limits


async def output_limit(model: str) -> int | None:
    return lookup(await load(), model)
