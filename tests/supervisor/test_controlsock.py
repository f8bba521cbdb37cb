"""The control socket on real Unix sockets: the server with a fake handler, the synchronous client,
stale socket files and where the socket lives."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import stat
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest

from rnix.errors import RnixError
from rnix.supervisor.controlsock import (
    MAX_LINE,
    SUN_PATH_MAX,
    ControlRefused,
    ControlServer,
    ControlUnavailable,
    call,
    control_socket_path,
    request,
)

RUN = "a1b2c3d4e5f6"
_T = TypeVar("_T")


class FakeHandler:
    """Records every call; refuses agent `ghost`; breaks on agent `boom`."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    async def signal_agent(self, agent: str, pid: int, signum: int, reason: str) -> dict[str, Any]:
        self.calls.append(("signal", agent, pid, signum, reason))
        if agent == "ghost":
            raise ControlRefused(f"agent {agent} (PID {pid}) is not running", "`rnix ps` lists the agents")
        if agent == "boom":
            raise RuntimeError("a bug in the supervisor")
        return {"agent": agent, "pid": pid, "state": "paused" if signum == signal.SIGSTOP else "running"}

    async def stop(self, grace: float | None, reason: str, by_pid: int | None) -> dict[str, Any]:
        self.calls.append(("stop", grace, reason, by_pid))
        return {"stopping": True}


@pytest.fixture
def sock_path(tmp_path: Path) -> str:
    return str(tmp_path / "control.sock")


@asynccontextmanager
async def serving(path: str, handler: FakeHandler | None = None) -> AsyncIterator[FakeHandler]:
    handler = handler or FakeHandler()
    server = ControlServer(path, handler)
    await server.start()
    try:
        yield handler
    finally:
        await server.close()


def run(scenario: Callable[[], Any]) -> None:
    asyncio.run(scenario())


async def off_loop(func: Callable[..., _T], *args: Any) -> _T:
    """The client is synchronous (the CLI's): call it from a thread so the server can answer."""
    return await asyncio.to_thread(func, *args)


def exchange(path: str, lines: list[bytes]) -> list[dict[str, Any] | None]:
    """Send raw lines on one connection, one at a time; each reply, or None once the server closed."""
    replies: list[dict[str, Any] | None] = []
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        sock.connect(path)
        reader = sock.makefile("rb")
        for line in lines:
            try:
                sock.sendall(line)
            except (BrokenPipeError, ConnectionResetError):
                replies.append(None)
                continue
            answer = reader.readline()
            replies.append(json.loads(answer) if answer else None)
        reader.close()
    return replies


def test_ping_signal_and_stop_reach_the_handler(sock_path: str) -> None:
    async def scenario() -> None:
        async with serving(sock_path) as handler:
            assert stat.S_IMODE(os.stat(sock_path).st_mode) == 0o600
            assert await off_loop(request, sock_path, {"op": "ping"}) == {
                "ok": True,
                "data": {"pid": os.getpid()},
            }
            reply = await off_loop(
                call,
                sock_path,
                {"op": "signal", "agent": "nap", "pid": 4321, "signal": "SIGSTOP", "reason": "top"},
            )
            assert reply == {"agent": "nap", "pid": 4321, "state": "paused"}
            await off_loop(call, sock_path, {"op": "signal", "agent": "nap", "pid": 4321, "signal": "CONT"})
            await off_loop(call, sock_path, {"op": "signal", "agent": "nap", "pid": 4321, "signal": 15})
            assert await off_loop(
                call, sock_path, {"op": "stop", "grace": 2.5, "reason": "compose down", "by_pid": 77}
            ) == {"stopping": True}
            await off_loop(call, sock_path, {"op": "stop", "grace": None, "by_pid": None})
            assert handler.calls == [
                ("signal", "nap", 4321, signal.SIGSTOP, "top"),
                ("signal", "nap", 4321, signal.SIGCONT, "kill"),  # reason defaults to kill
                ("signal", "nap", 4321, signal.SIGTERM, "kill"),
                ("stop", 2.5, "compose down", 77),
                ("stop", None, "compose down", None),
            ]
        assert not os.path.exists(sock_path)  # close() removes its socket

    run(scenario)


