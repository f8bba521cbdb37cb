"""Offline token counting with tiktoken, for budgets and for the mock model's usage.

`count_text` and `count_messages` use a real BPE encoding: o200k_base for the gpt-4o / gpt-4.1 /
gpt-5 / o-series families, cl100k_base for everything else (including `mock`). Chat messages add
OpenAI's documented framing: 3 tokens per message, 1 more per `name`, 3 to prime the reply.

tiktoken downloads encodings on first use, which fails or hangs offline. litellm ships the cl100k,
o200k and p50k files under `litellm/litellm_core_utils/tokenizers/`, named the way tiktoken's cache
names them (sha1 of the blob URL), so tiktoken is pointed at that directory while it loads one. The
directory is found through `importlib.util.find_spec` so that litellm (seconds to import) is never
imported here. A file is used only after its sha256 matches tiktoken's expected hash: on a mismatch
tiktoken would delete it and download again. When no verified file exists the count falls back to
`len(text) // 4 + 1` and `approximate` becomes True; nothing here ever touches the network.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tiktoken import Encoding

TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
REPLY_PRIMING = 3

# name -> (blob URL tiktoken loads, sha256 tiktoken expects)
_BLOBS = {
    "cl100k_base": (
        "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken",
        "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
    ),
    "o200k_base": (
        "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken",
        "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
    ),
}
_O200K_PREFIXES = ("gpt-4o", "chatgpt-4o", "gpt-4.1", "gpt-5", "o1", "o3", "o4")

approximate = False  # True once any count had to fall back to the len/4 estimate

_lock = threading.Lock()
_encodings: dict[str, Encoding | None] = {}  # None: not available offline, estimate instead


def encoding_name(model: str) -> str:
    """The tiktoken encoding used for `model` ("openai/gpt-4o-mini" -> "o200k_base")."""
    base = model.split("?", 1)[0].rsplit("/", 1)[-1].lower()
    return "o200k_base" if base.startswith(_O200K_PREFIXES) else "cl100k_base"


def bundled_dir() -> Path | None:
    """litellm's directory of tokenizer files, located without importing litellm."""
    try:
        spec = importlib.util.find_spec("litellm")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "litellm_core_utils" / "tokenizers"
        if candidate.is_dir():
            return candidate
    return None


def _verified_dir(name: str) -> str | None:
    """A directory holding a verified copy of encoding `name` under tiktoken's cache file name."""
    url, sha256 = _BLOBS[name]
    cache_name = hashlib.sha1(url.encode()).hexdigest()
    bundled = bundled_dir()
    candidates = [os.environ.get("TIKTOKEN_CACHE_DIR"), str(bundled) if bundled else None]
    for directory in candidates:
        if not directory:
            continue
        try:
            data = (Path(directory) / cache_name).read_bytes()
        except OSError:
            continue
        if hashlib.sha256(data).hexdigest() == sha256:
            return directory
    return None


def _load(name: str) -> Encoding | None:
    directory = _verified_dir(name)
    if directory is None:
        return None
    import tiktoken

    # tiktoken reads its cache directory from the environment only; point it at the verified copy
    # for this one load and put the user's setting back afterwards.
    previous = os.environ.get("TIKTOKEN_CACHE_DIR")
    os.environ["TIKTOKEN_CACHE_DIR"] = directory
    try:
        return tiktoken.get_encoding(name)
    except Exception:  # a broken install must cost accuracy, never the call
        return None
    finally:
        if previous is None:
            os.environ.pop("TIKTOKEN_CACHE_DIR", None)
        else:
            os.environ["TIKTOKEN_CACHE_DIR"] = previous


_preloads: dict[str, threading.Thread] = {}


def preload(model: str) -> None:
    """Begin loading `model`'s encoding in a daemon thread, once (~0.3 s, of which ~0.13 s holds
    the GIL in tiktoken's Rust constructor): commands that will count tokens call it as they start,
    so the load overlaps their own start-up instead of the first model call."""
    name = encoding_name(model)
    if name in _encodings or name in _preloads:
        return
    thread = threading.Thread(target=get_encoding, args=(model,), name=f"rnix-{name}", daemon=True)
    _preloads[name] = thread
    thread.start()


def wait_loaded(models: Iterable[str]) -> None:
    """Block until the encodings of `models` are loaded (or known to be unavailable offline)."""
    for model in models:
        thread = _preloads.get(encoding_name(model))
        if thread is not None:
            thread.join()
        get_encoding(model)


