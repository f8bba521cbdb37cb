"""Chaos: SIGKILL the supervisor of a 6-agent run at 20 random moments; `compose up` finishes it.

Command agents and multi-step built-in agents (tools, several model calls each) run against the
loopback OpenAI-compatible server, which answers every request as a function of its content (so an
interrupted run and an uninterrupted one see the same answers). After each kill `rnix compose up`
resumes the run. At the end:

- no agent that had completed was spawned again (command agents count their own starts; built-in
  agents by the runs that started them after they had completed);
- the server received no request twice whose answer an agent had already been given (an answer is
  given only once it is in the journal, so a repeat is allowed only for a call the kill cut off);
- the results equal those of an uninterrupted run, no process is left, and the ledger has exactly one
  record per real execution.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

from tests.conftest import RNIX
from tests.fakes.openai_server import Behaviour, OpenAIServer, Reply, Slow, ToolCall
from tests.procs import marked_pids, wait_gone

KILLS = 20
STEPS = 12  # tool calls each built-in agent makes before it answers: more than 20 kills can finish

DEFINITION = """\
name: reader
description: reads a note and answers
model: mock
tools:
  read_file: {}
max_steps: 20
"""

COMPOSE = """\
model: openai/test-model
api_base: {base}
agents:
  fetch:
    intent: fetch the input
    command: [sh, -c, 'echo fetch $$RNIX_RUN_ID >> spawns; sleep 0.3; cat > /dev/null; echo fetched']
  alpha:
    intent: read the note and summarise it
    agent: reader
    depends_on: [fetch]
  beta:
    intent: read the note and list its words
    agent: reader
  merge:
    intent: merge the two
    depends_on: [alpha, beta]
    command: [sh, -c, 'echo merge $$RNIX_RUN_ID >> spawns; sleep 0.4; python3 merge.py']
  gamma:
    intent: check the merge against the note
    agent: reader
    depends_on: [merge]
  publish:
    intent: publish it
    depends_on: [gamma]
    command: [sh, -c, 'echo publish $$RNIX_RUN_ID >> spawns; cat > /dev/null; echo published']
