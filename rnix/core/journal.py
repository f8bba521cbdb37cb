"""The LLM-call journal: keys for what an agent asked, entries for what it was answered, and replay.

A resumed agent must not pay twice for a call it already paid for. The gateway journals every
successful LLM call (kind "llm", keyed by `request_hash` of exactly what the agent asked) and every
tool result the built-in agent reports (kind "tool", keyed by `tool_key`); a resumed attempt gets a
`Replay` of the previous journal and answers a request from it instead of calling the provider.

Contract:
- `request_hash` is the sha256 hex digest of a canonical JSON text (sorted keys, compact, UTF-8) of
  the model and the agent's own request: messages, tools, temperature and the `max_tokens` the agent
  *requested* (None when it gave none). Never the gateway's budget cap: that differs between a run
  and its resume, and the answer to the same request is as good either way.
- `tool_key` names one tool call of one LLM reply: the reply's request hash, the call's index in it,
  the tool's name and its arguments text. An agent that replays the same conversation makes the same
  requests, gets the same replies, and so derives the same keys for its tool calls.
- `Replay.take` is FIFO per (kind, key): a request asked twice is answered twice only when it was
  journalled twice. Entries are never reused.
- `carry_forward(older, newer)` is the journal a further resume needs after attempt `newer` replayed
  part of `older` and stopped (a crash during a resume must not lose the calls it did not reach).

Standard library only (hashlib, json): the built-in agent imports `tool_key`.
"""

from __future__ import annotations

import hashlib
import json
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

LLM = "llm"
TOOL = "tool"
KINDS = (LLM, TOOL)
LLM_FIELDS = ("content", "tool_calls", "finish_reason", "usage")  # what an llm entry's response holds


def _digest(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    # surrogatepass: a message may carry a lone surrogate (JSON "\udcff"); it must hash, not raise.
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def request_hash(
    model: str,
    messages: list[Any],
    tools: list[Any] | None,
    temperature: float | None,
    max_tokens: int | None,
) -> str:
    """The key of one completion request: what the agent asked, on which model."""
    return _digest(
        {
            "model": model,
            "messages": messages,
            "tools": tools,
            "temperature": temperature,
            "max_tokens": max_tokens,
        }
    )


def tool_key(request_hash: str, index: int, name: str, arguments: str) -> str:
    """The key of the `index`-th tool call (0-based) in the reply to the request `request_hash`."""
    return _digest(["tool", request_hash, index, name, arguments])


@dataclass(frozen=True)
class JournalEntry:
    """One journalled answer. `response` is JSON-able: for "llm" the reply's LLM_FIELDS, for "tool"
    the tool result the agent recorded. Tokens are what the original call cost (0 for tools);
    `replayed` says this attempt got it from the journal; `seq` orders entries within an attempt."""

    kind: str
    key: str
    response: dict[str, Any]
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    replayed: bool = False
    seq: int = 0
    # For showing only (`rnix log --llm`), never for replay: the messages this request added to the
    # conversation since the attempt's previous one (`new_messages`), as sent (masked).
    request: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> JournalEntry:
        """The entry `to_dict` made; ValueError when a field is missing or of the wrong type."""
        kind, key, response = data.get("kind"), data.get("key"), data.get("response")
        if kind not in KINDS:
            raise ValueError(f"journal entry kind must be one of {', '.join(KINDS)}, not {kind!r}")
        if not isinstance(key, str) or not key:
            raise ValueError("journal entry key must be a non-empty string")
        if not isinstance(response, dict):
            raise ValueError("journal entry response must be an object")
        if kind == LLM and not all(name in response for name in LLM_FIELDS):
            raise ValueError(f"an llm journal entry's response needs {', '.join(LLM_FIELDS)}")
        numbers = {}
        for name in ("prompt_tokens", "completion_tokens", "total_tokens", "seq"):
            value = data.get(name, 0)
            value = 0 if value is None else value
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"journal entry {name} must be an integer")
            numbers[name] = value
        replayed = data.get("replayed", False)
        if not isinstance(replayed, bool):
            raise ValueError("journal entry replayed must be a boolean")
        request = data.get("request")
        if request is not None and not isinstance(request, dict):
            raise ValueError("journal entry request must be an object or null")
        return cls(kind=kind, key=key, response=response, replayed=replayed, request=request, **numbers)


def new_messages(previous: list[Any], messages: list[Any]) -> dict[str, Any]:
    """What `messages` adds to the conversation `previous`: `{"from": k, "messages": messages[k:]}`
    where the first k messages are the same (a conversation that was edited starts again at 0).
    Stored instead of whole requests, so a long conversation costs its length, not its square."""
    k = len(previous) if messages[: len(previous)] == previous else 0
    return {"from": k, "messages": messages[k:]}


class Replay:
    """The journal of an earlier attempt, handed out once per entry in journal order per key."""

    def __init__(self, entries: Iterable[JournalEntry]) -> None:
        self._queues: dict[tuple[str, str], deque[JournalEntry]] = {}
        self._calls = self._tokens = self._taken_calls = self._taken_tokens = 0
        for entry in entries:
            self._queues.setdefault((entry.kind, entry.key), deque()).append(entry)
            if entry.kind == LLM:
                self._calls += 1
                self._tokens += entry.total_tokens

    def take(self, kind: str, key: str) -> JournalEntry | None:
        """The first entry of `kind` and `key` not taken yet, or None."""
        queue = self._queues.get((kind, key))
        if not queue:
            return None
        entry = queue.popleft()
        if kind == LLM:
            self._taken_calls += 1
            self._taken_tokens += entry.total_tokens
        return entry

    @property
    def calls(self) -> int:
        """How many LLM calls the journal held when the replay began."""
        return self._calls

    @property
    def tokens(self) -> int:
        """How many tokens those calls cost."""
        return self._tokens

    @property
    def taken_calls(self) -> int:
        """How many LLM calls have been answered from the journal so far."""
        return self._taken_calls

    @property
    def taken_tokens(self) -> int:
        """The tokens those answers did not cost again."""
        return self._taken_tokens


def carry_forward(older: Iterable[JournalEntry], newer: Iterable[JournalEntry]) -> list[JournalEntry]:
    """`newer` (an attempt that replayed from `older`), then the entries of `older` it did not replay.

    Each replayed entry of `newer` used up the first unused entry of `older` with its kind and key,
    exactly as `Replay.take` did. For any key, `newer` went live only once `older` had no entry left
    for it, so appending the leftovers keeps every key's answers in their original order.
    """
    newer = list(newer)
    owed: dict[tuple[str, str], int] = {}
    for entry in newer:
        if entry.replayed:
            owed[(entry.kind, entry.key)] = owed.get((entry.kind, entry.key), 0) + 1
    leftovers = []
    for entry in older:
        slot = (entry.kind, entry.key)
        if owed.get(slot, 0) > 0:
            owed[slot] -= 1
        else:
            leftovers.append(entry)
    return newer + leftovers
