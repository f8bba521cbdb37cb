"""The result and the exit report: read next to the agent, written by its leader only when it finished.

The file functions on their own, then real agents through the fork server (command and built-in).
A SIGKILLed supervisor is in test_forkserver_kill.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import TypeVar

import pytest

from rnix.agent import protocol
from rnix.supervisor import exitreport
from rnix.supervisor.api import ExitInfo, SpawnRequest
from rnix.supervisor.exitreport import RESULT_LIMIT, read_exit_report, read_result, write_exit_report
from rnix.supervisor.spawn import ForkServerSpawner, SpawnError
from tests.agent.test_runtime import TASK, FakeGateway, Reply, agent_env, ok, refuse
from tests.fixtures import agent_argv, marked_env, new_marker, request
from tests.supervisor.test_spawn import marker, run_with_spawner

__all__ = ["marker"]  # the fixture (nothing marked outlives the test), imported for pytest

T = TypeVar("T")

# -- the files ---------------------------------------------------------------------------------------


def test_result_limit_is_one_mebibyte() -> None:
    assert RESULT_LIMIT == 1024 * 1024


def test_read_result_is_the_whole_output_up_to_the_limit(tmp_path: Path) -> None:
    out = tmp_path / "a.out"
    out.write_bytes(b"0123456789")
    assert read_result(out, limit=10) == "0123456789"
    out.write_bytes(b"0123456789X")
    note = f"\n[rnix: result truncated at 10 bytes; the whole output is in {out}]"
    assert read_result(out, limit=10) == "0123456789" + note
    assert read_result(str(out), limit=10) == "0123456789" + note


def test_read_result_truncates_at_result_limit_by_default(tmp_path: Path) -> None:
    out = tmp_path / "big.out"
    out.write_bytes(b"a" * (RESULT_LIMIT + 5))
    kept, note = read_result(out).split("\n[rnix: ")
    assert kept == "a" * RESULT_LIMIT
    assert note == f"result truncated at 1048576 bytes; the whole output is in {out}]"


def test_read_result_decodes_leniently_and_a_missing_file_is_empty(tmp_path: Path) -> None:
    out = tmp_path / "a.out"
    out.write_bytes(b"ok \xff " + "é".encode())
    assert read_result(out) == "ok \ufffd é"
    out.write_bytes("é".encode() * 3)  # cut in the middle of a character
    assert read_result(out, limit=3).startswith("é\ufffd\n[rnix: result truncated at 3 bytes")
    assert read_result(tmp_path / "none.out") == ""


def test_a_written_report_reads_back_and_leaves_no_temp_file(tmp_path: Path) -> None:
    path = str(tmp_path / "a.exit.json")
    write_exit_report(path, 0, None)
    assert read_exit_report(path) == ExitInfo(0, None)
    assert set(json.loads(Path(path).read_text())) == {"returncode", "signal", "ts"}
    write_exit_report(path, None, signal.SIGTERM)  # replaces it
    assert read_exit_report(Path(path)) == ExitInfo(None, signal.SIGTERM)
    assert os.listdir(tmp_path) == ["a.exit.json"]
    exitreport.remove_exit_report(path)
    exitreport.remove_exit_report(path)  # nothing there: fine
    assert os.listdir(tmp_path) == []


def test_writing_into_a_missing_directory_raises(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        write_exit_report(str(tmp_path / "nodir" / "a.exit.json"), 0, None)


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b'{"returncode": 0, "signal": nu',
        b"[]",
        b'{"returncode": 0, "signal": null}',
        b'{"returncode": "0", "signal": null, "ts": 1.5}',
        b'{"returncode": true, "signal": null, "ts": 1.5}',
        b'{"returncode": null, "signal": null, "ts": 1.5}',
        b'{"returncode": 0, "signal": 9, "ts": 1.5}',
        b'{"returncode": 0, "signal": null, "ts": "now"}',
        b"\xff\xfe{}",
        b"[" * 4000,
        b'{"returncode": 0, "signal": null, "ts": 1.5, "pad": "' + b"x" * 5000 + b'"}',
    ],
    ids=lambda content: repr(content[:24]),
)
def test_a_corrupt_report_reads_as_none(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "a.exit.json"
    path.write_bytes(content)
    assert read_exit_report(path) is None


def test_no_report_or_an_unreadable_one_reads_as_none(tmp_path: Path) -> None:
    assert read_exit_report(tmp_path / "missing.exit.json") is None
    assert read_exit_report(tmp_path) is None  # a directory


# -- real agents -------------------------------------------------------------------------------------


def reporting(spawn: SpawnRequest) -> SpawnRequest:
    """`spawn` with its exit report next to its other files."""
    return replace(spawn, exit_path=str(Path(spawn.stdout_path).with_suffix(".exit.json")))


async def wait_for_line(path: Path, timeout: float = 15.0) -> None:
    for _ in range(int(timeout / 0.02)):
        if path.exists() and path.read_text().endswith("\n"):
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{path} never got a line")


def test_command_agents_report_how_they_ended_and_the_result_comes_with_the_exit(
    tmp_path: Path, marker: str
) -> None:
    async def body(spawner: ForkServerSpawner) -> None:
        env = marked_env(marker)
        cases = {
            "ok": (agent_argv("succeed", "hello"), ExitInfo(0, None, "hello\n")),
            "crash": (agent_argv("crash", "boom", "3"), ExitInfo(3, None, "")),
            "missing": (("no-such-program-rnix",), ExitInfo(127, None, "")),
        }
        for name, (argv, expected) in cases.items():
            agent = await spawner.spawn(reporting(request(tmp_path, name, argv, env)))
            assert await agent.wait() == expected
            assert read_exit_report(tmp_path / f"{name}.exit.json") == replace(expected, result=None)

        # A signal from outside (not the leader's parent-death stop) ends it by itself too.
        sleeper = await spawner.spawn(reporting(request(tmp_path, "s", agent_argv("sleeper", "60"), env)))
        await wait_for_line(tmp_path / "s.out")
        assert sleeper.signal_group(signal.SIGUSR1)
        assert await sleeper.wait() == ExitInfo(None, signal.SIGUSR1, "sleeping\n")
        assert read_exit_report(tmp_path / "s.exit.json") == ExitInfo(None, signal.SIGUSR1)

        plain = await spawner.spawn(request(tmp_path, "plain", agent_argv("succeed"), env))
        assert (await plain.wait()).result == "ok\n"
        assert not list(tmp_path.glob("plain.exit*"))  # no exit_path, no report

    run_with_spawner(marker, body)


def test_a_long_result_arrives_truncated_with_a_note(tmp_path: Path, marker: str) -> None:
    async def body(spawner: ForkServerSpawner) -> None:
        argv = agent_argv("spew", "120000")  # ~1.3 MB of "out N" lines on stdout
        info = await (await spawner.spawn(request(tmp_path, "spew", argv, marked_env(marker)))).wait()
        assert info.returncode == 0 and info.result is not None
        body_, note = info.result.rsplit("\n[rnix: ", 1)
        assert len(body_.encode()) == RESULT_LIMIT and body_.startswith("out 0\nout 1\n")
        assert (
            note == f"result truncated at {RESULT_LIMIT} bytes; the whole output is in {tmp_path}/spew.out]"
        )

    run_with_spawner(marker, body)


def test_a_stale_report_is_removed_at_spawn_and_bad_paths_are_refused(tmp_path: Path, marker: str) -> None:
    async def body(spawner: ForkServerSpawner) -> None:
        spawn = reporting(request(tmp_path, "s", agent_argv("sleeper", "60"), marked_env(marker)))
        assert spawn.exit_path is not None
        write_exit_report(spawn.exit_path, 0, None)  # an earlier attempt's
        agent = await spawner.spawn(spawn)
        assert not os.path.exists(spawn.exit_path)
        assert (await agent.stop(2.0)).signal == signal.SIGTERM
        # The supervisor's stop is not the leader's own parent-death stop: it is reported.
        assert read_exit_report(spawn.exit_path) == ExitInfo(None, signal.SIGTERM)

        with pytest.raises(SpawnError, match="absolute"):
            await spawner.spawn(replace(spawn, exit_path="s.exit.json"))
        with pytest.raises(SpawnError, match="no directory"):
            await spawner.spawn(replace(spawn, exit_path=str(tmp_path / "nodir" / "s.exit.json")))

    run_with_spawner(marker, body)


@pytest.fixture
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeGateway]:
    directory = Path(os.path.realpath("/tmp")) / f"rnix-gw-{new_marker()[:12]}"  # AF_UNIX paths are short
    directory.mkdir()
    fake = FakeGateway(str(directory / "gw.sock"), ok("forked hello"))
    yield fake
    fake.close()
    os.unlink(fake.path)
    directory.rmdir()


def test_builtin_agents_report_their_status_and_a_failure_of_their_own(
    tmp_path: Path, marker: str, gateway: FakeGateway
) -> None:
    async def body(spawner: ForkServerSpawner) -> None:
        env = marked_env(marker, agent_env(gateway.path))
        replies: dict[str, tuple[Reply, ExitInfo]] = {
            "ok": (ok("forked hello"), ExitInfo(0, None, "forked hello\n")),
            "broke": (refuse(protocol.BUDGET_EXCEEDED, "spent"), ExitInfo(2, None, "")),
            # The gateway hangs up while the supervisor lives: the agent's own failure, reported.
            "hangup": (lambda request: None, ExitInfo(1, None, "")),
        }
        for name, (reply, expected) in replies.items():
            gateway.reply = reply
            agent = await spawner.spawn(reporting(request(tmp_path, name, None, env, task=json.dumps(TASK))))
            assert await agent.wait() == expected
            assert read_exit_report(tmp_path / f"{name}.exit.json") == replace(expected, result=None)

    run_with_spawner(marker, body)


def test_agents_of_a_dead_fork_server_write_no_report(
    tmp_path: Path, marker: str, gateway: FakeGateway
) -> None:
    async def body(spawner: ForkServerSpawner) -> None:
        gateway.reply = None  # the built-in agent blocks in its call
        env = marked_env(marker, agent_env(gateway.path))
        sleeper = await spawner.spawn(reporting(request(tmp_path, "s", agent_argv("sleeper", "60"), env)))
        graceful = await spawner.spawn(reporting(request(tmp_path, "g", agent_argv("term_ok", "60"), env)))
        thinker = await spawner.spawn(reporting(request(tmp_path, "t", None, env, task=json.dumps(TASK))))
        await wait_for_line(tmp_path / "s.out")
        await wait_for_line(tmp_path / "g.out")
        for _ in range(750):
            if any(message["op"] == "complete" for message in gateway.received):
                break
            await asyncio.sleep(0.02)
        assert spawner.server_pid is not None
        os.kill(spawner.server_pid, signal.SIGKILL)
        infos = await asyncio.wait_for(asyncio.gather(sleeper.wait(), graceful.wait(), thinker.wait()), 20)
        assert all(info.returncode != 0 for info in infos)
        assert infos[0].result == "sleeping\n"  # read as well when the spawner reaps them itself
        assert not list(tmp_path.glob("*.exit.json*"))

    run_with_spawner(marker, body)
