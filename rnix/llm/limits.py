"""A model's own cap on answer tokens, from litellm's bundled model map, read without importing litellm.

The gateway caps max_tokens by the budget only; a budget of a million tokens would otherwise ask
gpt-4o for a million-token answer, which the provider refuses with a 400. LiteLLMBackend asks
`litellm.get_model_info`; the lean client reads the same file litellm reads offline
(`model_prices_and_context_window_backup.json`, ~3 MB, ~50 ms to parse: once, in a worker thread)
and looks a model up as litellm does: the full string (`openrouter/openai/gpt-4o`), else the name
without its provider (`gpt-4o`) when the entry is that provider's. Compared with
`litellm.get_model_info` for every chat model of the lean client's providers in litellm 1.106.2:
the same limit for all 240. Unknown models, and a missing file, have no limit.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from rnix.llm import tokens

MAP_FILE = "model_prices_and_context_window_backup.json"

_map: dict[str, Any] | None = None
_loading: asyncio.Future[dict[str, Any]] | None = None


def model_map_path() -> Path | None:
    tokenizers = tokens.bundled_dir()  # litellm/litellm_core_utils/tokenizers, found without importing
    return None if tokenizers is None else tokenizers.parent.parent / MAP_FILE


def _read() -> dict[str, Any]:
    path = model_map_path()
    if path is None:
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def lookup(table: dict[str, Any], model: str) -> int | None:
    provider, _, name = model.split("?", 1)[0].partition("/")
    for key in (model, name):
        entry = table.get(key)
        if isinstance(entry, dict) and (key == model or entry.get("litellm_provider") == provider):
            limit = entry.get("max_output_tokens") or entry.get("max_tokens")
            try:
                return int(limit) if limit else None
            except (TypeError, ValueError):
                return None
    return None


async def output_limit(model: str) -> int | None:
    global _map, _loading
    if _map is None:
        loop = asyncio.get_running_loop()
        if _loading is None or _loading.get_loop() is not loop:
            _loading = asyncio.ensure_future(asyncio.to_thread(_read))
        _map = await asyncio.shield(_loading)
    return lookup(_map, model)
