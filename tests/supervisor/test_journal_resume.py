"""Resume end to end below the scheduler: a real built-in agent process with tools, the real gateway
journalling into the real store, then a second gateway ("the resumed supervisor") registered with a
Replay of what the store holds. The resumed agent must pay for nothing it had paid for, and run no
tool it had already run; what the journal lacks goes live.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rnix.agent import protocol
from rnix.core.journal import Replay
from rnix.llm.backend import Completion, Usage
from rnix.store.db import Store
from rnix.store.journal import append_entries, latest_attempt_entries
from rnix.supervisor.gateway import Gateway
from tests.fixtures import ROOT
from tests.supervisor.test_gateway import RecordingBackend, Records, sock_path, statuses

__all__ = ["sock_path"]  # the fixture, imported for pytest

RUN = "run-resume"


def tool_call(index: int, name: str, **arguments: Any) -> dict[str, Any]:
    function = {"name": name, "arguments": json.dumps(arguments)}
    return {"id": f"call-{index}", "type": "function", "function": function}


def script() -> list[Completion | Any]:
    """The model's side of the agent's run: mkdir, then write a file, then answer."""
    return [
        Completion("", Usage.of(120, 10), "tool_calls", [tool_call(1, "shell", argv=["mkdir", "made"])]),
        Completion(
            "", Usage.of(150, 12), "tool_calls", [tool_call(2, "write_file", path="n.txt", content="1")]
        ),
        Completion("all done", Usage.of(180, 3)),
    ]


def task(workspace: Path) -> str:
    return json.dumps(
        {
            "name": "worker",
            "intent": "make things",
            "messages": [{"role": "user", "content": "Your task: make a directory and a note"}],
            "tools": {"shell": {"allow": ["mkdir"]}, "write_file": {}},
            "workspace": str(workspace),
            "max_steps": 5,
        }
    )


@dataclass
class Attempt:
    returncode: int
    stdout: str
    stderr: str
    records: Records


@asynccontextmanager
async def durable_store(home: Path) -> AsyncIterator[tuple[Store, ThreadPoolExecutor]]:
    """The store on one thread of its own (a Store's connection belongs to one thread)."""
    executor = ThreadPoolExecutor(max_workers=1)
    loop = asyncio.get_running_loop()
    store = await loop.run_in_executor(executor, Store.open, home)
    try:
        yield store, executor
    finally:
        await loop.run_in_executor(executor, store.close)
        executor.shutdown()


async def attempt(
    path: str, home: Path, workspace: Path, backend: RecordingBackend, number: int, resume: bool
) -> Attempt:
    """One supervisor life: a gateway journalling to the store, one agent process run to its end."""
    records: Records = []
    async with durable_store(home) as (store, executor):
        loop = asyncio.get_running_loop()

        async def on_journal(instance: str, attempt: int, entry: Any) -> None:
            await loop.run_in_executor(executor, append_entries, store, RUN, instance, attempt, [entry])

        replay = None
        if resume:
            entries = await loop.run_in_executor(executor, latest_attempt_entries, store, RUN, "worker")
            replay = Replay(entries)
        gateway = Gateway(
            path,
            on_call=lambda agent, data: records.append((agent, data)),
            backends={"*": backend},
            on_journal=on_journal,
        )
        await gateway.start()
        try:
            gateway.register(
                "worker", model="fake", api_base=None, budget=5000, replay=replay, attempt=number
            )
            env = {
                "PATH": os.environ.get("PATH", ""),
                "PYTHONPATH": ROOT,
                protocol.ENV_GATEWAY: path,
                protocol.ENV_NONCE: gateway.issue_nonce("worker"),
            }
            agent = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "rnix.agent",
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=env,
                cwd=workspace,
            )
            out, err = await asyncio.wait_for(agent.communicate(task(workspace).encode()), 60)
        finally:
            await gateway.close()
    return Attempt(agent.returncode or 0, out.decode(), err.decode(), records)


