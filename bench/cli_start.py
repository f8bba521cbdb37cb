#!/usr/bin/env python3
"""Median wall time of short rnix commands (targets: --help <= 200 ms, compose plan <= 300 ms).

Runs the installed `rnix` beside this interpreter on the shipped examples and prints one line per
command; `--json` prints the figures as JSON. Usage: python bench/cli_start.py [-n RUNS] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RNIX = str(Path(sys.executable).parent / "rnix")
EXAMPLE = str(ROOT / "compose-examples" / "review-pipeline.yaml")
TARGETS_MS = {"--help": 200, "compose plan": 300, "compose config": 300, "compose plan --json": 300}
COMMANDS = {
    "--help": ["--help"],
    "compose config": ["compose", "config", "-f", EXAMPLE],
    "compose plan": ["compose", "plan", "-f", EXAMPLE],
    "compose plan --json": ["compose", "plan", "-f", EXAMPLE, "--json"],
}


def median_ms(argv: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([RNIX, *argv], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> int:
    from bytecode import ensure_compiled

    ensure_compiled()  # measure rnix as installed (bench/bytecode.py)
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", "--runs", type=int, default=15)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    median_ms(["--help"], 2)  # warm the page cache and .pyc files
    results = {name: round(median_ms(argv, args.runs), 1) for name, argv in COMMANDS.items()}
    if args.json:
        print(json.dumps({"runs": args.runs, "median_ms": results, "target_ms": TARGETS_MS}))
        return 0
    for name, ms in results.items():
        target = TARGETS_MS[name]
        verdict = "ok" if ms <= target else "OVER TARGET"
        print(f"rnix {name:<22} median {ms:7.1f} ms  (target <= {target} ms, {verdict}, {args.runs} runs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
