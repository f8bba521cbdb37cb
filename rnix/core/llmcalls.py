"""An agent's model calls as recorded: `llm_call` events joined with the LLM-call journal.

What is recorded (and so what `rnix log PID --llm` can show):
- every try of every call is an `llm_call` event: the agent's request number, the try, the model,
  status, tokens and latency (also failed tries, refusals and replays);
- every call that was answered is a journal entry (kind "llm", rnix.core.journal) holding the
  response (content, tool calls, finish reason, usage) under the hash of the request, with the
  messages the request added to the conversation since the previous one (`request`:
  `{"from": k, "messages": [...]}`, masked; None in journals written before rnix recorded it);
- every tool result the built-in agent sent back to the model is a journal entry (kind "tool").

Contract of `join(calls, entries)`:
- `calls` are one agent's `llm_call` event data in the order recorded; `entries` its journal
  entries ordered by (agent attempt, seq). The tries of one request number form one `ModelCall`
  (numbered 1.. in order of first try): its status is the last try's, its tokens the sum (every try
  is charged), its latency the sum of the tries' latencies. A request number seen again after its
  last try starts a new attempt of the agent (an agent that was restarted numbers from 1 again).
- Calls that were answered (last status "ok" or "replayed") take the "llm" entries in order: both
  are recorded as each call completes, so the k-th answered call is the k-th entry. The "tool"
  entries after an "llm" entry (until the next one) are the results of that answer's tool calls.
- Entries left over (a journal without events, e.g. events of an older version) become calls of
  their own with status "journalled"; answered calls without an entry keep `response` None.
Standard library only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

ANSWERED = ("ok", "replayed")


@dataclass(frozen=True)
class Entry:
    """One journal row, as `join` needs it."""

    kind: str  # "llm" | "tool"
    key: str
    response: Mapping[str, Any]
    attempt: int = 1
    replayed: bool = False
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    request: Mapping[str, Any] | None = None  # rnix.core.journal.new_messages, when recorded


@dataclass
class ModelCall:
    number: int
    status: str
    model: str | None = None
    tries: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    latency_ms: float = 0.0
    error: str | None = None
    request_hash: str | None = None
    response: Mapping[str, Any] | None = None
    tool_results: list[Mapping[str, Any]] = field(default_factory=list)
    request: Mapping[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "status": self.status,
            "model": self.model,
            "tries": self.tries,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
            "latency_ms": round(self.latency_ms, 1),
            "error": self.error,
            "request_hash": self.request_hash,
            "request": dict(self.request) if self.request is not None else None,
            "response": dict(self.response) if self.response is not None else None,
            "tool_results": [dict(r) for r in self.tool_results],
        }


def join(calls: Sequence[Mapping[str, Any]], entries: Sequence[Entry]) -> list[ModelCall]:
    grouped: dict[tuple[int, int], ModelCall] = {}
    segment, settled = 0, set[int]()
    for data in calls:
        number = _int(data.get("attempt"))
        if number in settled:  # a request number seen to its end again: a new attempt of the agent
            segment, settled = segment + 1, set()
        call = grouped.get((segment, number))
        if call is None:
            call = grouped[(segment, number)] = ModelCall(number=len(grouped) + 1, status="")
        if data.get("status") != "retry":
            settled.add(number)
        call.status = str(data.get("status") or "")
        call.model = data.get("model") or call.model
        call.tries += 1
        call.prompt_tokens += _int(data.get("prompt_tokens"))
        call.completion_tokens += _int(data.get("completion_tokens"))
        call.total_tokens += _int(data.get("total_tokens"))
        call.latency_ms += float(data.get("latency_ms") or 0.0)
        call.error = data.get("error") or None
    ordered = list(grouped.values())
    answered = iter([c for c in ordered if c.status in ANSWERED])
    current: ModelCall | None = None
    for entry in entries:
        if entry.kind == "llm":
            current = next(answered, None)
            if current is None:  # no event for it: show what the journal holds
                current = ModelCall(
                    number=len(ordered) + 1,
                    status="replayed" if entry.replayed else "journalled",
                    prompt_tokens=entry.prompt_tokens,
                    completion_tokens=entry.completion_tokens,
                    total_tokens=entry.total_tokens,
                )
                ordered.append(current)
            current.request_hash, current.response = entry.key, entry.response
            current.request = entry.request
        elif entry.kind == "tool" and current is not None:
            current.tool_results.append(entry.response)
    return ordered


def _int(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0
