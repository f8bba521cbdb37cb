"""Token counting works offline, exactly, fast, and without importing litellm."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rnix.llm import tokens

ROOT = Path(__file__).resolve().parents[2]

OFFLINE_PROBE = """
import json, os, sys, time
started = time.monotonic()
from rnix.llm import tokens
result = {
    "cl100k": tokens.count_text("hello world", "mock"),
    "o200k": tokens.count_text("日本語のテキストです", "openai/gpt-4o-mini"),
    "cl100k_ja": tokens.count_text("日本語のテキストです", "mock"),
    "messages": tokens.count_messages(
        [{"role": "system", "content": "You are helpful."}, {"role": "user", "content": "hello world"}],
        "mock",
    ),
    "approximate": tokens.approximate,
    "litellm_imported": "litellm" in sys.modules,
    "cache_dir_after": os.environ.get("TIKTOKEN_CACHE_DIR"),
}
result["seconds"] = time.monotonic() - started
print(json.dumps(result))
"""


def offline_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("TIKTOKEN_CACHE_DIR", "DATA_GYM_CACHE_DIR")}
    # Any attempt to download an encoding goes to a closed port and fails at once.
    env.update(HTTPS_PROXY="http://127.0.0.1:9", HTTP_PROXY="http://127.0.0.1:9", NO_PROXY="")
    env["TMPDIR"] = str(tmp_path)  # so tiktoken's default cache (/tmp/data-gym-cache) is empty too
    env["PYTHONPATH"] = str(ROOT)
    return env


def test_counts_exactly_offline_in_a_fresh_process(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", OFFLINE_PROBE],
        env=offline_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    result = json.loads(done.stdout)
    # Loading both encodings takes ~0.7 s; a download attempt offline would take far longer.
    elapsed = result.pop("seconds")
    assert result == {
        "cl100k": 2,
        "o200k": 7,
        "cl100k_ja": 9,
        "messages": 17,  # (3 + 1 + 4) + (3 + 1 + 2) + 3
        "approximate": False,
        "litellm_imported": False,
        "cache_dir_after": None,  # the user's environment is left as it was
    }
    assert elapsed < 5, f"offline counting took {elapsed:.1f}s"


def test_falls_back_to_an_estimate_when_no_encoding_file_exists(tmp_path: Path) -> None:
    probe = (
        "from rnix.llm import tokens\n"
        "tokens.bundled_dir = lambda: None\n"
        "print(tokens.count_text('x' * 40, 'mock'), tokens.approximate)\n"
    )
    env = offline_env(tmp_path)
    env["TIKTOKEN_CACHE_DIR"] = str(tmp_path / "empty")
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["11", "True"]
    assert time.monotonic() - started < 5


@pytest.mark.parametrize(
    ("model", "encoding"),
    [
        ("mock", "cl100k_base"),
        ("mock?words=3", "cl100k_base"),
        ("gpt-4", "cl100k_base"),
        ("anthropic/claude-3-5-sonnet", "cl100k_base"),
        ("gpt-4o", "o200k_base"),
        ("openai/gpt-4o-mini", "o200k_base"),
        ("gpt-4.1-nano", "o200k_base"),
        ("azure/gpt-5", "o200k_base"),
        ("o1-preview", "o200k_base"),
        ("o3-mini", "o200k_base"),
    ],
)
def test_encoding_follows_the_model_family(model: str, encoding: str) -> None:
    assert tokens.encoding_name(model) == encoding


def test_truncate_keeps_a_prefix_within_the_limit() -> None:
    text = "The quick brown fox jumps over the lazy dog. " * 5
    cut = tokens.truncate_text(text, 7, "mock")
    assert text.startswith(cut)
    assert tokens.count_text(cut, "mock") == 7
    assert tokens.truncate_text(text, 1000, "mock") == text
    assert tokens.truncate_text(text, 0, "mock") == ""
    multibyte = "日本語のテキストです" * 3
    assert tokens.count_text(tokens.truncate_text(multibyte, 4, "mock"), "mock") <= 4


def test_message_shapes_are_counted_without_crashing() -> None:
    parts = [{"type": "text", "text": "hello world"}, {"type": "image_url", "image_url": {"url": "x"}}]
    assert tokens.count_messages([{"role": "user", "content": parts}], "mock") > 9
    named = tokens.count_messages([{"role": "user", "name": "bob", "content": "hello world"}], "mock")
    assert named == 9 + 1 + 1
    calls = [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]
    assert tokens.count_messages([{"role": "assistant", "content": None, "tool_calls": calls}], "mock") > 7
    tools = [{"type": "function", "function": {"name": "search", "parameters": {}}}]
    plain = [{"role": "user", "content": "hi"}]
    assert tokens.count_prompt(plain, "mock", tools) > tokens.count_prompt(plain, "mock")


@settings(max_examples=200, deadline=None)
@given(
    texts=st.lists(st.text(max_size=200), min_size=1, max_size=5),
    name=st.one_of(st.none(), st.text(min_size=1, max_size=10)),
)
def test_the_byte_bound_is_never_below_the_exact_count(texts: list[str], name: str | None) -> None:
    """The gateway lets `upper_bound` decide a provider's budget check without an encoding: it must
    never undercount, whatever the text (multi-byte characters, lone surrogates, tool calls)."""
    messages: list[dict[str, Any]] = [{"role": "user", "content": t} for t in texts]
    if name is not None:
        messages[0]["name"] = name
    messages.append({"role": "assistant", "content": None, "tool_calls": [{"function": {"name": "f"}}]})
    tools = [{"type": "function", "function": {"name": "f", "parameters": {}}}]
    for model in ("gpt-4o-mini", "mock"):
        assert tokens.upper_bound(messages, tools) >= tokens.count_prompt(messages, model, tools)
    assert not tokens.needs_encoding("openai/gpt-4o-mini") and tokens.needs_encoding("mock?latency=1s")
