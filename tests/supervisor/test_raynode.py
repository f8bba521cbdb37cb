"""The node agent (rnix.supervisor.raynode.NodeAgent) on its own, without Ray: it is a plain class
that the Ray spawner turns into an actor, so its contract is tested here in one process."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import pytest

from rnix.supervisor import exitreport
from rnix.supervisor.raynode import NodeAgent
from tests.procs import alive


def run(coro: object) -> object:
    return asyncio.run(coro)  # type: ignore[arg-type]


@pytest.fixture
def node_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "node"
    monkeypatch.setenv("RNIX_NODE_DIR", str(directory))
    return directory


def request(cwd: Path, argv: list[str], name: str = "a") -> dict[str, object]:
    return {
        "name": name,
        "argv": argv,
        "env": {"PATH": os.environ["PATH"]},
        "cwd": str(cwd),
        "grace": 1.0,
        "exit_path": "/supervisor/side/a.exit.json",
    }


def test_a_node_agent_runs_an_agent_in_its_own_files_and_hands_back_output_and_report(
    tmp_path: Path, node_dir: Path
) -> None:
    script = (
        "import json, sys; task = json.load(sys.stdin); print('got', task['x']); "
        "print('oops', file=sys.stderr)"
    )

    async def body() -> None:
        node = NodeAgent("run1", node_name="abcd1234")
        info = await node.start()
        assert info["pid"] == os.getpid() and info["dir"] == str(node_dir / "run1")
        node.set_base_env({"PATH": os.environ["PATH"], "KEEP": "1"})
        started = await node.spawn(
            {
                **request(
                    tmp_path, [sys.executable, "-c", script + "; import os; print(os.environ['RNIX_NODE'])"]
                ),
                "env": {},
                "env_unset": [],
            },
            json.dumps({"x": 42}).encode(),
        )
        pid = int(started["pid"])
        ended = await node.wait(pid)
        assert ended["returncode"] == 0 and ended["signal"] is None
        assert ended["result"] == "got 42\nabcd1234\n"
        report = exitreport.parse_exit_report(ended["report"])
        assert report is not None and report.returncode == 0
        chunks = node.read({pid: (0, 0)})
        assert chunks[pid] == (b"got 42\nabcd1234\n", b"oops\n")
        assert node.read({pid: (len(b"got 42\nabcd1234\n"), 5)}) == {}  # nothing new past the offsets
        node.forget(pid)
        assert node.read({pid: (0, 0)}) == {}
        await node.close()
        assert not (node_dir / "run1").exists()  # the run's files on the node are gone

    run(body())


def test_stop_takes_the_whole_group_down_on_the_node(tmp_path: Path, node_dir: Path) -> None:
    stubborn = (
        "import signal, subprocess, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "kid = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)']); "
        "print(kid.pid, flush=True); time.sleep(300)"
    )

    async def body() -> None:
        node = NodeAgent("run2")
        await node.start()
        node.set_base_env({"PATH": os.environ["PATH"]})
        started = await node.spawn({**request(tmp_path, [sys.executable, "-c", stubborn]), "env": {}}, b"{}")
        pid = int(started["pid"])
        for _ in range(500):
            out = node.read({pid: (0, 0)}).get(pid, (b"", b""))[0]
            if out.strip():
                break
            await asyncio.sleep(0.02)
        grandchild = int(out.split()[0])
        assert node.signal_group(pid, signal.SIGSTOP) and node.signal_group(pid, signal.SIGCONT)
        ended = await node.stop(pid, 0.5)
        assert ended["signal"] == signal.SIGKILL and ended["report"] is None  # stopped, not finished
        assert not alive(pid) and not alive(grandchild)
        assert not node.signal_group(12345678, signal.SIGTERM)  # not one of ours
        await node.close()

    run(body())


def test_the_working_directory_comes_from_the_shipped_copy_when_the_path_is_not_on_the_node(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shipped_copy = tmp_path / "ray-session" / "working_dir"
    (shipped_copy / "sub").mkdir(parents=True)
    monkeypatch.chdir(shipped_copy)  # a node agent's cwd is the unpacked working_dir
    node = NodeAgent("run3", shipped_dir="/home/someone/project")
    assert node._cwd(str(tmp_path)) == str(tmp_path)  # a path that exists here is used as is
    assert node._cwd("/home/someone/project") == str(shipped_copy)
    assert node._cwd("/home/someone/project/sub") == str(shipped_copy / "sub")
    with pytest.raises(FileNotFoundError, match="does not exist on node"):
        node._cwd("/home/someone/elsewhere")
    with pytest.raises(FileNotFoundError, match="does not exist on node"):
        NodeAgent("run4")._cwd("/home/someone/project")
