"""`ps` and `compose ps` output that survives a pipe: one agent a line, -q, --format, RUN, REASON, pool."""

from __future__ import annotations

import json
from pathlib import Path

from rnix.ui.proctable import PROCESS_FIELDS
from tests.conftest import RunRnix

LONG = "summarise every open issue of the project and propose a fix for each of them, one by one, " * 3


def team(directory: Path, count: int, *, name: str = "pipe", pool: int = 120_000) -> None:
    lines = [f"name: {name}", f"budget_pool: {{total: {pool}}}", "agents:"]
    for i in range(count):
        fail = "exit 1" if i % 5 == 0 else "exit 0"
        lines.append(
            f"  a{i}: {{intent: '{LONG}{i}', command: [sh, -c, 'echo x; {fail}'],"
            " contract: {sla_level: gold, output_format: json, max_tokens: 10, timeout: 30s}}"
        )
    directory.mkdir(exist_ok=True)
    (directory / "compose.yaml").write_text("\n".join(lines) + "\n")


def test_piped_ps_keeps_every_agent_on_one_line(rnix: RunRnix, tmp_path: Path) -> None:
    team(tmp_path, 22)
    assert rnix("compose", "up").returncode == 1
    result = rnix("ps", "-a")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 23  # the header and 22 agents
    assert lines[0].split() == [
        "PID", "PPID", "PROJECT", "AGENT", "STATE", "TOKENS", "ELAPSED", "EXIT", "SLA", "REASON", "INTENT",
    ]  # fmt: skip
    assert all(LONG.strip() in line for line in lines[1:])  # not cut, not wrapped
    failed = [line for line in lines if " failed " in line.replace("failed (", "")]
    assert failed and all("exit status 1" in line for line in failed)  # the REASON column
    assert "of the 120,000-token pool used" in result.stderr  # the pool is a note, not a row
    compose = rnix("compose", "ps", "-a")
    assert len(compose.stdout.splitlines()) == 23 and "PROJECT" not in compose.stdout.splitlines()[0]


def test_quiet_format_and_run_column(rnix: RunRnix, tmp_path: Path) -> None:
    team(tmp_path / "one", 2, name="one")
    team(tmp_path / "two", 3, name="two")
    for project in ("one", "two"):
        rnix("compose", "up", cwd=tmp_path / project)
    processes = json.loads(rnix("ps", "-a", "--json").stdout)["data"]["processes"]
    assert all(tuple(p) == PROCESS_FIELDS for p in processes)  # what a template may name
    assert rnix("ps", "-a", "-q").stdout.split() == [str(p["pid"]) for p in processes]
    table = rnix("ps", "-a").stdout.splitlines()
    assert table[0].split()[2:4] == ["PROJECT", "RUN"]  # two runs: say which row is whose
    assert {line.split()[3] for line in table[1:]} == {p["run_id"] for p in processes}
    lines = rnix("ps", "-a", "--format", r"table {{.Agent}}\t{{.RunId}}\t{{ .exit_code }}").stdout
    rows = [line.split("\t") for line in lines.splitlines()]
    assert rows[0] == ["AGENT", "RUNID", "EXIT_CODE"]
    assert rows[1:] == [[p["agent"], p["run_id"], str(p["exit_code"])] for p in processes]
    jsonl = rnix("ps", "-a", "--format", "json").stdout.splitlines()
    assert [json.loads(line)["agent"] for line in jsonl] == [p["agent"] for p in processes]
    bad = rnix("ps", "-a", "--format", "{{.nope}}")
    assert bad.returncode == 2 and "unknown field 'nope'" in bad.stderr and "{{.agent}}" in bad.stderr
    assert bad.stdout == ""
    runs = json.loads(rnix("compose", "-p", "two", "ps", "-a", "--json").stdout)["data"]["runs"]
    assert [(r["project"], r["budget_pool"]) for r in runs] == [("two", 120_000)]


def test_log_names_the_reason(rnix: RunRnix, tmp_path: Path) -> None:
    team(tmp_path, 1)
    rnix("compose", "up")
    pid = rnix("ps", "-a", "-q").stdout.strip()
    result = rnix("log", pid)
    assert result.stdout == "x\n"
    assert f"a0 (PID {pid}) failed: exit status 1" in result.stderr
    assert json.loads(rnix("log", pid, "--json").stdout)["data"]["error"] == "exit status 1"
