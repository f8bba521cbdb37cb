"""Top-level `max_parallel` through the installed `rnix compose up`: never more agent processes alive
than the cap (held ones included), checked from the processes while the run goes on."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

from tests.cli.test_early_spawn import most_alive, start_up
from tests.procs import marked_pids, wait_gone


def test_no_more_agents_alive_than_max_parallel_and_all_complete(tmp_path: Path) -> None:
    marker = uuid.uuid4().hex
    agents = "".join(f"  a{i}: {{intent: a{i}, model: 'mock?latency=300ms'}}\n" for i in range(6))
    agents += "  after: {intent: join, model: mock, depends_on: [a0, a1, a2, a3, a4, a5]}\n"
    up = start_up(tmp_path, f"max_parallel: 2\nagents:\n{agents}", marker)
    most, stdout, stderr = most_alive(up)
    assert up.returncode == 0, stderr
    doc = json.loads(stdout)["data"]["agents"]
    assert {a["status"] for a in doc} == {"completed"}
    assert 1 <= most <= 2, most  # the cap held, and the test did see agents
    starts = sorted(a["name"] for a in doc if a["name"] != "after")
    assert starts == [f"a{i}" for i in range(6)]
    assert wait_gone(marked_pids(marker), 5) == []
