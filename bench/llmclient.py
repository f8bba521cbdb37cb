#!/usr/bin/env python3
"""The two LLM clients side by side: import time and CPU per call, against a loopback server.

Each client runs in a fresh interpreter of its own (so that imports are measured cold and the CPU
counted is the client's alone); the OpenAI-compatible server (tests/fakes/openai_server.py, on
127.0.0.1, TCP_NODELAY) runs in this process. Per client: the time to import it (the lean client:
rnix.llm.openai_http and aiohttp; litellm: rnix's `_import_litellm`, which also imports what litellm
would load at its first call), then `--calls` sequential calls and `--calls` calls 50 at a time,
after a few warm-up calls, with the process's CPU time (user + system) and the wall time per call.
Prints one line per figure and the ratio litellm / lean. Stops by itself (about 15 s).

    python bench/llmclient.py [--calls N] [--json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

CHILD = r"""
import asyncio, json, os, sys, time
sys.path.insert(0, sys.argv[4])
os.environ["OPENAI_API_KEY"] = "sk-bench"
client, base, calls = sys.argv[1], sys.argv[2], int(sys.argv[3])
started = time.perf_counter()
if client == "openai":
    import aiohttp  # noqa: F401
    from rnix.llm.openai_http import OpenAIHTTPBackend as Backend
else:
    from rnix.llm.litellm_backend import LiteLLMBackend as Backend, _import_litellm
    _import_litellm()
imported = time.perf_counter() - started
MESSAGES = [{"role": "user", "content": "Your task: say hello in a few words"}]

async def main():
    backend = Backend()
    async def one():
        return await backend.complete(model="openai/bench-model", messages=MESSAGES, max_tokens=64,
                                      api_base=base, timeout=30)
    for _ in range(5):
        await one()
    out = {"import_s": imported}
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(calls):
        await one()
    out["sequential_cpu_ms"] = (time.process_time() - cpu) * 1000 / calls
    out["sequential_wall_ms"] = (time.perf_counter() - wall) * 1000 / calls
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(max(1, calls // 50)):
        await asyncio.gather(*(one() for _ in range(50)))
    done = max(1, calls // 50) * 50
    out["concurrent_cpu_ms"] = (time.process_time() - cpu) * 1000 / done
    out["concurrent_wall_ms"] = (time.perf_counter() - wall) * 1000 / done
    aclose = getattr(backend, "aclose", None)
    if aclose is not None:
        await aclose()
    print(json.dumps(out))

asyncio.run(main())
"""

LABELS = {
    "import_s": ("import", "s"),
    "sequential_cpu_ms": ("CPU per call, one at a time", "ms"),
    "sequential_wall_ms": ("wall per call, one at a time", "ms"),
    "concurrent_cpu_ms": ("CPU per call, 50 at a time", "ms"),
    "concurrent_wall_ms": ("wall per call, 50 at a time", "ms"),
}


def measure(client: str, base: str, calls: int) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, client, base, str(calls), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from tests.fakes.openai_server import OpenAIServer

    with OpenAIServer() as server:
        figures = {client: measure(client, server.base_url, args.calls) for client in ("openai", "litellm")}
    if args.json:
        print(json.dumps({"calls": args.calls, "figures": figures}))
        return 0
    lean, litellm = figures["openai"], figures["litellm"]
    print(f"{'':32} {'lean (aiohttp)':>16} {'litellm':>12} {'litellm / lean':>15}   ({args.calls} calls)")
    for key, (label, unit) in LABELS.items():
        ratio: Any = litellm[key] / lean[key] if lean[key] else float("nan")
        print(f"{label:32} {lean[key]:13.3f} {unit:<2} {litellm[key]:9.3f} {unit:<2} {ratio:14.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
