#!/usr/bin/env python3
"""The 20-agent DAG over a loopback OpenAI-compatible server: rnix beside LangGraph, in one run.

The DAG is bench/makespan.py's dag20 (6 -> 8 -> 6; each b depends on two a's, each c on three b's).
Every agent makes one chat-completions call to bench/loopback.py, which answers after `--delay`
seconds (0.2 s: a critical path of 0.6 s). Both sides send each agent's upstream results in its
messages.

- rnix: `rnix compose up --json` with `model: openai/bench` and the server as `api_base`; the
  figures are the supervisor's own clock from the store (`run`: run started -> finished; `agents`:
  first agent start -> last agent end) and the command's wall time.
- LangGraph: a StateGraph of the same 20 async nodes (httpx.AsyncClient, one shared client), in a
  separate Python that has `langgraph` and `httpx` (`--peer-python`, default: this one). Its figure is
  `ainvoke` alone (graph built and client open before), and the whole process's wall time.

Each is printed as makespan / critical path; the last line is rnix's ratio over LangGraph's.
Usage: python bench/peer_dag.py [--delay 0.2] [--repeat 3] [--peer-python PATH] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loopback import Loopback
from makespan import dag20, run_compose

PEER = textwrap.dedent(
    """
    import asyncio, json, operator, sys, time
    started = time.perf_counter()
    from typing import Annotated, TypedDict
    import httpx
    from langgraph.graph import StateGraph, START, END

    base, agents = sys.argv[1], json.loads(sys.argv[2])

    class State(TypedDict):
        results: Annotated[dict, operator.or_]

    def node(name, deps, client):
        async def call(state):
            upstream = [f"{d}: {state['results'][d]}" for d in deps]
            body = {"model": "bench", "messages": [{"role": "user", "content": name}]
                    + [{"role": "user", "content": u} for u in upstream]}
            r = await client.post(base + "/chat/completions", json=body,
                                  headers={"Authorization": "Bearer sk-bench"})
            return {"results": {name: r.json()["choices"][0]["message"]["content"]}}
        return call

    async def main():
        limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)
        async with httpx.AsyncClient(timeout=30, limits=limits) as client:
            graph = StateGraph(State)
            for name, spec in agents.items():
                graph.add_node(name, node(name, spec.get("depends_on", []), client))
            for name, spec in agents.items():
                deps = spec.get("depends_on", [])
                graph.add_edge(deps if len(deps) > 1 else (deps[0] if deps else START), name)
            sinks = set(agents) - {d for s in agents.values() for d in s.get("depends_on", [])}
            for name in sinks:
                graph.add_edge(name, END)
            app = graph.compile()
            t0 = time.perf_counter()
            out = await app.ainvoke({"results": {}})
            t1 = time.perf_counter()
        assert len(out["results"]) == len(agents)
        print(json.dumps({"invoke_s": t1 - t0, "process_s": time.perf_counter() - started}))

    asyncio.run(main())
    """
)


def run_rnix(server: Loopback) -> dict[str, Any]:
    doc, _ = dag20()
    doc = {**doc, "model": "openai/bench", "api_base": server.base_url}
    for agent in doc["agents"].values():
        agent.pop("model", None)
    with tempfile.TemporaryDirectory(prefix="rnix-bench-") as tmp:
        return run_compose(doc, Path(tmp), {"OPENAI_API_KEY": "sk-bench-not-a-real-key"})


def run_peer(server: Loopback, python: str) -> dict[str, Any] | str:
    doc, _ = dag20()
    agents = {name: {"depends_on": spec.get("depends_on", [])} for name, spec in doc["agents"].items()}
    out = subprocess.run(
        [python, "-c", PEER, server.base_url, json.dumps(agents)], capture_output=True, text=True
    )
    if out.returncode != 0:
        last = (out.stderr.strip().splitlines() or ["failed"])[-1]
        return f"LangGraph not run ({last}); install it: pip install langgraph httpx"
    figures: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return figures


def main() -> int:
    from bytecode import ensure_compiled

    ensure_compiled()  # measure rnix as installed (bench/bytecode.py)
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--delay", type=float, default=0.2)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--peer-python", default=os.environ.get("RNIX_BENCH_PEER_PYTHON", sys.executable))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    critical = 3 * args.delay
    rows: list[dict[str, Any]] = []
    with Loopback(args.delay) as server:
        for _ in range(args.repeat):  # interleaved, so both sides see the same machine
            rnix = run_rnix(server)
            peer = run_peer(server, args.peer_python)
            row: dict[str, Any] = {
                "rnix_run": rnix["run_s"] / critical,
                "rnix_agents": rnix["agents_s"] / critical,
                "rnix_command_s": rnix["command_s"],
            }
            if isinstance(peer, dict):
                row["langgraph_invoke"] = peer["invoke_s"] / critical
                row["langgraph_process_s"] = peer["process_s"]
                row["rnix_over_langgraph"] = row["rnix_run"] / row["langgraph_invoke"]
            else:
                row["langgraph"] = peer
            rows.append(row)
            if not args.json:
                print(
                    "  ".join(
                        f"{k} {v:.3f}" if isinstance(v, float) else f"{k}: {v}" for k, v in row.items()
                    ),
                    flush=True,
                )
    if args.json:
        print(json.dumps({"critical_path_s": critical, "runs": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
