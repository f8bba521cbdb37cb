"""docker compose habits: `compose ls`, `up AGENT...`, `--env-file`, COMPOSE_FILE/COMPOSE_PROJECT_NAME,
docker commands rnix lacks, and `compose logs -f FILE`."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.conftest import RunRnix

TEAM = """\
agents:
  research: {intent: r, command: [sh, -c, 'echo R']}
  side: {intent: s, command: [sh, -c, 'echo S']}
  draft: {intent: d, command: [sh, -c, 'echo D'], depends_on: [research]}
  review: {intent: v, command: [sh, -c, 'echo V'], depends_on: [draft]}
"""


def agents_of_last_run(rnix: RunRnix, *args: str) -> list[str]:
    doc = json.loads(rnix("compose", *args, "ps", "-a", "--json").stdout)
    return sorted(p["agent"] for p in doc["data"]["processes"])


def test_up_named_agents_runs_them_and_their_dependencies(rnix: RunRnix, tmp_path: Path) -> None:
    (tmp_path / "compose.yaml").write_text(TEAM)
    result = rnix("compose", "up", "draft", "--json")
    assert result.returncode == 0, result.stderr
    assert agents_of_last_run(rnix) == ["draft", "research"]
    typo = rnix("compose", "up", "reveiw")
    assert (
        typo.returncode == 2 and "no agent 'reveiw'" in typo.stderr and "did you mean 'review'" in typo.stderr
    )
    detached = rnix("compose", "up", "-d", "side")
    assert detached.returncode == 0, detached.stderr
    deadline = time.monotonic() + 20
    while json.loads(rnix("compose", "ls", "--json").stdout)["data"]["projects"][0]["status"] == "running":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert agents_of_last_run(rnix) == ["side"]


def test_compose_ls_lists_each_project_with_its_last_run(rnix: RunRnix, tmp_path: Path) -> None:
    assert rnix("compose", "ls").stderr.startswith("rnix: no project has run yet")
    (tmp_path / "compose.yaml").write_text(TEAM)
    rnix("compose", "-p", "one", "up", "side")
    rnix("compose", "-p", "two", "up", "side")
    rnix("compose", "-p", "one", "up", "--fresh")
    projects = json.loads(rnix("compose", "ls", "--json").stdout)["data"]["projects"]
    assert [(p["project"], p["status"], p["agents"]) for p in projects] == [
        ("one", "completed", 4),
        ("two", "completed", 1),
    ]
    lines = rnix("compose", "ls").stdout.splitlines()
    assert lines[0].split() == ["PROJECT", "STATUS", "RUN", "STARTED", "AGENTS", "TOKENS", "FILE"]
    assert lines[1].split()[:3] == ["one", "completed", projects[0]["run_id"]]
    assert rnix("compose", "ls", "-q").stdout == "one\ntwo\n"


def test_env_file_and_docker_environment_variables(rnix: RunRnix, tmp_path: Path) -> None:
    sub = tmp_path / "team"
    sub.mkdir()
    (sub / "other.yaml").write_text("agents:\n  x: {intent: '${GREETING:?set it}', command: [echo]}\n")
    (tmp_path / "my.env").write_text("GREETING=hello from the env file\n")
    env = {"COMPOSE_FILE": "team/other.yaml", "COMPOSE_PROJECT_NAME": "Dock"}
    missing = rnix("compose", "config", "-q", env=env)
    assert missing.returncode == 2 and "GREETING is not set" in missing.stderr
    plan = rnix("compose", "--env-file", "my.env", "plan", "--json", env=env)
    assert plan.returncode == 0, plan.stderr
    data = json.loads(plan.stdout)["data"]
    assert data["project"] == "dock" and data["agents"][0]["intent"] == "hello from the env file"
    # rnix's own variables win over docker's
    ours = {**env, "RNIX_PROJECT_NAME": "mine", "RNIX_COMPOSE_FILE": "nowhere.yaml"}
    assert "compose file not found: nowhere.yaml" in rnix("compose", "plan", env=ours).stderr
    ours["RNIX_COMPOSE_FILE"] = "team/other.yaml"
    plan = rnix("compose", "--env-file", "my.env", "plan", "--json", env=ours)
    assert json.loads(plan.stdout)["data"]["project"] == "mine"
    absent = rnix("compose", "--env-file", "nope.env", "plan", env=env)
    assert absent.returncode == 2 and "env file not found" in absent.stderr
    several = rnix("compose", "plan", env={"COMPOSE_FILE": "a.yaml:b.yaml"})
    assert several.returncode == 2 and "names several files" in several.stderr
    up = rnix("compose", "--env-file", "my.env", "up", "-d", env=env)
    assert up.returncode == 0, up.stderr  # the detached supervisor reads the same env file


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["compose", "restart"], "rnix compose up` again"),
        (["compose", "stop"], "rnix compose down"),
        (["compose", "exec", "a", "sh"], "rnix log PID -f"),
        (["compose", "top"], "rnix top"),
        (["compose", "build"], "nothing to build"),
        (["compose", "run", "a"], "rnix compose up AGENT"),
        (["up"], "rnix compose up"),
        (["rm", "x"], "no containers"),
        (["hello"], 'rnix run "hello"'),
    ],
)
def test_docker_commands_rnix_lacks_name_the_rnix_way(rnix: RunRnix, args: list[str], says: str) -> None:
    result = rnix(*args)
    assert result.returncode == 2
    assert f"has no '{args[1] if args[0] == 'compose' else args[0]}' command" in result.stderr
    assert says in result.stderr and "Traceback" not in result.stderr


def test_typos_still_get_a_did_you_mean(rnix: RunRnix) -> None:
    assert "did you mean 'log'" in rnix("lgo").stderr
    assert "did you mean 'plan'" in rnix("compose", "plam").stderr


def test_compose_logs_dash_f_file_says_f_is_follow(rnix: RunRnix, tmp_path: Path) -> None:
    result = rnix("compose", "logs", "-f", "team.yaml")
    assert result.returncode == 2
    assert "-f means --follow" in result.stderr and "rnix compose -f team.yaml logs -f" in result.stderr