def test_a_refusal_is_an_answer_with_message_and_hint(sock_path: str) -> None:
    async def scenario() -> None:
        async with serving(sock_path):
            message = {"op": "signal", "agent": "ghost", "pid": 9, "signal": "SIGTERM", "reason": "kill"}
            assert await off_loop(request, sock_path, message) == {
                "ok": False,
                "error": {
                    "message": "agent ghost (PID 9) is not running",
                    "hint": "`rnix ps` lists the agents",
                },
            }
            with pytest.raises(ControlRefused) as refused:
                await off_loop(call, sock_path, message)
            assert (refused.value.message, refused.value.hint) == (
                "agent ghost (PID 9) is not running",
                "`rnix ps` lists the agents",
            )
            assert not isinstance(refused.value, ControlUnavailable)

    run(scenario)


def test_malformed_requests_get_an_error_reply_and_the_server_goes_on(sock_path: str) -> None:
    bad = [
        b"not json\n",
        b"[1, 2]\n",
        b"\xff\xfe\n",
        b'{"op": "reboot"}\n',
        b'{"op": "signal", "agent": "nap", "pid": "12", "signal": "TERM"}\n',
        b'{"op": "signal", "agent": "nap", "pid": true, "signal": "TERM"}\n',
        b'{"op": "signal", "agent": "", "pid": 12, "signal": "TERM"}\n',
        b'{"op": "signal", "agent": "nap", "pid": 12, "signal": "SIGNOPE"}\n',
        b'{"op": "signal", "agent": "nap", "pid": 12, "signal": "TERM", "reason": "\\u001b[2J"}\n',
        b'{"op": "stop", "grace": -1}\n',
        b'{"op": "stop", "grace": "soon"}\n',
        b'{"op": "stop", "grace": 1, "by_pid": 0}\n',
        b'{"op": "signal", "agent": "boom", "pid": 12, "signal": "TERM"}\n',  # the handler raises
    ]

    async def scenario() -> None:
        async with serving(sock_path) as handler:
            replies = await off_loop(exchange, sock_path, [*bad, b'{"op": "ping"}\n'])
            *errors, pong = replies
            assert all(r is not None and r["ok"] is False and r["error"]["message"] for r in errors), errors
            assert errors[3]["error"]["message"] == "unknown op 'reboot'"  # type: ignore[index]
            assert "failed to handle" in errors[-1]["error"]["message"]  # type: ignore[index]
            assert pong == {"ok": True, "data": {"pid": os.getpid()}}
            assert [c[1] for c in handler.calls] == ["boom"]  # nothing malformed reached the handler

    run(scenario)


def test_an_overlong_line_is_refused_and_only_that_connection_closed(sock_path: str) -> None:
    async def scenario() -> None:
        async with serving(sock_path):
            huge = b'{"op": "ping", "pad": "' + b"x" * (MAX_LINE + 10) + b'"}\n'
            first, after = await off_loop(exchange, sock_path, [huge, b'{"op": "ping"}\n'])
            assert first is not None and first["ok"] is False and "longer than" in first["error"]["message"]
            assert after is None  # that connection is closed
            assert (await off_loop(request, sock_path, {"op": "ping"}))["ok"] is True

    run(scenario)


def test_a_stale_socket_file_is_replaced(sock_path: str) -> None:
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(sock_path)  # what a SIGKILLed supervisor leaves: a socket file nobody accepts on
    dead.close()
    assert stat.S_ISSOCK(os.lstat(sock_path).st_mode)
    with pytest.raises(ControlUnavailable) as stale:
        request(sock_path, {"op": "ping"})
    assert stale.value.reason == "refused"

    async def scenario() -> None:
        async with serving(sock_path):
            assert (await off_loop(request, sock_path, {"op": "ping"}))["ok"] is True

    run(scenario)