"""


def request_key(body: Any) -> str:
    messages = [(m.get("role"), m.get("content"), m.get("tool_call_id")) for m in body.get("messages", [])]
    return hashlib.sha256(json.dumps(messages, sort_keys=True).encode()).hexdigest()[:12]


def respond(body: Any) -> Behaviour:
    """A deterministic model: read the note STEPS times, then answer; slow enough to be cut off."""
    key = request_key(body)
    messages = body.get("messages", [])
    name = str(messages[0].get("content", "")).split(",")[0].removeprefix("You are ")
    steps = sum(1 for m in messages if m.get("role") == "tool")
    if steps < STEPS:
        answer: Behaviour = ToolCall("read_file", {"path": "note.txt"}, call_id=f"c{steps}-{key}")
    else:
        answer = Reply(f"{name} answered {key}", prompt_tokens=40, completion_tokens=8)
    return Slow(0.2, answer)


def make_project(directory: Path, base: str) -> None:
    (directory / "agents" / "reader").mkdir(parents=True)
    (directory / "agents" / "reader" / "agent.yaml").write_text(DEFINITION)
    (directory / "agents" / "reader" / "instructions.md").write_text("Read note.txt before answering.\n")
    (directory / "note.txt").write_text("rnix resumes runs without paying twice\n")
    (directory / "merge.py").write_text(
        "import json, sys\nprint(sorted(json.load(sys.stdin)['upstream'].items()))\n"
    )
    (directory / "compose.yaml").write_text(COMPOSE.format(base=base))


def up(directory: Path, home: Path, marker: str, *extra: str) -> subprocess.Popen[str]:
    env = {**os.environ, "RNIX_HOME": str(home), "RNIX_TEST_MARKER": marker, "OPENAI_API_KEY": "sk-test"}
    return subprocess.Popen(
        [RNIX, "compose", "up", "--json", *extra],
        cwd=directory,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def results(out: str) -> dict[str, Any]:
    doc = json.loads(out)
    return {a["name"]: (a["status"], a["result"]) for a in doc["data"]["agents"]}


def db(home: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(home / "rnix.db")
    conn.row_factory = sqlite3.Row
    return conn


def describe(pids: list[int]) -> list[str]:
    out = []
    for pid in pids:
        try:
            out.append(f"{pid}: " + Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode())
        except OSError:
            out.append(f"{pid}: gone")
    return out


def run_count(home: Path) -> int:
    if not (home / "rnix.db").exists():
        return 0
    with db(home) as conn:
        return int(conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0])


def test_twenty_supervisor_kills_then_up_finishes_without_paying_twice(tmp_path: Path) -> None:
    server = OpenAIServer(responder=respond).start()
    try:
        reference_dir, chaos_dir = tmp_path / "reference", tmp_path / "chaos"
        for directory in (reference_dir, chaos_dir):
            directory.mkdir()
            make_project(directory, server.base_url)
        # What an uninterrupted run gives (same files, another project and home).
        reference = up(reference_dir, tmp_path / "home-ref", "chaos-ref")
        out, err = reference.communicate(timeout=120)
        assert reference.returncode == 0, err
        expected = results(out)
        assert all(status == "completed" for status, _ in expected.values())
        reference_requests = len(server.requests)

        home, marker, rng = tmp_path / "home", "chaos-run", random.Random(20261203)
        kills = 0
        while kills < KILLS:
            asked = len(server.requests)
            proc = up(chaos_dir, home, marker)
            if rng.random() < 0.5:  # at start-up, while command agents run, or in the first calls
                time.sleep(rng.uniform(0.2, 2.0))
            else:  # around a model call: in flight, just answered, or while its tool runs
                deadline = time.monotonic() + 60
                while len(server.requests) == asked and proc.poll() is None and time.monotonic() < deadline:
                    time.sleep(0.01)
                time.sleep(rng.uniform(0.0, 0.3))
            if proc.poll() is not None:  # the run finished before the kill: the next up starts over
                proc.communicate()
                break
            os.kill(proc.pid, signal.SIGKILL)
            proc.communicate(timeout=30)
            kills += run_count(home) > kills  # a kill before the run began is not one of the 20
            left = wait_gone(marked_pids(marker), 30)  # the leaders' grace (5 s) on a loaded machine
            assert left == [], f"outlived their supervisor: {describe(left)}"
        final = up(chaos_dir, home, marker)
        out, err = final.communicate(timeout=180)
        assert final.returncode == 0, err
        assert kills == KILLS, "the run was too short to be killed 20 times"
        assert results(out) == expected
        assert wait_gone(marked_pids(marker), 10) == []

        with db(home) as conn:
            runs = [r["id"] for r in conn.execute("SELECT id FROM runs ORDER BY started_at, rowid")]
            events = conn.execute("SELECT run_id, agent, kind, data FROM events ORDER BY id").fetchall()
            ledger = conn.execute("SELECT run_id, agent FROM ledger").fetchall()
            journal = conn.execute("SELECT response, ts FROM journal WHERE kind = 'llm'").fetchall()
        assert len(runs) == KILLS + 1

        # No agent that had completed was started again, in any later run.
        done_in: dict[str, int] = {}
        for row in events:
            data = json.loads(row["data"])
            index = runs.index(row["run_id"])
            if row["kind"] == "agent_exited" and data.get("state") == "completed":
                done_in.setdefault(row["agent"], index)
            if row["kind"] == "agent_started" and row["agent"] in done_in:
                assert done_in[row["agent"]] >= index, f"{row['agent']} ran again after it had completed"
        assert set(done_in) == set(expected)
        # ... and command agents, counting their own starts, agree.
        for line in (chaos_dir / "spawns").read_text().splitlines():
            name, run_id = line.split()
            assert runs.index(run_id) <= done_in[name], f"{name} started again in {run_id} after completing"

        # The server never answered twice a request whose answer an agent had been given.
        delivered = [(row["response"], row["ts"]) for row in journal]
        seen: dict[str, float] = {}
        for request in server.requests[reference_requests:]:
            key = request_key(request.body)
            if key in seen:
                given = [ts for response, ts in delivered if key in response and ts < request.wall]
                assert not given, f"request {key} was sent again after its answer had been given"
            seen[key] = request.wall

        # Exactly one ledger record per real execution (a final exit that was not a cancellation).
        executions = [
            (row["run_id"], row["agent"])
            for row in events
            if row["kind"] == "agent_exited"
            and json.loads(row["data"]).get("final", True)
            and json.loads(row["data"]).get("state") != "cancelled"
        ]
        assert sorted((r["run_id"], r["agent"]) for r in ledger) == sorted(executions)
    finally:
        server.stop()
