"""The control socket: how `rnix kill`, pause/resume, `compose down` and `top` reach a live supervisor.

Contract:
- One socket per run at `control_socket_path(home, run_id, environ)`: `<home>/runs/<run_id>/control.sock`
  when that fits AF_UNIX's limit (107 bytes), else `<runtime_dir>/<run_id>.ctl.sock`. A client computes
  it from the home, the run id and the environment alone, without the store.
- `ControlServer(path, handler)`: an asyncio Unix server, socket mode 0600, JSON lines. Each request line
  gets one reply line, in order; a connection may send several. Requests:
  `{"op": "ping"}` -> `{"pid": <supervisor pid>}`;
  `{"op": "signal", "agent", "pid", "signal": "SIGSTOP" (a name or number), "reason": "kill" | "top"}`
  -> `handler.signal_agent(agent, pid, signum, reason)`;
  `{"op": "stop", "grace": seconds | null, "reason", "by_pid": int | null}` -> `handler.stop(...)`;
  `{"op": "decide", "agent", "decision": "approve" | "reject", "by", "message": str | null}` ->
  `handler.decide(...)` (an approval gate's decision).
  Replies: `{"ok": true, "data": {...}}` or `{"ok": false, "error": {"message", "hint"}}`.
- Nothing a client sends ends the server: a line that is not a JSON object, an unknown op or a bad
  field gets an error reply (the connection stays usable); a line over `MAX_LINE` bytes gets one and
  the connection is closed; a `ControlRefused` from the handler is the error reply it describes, any
  other exception a generic one (logged).
- `start()` binds: a socket file left by a dead supervisor (nothing accepts on it) is replaced; a live
  one, or a file at the path that is not a socket, raises `RnixError` and is left alone. `close()` stops
  accepting, ends open connections and removes the socket file if it is still the one it bound.
- `request(path, message, timeout)` is the synchronous client: one request, the reply as a dict.
  `ControlUnavailable` (with a `reason`: missing, refused, denied, timeout, closed, protocol, error)
  means nobody answered, which is distinct from an answer that refuses; `call()` returns a reply's
  data or raises the `ControlRefused` it carries.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import re
import socket
import stat
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol, TypeGuard

from rnix.errors import RnixError

log = logging.getLogger(__name__)

MAX_LINE = 64 * 1024  # requests are a few hundred bytes; a longer line is not a control request
SUN_PATH_MAX = 107  # sockaddr_un.sun_path is 108 bytes, one of them the terminating NUL
SOCKET_NAME = "control.sock"
_REASON = re.compile(r"[a-z][a-z _-]{0,39}")


async def _drain_and_hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Half-close, then read what the client still sends (briefly): closing a socket with unread
    input resets the connection, and the client would lose the reply it has not read yet."""
    with contextlib.suppress(OSError, RuntimeError):
        writer.write_eof()

    async def discard() -> None:
        while await reader.read(MAX_LINE):
            pass

    with contextlib.suppress(Exception):
        await asyncio.wait_for(discard(), 1.0)


class ControlRefused(RnixError):
    """The supervisor answered and said no (e.g. the agent is not running): message and hint."""


class ControlUnavailable(RnixError):
    """Nobody answered on the control socket; `reason` says how it failed."""

    def __init__(self, path: str, reason: str, detail: str = "") -> None:
        what = {
            "missing": f"there is no control socket at {path}",
            "refused": f"nothing accepts connections on {path}",
            "denied": f"not allowed to connect to {path}",
            "timeout": f"no answer on {path} in time",
            "closed": f"{path} closed the connection without an answer",
            "protocol": f"{path} sent something that is not a control reply",
        }.get(reason, f"cannot use {path}: {detail or reason}")
        super().__init__(what, "`rnix ps` shows whether the run's supervisor still runs")
        self.path = path
        self.reason = reason


class ControlHandler(Protocol):
    """What the supervisor implements; both methods return the reply's `data`."""

    async def signal_agent(self, agent: str, pid: int, signum: int, reason: str) -> dict[str, Any]:
        """SIGSTOP pauses, SIGCONT resumes, any other signal goes to the agent's group; raises
        ControlRefused when `agent`/`pid` is not a live agent of this run."""
        ...

    async def stop(self, grace: float | None, reason: str, by_pid: int | None) -> dict[str, Any]:
        """Stop the whole run gracefully (like Ctrl-C) and return at once; a stop while the run is
        already stopping means no more grace (like a second Ctrl-C)."""
        ...

    async def decide(self, agent: str, decision: str, by: str, message: str | None) -> dict[str, Any]:
        """Record a decision at `agent`'s approval gate; raises ControlRefused when it cannot be."""
        ...


