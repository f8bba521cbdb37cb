"""The optional per-fork-server cgroup (rnix.supervisor.cgroup): agents are in it, and what is still
in it after the sweeps is killed and named at close. Skipped where no cgroup v2 is writable."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rnix.supervisor.cgroup import RunCgroup
from rnix.supervisor.spawn import ForkServerSpawner
from tests.fixtures import MARKER, agent_argv, marked_env, new_marker, request
from tests.procs import alive, wait_marked_gone


def _available() -> bool:
    group = RunCgroup.create({})
    if group is None:
        return False
    group.remove()
    return True


pytestmark = pytest.mark.skipif(not _available(), reason="no writable cgroup v2 here")


def own_cgroup(pid: int) -> str:
    with open(f"/proc/{pid}/cgroup") as f:
        return next(line[3:].strip() for line in f if line.startswith("0::"))


def test_it_can_be_turned_off() -> None:
    assert RunCgroup.create({"RNIX_CGROUP": "0"}) is None


def test_agents_run_in_it_and_an_escapee_is_killed_and_named_at_close(tmp_path: Path) -> None:
    marker = new_marker()
    # In our own session, so no sweep takes it for an agent's stray: only the cgroup can catch it.
    outsider = subprocess.Popen(["sleep", "305"])

    async def main() -> Path:
        spawner = ForkServerSpawner(environ={**os.environ, MARKER: marker})
        await spawner.start()
        agent = await spawner.spawn(request(tmp_path, "s", agent_argv("sleeper", "30"), marked_env(marker)))
        group = spawner._cgroup
        assert group is not None and Path(own_cgroup(agent.pid)).name == group.path.name
        assert own_cgroup(agent.pid) == own_cgroup(spawner.server_pid or 0)
        assert group.add(outsider.pid)  # as if it had escaped the process tree
        await agent.stop(1.0)
        await spawner.close()
        assert spawner.escaped == [f"{outsider.pid} sleep 305"]
        return group.path

    try:
        path = asyncio.run(main())
        assert not alive(outsider.pid)
        assert not path.exists()  # removed once empty
        assert wait_marked_gone(marker, 5.0) == []
    finally:
        outsider.kill()
        outsider.wait()


def test_the_empty_cgroup_of_a_killed_supervisor_is_removed_by_the_next(tmp_path: Path) -> None:
    group = RunCgroup.create({})
    assert group is not None
    dead = int(subprocess.check_output([sys.executable, "-c", "import os; print(os.getpid())"]))
    stale = group.path.with_name(f"rnix-{dead}-1")
    stale.mkdir()
    try:
        group.remove()
        again = RunCgroup.create({})
        assert again is not None
        again.remove()
        assert not stale.exists()
    finally:
        if stale.exists():
            stale.rmdir()
