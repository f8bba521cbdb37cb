"""The fork server booted at CLI start (spawn.prestart) is the one the run's spawner uses, and one
that no run adopts never outlives its process."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.procs import alive, wait_gone

SCRIPT = """
import asyncio, json, os, sys
from rnix.supervisor import spawn
environ = {"PATH": os.environ["PATH"], "HOME": "/nonexistent"}
spawn.prestart(environ)
prestarted = spawn._prestarted.popen.pid
asked = dict(environ, EXTRA="1") if sys.argv[1] == "other" else environ

async def main():
    spawner = spawn.ForkServerSpawner(environ=asked)
    await spawner.start()
    server = spawner.server_pid
    await spawner.close()
    return server

server = asyncio.run(main()) if sys.argv[1] != "none" else None
print(json.dumps({"prestarted": prestarted, "server": server}), flush=True)
"""


def run(mode: str) -> dict[str, int | None]:
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, timeout=60, check=True
    )
    result: dict[str, int | None] = json.loads(out.stdout)
    return result


def test_the_run_adopts_the_fork_server_booted_at_cli_start() -> None:
    seen = run("same")
    assert seen["server"] == seen["prestarted"]
    assert wait_gone([int(seen["prestarted"] or 0)], 5) == []


def test_a_prestarted_server_for_another_environment_is_replaced_and_killed() -> None:
    seen = run("other")
    assert seen["server"] is not None and seen["server"] != seen["prestarted"]
    prestarted = int(seen["prestarted"] or 0)
    assert wait_gone([prestarted], 5) == [] and not alive(prestarted)


def test_a_prestarted_server_no_run_adopts_ends_with_its_process() -> None:
    seen = run("none")
    assert seen["server"] is None
    assert wait_gone([int(seen["prestarted"] or 0)], 5) == []
