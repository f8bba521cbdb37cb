"""`depends_on: {x: failed | finished}` through the installed `rnix compose up`, on command agents.

A diagnose branch runs only when the build failed, gets the build's error as its upstream, and a
skip by condition neither fails the run nor blocks what depends on the skipped agent.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from tests.conftest import RunRnix

# Each agent prints what it was given from upstream, so the test can see what travelled.
ECHO = json.dumps(
    [sys.executable, "-c", "import json,sys; print(json.dumps(json.load(sys.stdin)['upstream']))"]
)


def compose(tmp_path: Path, build_status: int) -> None:
    (tmp_path / "compose.yaml").write_text(
        "agents:\n"
        f"  build: {{intent: build it, command: [sh, -c, 'echo building; exit {build_status}']}}\n"
        f"  diagnose: {{intent: find out why, command: {ECHO}, depends_on: {{build: failed}}}}\n"
        f"  report: {{intent: always report, command: {ECHO}, depends_on: {{build: finished}}}}\n"
        f"  notify: {{intent: tell someone, command: {ECHO}, depends_on: [diagnose]}}\n"
    )


def up(rnix: RunRnix) -> tuple[int, dict[str, dict[str, Any]]]:
    result = rnix("compose", "up", "--json")
    return result.returncode, {a["name"]: a for a in json.loads(result.stdout)["data"]["agents"]}


def test_a_failed_build_runs_the_diagnose_branch_with_its_error(rnix: RunRnix, tmp_path: Path) -> None:
    compose(tmp_path, 3)
    code, agents = up(rnix)
    assert code == 1  # the build failed: the run did not fully succeed
    assert {n: a["status"] for n, a in agents.items()} == {
        "build": "failed", "diagnose": "completed", "report": "completed", "notify": "completed"
    }  # fmt: skip
    told = json.loads(agents["diagnose"]["result"])["build"]
    assert told.startswith("[build failed: exit status 3") and "building" in told
    assert json.loads(agents["notify"]["result"]) == {"diagnose": agents["diagnose"]["result"]}


def test_a_build_that_completes_skips_diagnose_by_condition_and_the_run_succeeds(
    rnix: RunRnix, tmp_path: Path
) -> None:
    compose(tmp_path, 0)
    code, agents = up(rnix)
    assert code == 0, agents  # a skip by condition is not a failure
    assert agents["diagnose"]["status"] == "skipped" and agents["diagnose"]["pid"] is None
    assert agents["diagnose"]["error"] == "dependency 'build' completed: this agent runs only if it failed"
    assert agents["report"]["status"] == "completed"
    # notify depended on the skipped diagnose: it still ran, without its result
    assert agents["notify"]["status"] == "completed" and json.loads(agents["notify"]["result"]) == {
        "diagnose": ""
    }
    listed = rnix("compose", "ps", "-a")
    assert "runs only if it failed" in listed.stdout


def test_an_unknown_condition_is_a_validation_error(rnix: RunRnix, tmp_path: Path) -> None:
    (tmp_path / "compose.yaml").write_text(
        "agents:\n  a: {intent: x}\n  b: {intent: y, depends_on: {a: faild}}\n"
    )
    result = rnix("compose", "config", "-q")
    assert result.returncode == 2
    assert "compose.yaml:3: agents.b.depends_on.a:" in result.stderr and "failed" in result.stderr