def control_socket_path(home: Path | str, run_id: str, environ: Mapping[str, str]) -> str:
    """Where the supervisor of `run_id` listens (see the module docstring); creates no directory,
    except the private runtime directory when the run directory's path is too long."""
    preferred = os.path.join(os.path.abspath(home), "runs", run_id, SOCKET_NAME)
    if len(os.fsencode(preferred)) <= SUN_PATH_MAX:
        return preferred
    from rnix.store.paths import runtime_dir

    return str(runtime_dir(environ) / f"{run_id}.ctl.sock")


class ControlServer:
    def __init__(self, path: str, handler: ControlHandler) -> None:
        self.path = path
        self.handler = handler
        self._server: asyncio.AbstractServer | None = None
        self._inode: int | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._answering: set[asyncio.Future[None]] = set()  # requests being answered (close waits)

    async def start(self) -> None:
        _clear_stale(self.path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(self.path)
            os.chmod(self.path, 0o600)  # the directory is private too; this says so on the socket
            self._inode = os.lstat(self.path).st_ino
            self._server = await asyncio.start_unix_server(self._serve, sock=sock, limit=MAX_LINE)
        except OSError as exc:
            sock.close()
            raise RnixError(
                f"cannot listen on the control socket {self.path}: {exc.strerror or exc}",
                "check that the run directory exists and is yours",
            ) from exc

    async def close(self, finish: float = 2.0) -> None:
        """Stop accepting; let requests already being answered finish (up to `finish` seconds: a
        `kill` that ended the run's last agent still gets its answer), then end every connection."""
        if self._server is not None:
            self._server.close()
        if self._answering:
            await asyncio.wait(set(self._answering), timeout=finish)
        for task in list(self._handlers):
            task.cancel()
        for writer in list(self._writers):
            writer.close()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None
        with contextlib.suppress(FileNotFoundError):
            info = os.lstat(self.path)
            if stat.S_ISSOCK(info.st_mode) and info.st_ino == self._inode:
                os.unlink(self.path)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
        self._writers.add(writer)
        try:
            while True:
                try:
                    line = await reader.readline()
                except ValueError:  # over MAX_LINE: the stream cannot be resynchronised
                    await _send(writer, _refusal(f"request longer than {MAX_LINE} bytes"))
                    await _drain_and_hang_up(reader, writer)
                    return
                if not line:
                    return
                answer = asyncio.ensure_future(self._answer_and_send(writer, line))
                self._answering.add(answer)
                answer.add_done_callback(self._answering.discard)
                await asyncio.shield(answer)
        except ConnectionError:
            pass  # the client went away; it will not read the reply
        except asyncio.CancelledError:
            pass  # only close() cancels; asyncio 3.11 would report a cancelled handler as an error
        finally:
            self._writers.discard(writer)
            if task is not None:
                self._handlers.discard(task)
            writer.close()

    async def _answer_and_send(self, writer: asyncio.StreamWriter, line: bytes) -> None:
        answer = await self._answer(line)
        with contextlib.suppress(ConnectionError, RuntimeError):  # the client left, or close() ended it
            await _send(writer, answer)

    async def _answer(self, line: bytes) -> dict[str, Any]:
        try:
            message = json.loads(line)
        except ValueError:
            return _refusal("the request is not JSON")
        if not isinstance(message, dict):
            return _refusal("the request is not a JSON object")
        try:
            data = await self._dispatch(message)
        except ControlRefused as exc:
            return _refusal(exc.message, exc.hint)
        except Exception:
            log.exception("control request %r failed", message.get("op"))
            return _refusal("the supervisor failed to handle the request", "see the supervisor's log")
        return {"ok": True, "data": data}

    async def _dispatch(self, message: dict[str, Any]) -> dict[str, Any]:
        op = message.get("op")
        if op == "ping":
            return {"pid": os.getpid()}
        if op == "signal":
            agent, pid = message.get("agent"), message.get("pid")
            if not isinstance(agent, str) or not agent:
                raise ControlRefused("signal: agent must be a non-empty string")
            if not _is_int(pid) or pid <= 0:
                raise ControlRefused("signal: pid must be a positive integer")
            signum = _signum(message.get("signal"))
            return await self.handler.signal_agent(agent, pid, signum, _reason(message, "kill"))
        if op == "stop":
            grace, by_pid = message.get("grace"), message.get("by_pid")
            if grace is not None and (
                isinstance(grace, bool)
                or not isinstance(grace, (int, float))
                or not math.isfinite(grace)
                or grace < 0
            ):
                raise ControlRefused("stop: grace must be null or a number of seconds, at least 0")
            if by_pid is not None and (not _is_int(by_pid) or by_pid <= 0):
                raise ControlRefused("stop: by_pid must be null or a positive integer")
            return await self.handler.stop(
                None if grace is None else float(grace), _reason(message, "compose down"), by_pid
            )
        if op == "decide":
            agent, decision, by = message.get("agent"), message.get("decision"), message.get("by")
            note = message.get("message")
            if not isinstance(agent, str) or not agent:
                raise ControlRefused("decide: agent must be a non-empty string")
            if decision not in ("approve", "reject"):
                raise ControlRefused("decide: decision must be approve or reject")
            if not isinstance(by, str) or not by or len(by) > 64:
                raise ControlRefused("decide: by must be a name of 1 to 64 characters")
            if note is not None and (not isinstance(note, str) or len(note) > 4096):
                raise ControlRefused("decide: message must be null or a string of at most 4096 characters")
            return await self.handler.decide(agent, decision, by, note)
        raise ControlRefused(f"unknown op {op!r}", "ops: ping, signal, stop, decide")


def request(path: str, message: Mapping[str, Any], timeout: float = 5.0) -> dict[str, Any]:
    """Send one request to the control socket at `path`; the reply, or ControlUnavailable."""
    payload = (json.dumps(dict(message), separators=(",", ":")) + "\n").encode()
    deadline = time.monotonic() + timeout
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        try:
            sock.settimeout(timeout)
            sock.connect(path)
            sock.sendall(payload)
            buffer = bytearray()
            while b"\n" not in buffer:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError
                sock.settimeout(left)
                chunk = sock.recv(65536)
                if not chunk:
                    raise ControlUnavailable(path, "closed")
                buffer += chunk
                if len(buffer) > MAX_LINE:
                    raise ControlUnavailable(path, "protocol")
        except FileNotFoundError as exc:
            raise ControlUnavailable(path, "missing") from exc
        except ConnectionRefusedError as exc:
            raise ControlUnavailable(path, "refused") from exc
        except PermissionError as exc:
            raise ControlUnavailable(path, "denied") from exc
        except TimeoutError as exc:  # socket.timeout is TimeoutError since 3.10
            raise ControlUnavailable(path, "timeout") from exc
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise ControlUnavailable(path, "closed") from exc
        except OSError as exc:
            raise ControlUnavailable(path, "error", exc.strerror or str(exc)) from exc
    try:
        reply = json.loads(buffer[: buffer.index(b"\n")])
    except ValueError as exc:
        raise ControlUnavailable(path, "protocol") from exc
    if not isinstance(reply, dict) or not isinstance(reply.get("ok"), bool):
        raise ControlUnavailable(path, "protocol")
    return reply


def call(path: str, message: Mapping[str, Any], timeout: float = 5.0) -> dict[str, Any]:
    """`request`, then the reply's data; an error reply raises ControlRefused with its message and hint."""
    reply = request(path, message, timeout)
    if reply["ok"]:
        data = reply.get("data")
        return data if isinstance(data, dict) else {}
    error = reply.get("error")
    error = error if isinstance(error, dict) else {}
    message_text = error.get("message")
    hint = error.get("hint")
    raise ControlRefused(
        str(message_text) if message_text else "the supervisor refused the request",
        str(hint) if hint else None,
    )


def _clear_stale(path: str) -> None:
    """Unlink a socket nobody accepts on (its supervisor died); refuse a live one or any other file."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(info.st_mode):
        raise RnixError(
            f"{path} exists and is not a socket; the supervisor cannot listen there",
            "remove or rename that file, then start the run again",
        )
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(path)
    except ConnectionRefusedError:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        return
    except FileNotFoundError:
        return
    except OSError:
        pass  # e.g. a full backlog: someone is there
    finally:
        probe.close()
    raise RnixError(
        f"another supervisor is listening on {path}",
        "a run with this id is already running; `rnix ps` shows it",
    )


def _signum(value: object) -> int:
    from rnix.supervisor.signals import parse_signal

    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ControlRefused("signal: signal must be a name such as SIGTERM, or a number")
    try:
        return parse_signal(value)
    except ValueError as exc:
        raise ControlRefused(f"signal: {exc}") from exc


def _reason(message: Mapping[str, Any], default: str) -> str:
    reason = message.get("reason", default)
    if reason is None:
        return default
    if not isinstance(reason, str) or not _REASON.fullmatch(reason):
        raise ControlRefused("reason must be a short lowercase word, such as kill or top")
    return reason


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _refusal(message: str, hint: str | None = None) -> dict[str, Any]:
    return {"ok": False, "error": {"message": message, "hint": hint}}


async def _send(writer: asyncio.StreamWriter, reply: dict[str, Any]) -> None:
    try:
        line = json.dumps(reply, separators=(",", ":"))
    except (TypeError, ValueError):  # the handler returned something JSON cannot carry
        log.exception("control reply cannot be encoded")
        line = json.dumps(_refusal("the supervisor's reply could not be encoded", "see the supervisor's log"))
    writer.write((line + "\n").encode())
    await writer.drain()
