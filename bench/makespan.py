#!/usr/bin/env python3
"""Makespan over critical path: how close rnix gets to the ideal schedule of a DAG.

Scenarios (each run through the installed `rnix compose up --json` in a temp RNIX_HOME):
  dag20    20 agents in three layers 6 -> 8 -> 6 (each b depends on two a's, each c on three b's),
           mock latency 0.2 s, critical path 0.6 s (target ratio <= 1.05)
  dag500   500 agents in a random uneven DAG (seeded), mock latencies 50-400 ms; the critical path
           is the heaviest latency chain (target ratio <= 1.10)
  fan500   500 agents in one layer against an OpenAI-compatible server on 127.0.0.1 (bench/loopback.py)
  each500  the same 500 calls as the items of one `for_each` agent, between a list and a join
           that answers after 1 s (target makespan <= 3 s)

The ratio is printed two ways: `agents` measures from the first agent start to the last agent end
(scheduling only), `run` from the supervisor's start to its end (including its own start-up).
Usage: python bench/makespan.py [dag20 dag500 fan500 each500] [--json] [--seed N]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RNIX = str(Path(sys.executable).parent / "rnix")


def dag20() -> tuple[dict[str, Any], float]:
    agents: dict[str, Any] = {}
    model = "mock?latency=200ms"
    for i in range(6):
        agents[f"a{i}"] = {"intent": f"a{i}", "model": model}
    for i in range(8):
        agents[f"b{i}"] = {"intent": f"b{i}", "model": model, "depends_on": [f"a{i % 6}", f"a{(i + 1) % 6}"]}
    for i in range(6):
        agents[f"c{i}"] = {
            "intent": f"c{i}",
            "model": model,
            "depends_on": [f"b{(i + k) % 8}" for k in range(3)],
        }
    return {"name": "bench-dag20", "agents": agents}, 0.6


def dag500(seed: int) -> tuple[dict[str, Any], float]:
    rng = random.Random(seed)
    agents: dict[str, Any] = {}
    latency: dict[str, float] = {}
    names: list[str] = []
    for i in range(500):
        name = f"n{i}"
        ms = rng.randint(50, 400)
        pool = names[-60:]  # uneven, but mostly local dependencies
        deps = rng.sample(pool, k=min(len(pool), rng.choice([0, 0, 1, 1, 2, 3]))) if pool else []
        agents[name] = {"intent": name, "model": f"mock?latency={ms}ms", "depends_on": deps}
        latency[name] = ms / 1000
        names.append(name)
    finish: dict[str, float] = {}
    for name in names:  # names are in topological order
        finish[name] = latency[name] + max((finish[d] for d in agents[name]["depends_on"]), default=0.0)
    return {"name": "bench-dag500", "agents": agents}, max(finish.values())


def run_compose(doc: dict[str, Any], home: Path, extra_env: dict[str, str] | None = None) -> dict[str, Any]:
    workdir = home / "work"
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "compose.yaml").write_text(json.dumps(doc))
    env = {**os.environ, "RNIX_HOME": str(home), **(extra_env or {})}
    started = time.perf_counter()
    out = subprocess.run(
        [RNIX, "compose", "up", "--json"], cwd=workdir, env=env, capture_output=True, text=True
    )
    wall = time.perf_counter() - started
    result = json.loads(out.stdout)
    if not result["ok"]:
        raise SystemExit(f"run failed: {out.stderr[-2000:]}")
    run_id = result["data"]["run_id"]
    db = sqlite3.connect(home / "rnix.db")
    starts = [
        ts for (ts,) in db.execute("select ts from events where run_id=? and kind='agent_started'", (run_id,))
    ]
    ends = [
        ts for (ts,) in db.execute("select ts from events where run_id=? and kind='agent_exited'", (run_id,))
    ]
    first, last = db.execute(
        "select min(ts), max(ts) from events where run_id=? and kind in ('run_started','run_finished')",
        (run_id,),
    ).fetchone()
    answers = [
        ts for (ts,) in db.execute("select ts from events where run_id=? and kind='llm_call'", (run_id,))
    ]
    figures = {"agents_s": max(ends) - min(starts), "run_s": last - first, "command_s": wall}
    if answers:  # with a cold `import litellm`, the first answer marks when the gateway was ready
        figures["first_answer_s"] = min(answers) - first
        figures["after_first_answer_s"] = max(ends) - min(answers)
    return figures


def fan500(home: Path) -> dict[str, Any]:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from loopback import Loopback  # its own process: the server never shares a GIL with rnix

    with Loopback(1.0) as server:
        doc = {
            "name": "bench-fan500",
            "model": "openai/bench",
            "api_base": server.base_url,
            "agents": {f"a{i}": {"intent": f"a{i}"} for i in range(500)},
        }
        figures = run_compose(doc, home, {"OPENAI_API_KEY": "sk-bench-not-a-real-key"})
    return figures


def each500(home: Path) -> dict[str, Any]:
    """fan500's work as one `for_each` agent over a list of 500 items (plus the list and a join)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from loopback import Loopback

    items = json.dumps([f"a{i}" for i in range(500)])
    with Loopback(1.0) as server:
        doc = {
            "name": "bench-each500",
            "model": "openai/bench",
            "api_base": server.base_url,
            "agents": {
                "list": {
                    "intent": "list",
                    "command": [sys.executable, "-c", f"print({items!r})"],
                    "output_schema": {"type": "array"},
                },
                "each": {
                    "intent": "do {{ item }}",
                    "depends_on": ["list"],
                    "for_each": "agents.list.output",
                    "budget": 500 * 20_000,
                },
                "join": {"intent": "join", "command": ["true"], "depends_on": ["each"]},
            },
        }
        figures = run_compose(doc, home, {"OPENAI_API_KEY": "sk-bench-not-a-real-key"})
    return figures


