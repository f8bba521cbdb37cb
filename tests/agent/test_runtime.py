"""The thin built-in agent against a fake gateway (a threaded Unix-socket server speaking the protocol)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from rnix.agent import protocol
from rnix.supervisor.spawn import ForkServerSpawner
from tests.fixtures import MARKER, ROOT, marked_env, new_marker, request
from tests.procs import wait_marked_gone

TASK = {
    "name": "writer",
    "intent": "write",
    "messages": [{"role": "user", "content": "Say hi"}],
    "upstream": {},
}
Reply = Callable[[dict[str, Any]], "dict[str, Any] | None"]  # None: hang up without answering


def ok(content: str) -> Reply:
    return lambda request: {"ok": True, "content": content, "usage": {"total_tokens": 3}, "remaining": 7}


def refuse(code: str, message: str) -> Reply:
    return lambda request: {"ok": False, "error": {"code": code, "message": message}, "remaining": 0}


class FakeGateway:
    def __init__(self, path: str, reply: Reply | None) -> None:
        self.path, self.reply = path, reply  # reply None: accept, read, never answer
        self.received: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.bind(path)
        self._sock.listen(128)
        self._sock.settimeout(0.1)
        self._conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn, conn.makefile("rb") as lines:
            for line in lines:
                message = protocol.decode(line)
                self.received.append(message)
                if message["op"] == "hello":
                    answer: dict[str, Any] | None = {"ok": True, "agent": "writer", "remaining": 10}
                elif self.reply is None:
                    continue
                else:
                    answer = self.reply(message)
                if answer is None:
                    return
                conn.sendall(protocol.encode({**answer, "id": message["id"]}))

    def close(self) -> None:
        self._stop.set()
        self._sock.close()
        for conn in self._conns:
            conn.close()


@pytest.fixture
def socket_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="rnix-gw-", dir="/tmp"))  # AF_UNIX paths are short
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def gateway(socket_dir: Path) -> Iterator[Callable[[Reply | None], FakeGateway]]:
    made: list[FakeGateway] = []

    def make(reply: Reply | None) -> FakeGateway:
        made.append(FakeGateway(str(socket_dir / "gw.sock"), reply))
        return made[-1]

    yield make
    for fake in made:
        fake.close()


def agent_env(path: str, **extra: str) -> dict[str, str]:
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": ROOT, protocol.ENV_GATEWAY: path}
    return {**env, protocol.ENV_NONCE: "n0nce", **extra}


def run_agent(env: dict[str, str], task: str = json.dumps(TASK)) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "rnix.agent"]
    return subprocess.run(cmd, input=task, env=env, capture_output=True, text=True, timeout=30)


def test_success_prints_the_content(gateway: Callable[[Reply | None], FakeGateway]) -> None:
    fake = gateway(ok("hi there"))
    result = run_agent(agent_env(fake.path))
    assert (result.returncode, result.stdout, result.stderr) == (0, "hi there\n", "")
    hello, complete = fake.received
    assert hello == {"op": "hello", "nonce": "n0nce", "id": 1}
    assert complete["op"] == "complete" and complete["messages"] == TASK["messages"]


def test_content_ending_in_newline_is_not_doubled(gateway: Callable[[Reply | None], FakeGateway]) -> None:
    assert run_agent(agent_env(gateway(ok("line\n")).path)).stdout == "line\n"


def test_budget_exceeded_exits_2(gateway: Callable[[Reply | None], FakeGateway]) -> None:
    result = run_agent(agent_env(gateway(refuse(protocol.BUDGET_EXCEEDED, "0 of 10 tokens left")).path))
    assert result.returncode == 2
    assert result.stderr == "rnix-agent: budget exceeded: 0 of 10 tokens left\n"
    assert result.stdout == ""


def test_provider_error_exits_1(gateway: Callable[[Reply | None], FakeGateway]) -> None:
    result = run_agent(agent_env(gateway(refuse(protocol.PROVIDER_ERROR, "upstream\n500")).path))
    assert result.returncode == 1
    assert result.stderr == "rnix-agent: provider_error: upstream 500\n"


def test_gateway_hanging_up_exits_1(gateway: Callable[[Reply | None], FakeGateway]) -> None:
    result = run_agent(agent_env(gateway(lambda request: None).path))
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "closed the connection" in result.stderr


def test_unreachable_gateway_exits_1_with_one_line(socket_dir: Path) -> None:
    result = run_agent(agent_env(str(socket_dir / "nobody.sock")))
    assert result.returncode == 1
    assert result.stderr.startswith("rnix-agent: ") and result.stderr.count("\n") == 1
    assert "cannot reach the rnix gateway" in result.stderr


@pytest.mark.parametrize("task", ["not json", "[1, 2]", '{"intent": "no messages"}', "\xff"])
def test_bad_task_exits_1(gateway: Callable[[Reply | None], FakeGateway], task: str) -> None:
    result = run_agent(agent_env(gateway(ok("x")).path), task)
    assert result.returncode == 1
    assert result.stderr.startswith("rnix-agent: ") and result.stderr.count("\n") == 1


def test_outside_rnix_exits_1() -> None:
    result = run_agent({"PATH": os.environ.get("PATH", ""), "PYTHONPATH": ROOT})
    assert result.returncode == 1
    assert "not running under rnix" in result.stderr


def test_runtime_imports_only_the_standard_library_basics() -> None:
    code = "import sys, rnix.agent.runtime; print(' '.join(sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    loaded = {name.split(".")[0] for name in out.split()}
    assert loaded.isdisjoint({"asyncio", "click", "yaml", "rich", "psutil", "litellm", "subprocess"})


def test_builtin_agent_through_the_fork_server(
    tmp_path: Path, gateway: Callable[[Reply | None], FakeGateway]
) -> None:
    marker = new_marker()
    fake = gateway(ok("forked hello"))

    async def main() -> None:
        async with ForkServerSpawner(environ={**os.environ, MARKER: marker}) as spawner:
            env = marked_env(marker, agent_env(fake.path))
            agent = await spawner.spawn(request(tmp_path, "w", None, env, task=json.dumps(TASK)))
            assert (await asyncio.wait_for(agent.wait(), 30)).returncode == 0
            assert (tmp_path / "w.out").read_text() == "forked hello\n"
            assert (tmp_path / "w.err").read_text() == ""
            assert fake.received[0]["nonce"] == "n0nce"
            assert fake.received[1]["messages"] == TASK["messages"]

            fake.reply = refuse(protocol.BUDGET_EXCEEDED, "spent")
            broke = await spawner.spawn(request(tmp_path, "b", None, env, task=json.dumps(TASK)))
            assert (await asyncio.wait_for(broke.wait(), 30)).returncode == 2
            assert (tmp_path / "b.err").read_text() == "rnix-agent: budget exceeded: spent\n"

            fake.reply = None  # blocks in the gateway call: SIGTERM must end it at once
            blocked = await spawner.spawn(request(tmp_path, "s", None, env, task=json.dumps(TASK)))
            deadline = time.monotonic() + 30
            while sum(m["op"] == "complete" for m in fake.received) < 3 and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            started = time.monotonic()
            assert (await blocked.stop(5.0)).signal == signal.SIGTERM
            assert time.monotonic() - started < 1.0

    asyncio.run(main())
    assert wait_marked_gone(marker, 10.0) == []


def test_an_output_schema_task_without_a_valid_result_exits_1_with_the_errors(
    gateway: Callable[[Reply | None], FakeGateway],
) -> None:
    fake = gateway(ok("it passes"))  # plain text, every time
    task = {**TASK, "max_steps": 10, "output_schema": {"type": "object", "required": ["verdict"]}}
    result = run_agent(agent_env(fake.path), json.dumps(task))
    assert result.returncode == 1 and result.stdout == ""
    assert (
        result.stderr.splitlines()[-1]
        == "output_schema: answered in plain text instead of calling submit_result"
    )
    assert [m["op"] for m in fake.received].count("complete") == 3  # the answer and two repairs


def test_an_output_schema_that_is_not_an_object_is_a_bad_task(
    gateway: Callable[[Reply | None], FakeGateway],
) -> None:
    task = {**TASK, "max_steps": 10, "output_schema": [1]}
    result = run_agent(agent_env(gateway(ok("x")).path), json.dumps(task))
    assert result.returncode == 1
    assert result.stderr == "rnix-agent: the task's `output_schema` must be a JSON object\n"
