"""`rnix run`, the `rnix "INTENT"` shorthand, following logs, several composes at once, the TTY view."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import time
import uuid
from pathlib import Path

from tests.conftest import RNIX, RunRnix
from tests.procs import marked_pids, wait_gone

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "agents"


def test_run_prints_the_result_on_stdout(rnix: RunRnix) -> None:
    result = rnix("run", "summarise the plan", "--json")
    assert result.returncode == 0, result.stderr
    agent = json.loads(result.stdout)["data"]["agents"][0]
    assert agent["status"] == "completed" and "summarise the plan" in agent["result"]
    plain = rnix("run", "summarise the plan")
    assert plain.stdout == agent["result"] and plain.stderr == ""


def test_intent_shorthand_and_piped_stdin(tmp_path: Path) -> None:
    env = {**os.environ, "RNIX_HOME": str(tmp_path / "home")}
    out = subprocess.run(
        [RNIX, "count the words in this text", "--json"],
        input="alpha beta gamma\n",
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    agent = json.loads(out.stdout)["data"]["agents"][0]
    task = json.loads(next((tmp_path / "home" / "runs").glob("*/agent.task.json")).read_text())
    assert task["input"] == "alpha beta gamma\n"
    assert any(m["content"] == "Input:\nalpha beta gamma\n" for m in task["messages"])
    assert agent["tokens_used"] > 0
    typo = subprocess.run([RNIX, "comopse"], capture_output=True, text=True, env=env, timeout=30)
    assert typo.returncode == 2 and "no 'comopse' command (did you mean 'compose'?)" in typo.stderr


def test_run_failure_and_budget_exit_1(rnix: RunRnix) -> None:
    result = rnix("run", "write a very long essay about everything", "--budget", "10")
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.startswith("rnix: budget_exceeded: ")
    bad = rnix("run", "x", "--timeout", "soon")
    assert bad.returncode == 2 and "timeout: must be a positive duration" in bad.stderr


def test_two_composes_at_once_and_logs_follow(rnix: RunRnix, tmp_path: Path) -> None:
    marker = uuid.uuid4().hex
    env = {**os.environ, "RNIX_TEST_MARKER": marker, "RNIX_HOME": os.environ["RNIX_HOME"]}
    procs = []
    for name in ("one", "two"):
        directory = tmp_path / name
        directory.mkdir()
        script = json.dumps(
            [
                sys.executable,
                "-c",
                "import time\nfor i in range(5):\n print('tick', i, flush=True)\n time.sleep(0.3)",
            ]
        )
        (directory / "compose.yaml").write_text(
            f"name: {name}\nagents:\n  ticker: {{intent: tick, command: {script}}}\n"
        )
        procs.append(
            subprocess.Popen(
                [RNIX, "compose", "up", "--json"],
                cwd=directory,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        running = json.loads(rnix("ps", "--json").stdout)["data"]["processes"]
        if {p["project"] for p in running} == {"one", "two"}:
            break
        time.sleep(0.05)
    else:
        raise AssertionError("both projects should run at the same time")
    follow = rnix("compose", "-p", "one", "logs", "-f", timeout=30)
    assert follow.stdout.splitlines() == [f"ticker | tick {i}" for i in range(5)]
    for proc in procs:
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        assert json.loads(out)["data"]["agents"][0]["status"] == "completed"
    assert wait_gone(marked_pids(marker), 5) == []


def test_live_view_on_a_terminal(tmp_path: Path) -> None:
    (tmp_path / "compose.yaml").write_text(
        "agents:\n  a: {intent: x, model: 'mock?latency=500ms'}\n  b: {intent: y, depends_on: [a]}\n"
    )
    env = {**os.environ, "RNIX_HOME": str(tmp_path / "home"), "COLUMNS": "120", "TERM": "xterm"}
    main, child = pty.openpty()
    proc = subprocess.Popen(
        [RNIX, "compose", "up"], cwd=tmp_path, env=env, stdin=child, stdout=child, stderr=child
    )
    os.close(child)
    output = b""
    while True:
        ready, _, _ = select.select([main], [], [], 30)
        if not ready:
            break
        try:
            chunk = os.read(main, 65536)
        except OSError:
            break
        if not chunk:
            break
        output += chunk
    assert proc.wait(timeout=30) == 0
    text = output.decode(errors="replace")
    assert "AGENT" in text and "running" in text  # the live table was drawn while a ran
    assert "compose | completed | 2/2 agents" in text