def get_encoding_if_loaded(model: str) -> Encoding | None:
    """The Encoding for `model` when it is already loaded (never loads: loading takes ~0.3 s)."""
    return _encodings.get(encoding_name(model))


def get_encoding(model: str) -> Encoding | None:
    """The cached Encoding for `model`, or None when only an estimate is possible offline."""
    global approximate
    name = encoding_name(model)
    if name in _encodings:
        return _encodings[name]
    with _lock:
        if name not in _encodings:
            _encodings[name] = _load(name)
            if _encodings[name] is None:
                approximate = True
        return _encodings[name]


def _estimate(text: str) -> int:
    return len(text) // 4 + 1


def count_text(text: str, model: str) -> int:
    encoding = get_encoding(model)
    if encoding is None:
        return _estimate(text)
    return len(encoding.encode(text, disallowed_special=()))


def truncate_text(text: str, max_tokens: int, model: str) -> str:
    """The longest prefix of `text` (at a token boundary) that counts at most `max_tokens`."""
    if max_tokens <= 0:
        return ""
    encoding = get_encoding(model)
    if encoding is None:
        return text[: max(0, (max_tokens - 1) * 4)]
    tokens = encoding.encode(text, disallowed_special=())
    if len(tokens) <= max_tokens:
        return text
    keep = max_tokens
    while keep > 0:
        # A cut inside a multi-byte character decodes to U+FFFD, which may re-encode longer.
        prefix = encoding.decode(tokens[:keep])
        if len(encoding.encode(prefix, disallowed_special=())) <= max_tokens:
            return prefix
        keep -= 1
    return ""


def _content_text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # multimodal parts: count the text ones, the rest as JSON
        parts = [
            str(p.get("text", "")) if isinstance(p, dict) and p.get("type") == "text" else json.dumps(p)
            for p in content
        ]
        return "\n".join(parts)
    return json.dumps(content, ensure_ascii=False, default=str)


def count_messages(messages: list[dict[str, Any]], model: str) -> int:
    """Prompt tokens of a chat request, framing included (OpenAI's cookbook rule)."""
    total = REPLY_PRIMING
    for message in messages:
        total += TOKENS_PER_MESSAGE
        for key, value in message.items():
            if key == "content":
                total += count_text(_content_text(value), model)
            elif key == "name":
                total += TOKENS_PER_NAME + count_text(str(value), model)
            elif isinstance(value, str):
                total += count_text(value, model)
            elif value is not None:  # e.g. tool_calls of an assistant message
                total += count_text(json.dumps(value, ensure_ascii=False, default=str), model)
    return total


def upper_bound(messages: list[dict[str, Any]], tools: list[Any] | None = None) -> int:
    """At least the prompt's token count, without an encoding: a byte-level BPE token is one byte
    or more, so the UTF-8 bytes of each counted text (with the same framing) bound its tokens."""
    total = REPLY_PRIMING
    for message in messages:
        total += TOKENS_PER_MESSAGE
        for key, value in message.items():
            if key == "content":
                text = _content_text(value)
            elif key == "name":
                total += TOKENS_PER_NAME
                text = str(value)
            elif isinstance(value, str):
                text = value
            elif value is not None:
                text = json.dumps(value, ensure_ascii=False, default=str)
            else:
                continue
            total += len(text.encode("utf-8", "surrogatepass"))
    if tools:
        total += len(json.dumps(tools, ensure_ascii=False, default=str).encode("utf-8", "surrogatepass"))
    return total


def needs_encoding(model: str) -> bool:
    """Whether counting for `model` needs its encoding before a call: the mock's usage is counted
    exactly; a provider reports usage, and a prompt is bounded without one (see `upper_bound`)."""
    return model.split("?", 1)[0] == "mock"


def count_prompt(messages: list[dict[str, Any]], model: str, tools: list[Any] | None = None) -> int:
    """Prompt tokens including tool definitions (sent as JSON schemas, so counted as such)."""
    total = count_messages(messages, model)
    if tools:
        total += count_text(json.dumps(tools, ensure_ascii=False, default=str), model)
    return total


def count_answer(content: str, tool_calls: list[dict[str, Any]] | None, model: str) -> int:
    """An answer's tokens when the provider reported none: its text plus its tool calls as JSON."""
    counted = count_text(content, model)
    if tool_calls:
        counted += count_text(json.dumps(tool_calls, default=str), model)
    return counted
