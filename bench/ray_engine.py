#!/usr/bin/env python3
"""The Ray engine against the local one: spawn latency, and a 200-agent DAG end to end.

Starts a local Ray cluster of two simulated nodes (ray.cluster_utils.Cluster: a head with the
resource `head`, a worker with `worker`), unless --address names a running cluster.

  spawn  ms from `spawn()` called until it returns with a running process, one agent at a time
         (`true` as a command agent): the fork server alone (local), the Ray spawner on the
         supervisor's node, and on the other node (by resources: a placement group per agent)
  dag200 200 built-in agents (mock model, 0.2 s per call) in 4 layers of 50, each depending on two
         agents of the layer before: `rnix compose up` with the local engine, then with the Ray
         engine (agents spread over both nodes; half of them reach the gateway over TCP). Makespan
         by the supervisor's clock (first agent start to last agent end), over the critical path
         (4 x 0.2 s), and the command's wall time (the Ray run includes connecting to the cluster)

Usage: python bench/ray_engine.py [spawn dag200] [-n N] [--address ADDRESS] [--json]
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
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from makespan import run_compose  # noqa: E402

from rnix.supervisor.api import SpawnRequest  # noqa: E402
from rnix.supervisor.spawn import ForkServerSpawner  # noqa: E402


def request(name: str, directory: Path, resources: dict[str, float] | None = None) -> SpawnRequest:
    return SpawnRequest(
        name=name,
        argv=("true",),
        env={"PATH": os.environ.get("PATH", os.defpath)},
        cwd=str(directory),
        stdin_path=str(directory / "task.json"),
        stdout_path=str(directory / f"{name}.out"),
        stderr_path=str(directory / f"{name}.err"),
        grace=1.0,
        resources=resources,
    )


async def spawn_times(
    spawner: Any, runs: int, directory: Path, resources: dict[str, float] | None
) -> list[float]:
    times = []
    for i in range(runs + 3):
        started = time.perf_counter()
        agent = await spawner.spawn(request(f"a{i}", directory, resources))
        elapsed = (time.perf_counter() - started) * 1000
        await agent.wait()
        if i >= 3:  # warm-up
            times.append(elapsed)
    return times


async def spawn_bench(address: str, runs: int) -> dict[str, Any]:
    from rnix.supervisor.rayspawn import RaySpawner

    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="rnix-bench-") as tmp:
        directory = Path(tmp)
        (directory / "task.json").write_text("{}")
        async with ForkServerSpawner() as local:
            out["local"] = await spawn_times(local, runs, directory, None)
        spawner = RaySpawner(run_id="bench", address=address)
        await spawner.start()
        try:
            spawner.set_base_env({"PATH": os.environ.get("PATH", os.defpath)})
            spawner.gateway_address = "tcp://127.0.0.1:9"  # `true` never calls it
            out["ray_same_node"] = await spawn_times(spawner, runs, directory, None)
            remote = "worker" if any(n.resources.get("worker") for n in spawner.nodes.values()) else None
            if remote:
                out["ray_other_node"] = await spawn_times(spawner, runs, directory, {remote: 1})
        finally:
            await spawner.close()
    return {
        kind: {"median_ms": statistics.median(v), "p90_ms": sorted(v)[int(0.9 * (len(v) - 1))], "n": len(v)}
        for kind, v in out.items()
    }


def dag200() -> tuple[dict[str, Any], float]:
    agents: dict[str, Any] = {}
    model = "mock?latency=200ms"
    for layer in range(4):
        for i in range(50):
            body: dict[str, Any] = {"intent": f"l{layer}n{i}", "model": model}
            if layer:
                body["depends_on"] = [f"l{layer - 1}n{i}", f"l{layer - 1}n{(i + 1) % 50}"]
            agents[f"l{layer}n{i}"] = body
    return {"name": "bench-dag200", "agents": agents}, 0.8


def dag_bench(address: str) -> dict[str, Any]:
    doc, critical = dag200()
    results: dict[str, Any] = {}
    for engine in ("local", "ray"):
        with tempfile.TemporaryDirectory(prefix="rnix-bench-") as tmp:
            extra = {"RNIX_RAY_ADDRESS": address} if engine == "ray" else {}
            figures = run_compose({**doc, "engine": engine}, Path(tmp), extra)
        results[engine] = {
            "agents_s": round(figures["agents_s"], 3),
            "ratio_agents": round(figures["agents_s"] / critical, 3),
            "run_s": round(figures["run_s"], 3),
            "command_s": round(figures["command_s"], 3),
        }
    results["critical_path_s"] = critical
    results["ray_over_local_agents"] = round(results["ray"]["agents_s"] / results["local"]["agents_s"], 3)
    return results


def main() -> int:
    from bytecode import ensure_compiled

    ensure_compiled()  # measure rnix as installed (bench/bytecode.py)
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("scenarios", nargs="*", default=["spawn", "dag200"])
    parser.add_argument("-n", type=int, default=30)
    parser.add_argument("--address", help="a running Ray cluster (default: a 2-node local one)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    cluster = None
    address = args.address
    if address is None:
        from ray.cluster_utils import Cluster

        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "resources": {"head": 1}})
        cluster.add_node(num_cpus=1, resources={"worker": 1})
        cluster.wait_for_nodes()
        address = cluster.address
    results: dict[str, Any] = {}
    try:
        if "spawn" in args.scenarios:
            results["spawn"] = asyncio.run(spawn_bench(address, args.n))
        if "dag200" in args.scenarios:
            results["dag200"] = dag_bench(address)
    finally:
        if cluster is not None:
            cluster.shutdown()
    if args.json:
        print(json.dumps(results))
        return 0
    for kind, f in results.get("spawn", {}).items():
        print(f"spawn {kind}: median {f['median_ms']:.1f} ms, p90 {f['p90_ms']:.1f} ms (n={f['n']})")
    if "dag200" in results:
        d = results["dag200"]
        for engine in ("local", "ray"):
            f = d[engine]
            print(
                f"dag200 {engine}: agents {f['agents_s']:.2f} s (ratio {f['ratio_agents']:.2f} over the "
                f"{d['critical_path_s']} s critical path), run {f['run_s']:.2f} s, "
                f"command {f['command_s']:.2f} s"
            )
        print(f"dag200 ray/local makespan: {d['ray_over_local_agents']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
