"""The wire protocol between agent processes and the supervisor's gateway. Standard library only.

Transport: a Unix stream socket at `$RNIX_GATEWAY`, or, for an agent on another machine of a Ray
cluster, a TCP connection to `$RNIX_GATEWAY` = `tcp://HOST:PORT` (`tcp_address`); messages are JSON
objects, one per line (UTF-8).
An agent (or `rnix llm` run by it) first authenticates with its nonce, then sends requests; replies
carry the request's `id`. One connection serves one request at a time, in order.

    -> {"op": "hello", "nonce": "<RNIX_AGENT_NONCE>"}
    <- {"ok": true, "agent": "writer", "budget": 5000, "used": 0, "remaining": 5000, "model": "mock"}

    -> {"op": "complete", "id": 1, "messages": [{"role": "user", "content": "..."}],
        "max_tokens": 500, "temperature": 0.2, "tools": [...]}           # max_tokens etc. optional
    <- {"id": 1, "ok": true, "content": "...", "tool_calls": [...] | null, "finish_reason": "stop",
        "usage": {"prompt_tokens": 12, "completion_tokens": 30, "total_tokens": 42},
        "used": 42, "remaining": 4958, "request_hash": "<sha256 hex>"}
    <- {"id": 1, "ok": false, "error": {"code": "budget_exceeded", "message": "..."},
        "used": 4990, "remaining": 10}

A resumed agent's calls are answered from the journal of its earlier attempt when it asks exactly
what it asked then (same `request_hash`): the same reply plus `"replayed": true`, with `usage` the
tokens it did not pay again (`used` is unchanged). Tool results are journalled by the built-in
agent, keyed by `rnix.core.journal.tool_key` (the reply's `request_hash`, the call's index, name and
arguments); `output` is any JSON object (the built-in agent's: ok, denied, output, summary):

    -> {"op": "tool_replay", "id": 2, "key": "<key>"}
    <- {"id": 2, "ok": true, "hit": true, "output": {...}}      # recorded by an earlier attempt
    <- {"id": 2, "ok": true, "hit": false}                      # not: run the tool
    -> {"op": "tool_record", "id": 3, "key": "<key>", "output": {...}}
    <- {"id": 3, "ok": true}

Error codes: `budget_exceeded` (the agent must stop with exit status 2), `provider_error` (the call
failed after the gateway's retries), `timeout`, `bad_request` (malformed request), `unauthorized`
(bad nonce). Agents never see API keys: the gateway holds them.
"""

from __future__ import annotations

import json
from typing import Any

ENV_GATEWAY = "RNIX_GATEWAY"  # path of the gateway's Unix socket, or tcp://HOST:PORT
ENV_NONCE = "RNIX_AGENT_NONCE"  # per-agent secret that identifies the agent (and its budget) to the gateway
ENV_AGENT = "RNIX_AGENT"  # the agent's name in the compose file
ENV_RUN_ID = "RNIX_RUN_ID"
ENV_PROJECT = "RNIX_PROJECT"

BUDGET_EXCEEDED = "budget_exceeded"
PROVIDER_ERROR = "provider_error"
TIMEOUT = "timeout"
BAD_REQUEST = "bad_request"
UNAUTHORIZED = "unauthorized"

# Agent exit statuses (the process protocol, docs/agent-protocol.md).
EXIT_OK = 0
EXIT_ERROR = 1
EXIT_BUDGET = 2

MAX_LINE = 16 * 1024 * 1024  # the longest message either side accepts


TCP_SCHEME = "tcp://"


def tcp_address(host: str, port: int) -> str:
    """`tcp://HOST:PORT` (an IPv6 host in brackets)."""
    return f"{TCP_SCHEME}[{host}]:{port}" if ":" in host else f"{TCP_SCHEME}{host}:{port}"


def parse_tcp_address(address: str) -> tuple[str, int] | None:
    """(host, port) of a `tcp://HOST:PORT` address; None for anything else (a Unix socket path)."""
    if not address.startswith(TCP_SCHEME):
        return None
    host, sep, port = address[len(TCP_SCHEME) :].rpartition(":")
    if not sep or not port.isdigit() or not host:
        return None
    return host.strip("[]"), int(port)


def encode(message: dict[str, Any]) -> bytes:
    return json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n"


def decode(line: bytes) -> dict[str, Any]:
    value = json.loads(line.decode("utf-8"))
    if not isinstance(value, dict):
        raise ValueError("a protocol message must be a JSON object")
    return value
