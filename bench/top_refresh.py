#!/usr/bin/env python3
"""CPU time of one `rnix top` refresh with 500 agent processes in the table (target: <= 50 ms).

Sets up a state database in a temporary RNIX_HOME with one run of N agents (default 500) whose
processes are real, each in its own session: `sleep 600` (one process per agent, like the built-in
agent runtime), and with --children also a child each (`sh -c 'sleep 600 & wait'`, like a command
agent: 2N processes in the tree). Then runs the real `TopApp` headless
(textual's `run_test`, 200x60) and measures, with `time.process_time()`, one refresh: reading the
store and /proc, building the rows, updating the table and drawing the screen (`pilot.pause()`
renders it). Two cases: the store changed since the last refresh (tokens recorded for 50 agents
in between, untimed), and nothing was committed in between. Prints median and p95 over
`--refreshes` refreshes of each, and the parts: collect (store + /proc), rows (tree + table model),
draw (the rest). Usage: python bench/top_refresh.py [-n AGENTS] [--children] [--refreshes N] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rnix.core.events import Record, decode
from rnix.store.db import Store
from rnix.supervisor import procinfo
from rnix.tui.collect import Collector
from rnix.tui.top import TopApp

TARGET_MS = 50.0
RUN = "bench0000top"


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def start_agents(count: int, children: bool) -> list[subprocess.Popen[bytes]]:
    argv = ["sh", "-c", "sleep 600 & wait"] if children else ["sleep", "600"]
    return [subprocess.Popen(argv, start_new_session=True, stdin=subprocess.DEVNULL) for _ in range(count)]


def record_run(home: Path, agents: list[subprocess.Popen[bytes]]) -> None:
    now = time.time()
    me = os.getpid()
    run = {"project": "bench", "supervisor_pid": me, "supervisor_start_time": procinfo.start_time(me)}
    events = [Record(RUN, now, decode("run_started", run))]
    for i, proc in enumerate(agents):
        name = f"agent{i:04d}"
        planned = {
            "layer": 1 + i // 100,
            "budget": 10_000,
            "intent": f"bench agent number {i}",
            "model": "mock",
        }
        started = {"pid": proc.pid, "pid_start_time": procinfo.start_time(proc.pid), "attempt": 1}
        events += [
            Record(RUN, now, decode("agent_planned", planned, name)),
            Record(RUN, now, decode("agent_started", started, name)),
        ]
    with Store.open(home) as store:
        store.append(events)


def spend(home: Path, count: int, round_: int) -> None:
    """Record an LLM call for `count` agents, so the next refresh has to read the store again."""
    with Store.open(home) as store:
        store.append(
            [
                Record(RUN, time.time(), decode("llm_call", {"used": 100 * round_ + i}, f"agent{i:04d}"))
                for i in range(count)
            ]
        )


async def measure(home: Path, refreshes: int, changed: bool) -> dict[str, Any]:
    app = TopApp(Collector(home), interval=3600)
    totals: list[float] = []
    parts: dict[str, list[float]] = {"collect": [], "rows": [], "draw": []}
    async with app.run_test(size=(200, 60)) as pilot:
        for _ in range(3):  # warm up: CPU % needs a previous look, caches fill
            app.refresh_now()
            await pilot.pause()
        for i in range(refreshes):
            if changed:
                spend(home, 50, i)
            await pilot.pause()
            started = time.process_time()
            snapshot = app.collector.collect(app.show_all)
            collected = time.process_time()
            app.snapshot = snapshot
            app.show_snapshot()
            shown = time.process_time()
            await pilot.pause()  # draws the screen
            ended = time.process_time()
            totals.append((ended - started) * 1000)
            parts["collect"].append((collected - started) * 1000)
            parts["rows"].append((shown - collected) * 1000)
            parts["draw"].append((ended - shown) * 1000)
        rows = len(app.query_one("#procs").rows)  # type: ignore[attr-defined]
    return {
        "table_rows": rows,
        "median_ms": round(statistics.median(totals), 2),
        "p95_ms": round(percentile(totals, 0.95), 2),
        "max_ms": round(max(totals), 2),
        **{f"{k}_median_ms": round(statistics.median(v), 2) for k, v in parts.items()},
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-n", "--agents", type=int, default=500)
    parser.add_argument("--children", action="store_true", help="give every agent a child process")
    parser.add_argument("--refreshes", type=int, default=30)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    procinfo.raise_nofile_limit()  # as `rnix top` does
    agents = start_agents(args.agents, args.children)
    try:
        with tempfile.TemporaryDirectory(prefix="rnix-bench-") as tmp:
            home = Path(tmp)
            time.sleep(0.5)  # every shell has started its sleep
            record_run(home, agents)
            results = {
                "store_changed": asyncio.run(measure(home, args.refreshes, changed=True)),
                "store_unchanged": asyncio.run(measure(home, args.refreshes, changed=False)),
            }
    finally:
        for proc in agents:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        for proc in agents:
            proc.wait()
    if args.json:
        print(
            json.dumps({"agents": args.agents, "children": args.children, "target_ms": TARGET_MS, **results})
        )
        return 0
    for case, figures in results.items():
        verdict = "ok" if figures["median_ms"] <= TARGET_MS else "OVER TARGET"
        print(
            f"refresh, {case.replace('_', ' ')}: median {figures['median_ms']:.1f} ms CPU, "
            f"p95 {figures['p95_ms']:.1f} ms, max {figures['max_ms']:.1f} ms "
            f"(collect {figures['collect_median_ms']:.1f}, rows {figures['rows_median_ms']:.1f}, "
            f"draw {figures['draw_median_ms']:.1f}); {args.agents} agents, {figures['table_rows']} rows; "
            f"target <= {TARGET_MS:g} ms: {verdict}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
