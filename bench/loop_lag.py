#!/usr/bin/env python3
"""Event-loop lag of the supervisor during a run: how long the loop was kept from running.

Runs `rnix.supervisor.run.supervise` in this process (a fresh interpreter: nothing preloaded) on a
DAG, with a sampler coroutine that asks to wake every 5 ms and records by how much it overslept.
A lag is time in which no agent was released, no answer relayed, no exit noticed: a GIL-holding
import or tokenizer load shows up here. Printed: the largest lag, the 99th percentile, and the
largest lag once the first agent started (what the run's agents feel).

    python bench/loop_lag.py                 # dag20 on a loopback OpenAI-compatible server (0.2 s)
    python bench/loop_lag.py --model mock    # dag20 on the mock model

Traffic stays on 127.0.0.1 and the run stops by itself.
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

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))


async def sample(lags: list[tuple[float, float]], stop: asyncio.Event) -> None:
    period = 0.005
    while not stop.is_set():
        before = time.perf_counter()
        await asyncio.sleep(period)
        lags.append((time.time(), time.perf_counter() - before - period))


async def run(model: str, api_base: str | None, home: Path) -> dict[str, Any]:
    from makespan import dag20

    from rnix.core.actions import Options
    from rnix.core.plan import make_plan
    from rnix.core.spec import parse_compose
    from rnix.env import SystemClock
    from rnix.supervisor.run import RunContext, supervise

    doc, _ = dag20()
    for agent in doc["agents"].values():
        agent["model"] = model
        if api_base:
            agent["api_base"] = api_base
    work = home / "work"
    work.mkdir(parents=True)
    ctx = RunContext(
        plan=make_plan(parse_compose(doc, {}, "compose.yaml"), "lag"),
        run_id="1a9000000001",
        home=home,
        environ=dict(os.environ),
        base_dir=work,
        compose_file="compose.yaml",
        clock=SystemClock(),
        options=Options(early_spawn=64),
    )
    lags: list[tuple[float, float]] = []
    stop = asyncio.Event()
    sampler = asyncio.ensure_future(sample(lags, stop))
    outcome = await supervise(ctx)
    stop.set()
    await sampler
    first_start = min(a.instance.started_at or float("inf") for a in outcome.agents.values())
    during = [lag for ts, lag in lags if ts >= first_start]
    every = [lag for _, lag in lags]
    return {
        "status": outcome.status.value,
        "max_ms": max(every) * 1000,
        "p99_ms": statistics.quantiles(every, n=100)[98] * 1000,
        "max_after_first_start_ms": max(during, default=0.0) * 1000,
        "samples": len(every),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="openai/bench")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("OPENAI_API_KEY", "sk-bench-not-a-real-key")
    with tempfile.TemporaryDirectory(prefix="rnix-bench-") as tmp:
        if args.model.startswith("mock"):
            figures = asyncio.run(run(args.model, None, Path(tmp)))
        else:
            from loopback import Loopback

            with Loopback(0.2) as server:
                figures = asyncio.run(run(args.model, server.base_url, Path(tmp)))
    if args.json:
        print(json.dumps(figures))
    else:
        print(
            f"loop lag over a dag20 run ({args.model}): max {figures['max_ms']:.1f} ms, "
            f"p99 {figures['p99_ms']:.1f} ms, "
            f"max once agents run {figures['max_after_first_start_ms']:.1f} ms "
            f"({figures['samples']} samples, run {figures['status']})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
