#!/usr/bin/env python3
"""Memory of running built-in agents: USS (memory unique to the process) per agent, N agents blocked
in their gateway call to a socket that accepts and reads but never answers (target: <= 15 MB).

USS is what each extra agent really costs: pages shared with the fork server and its siblings
(the pre-imported runtime) are not counted. Usage: python bench/agent_memory.py [-n N] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rnix.supervisor.api import SpawnRequest
from rnix.supervisor.spawn import ForkServerSpawner

TARGET_MB = 15.0
MB = 1024 * 1024


class SilentGateway:
    """Accepts connections and reads their hello lines; never replies."""

    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(1024)
        self.sock.setblocking(False)
        self.conns: list[socket.socket] = []
        self.readers: list[asyncio.Task[None]] = []
        self.hellos = 0

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            conn, _ = await loop.sock_accept(self.sock)
            self.conns.append(conn)
            self.readers.append(loop.create_task(self._read(conn)))

    async def _read(self, conn: socket.socket) -> None:
        data = b""
        while b"\n" not in data:
            chunk = await asyncio.get_running_loop().sock_recv(conn, 4096)
            if not chunk:
                return
            data += chunk
        self.hellos += 1


async def measure(count: int, directory: Path) -> dict[str, float]:
    path = str(directory / "gw.sock")
    gateway = SilentGateway(path)
    server = asyncio.create_task(gateway.serve())
    (directory / "task.json").write_text(json.dumps({"messages": [{"role": "user", "content": "hi"}]}))
    env = {"PATH": os.environ.get("PATH", os.defpath), "RNIX_GATEWAY": path, "RNIX_AGENT_NONCE": "bench"}
    async with ForkServerSpawner() as spawner:
        agents = []
        for i in range(count):
            request = SpawnRequest(
                name=f"a{i}",
                argv=None,
                env=env,
                cwd=str(directory),
                stdin_path=str(directory / "task.json"),
                stdout_path=str(directory / f"a{i}.out"),
                stderr_path=str(directory / f"a{i}.err"),
                grace=1.0,
            )
            agents.append(await spawner.spawn(request))
        deadline = time.monotonic() + 60
        while gateway.hellos < count and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)  # let the complete request be sent too: each agent is now blocked
        infos = [psutil.Process(a.pid).memory_full_info() for a in agents]
        server_info = psutil.Process(spawner.server_pid).memory_full_info()
        await asyncio.gather(*(a.stop(1.0) for a in agents))
    server.cancel()
    uss = [info.uss / MB for info in infos]
    return {
        "agents": count,
        "blocked": gateway.hellos,
        "uss_median_mb": round(statistics.median(uss), 2),
        "uss_max_mb": round(max(uss), 2),
        "pss_median_mb": round(statistics.median(info.pss / MB for info in infos), 2),
        "rss_median_mb": round(statistics.median(info.rss / MB for info in infos), 2),
        "fork_server_rss_mb": round(server_info.rss / MB, 2),
        "target_uss_mb": TARGET_MB,
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-n", "--agents", type=int, default=50)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rnix-mem-", dir="/tmp") as tmp:
        result = asyncio.run(measure(args.agents, Path(tmp)))
    if args.json:
        print(json.dumps(result))
        return 0
    verdict = "ok" if result["uss_median_mb"] <= TARGET_MB else "OVER TARGET"
    print(
        f"built-in agent USS median {result['uss_median_mb']} MB, max {result['uss_max_mb']} MB "
        f"(target <= {TARGET_MB:g} MB, {verdict}); PSS median {result['pss_median_mb']} MB, "
        f"RSS median {result['rss_median_mb']} MB; fork server RSS {result['fork_server_rss_mb']} MB; "
        f"{result['blocked']}/{result['agents']} agents blocked on the gateway"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
