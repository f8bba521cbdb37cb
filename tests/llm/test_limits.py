"""The lean client's output limits (rnix.llm.limits) are litellm's, read without importing litellm."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest

from rnix.core.models import PROVIDERS
from rnix.llm import limits
from rnix.llm.litellm_backend import load_litellm
from rnix.llm.routing import OPENAI_PROTOCOL

# litellm's own pydantic models warn when first built (a third-party detail, not rnix's).
pytestmark = pytest.mark.filterwarnings("ignore:.*`ReadOnly` qualifier:UserWarning")


def test_the_same_limit_as_litellm_for_every_chat_model_of_the_lean_providers() -> None:
    litellm = asyncio.run(load_litellm())  # as the gateway does: in a worker thread
    table = limits.read(limits.model_map_path())
    models = [
        key if key.startswith(f"{entry['litellm_provider']}/") else f"{entry['litellm_provider']}/{key}"
        for key, entry in litellm.model_cost.items()
        if entry.get("litellm_provider") in OPENAI_PROTOCOL and entry.get("mode") == "chat"
    ]
    models += ["openai/test-model", "groq/unknown", "ollama/llama3"]
    assert len(models) > 100

    def theirs(model: str) -> int | None:
        try:
            info = litellm.get_model_info(model)
        except Exception:
            return None
        limit = info.get("max_output_tokens") or info.get("max_tokens")
        return int(limit) if limit else None

    differ = {m: (limits.lookup(table, m), theirs(m)) for m in models if limits.lookup(table, m) != theirs(m)}
    assert differ == {}
    assert limits.lookup(table, "openai/gpt-4o") == 16384 and "openai" in PROVIDERS


def test_reading_the_map_does_not_import_litellm() -> None:
    code = (
        "import sys; from rnix.llm import limits; "
        "t = limits.read(limits.model_map_path()); "
        "print(limits.lookup(t, 'openai/gpt-4o'), 'litellm' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["16384", "False"]


def test_no_map_no_limit() -> None:
    assert limits.read(None) == {} and limits.lookup({}, "openai/gpt-4o") is None
