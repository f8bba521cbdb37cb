"""A scriptable OpenAI-compatible HTTP server on 127.0.0.1, for tests that must not touch the network.

    with OpenAIServer() as server:                     # random free port, background thread
        server.script([Status(429, retry_after=1), Reply("hi", prompt_tokens=5, completion_tokens=2)])
        ... litellm.acompletion(model="openai/x", api_base=server.base_url, ...)
        assert server.requests[0].headers["authorization"] == "Bearer sk-..."

`POST /v1/chat/completions` (and `/chat/completions`) takes the next scripted behaviour; once the
script is used up it answers like `Echo()`. Every request is recorded (path, lower-cased headers, JSON
body, arrival time) before it is answered; `most_in_flight` is the most requests it was answering at
once (a `Slow` one counts while it waits). Leaving the `with` block (or the `openai_server` fixture)
stops the server and releases any handler still sleeping in `Slow`.

Each answer goes out in one write on a TCP_NODELAY socket: headers and body written separately would
meet Nagle's algorithm and the client's delayed ACK, adding ~40 ms to every call a client measures.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

PATHS = ("/v1/chat/completions", "/chat/completions")


@dataclass(frozen=True)
class Reply:
    """A successful completion; `usage=False` leaves the `usage` object out of the response."""

    content: str = "ok"
    prompt_tokens: int = 5
    completion_tokens: int = 2
    finish_reason: str = "stop"
    usage: bool = True


@dataclass(frozen=True)
class Echo:
    """A success that repeats the last user message (the default once the script is empty)."""


@dataclass(frozen=True)
class Status:
    """An error response with this HTTP status (OpenAI-shaped error body)."""

    code: int
    retry_after: float | None = None
    message: str = "scripted error"


@dataclass(frozen=True)
class Slow:
    """Wait `seconds` (or until the server stops), then behave like `then`."""

    seconds: float
    then: Reply | Echo | Status | ToolCall | Raw = field(default_factory=Echo)


@dataclass(frozen=True)
class ToolCall:
    """A completion that asks to call one tool."""

    name: str
    arguments: dict[str, Any] = field(default_factory=dict)
    prompt_tokens: int = 7
    completion_tokens: int = 3
    call_id: str = "call_1"
    content: str | None = None


@dataclass(frozen=True)
class Drop:
    """Close the connection without answering."""


@dataclass(frozen=True)
class Raw:
    """Any status and body, as given (a proxy's HTML page answered with 200, say)."""

    code: int = 200
    body: str = "<html><body>Welcome to nginx!</body></html>"
    content_type: str = "text/html"
    headers: tuple[tuple[str, str], ...] = ()


Behaviour = Reply | Echo | Status | Slow | ToolCall | Drop | Raw


@dataclass(frozen=True)
class Request:
    path: str
    headers: dict[str, str]  # lower-cased names
    body: Any
    at: float  # time.monotonic() on arrival
    wall: float = 0.0  # time.time() on arrival (to compare with what the state database recorded)


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True
    # http.server's default backlog is 5: with hundreds of clients connecting at once (bench/makespan
    # fan500) the kernel drops SYNs and clients retry after 1 s, 3 s, ... which measures the server.
    request_queue_size = 1024

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that timed out and hung up is what Slow and Drop are for; no traceback on stderr.
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


class OpenAIServer:
    def __init__(self, responder: Callable[[Any], Behaviour] | None = None) -> None:
        """`responder(body)` decides every request once the script is used up (default: Echo)."""
        self.responder = responder
        self.requests: list[Request] = []
        self.in_flight = 0
        self.most_in_flight = 0
        self._script: deque[Behaviour] = deque()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd = _QuietServer(("127.0.0.1", 0), _handler_class(self))
        self._thread = threading.Thread(target=self._serve, name="fake-openai", daemon=True)

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        """The `api_base` to give an OpenAI client (ends in /v1)."""
        return f"http://127.0.0.1:{self.port}/v1"

    def script(self, behaviours: Iterable[Behaviour]) -> None:
        with self._lock:
            self._script.extend(behaviours)

    def next_behaviour(self, body: Any = None) -> Behaviour:
        with self._lock:
            if self._script:
                return self._script.popleft()
        return self.responder(body) if self.responder is not None else Echo()

    def record(self, request: Request) -> None:
        with self._lock:
            self.requests.append(request)

    def entered(self) -> None:
        with self._lock:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)

    def left(self) -> None:
        with self._lock:
            self.in_flight -= 1

    def _serve(self) -> None:
        self._httpd.serve_forever(poll_interval=0.02)  # a short poll makes stop() quick

    def start(self) -> OpenAIServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> OpenAIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@pytest.fixture
