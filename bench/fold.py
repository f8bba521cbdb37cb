#!/usr/bin/env python3
"""The cost of the run's fold, and what a resume costs before its first agent starts.

1. fold: a synthetic log of 10,000 events (a 100-agent run: planned, started, 90 model calls each
   spread over the agents, exited, assessed) folded from scratch with `rnix.core.fold.fold`; and
   `next_actions` on the final state. Median of `--repeat` runs (CPU time).
2. resume: the same log written to a state database (events table, as a supervisor would), then
   `rnix.supervisor.resume.prepare` (read the log, fold it, decide what to reuse) timed as the
   extra start-up work a resumed `compose up` does.
3. end to end: `rnix compose up` of a 20-agent command team, fresh, then resumed after its last
   agent failed (19 reused, 1 run): wall time of each, from one run on a shared machine.

Usage: python bench/fold.py [--events N] [--repeat N] [--json]
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
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rnix.core import actions
from rnix.core import events as ev
from rnix.core.events import InstanceKey, Record
from rnix.core.fold import fold
from rnix.core.plan import Plan, make_plan
from rnix.core.spec import parse_compose

RUN = "bench00fold0"
RNIX = str(Path(sys.executable).parent / "rnix")


def plan_of(agents: int) -> Plan:
    spec = {
        "agents": {
            f"a{i:03d}": {"intent": "x", **({"depends_on": [f"a{i - 10:03d}"]} if i >= 10 else {})}
            for i in range(agents)
        }
    }
    return make_plan(parse_compose(spec, {}, "compose.yaml"), "bench")


def synthetic_log(plan: Plan, total: int) -> list[Record]:
    names = [a.spec.name for a in plan.agents]
    per_agent_fixed = 4  # planned, started, exited, assessed
    calls = max(0, total - 1 - per_agent_fixed * len(names))
    records = [Record(RUN, 0.0, ev.RunStarted(project="bench"))]
    for agent in plan.agents:
        key = InstanceKey(agent.spec.name)
        records.append(Record(RUN, 0.0, ev.InstancePlanned(key=key, depends_on=agent.spec.depends_on)))
    ts = 1.0
    for index, name in enumerate(names):
        key = InstanceKey(name)
        records.append(Record(RUN, ts, ev.InstanceStarted(key=key, attempt=1, pid=1000 + index)))
        mine = calls // len(names) + (1 if index < calls % len(names) else 0)
        for call in range(mine):
            records.append(Record(RUN, ts, ev.LlmCall(key=key, attempt=call + 1, used=10 * (call + 1))))
        records.append(Record(RUN, ts + 1, ev.InstanceExited(key=key, state="completed", result="ok")))
        records.append(Record(RUN, ts + 1, ev.InstanceAssessed(key=key, definition="d", status="completed")))
        ts += 1
    return records


def time_fold(records: list[Record], plan: Plan, repeat: int) -> dict[str, float]:
    folds, decisions = [], []
    state = None
    for _ in range(repeat):
        start = time.process_time()
        state = fold(records)
        folds.append(time.process_time() - start)
        start = time.process_time()
        actions.next_actions(state, plan, 10_000.0)
        decisions.append(time.process_time() - start)
    assert state is not None and state.all_terminal
    fold_s = statistics.median(folds)
    return {
        "events": len(records),
        "fold_ms": round(fold_s * 1000, 2),
        "per_event_us": round(fold_s / len(records) * 1e6, 2),
        "next_actions_ms": round(statistics.median(decisions) * 1000, 3),
    }


def time_resume(records: list[Record], plan: Plan, repeat: int) -> dict[str, float]:
    from rnix.store.db import Store
    from rnix.supervisor import resume

    with tempfile.TemporaryDirectory() as home, Store.open(Path(home)) as store:
        store.append(records)
        store.append([Record(RUN, 99_999.0, ev.RunFinished(status="failed", exit_code=1))])
        previous = store.run(RUN)
        assert previous is not None
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            decided = resume.prepare(store, plan, previous)
            times.append(time.perf_counter() - start)
    assert len(decided.reused) == len(plan.agents)
    return {"prepare_ms": round(statistics.median(times) * 1000, 1), "reused": len(decided.reused)}


TEAM = """\
agents:
{agents}
  last:
    intent: fails once
    depends_on: [{deps}]
    command: [sh, -c, 'cat >/dev/null; test -f ok || exit 1; echo done']
"""


def end_to_end() -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        names = [f"c{i:02d}" for i in range(19)]
        agents = "\n".join(
            f"  {n}: {{intent: x, command: [sh, -c, 'cat >/dev/null; echo {n}']}}" for n in names
        )
        (folder / "compose.yaml").write_text(TEAM.format(agents=agents, deps=", ".join(names)))
        env = {**os.environ, "RNIX_HOME": str(folder / "home")}

        def up() -> float:
            start = time.perf_counter()
            subprocess.run(
                [RNIX, "compose", "up", "--json"], cwd=folder, env=env, capture_output=True, check=False
            )
            return time.perf_counter() - start

        fresh = up()  # `last` fails
        (folder / "ok").touch()
        resumed = up()  # 19 reused, `last` runs
    return {"fresh_s": round(fresh, 3), "resumed_s": round(resumed, 3), "ratio": round(resumed / fresh, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--agents", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    plan = plan_of(args.agents)
    records = synthetic_log(plan, args.events)
    figures: dict[str, Any] = {
        "fold": time_fold(records, plan, args.repeat),
        "resume": time_resume(records, plan, args.repeat),
        "end_to_end": end_to_end(),
    }
    if args.json:
        print(json.dumps(figures))
        return
    f, r, e = figures["fold"], figures["resume"], figures["end_to_end"]
    print(
        f"fold: {f['events']:,} events ({args.agents} agents) in {f['fold_ms']} ms CPU"
        f" ({f['per_event_us']} us/event); next_actions on the final state: {f['next_actions_ms']} ms"
    )
    print(
        f"resume.prepare (read the log, fold it, decide): {r['prepare_ms']} ms"
        f" for {r['reused']} reusable agents"
    )
    print(
        f"compose up, 20 command agents: fresh {e['fresh_s']} s, resumed (19 reused) {e['resumed_s']} s,"
        f" ratio {e['ratio']}"
    )


if __name__ == "__main__":
    main()