def test_a_live_socket_or_another_file_is_never_taken_over(sock_path: str, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with serving(sock_path):
            with pytest.raises(RnixError, match="another supervisor is listening"):
                await ControlServer(sock_path, FakeHandler()).start()
            assert (await off_loop(request, sock_path, {"op": "ping"}))["ok"] is True

        plain = tmp_path / "not-a-socket"
        plain.write_text("keep me")
        with pytest.raises(RnixError, match="is not a socket") as error:
            await ControlServer(str(plain), FakeHandler()).start()
        assert error.value.hint and plain.read_text() == "keep me"

    run(scenario)


def test_the_client_tells_how_nobody_answered(sock_path: str, tmp_path: Path) -> None:
    with pytest.raises(ControlUnavailable) as missing:
        request(str(tmp_path / "nowhere.sock"), {"op": "ping"})
    assert missing.value.reason == "missing" and missing.value.hint

    def one_peer(behaviour: Callable[[socket.socket], None]) -> threading.Thread:
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        if os.path.exists(sock_path):
            os.unlink(sock_path)
        listener.bind(sock_path)
        listener.listen(1)

        def serve() -> None:
            conn, _ = listener.accept()
            with conn, listener:
                conn.recv(1024)
                behaviour(conn)

        thread = threading.Thread(target=serve)
        thread.start()
        return thread

    def silent(conn: socket.socket) -> None:
        conn.recv(1024)  # returns when the client gives up and closes

    cases: list[tuple[Callable[[socket.socket], None], str]] = [
        (silent, "timeout"),
        (lambda conn: None, "closed"),
        (lambda conn: conn.sendall(b"hello there\n"), "protocol"),
        (lambda conn: conn.sendall(b'{"no": "ok field"}\n'), "protocol"),
    ]
    for behaviour, reason in cases:
        thread = one_peer(behaviour)
        with pytest.raises(ControlUnavailable) as unavailable:
            request(sock_path, {"op": "ping"}, timeout=0.3)
        thread.join(5)
        assert unavailable.value.reason == reason


def test_the_socket_is_in_the_run_directory_unless_that_path_is_too_long(tmp_path: Path) -> None:
    runtime = tmp_path / "xdg"
    runtime.mkdir(mode=0o700)
    environ = {"XDG_RUNTIME_DIR": str(runtime)}
    short = tmp_path / "home"
    assert control_socket_path(short, RUN, environ) == str(short / "runs" / RUN / "control.sock")
    assert not (short / "runs").exists()  # computing the path creates nothing

    fixed = len(os.fsencode(f"/runs/{RUN}/control.sock"))
    base = len(os.fsencode(str(tmp_path))) + 1
    fits = tmp_path / ("h" * (SUN_PATH_MAX - fixed - base))
    assert len(control_socket_path(fits, RUN, environ)) == SUN_PATH_MAX
    assert control_socket_path(fits, RUN, environ).startswith(str(fits))
    too_long = tmp_path / ("h" * (SUN_PATH_MAX - fixed - base + 1))
    assert control_socket_path(too_long, RUN, environ) == str(runtime / "rnix" / f"{RUN}.ctl.sock")
    assert stat.S_IMODE(os.stat(runtime / "rnix").st_mode) == 0o700

    relative = control_socket_path(Path("home"), RUN, environ)  # a relative RNIX_HOME: made absolute
    assert os.path.isabs(relative)

    async def scenario() -> None:  # the fallback path works end to end
        path = control_socket_path(too_long, RUN, environ)
        async with serving(path):
            assert (await off_loop(request, path, {"op": "ping"}))["ok"] is True

    run(scenario)
