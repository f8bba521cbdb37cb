"""ForkServerSpawner with real fixture agents: output files, statuses, the stop policy, no leftovers."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import TypeVar

import psutil
import pytest

from rnix.supervisor import procinfo
from rnix.supervisor.spawn import ForkServerSpawner, LocalAgentProcess, SpawnError
from tests.fixtures import MARKER, agent_argv, marked_env, new_marker, request
from tests.procs import alive, marked_pids, wait_gone, wait_marked_gone

T = TypeVar("T")


@pytest.fixture
def marker() -> Iterator[str]:
    value = new_marker()
    yield value
    assert wait_marked_gone(value, 10.0) == [], "a marked process outlived its test"


def run_with_spawner(marker: str, body: Callable[[ForkServerSpawner], Awaitable[T]]) -> T:
    async def main() -> T:
        async with ForkServerSpawner(environ={**os.environ, MARKER: marker}) as spawner:
            return await asyncio.wait_for(body(spawner), 120)

    return asyncio.run(main())


async def wait_for_text(path: Path, text: str, timeout: float = 15.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        content = path.read_text() if path.exists() else ""
        if text in content:
            return content
        await asyncio.sleep(0.02)
    raise AssertionError(f"{path} never contained {text!r}")


def test_succeeding_agents_have_distinct_pids_and_their_output(tmp_path: Path, marker: str) -> None:
    async def body(spawner: ForkServerSpawner) -> None:
        env = marked_env(marker)
        agents = [
            await spawner.spawn(request(tmp_path, f"a{i}", agent_argv("succeed", f"hello {i}"), env))
            for i in range(5)
        ]
        assert len({a.pid for a in agents}) == 5
        assert spawner.server_pid not in {a.pid for a in agents}
        for i, agent in enumerate(agents):
            info = await agent.wait()
            assert (info.returncode, info.signal, info.shell_status) == (0, None, 0)
            assert (tmp_path / f"a{i}.out").read_text() == info.result == f"hello {i}\n"
            assert (tmp_path / f"a{i}.err").read_text() == ""

    run_with_spawner(marker, body)


def test_agent_leads_its_own_session_with_exact_env_cwd_and_fds(tmp_path: Path, marker: str) -> None:
    async def body(spawner: ForkServerSpawner) -> None:
        env = marked_env(marker, {"ONLY": "this"})
        work = tmp_path / "work"
        work.mkdir()
        agent = await spawner.spawn(request(tmp_path, "s", agent_argv("sleeper", "30"), env))
        await wait_for_text(tmp_path / "s.out", "sleeping")
        assert os.getpgid(agent.pid) == agent.pid == os.getsid(agent.pid)
        assert agent.start_time == pytest.approx(psutil.Process(agent.pid).create_time(), abs=0.02)
        assert procinfo.is_same_process(agent.pid, agent.start_time, agent.start_ticks)
        assert agent.start_ticks == procinfo.start_ticks(agent.pid)
        (command,) = procinfo.children(agent.pid)
        for pid in (agent.pid, command):
            assert sorted(os.listdir(f"/proc/{pid}/fd")) == ["0", "1", "2"]
            assert os.readlink(f"/proc/{pid}/cwd") == str(tmp_path)
        assert os.getpgid(command) == agent.pid
        assert (await agent.stop(2.0)).signal == signal.SIGTERM

        printer = await spawner.spawn(
            replace(request(tmp_path, "env", ("sh", "-c", "pwd; env"), env), cwd=str(work))
        )
        assert (await printer.wait()).returncode == 0
        cwd, *lines = (tmp_path / "env.out").read_text().splitlines()
        assert cwd == str(work)
        shell_vars = {"PWD", "SHLVL", "_", "OLDPWD"}  # what sh itself adds
        assert {line for line in lines if line.split("=")[0] not in shell_vars} == {
            f"{k}={v}" for k, v in env.items()
        }

    run_with_spawner(marker, body)


def test_crash_and_exec_failures(tmp_path: Path, marker: str) -> None:
    not_executable = tmp_path / "script.sh"
    not_executable.write_text("#!/bin/sh\necho hi\n")

    async def body(spawner: ForkServerSpawner) -> None:
        env = marked_env(marker)
        crash = await spawner.spawn(request(tmp_path, "crash", agent_argv("crash", "boom here"), env))
        assert (await crash.wait()).returncode == 1
        assert (tmp_path / "crash.err").read_text() == "boom here\n"
        missing = await spawner.spawn(request(tmp_path, "missing", ("no-such-program-rnix",), env))
        assert (await missing.wait()).returncode == 127
        assert "no-such-program-rnix" in (tmp_path / "missing.err").read_text()
        denied = await spawner.spawn(request(tmp_path, "denied", (str(not_executable),), env))
        assert (await denied.wait()).returncode == 126
        code = await spawner.spawn(request(tmp_path, "code", agent_argv("crash", "x", "3"), env))
        assert (await code.wait()).shell_status == 3
        # The command is searched for on the agent's PATH, not the supervisor's.
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir()
        (bin_dir / "rnix-test-tool").write_text("#!/bin/sh\necho found $0\n")
        (bin_dir / "rnix-test-tool").chmod(0o755)
        env_path = {**env, "PATH": f"{bin_dir}:{env['PATH']}"}
        tool = await spawner.spawn(request(tmp_path, "tool", ("rnix-test-tool",), env_path))
        assert (await tool.wait()).returncode == 0
        assert (tmp_path / "tool.out").read_text() == f"found {bin_dir}/rnix-test-tool\n"

    run_with_spawner(marker, body)


def test_bad_paths_are_spawn_errors(tmp_path: Path, marker: str) -> None:
    async def body(spawner: ForkServerSpawner) -> None:
        good = request(tmp_path, "x", agent_argv("succeed"), marked_env(marker))
        with pytest.raises(SpawnError, match="No such file"):
            await spawner.spawn(replace(good, stdin_path=str(tmp_path / "nope")))
        with pytest.raises(SpawnError, match="No such file"):
            await spawner.spawn(replace(good, cwd=str(tmp_path / "nodir")))
        assert (await (await spawner.spawn(good)).wait()).returncode == 0  # still serving

    run_with_spawner(marker, body)


def test_stop_ends_a_sleeper_with_sigterm_quickly(tmp_path: Path, marker: str) -> None:
    async def body(spawner: ForkServerSpawner) -> None:
        agent = await spawner.spawn(request(tmp_path, "s", agent_argv("sleeper", "60"), marked_env(marker)))
        await wait_for_text(tmp_path / "s.out", "sleeping")
        started = time.monotonic()
        info = await agent.stop(2.0)
        assert time.monotonic() - started < 1.0
        assert (info.returncode, info.signal, info.shell_status) == (None, signal.SIGTERM, 143)
        assert agent.signal_group(signal.SIGTERM) is False  # gone: never signal a stale PID
        assert await agent.stop(2.0) == info

    run_with_spawner(marker, body)


def test_stop_kills_an_agent_that_ignores_sigterm_after_the_grace(tmp_path: Path, marker: str) -> None:
    async def body(spawner: ForkServerSpawner) -> None:
        argv = agent_argv("ignore_term", "60")
        agent = await spawner.spawn(request(tmp_path, "i", argv, marked_env(marker)))
        await wait_for_text(tmp_path / "i.out", "ready")
        started = time.monotonic()
        info = await agent.stop(0.5)
        assert 0.4 <= time.monotonic() - started <= 2.0
        assert info.signal == signal.SIGKILL

    run_with_spawner(marker, body)


def test_leader_passes_other_signals_through(tmp_path: Path, marker: str) -> None:
    async def body(spawner: ForkServerSpawner) -> None:
        agent = await spawner.spawn(request(tmp_path, "s", agent_argv("sleeper", "60"), marked_env(marker)))
        await wait_for_text(tmp_path / "s.out", "sleeping")
        assert agent.signal_group(signal.SIGUSR1)
        assert (await agent.wait()).signal == signal.SIGUSR1  # the leader mirrors how its command died

    run_with_spawner(marker, body)


@pytest.mark.parametrize(
    "flags",
    [(), ("--setsid",), ("--wait",), ("--setsid", "--wait"), ("--setsid", "--ignore-term")],
    ids=lambda flags: " ".join(flags) or "plain",
)
def test_no_grandchild_outlives_its_agent(tmp_path: Path, marker: str, flags: tuple[str, ...]) -> None:
    async def body(spawner: ForkServerSpawner) -> LocalAgentProcess:
        argv = agent_argv("grandchild", *flags, "60")
        agent = await spawner.spawn(request(tmp_path, "g", argv, marked_env(marker), grace=5.0))
        grandchild = int((await wait_for_text(tmp_path / "g.out", "\n")).split()[0])
        if "--wait" in flags:
            assert alive(grandchild)
            info = await agent.stop(1.0)
            assert info.signal == signal.SIGTERM
        else:
            info = await agent.wait()
            assert info.returncode == 0
        assert wait_gone([grandchild], 5.0) == []
        return agent

    agent = run_with_spawner(marker, body)
    assert wait_gone([agent.pid], 5.0) == []


def test_spew_completes_into_files(tmp_path: Path, marker: str) -> None:
    async def body(spawner: ForkServerSpawner) -> None:
        agent = await spawner.spawn(
            request(tmp_path, "spew", agent_argv("spew", "200000"), marked_env(marker))
        )
        assert (await asyncio.wait_for(agent.wait(), 60)).returncode == 0

    run_with_spawner(marker, body)
    out = (tmp_path / "spew.out").read_text().splitlines()
    err = (tmp_path / "spew.err").read_text().splitlines()
    assert len(out) == len(err) == 200000
    assert (out[-1], err[-1]) == ("out 199999", "err 199999")


def test_two_hundred_agents_at_once(tmp_path: Path, marker: str) -> None:
    async def body(spawner: ForkServerSpawner) -> None:
        env = marked_env(marker)
        agents = await asyncio.gather(
            *(
                spawner.spawn(request(tmp_path, f"n{i}", agent_argv("succeed", str(i)), env))
                for i in range(200)
            )
        )
        assert len({a.pid for a in agents}) == 200
        infos = await asyncio.gather(*(a.wait() for a in agents))
        assert all(info.returncode == 0 for info in infos)
        assert all((tmp_path / f"n{i}.out").read_text() == f"{i}\n" for i in range(200))

    run_with_spawner(marker, body)


def test_fork_server_death_ends_agents_and_spawning(tmp_path: Path, marker: str) -> None:
    async def body(spawner: ForkServerSpawner) -> None:
        env = marked_env(marker)
        sleeper = await spawner.spawn(request(tmp_path, "s", agent_argv("sleeper", "60"), env))
        stubborn = await spawner.spawn(request(tmp_path, "i", agent_argv("ignore_term", "60"), env, grace=30))
        await wait_for_text(tmp_path / "i.out", "ready")
        assert spawner.server_pid is not None
        os.kill(spawner.server_pid, signal.SIGKILL)
        infos = await asyncio.wait_for(asyncio.gather(sleeper.wait(), stubborn.wait()), 10)
        assert all(info.signal is not None for info in infos)
        with pytest.raises(RuntimeError, match="fork server"):
            await spawner.spawn(request(tmp_path, "late", agent_argv("succeed"), env))

    run_with_spawner(marker, body)


def test_close_with_running_agents_kills_them(tmp_path: Path, marker: str) -> None:
    async def main() -> LocalAgentProcess:
        spawner = ForkServerSpawner(environ={**os.environ, MARKER: marker})
        await spawner.start()
        agent = await spawner.spawn(request(tmp_path, "s", agent_argv("sleeper", "60"), marked_env(marker)))
        await wait_for_text(tmp_path / "s.out", "sleeping")
        await spawner.close()
        assert (await asyncio.wait_for(agent.wait(), 5)).signal is not None
        with pytest.raises(RuntimeError, match="not running"):
            await spawner.spawn(request(tmp_path, "late", agent_argv("succeed"), marked_env(marker)))
        return agent

    agent = asyncio.run(main())
    assert not alive(agent.pid)


@pytest.mark.parametrize("cgroup", ["1", "0"], ids=["cgroup", "sweeps alone"])
@pytest.mark.parametrize("close", ["close", "server killed"])
def test_a_chain_of_strays_is_swept_before_close_returns(
    tmp_path: Path, marker: str, close: str, cgroup: str
) -> None:
    """Ten strays, each in a session of its own, ignoring SIGTERM, each the parent of the next: every
    kill orphans the next one. Whether the fork server closes at once (EOF) or dies (the supervisor
    then sweeps alone), nothing of the chain is alive when close() returns; and the sweeps alone
    see to that (the cgroup, where there is one, finds nothing left)."""

    async def main() -> None:
        spawner = ForkServerSpawner(environ={**os.environ, MARKER: marker, "RNIX_CGROUP": cgroup})
        await spawner.start()
        argv = agent_argv("setsid_stray", "--depth", "10")
        agent = await spawner.spawn(request(tmp_path, "c", argv, marked_env(marker)))
        await wait_for_text(tmp_path / "c.out", "\n")
        assert len(marked_pids(marker)) >= 12  # leader, agent, ten strays, sleep
        agent.signal_group(signal.SIGKILL)  # the leader cannot sweep: its orphans go to the fork server
        await agent.wait()
        if close == "server killed":
            assert spawner.server_pid is not None
            os.kill(spawner.server_pid, signal.SIGKILL)
        await spawner.close()
        assert marked_pids(marker) == []
        assert spawner.escaped == []

    try:
        asyncio.run(main())
    finally:  # a failure must not leave the chain running
        for pid in marked_pids(marker):
            os.kill(pid, signal.SIGKILL)


def test_fork_server_imports_only_the_thin_runtime() -> None:
    code = "import sys, rnix.supervisor.forkserver; print(' '.join(sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    loaded = {name.split(".")[0] for name in out.split()}
    assert loaded.isdisjoint({"asyncio", "psutil", "litellm", "click", "yaml", "rich", "subprocess"})


def test_cancelled_spawn_leaves_no_agent(tmp_path: Path, marker: str) -> None:
    async def body(spawner: ForkServerSpawner) -> None:
        argv = agent_argv("sleeper", "60")
        cancelled = 0
        for yields in range(8):  # cancel at different points: before, during and after the reply
            task = asyncio.ensure_future(spawner.spawn(request(tmp_path, "c", argv, marked_env(marker))))
            for _ in range(yields):
                await asyncio.sleep(0)
            task.cancel()
            try:
                await (await task).stop(0.1)  # it completed first: not a leak, the caller owns it
            except asyncio.CancelledError:
                cancelled += 1
        assert cancelled >= 1
        # The server handles requests in order: once this one is answered, every cancelled agent
        # has been forked, so an empty marked set below means they were all killed.
        assert (await (await spawner.spawn(request(tmp_path, "sync", argv, {}))).stop(0.1)).signal
        deadline = time.monotonic() + 10
        while set(marked_pids(marker)) - {spawner.server_pid} and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert set(marked_pids(marker)) - {spawner.server_pid} == set()

    run_with_spawner(marker, body)


def test_stop_right_after_spawn_is_a_quick_sigterm(tmp_path: Path, marker: str) -> None:
    silent = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)  # a gateway that never answers
    path = tempfile.mktemp(prefix="rnix-silent-", dir="/tmp")
    silent.bind(path)
    silent.listen(64)
    env = marked_env(marker, {"RNIX_GATEWAY": path, "RNIX_AGENT_NONCE": "x"})

    async def body(spawner: ForkServerSpawner) -> None:
        for i in range(10):
            argv = agent_argv("sleeper", "60") if i % 2 else None  # a command agent, a built-in one
            agent = await spawner.spawn(request(tmp_path, f"s{i}", argv, env, grace=30))
            started = time.monotonic()
            assert (await agent.stop(30.0)).signal == signal.SIGTERM
            assert time.monotonic() - started < 2.0

    try:
        run_with_spawner(marker, body)
    finally:
        silent.close()
        os.unlink(path)