def journal_rows(home: Path) -> list[tuple[Any, ...]]:
    with Store.open(home, readonly=True) as store:
        rows = store.query("SELECT attempt, seq, kind, replayed FROM journal ORDER BY attempt, seq")
        return [tuple(row) for row in rows]


def test_a_resumed_agent_pays_for_nothing_and_reruns_no_tool(
    sock_path: str, tmp_path: Path, rnix_home: Path
) -> None:
    workspace = tmp_path / "ws"
    workspace.mkdir()

    async def main() -> None:
        live = RecordingBackend(script=script())
        first = await attempt(sock_path, rnix_home, workspace, live, 1, resume=False)
        assert (first.returncode, first.stdout) == (0, "all done\n"), first.stderr
        assert len(live.calls) == 3 and statuses(first.records) == ["ok", "ok", "ok"]
        assert (workspace / "made").is_dir() and (workspace / "n.txt").read_text() == "1"

        # the supervisor is gone; the workspace moved on: what the agent made is removed
        (workspace / "made").rmdir()
        (workspace / "n.txt").unlink()
        resumed_backend = RecordingBackend()  # would answer "fine" if it were ever asked
        second = await attempt(sock_path, rnix_home, workspace, resumed_backend, 2, resume=True)
        assert (second.returncode, second.stdout) == (0, "all done\n"), second.stderr
        assert resumed_backend.calls == []  # nothing sent to the provider
        assert statuses(second.records) == ["replayed"] * 3
        assert {data["used"] for _, data in second.records} == {0}  # and nothing charged
        assert not (workspace / "made").exists() and not (workspace / "n.txt").exists()  # no tool re-run
        tool_lines = [line for line in second.stderr.splitlines() if line.startswith("[tool]")]
        assert len(tool_lines) == 2 and all(line.endswith("(replayed)") for line in tool_lines)

    asyncio.run(main())
    assert journal_rows(rnix_home) == [
        (1, 1, "llm", 0),
        (1, 2, "tool", 0),
        (1, 3, "llm", 0),
        (1, 4, "tool", 0),
        (1, 5, "llm", 0),
        (2, 1, "llm", 1),
        (2, 2, "tool", 1),
        (2, 3, "llm", 1),
        (2, 4, "tool", 1),
        (2, 5, "llm", 1),
    ]


def test_a_resume_after_a_crash_mid_run_replays_the_prefix_and_goes_on_live(
    sock_path: str, tmp_path: Path, rnix_home: Path
) -> None:
    workspace = tmp_path / "ws"
    workspace.mkdir()

    async def main() -> None:
        live = RecordingBackend(script=script())
        await attempt(sock_path, rnix_home, workspace, live, 1, resume=False)
        # as if the supervisor had died right after the mkdir result was journalled
        with Store.open(rnix_home) as store, store.transaction() as conn:
            conn.execute("DELETE FROM journal WHERE seq > 2")
        (workspace / "made").rmdir()
        (workspace / "n.txt").unlink()

        rest = RecordingBackend(script=script()[1:])
        second = await attempt(sock_path, rnix_home, workspace, rest, 2, resume=True)
        assert (second.returncode, second.stdout) == (0, "all done\n"), second.stderr
        assert len(rest.calls) == 2  # the first call was replayed, the two after it went live
        assert rest.calls[0]["messages"] == live.calls[1]["messages"]  # the same conversation
        assert statuses(second.records) == ["replayed", "ok", "ok"]
        assert not (workspace / "made").exists()  # mkdir was not run again
        assert (workspace / "n.txt").read_text() == "1"  # write_file, never journalled, ran

    asyncio.run(main())
    assert [row for row in journal_rows(rnix_home) if row[0] == 2] == [
        (2, 1, "llm", 1),
        (2, 2, "tool", 1),
        (2, 3, "llm", 0),
        (2, 4, "tool", 0),
        (2, 5, "llm", 0),
    ]
