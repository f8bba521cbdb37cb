#!/usr/bin/env python3
"""`rnix run "question"` against a loopback OpenAI-compatible server: CLI start to first request.

The clock starts just before the `rnix` process is started and stops when bench/loopback.py has read
the first request (both are epoch seconds on this machine). Also printed: the command's wall time.
Usage: python bench/first_request.py [-n 5] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loopback import Loopback

RNIX = str(Path(sys.executable).parent / "rnix")


def main() -> int:
    from bytecode import ensure_compiled

    ensure_compiled()  # measure rnix as installed (bench/bytecode.py)
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-n", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    firsts, walls = [], []
    with Loopback(0.05, arrivals=True) as server, tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "RNIX_HOME": home, "OPENAI_API_KEY": "sk-bench-not-a-real-key"}
        argv = [RNIX, "run", "--model", "openai/bench", "--api-base", server.base_url, "what is 2+2?"]
        for _ in range(args.n):
            started = time.time()
            out = subprocess.run(argv, env=env, cwd=home, capture_output=True, text=True)
            wall = time.time() - started
            if out.returncode != 0:
                raise SystemExit(f"rnix run failed: {out.stderr.strip()[-500:]}")
            firsts.append(server.next_arrival() - started)
            walls.append(wall)
    figures = {
        "first_request_s": {"median": statistics.median(firsts), "min": min(firsts), "max": max(firsts)},
        "wall_s": {"median": statistics.median(walls)},
        "target_s": 0.4,
    }
    if args.json:
        print(json.dumps(figures))
    else:
        f = figures["first_request_s"]
        print(
            f"rnix run: CLI start to first request median {f['median']:.3f} s (min {f['min']:.3f}, "
            f"max {f['max']:.3f}; n={args.n}); wall {figures['wall_s']['median']:.3f} s; target <= 0.4 s"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