def openai_server() -> Iterator[OpenAIServer]:
    with OpenAIServer() as server:
        yield server


def completion_body(model: str, message: dict[str, Any], finish: str, usage: dict[str, int] | None) -> bytes:
    body: dict[str, Any] = {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
    }
    if usage is not None:
        body["usage"] = usage
    return json.dumps(body).encode()


def _usage(prompt: int, completion: int) -> dict[str, int]:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _last_user_text(body: Any) -> str:
    messages = body.get("messages", []) if isinstance(body, dict) else []
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            return str(message.get("content"))
    return ""


def _handler_class(server: OpenAIServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
            pass

        def setup(self) -> None:
            super().setup()
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            raw = self.rfile.read(length)
            try:
                body: Any = json.loads(raw or b"null")
            except ValueError:
                body = raw.decode("utf-8", "replace")
            path = self.path.split("?", 1)[0]
            server.record(
                Request(
                    path,
                    {k.lower(): v for k, v in self.headers.items()},
                    body,
                    time.monotonic(),
                    time.time(),
                )
            )
            if path not in PATHS:
                self._send(404, json.dumps({"error": {"message": "not found", "type": "invalid_request"}}))
                return
            server.entered()
            try:
                self._behave(server.next_behaviour(body), body)
            finally:
                server.left()

        def _behave(self, behaviour: Behaviour, body: Any) -> None:
            model = str(body.get("model", "fake")) if isinstance(body, dict) else "fake"
            if isinstance(behaviour, Slow):
                if server._stopping.wait(behaviour.seconds):
                    return
                behaviour = behaviour.then
            if isinstance(behaviour, Drop):
                self.close_connection = True
                self.connection.close()
            elif isinstance(behaviour, Raw):
                self._send(behaviour.code, behaviour.body, dict(behaviour.headers), behaviour.content_type)
            elif isinstance(behaviour, Status):
                headers = (
                    {} if behaviour.retry_after is None else {"Retry-After": f"{behaviour.retry_after:g}"}
                )
                error = {"message": behaviour.message, "type": "scripted", "code": str(behaviour.code)}
                self._send(behaviour.code, json.dumps({"error": error}), headers)
            elif isinstance(behaviour, ToolCall):
                call = {
                    "id": behaviour.call_id,
                    "type": "function",
                    "function": {"name": behaviour.name, "arguments": json.dumps(behaviour.arguments)},
                }
                message = {"role": "assistant", "content": behaviour.content, "tool_calls": [call]}
                self._send(
                    200,
                    completion_body(
                        model,
                        message,
                        "tool_calls",
                        _usage(behaviour.prompt_tokens, behaviour.completion_tokens),
                    ),
                )
            elif isinstance(behaviour, Reply):
                message = {"role": "assistant", "content": behaviour.content}
                reported = (
                    _usage(behaviour.prompt_tokens, behaviour.completion_tokens) if behaviour.usage else None
                )
                self._send(200, completion_body(model, message, behaviour.finish_reason, reported))
            else:
                text = "echo: " + _last_user_text(body)
                usage = _usage(len(json.dumps(body)) // 4 + 1, len(text) // 4 + 1)
                message = {"role": "assistant", "content": text}
                self._send(200, completion_body(model, message, "stop", usage))

        def _send(
            self,
            status: int,
            payload: bytes | str,
            headers: dict[str, str] | None = None,
            content_type: str = "application/json",
        ) -> None:
            data = payload.encode() if isinstance(payload, str) else payload
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            # end_headers() would send the headers on their own: one write of headers and body instead.
            self._headers_buffer.append(b"\r\n" + data)  # type: ignore[attr-defined]
            self.flush_headers()

    return Handler
