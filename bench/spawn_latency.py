#!/usr/bin/env python3
"""Spawn latency through the fork server: ms from `spawn()` being called until it returns with a
running process (pid known, start time read), for built-in and command agents (target: median <= 10).

Agents are spawned one at a time, each awaited before the next, so the figure is the cost of one
spawn on an otherwise quiet supervisor. Built-in agents point at a gateway socket that does not exist
(they exit 1 at once); command agents run `true`. Usage: python bench/spawn_latency.py [-n N] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rnix.supervisor.api import SpawnRequest
from rnix.supervisor.spawn import ForkServerSpawner, LocalAgentProcess

TARGET_MS = 10.0


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


async def measure(runs: int, directory: Path) -> dict[str, object]:
    (directory / "task.json").write_text('{"messages": []}')
    env = {"PATH": os.environ.get("PATH", os.defpath), "RNIX_GATEWAY": str(directory / "none.sock")}
    env["RNIX_AGENT_NONCE"] = "bench"
    kinds: dict[str, tuple[str, ...] | None] = {"builtin": None, "command": ("true",)}
    results: dict[str, object] = {}
    async with ForkServerSpawner() as spawner:
        for kind, argv in kinds.items():
            times = []
            for i in range(runs + 5):
                request = bench_request(f"{kind}{i}", argv, env, directory)
                started = time.perf_counter()
                agent = await spawner.spawn(request)
                elapsed = (time.perf_counter() - started) * 1000
                await agent.wait()
                if i >= 5:  # the first few warm the page cache
                    times.append(elapsed)
            results[kind] = {
                "median_ms": round(statistics.median(times), 2),
                "p95_ms": round(percentile(times, 0.95), 2),
                "max_ms": round(max(times), 2),
            }
    return results


def bench_request(
    name: str, argv: tuple[str, ...] | None, env: dict[str, str], directory: Path
) -> SpawnRequest:
    """A spawn request whose files live in `directory` (shared by every benchmark agent)."""
    return SpawnRequest(
        name=name,
        argv=argv,
        env=env,
        cwd=str(directory),
        stdin_path=str(directory / "task.json"),
        stdout_path=str(directory / "out"),
        stderr_path=str(directory / "err"),
        grace=1.0,
    )


async def burst(count: int, directory: Path) -> dict[str, object]:
    """`count` command agents (`sleep 60`) spawned at once, all running together, then stopped."""
    env = {"PATH": os.environ.get("PATH", os.defpath)}
    (directory / "task.json").write_text("{}")

    async def timed(spawner: ForkServerSpawner, i: int) -> tuple[float, LocalAgentProcess]:
        request = bench_request(f"burst{i}", ("sleep", "60"), env, directory)
        started = time.perf_counter()
        agent = await spawner.spawn(request)
        return (time.perf_counter() - started) * 1000, agent

    async with ForkServerSpawner() as spawner:
        started = time.perf_counter()
        spawned = await asyncio.gather(*(timed(spawner, i) for i in range(count)))
        wall = (time.perf_counter() - started) * 1000
        agents = [agent for _, agent in spawned]
        running = sum(agent.exit_info is None for agent in agents)
        stopped = time.perf_counter()
        infos = await asyncio.gather(*(agent.stop(1.0) for agent in agents))
        stop_ms = (time.perf_counter() - stopped) * 1000
    times = [ms for ms, _ in spawned]
    return {
        "agents": count,
        "running": running,
        "distinct_pids": len({agent.pid for agent in agents}),
        "all_wall_ms": round(wall, 1),
        "median_ms": round(statistics.median(times), 2),
        "stop_all_ms": round(stop_ms, 1),
        "stopped_by_sigterm": sum(info.signal == 15 for info in infos),
    }


async def server_start_ms(directory: Path) -> float:
    started = time.perf_counter()
    spawner = ForkServerSpawner()
    await spawner.start()
    elapsed = (time.perf_counter() - started) * 1000
    await spawner.close()
    return round(elapsed, 1)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-n", "--runs", type=int, default=200)
    parser.add_argument("--burst", type=int, default=500, help="agents spawned at once (0: skip)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rnix-bench-") as tmp:
        start_ms = asyncio.run(server_start_ms(Path(tmp)))
        results = asyncio.run(measure(args.runs, Path(tmp)))
        bursts = asyncio.run(burst(args.burst, Path(tmp))) if args.burst else None
    if args.json:
        doc = {"runs": args.runs, "target_median_ms": TARGET_MS, "fork_server_start_ms": start_ms, **results}
        print(json.dumps({**doc, "burst": bursts}))
        return 0
    print(f"fork server start: {start_ms:.1f} ms")
    if bursts:
        print(
            f"burst: {bursts['agents']} command agents spawned at once in {bursts['all_wall_ms']} ms "
            f"(median spawn {bursts['median_ms']} ms), {bursts['running']} running together, "
            f"{bursts['distinct_pids']} distinct PIDs; all stopped in {bursts['stop_all_ms']} ms "
            f"({bursts['stopped_by_sigterm']} by SIGTERM)"
        )
    for kind, figures in results.items():
        assert isinstance(figures, dict)
        verdict = "ok" if figures["median_ms"] <= TARGET_MS else "OVER TARGET"
        print(
            f"spawn {kind:<8} median {figures['median_ms']:6.2f} ms  p95 {figures['p95_ms']:6.2f} ms  "
            f"max {figures['max_ms']:6.2f} ms  "
            f"(target median <= {TARGET_MS:g} ms, {verdict}, {args.runs} runs)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