def main() -> int:
    from bytecode import ensure_compiled

    ensure_compiled()  # measure rnix as installed (bench/bytecode.py)
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("scenarios", nargs="*", default=["dag20", "dag500", "fan500"])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    results: dict[str, Any] = {}
    for scenario in args.scenarios:
        with tempfile.TemporaryDirectory(prefix="rnix-bench-") as tmp:
            home = Path(tmp)
            if scenario in ("fan500", "each500"):
                figures = fan500(home) if scenario == "fan500" else each500(home)
                figures["target_s"] = 3.0
            else:
                doc, critical = dag20() if scenario == "dag20" else dag500(args.seed)
                figures = run_compose(doc, home)
                figures["critical_path_s"] = round(critical, 3)
                figures["ratio_agents"] = round(figures["agents_s"] / critical, 3)
                figures["ratio_run"] = round(figures["run_s"] / critical, 3)
                figures["target_ratio"] = 1.05 if scenario == "dag20" else 1.10
            results[scenario] = {k: round(v, 3) if isinstance(v, float) else v for k, v in figures.items()}
    if args.json:
        print(json.dumps(results))
        return 0
    for name, f in results.items():
        if name in ("fan500", "each500"):
            what = "500 agents" if name == "fan500" else "500 for_each items (list -> each[*] -> join)"
            print(
                f"{name}: {what}, 1 s loopback LLM: agents {f['agents_s']:.2f} s, "
                f"run {f['run_s']:.2f} s, "
                f"command {f['command_s']:.2f} s (target makespan <= 3 s); "
                f"first answer after {f['first_answer_s']:.2f} s, "
                f"all done {f['after_first_answer_s']:.2f} s later"
            )
        else:
            print(
                f"{name}: critical path {f['critical_path_s']:.3f} s; agents {f['agents_s']:.3f} s "
                f"(ratio {f['ratio_agents']:.3f}); run {f['run_s']:.3f} s (ratio {f['ratio_run']:.3f}); "
                f"target ratio <= {f['target_ratio']}; command wall {f['command_s']:.2f} s"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
