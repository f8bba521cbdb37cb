"""A small synchronous client of the gateway, used by the built-in runtime and by `rnix llm`."""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Mapping
from typing import Any

from rnix.agent import protocol


class GatewayError(Exception):
    """A request the gateway refused or could not serve; `code` is a protocol error code."""

    def __init__(self, code: str, message: str, remaining: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.remaining = remaining


class GatewayClient:
    """One authenticated connection to the gateway."""

    def __init__(self, path: str, nonce: str, timeout: float | None = None) -> None:
        tcp = protocol.parse_tcp_address(path)
        try:
            if tcp is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self._sock.settimeout(timeout)
                self._sock.connect(path)
            else:  # an agent on another node of a Ray cluster
                self._sock = socket.create_connection(tcp, timeout=timeout if timeout is not None else 30.0)
                self._sock.settimeout(timeout)
                self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError as exc:
            with contextlib.suppress(AttributeError):
                self._sock.close()
            raise GatewayError(
                protocol.PROVIDER_ERROR, f"cannot reach the rnix gateway at {path}: {exc}"
            ) from exc
        self._reader = self._sock.makefile("rb")
        self._next_id = 0
        try:
            self.info = self._request({"op": "hello", "nonce": nonce})
        except BaseException:
            self.close()
            raise

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> GatewayClient:
        env = os.environ if environ is None else environ
        path, nonce = env.get(protocol.ENV_GATEWAY), env.get(protocol.ENV_NONCE)
        if not path or not nonce:
            raise GatewayError(
                protocol.UNAUTHORIZED,
                f"not running under rnix: {protocol.ENV_GATEWAY} and {protocol.ENV_NONCE} are not set",
            )
        return cls(path, nonce)

    def _request(self, message: dict[str, Any]) -> dict[str, Any]:
        self._next_id += 1
        message = {**message, "id": self._next_id}
        self._sock.sendall(protocol.encode(message))
        line = self._reader.readline(protocol.MAX_LINE)
        if not line:
            raise GatewayError(protocol.PROVIDER_ERROR, "the rnix gateway closed the connection")
        reply = protocol.decode(line)
        if not reply.get("ok"):
            error = reply.get("error") or {}
            raise GatewayError(
                str(error.get("code", protocol.PROVIDER_ERROR)),
                str(error.get("message", "request failed")),
                reply.get("remaining"),
            )
        return reply

    def complete(self, messages: list[dict[str, Any]], **options: Any) -> dict[str, Any]:
        """Send one chat completion; returns the reply (`content`, `usage`, `remaining`, ...)."""
        return self._request({"op": "complete", "messages": messages, **options})

    def tool_replay(self, key: str) -> dict[str, Any] | None:
        """The tool output journalled under `key` by an earlier attempt of this agent, or None."""
        reply = self._request({"op": "tool_replay", "key": key})
        output = reply.get("output")
        return output if reply.get("hit") is True and isinstance(output, dict) else None

    def tool_record(self, key: str, output: dict[str, Any]) -> None:
        """Journal a tool call's output under `key`, so that a resumed attempt need not run it again."""
        self._request({"op": "tool_record", "key": key, "output": output})

    def close(self) -> None:
        self._reader.close()
        self._sock.close()

    def __enter__(self) -> GatewayClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
