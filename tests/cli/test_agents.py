"""`rnix agents`, and agent definitions in compose files, through the installed `rnix`.

The user's definitions are read from $RNIX_CONFIG_HOME/agents (a temp directory: see conftest).
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

from tests.cli.test_up import assert_nothing_left
from tests.conftest import RunRnix
from tests.store.test_definitions import SHIPPED, write_definition


def user_dir() -> Path:
    return Path(os.environ["RNIX_CONFIG_HOME"]) / "agents"


def agents_json(rnix: RunRnix, *args: str) -> tuple[int, dict[str, Any]]:
    result = rnix("agents", "--json", *args)
    return result.returncode, json.loads(result.stdout)


def test_the_shipped_library_is_listed(rnix: RunRnix, tmp_path: Path) -> None:
    code, doc = agents_json(rnix)
    assert code == 0 and doc["ok"] is True
    data = doc["data"]
    assert [r["source"] for r in data["search_path"]] == ["project", "user", "builtin"]
    assert data["search_path"][0]["path"] == str(tmp_path / "agents")
    assert data["search_path"][1]["path"] == str(user_dir())
    with_file = agents_json(rnix, "-f", "sub/compose.yaml")[1]["data"]["search_path"][0]
    assert with_file == {"source": "project", "path": str(tmp_path / "sub" / "agents")}
    assert [a["name"] for a in data["agents"]] == SHIPPED
    assert {(a["source"], a["valid"], a["shadowed_by"], a["model"]) for a in data["agents"]} == {
        ("builtin", True, None, "mock")
    }
    human = rnix("agents")
    assert human.returncode == 0
    assert human.stdout.split("\n")[0].split() == ["NAME", "SOURCE", "MODEL", "TOOLS", "DESCRIPTION"]
    assert "test-writer" in human.stdout and "read, write_file, shell" in human.stdout
    assert human.stderr.startswith("search order: project agents · user ")


def test_project_beats_user_beats_builtin(rnix: RunRnix, tmp_path: Path) -> None:
    write_definition(
        tmp_path / "agents", "reviewer", "name: reviewer\ndescription: the project's\nmodel: ollama/p\n"
    )
    write_definition(user_dir(), "reviewer", "name: reviewer\ndescription: mine\nmodel: ollama/u\n")
    write_definition(user_dir(), "mine", "name: mine\ndescription: only mine\n")
    rows = [(a["name"], a["source"], a["shadowed_by"]) for a in agents_json(rnix)[1]["data"]["agents"]]
    assert [r for r in rows if r[0] in ("reviewer", "mine")] == [
        ("mine", "user", None),
        ("reviewer", "project", None),
        ("reviewer", "user", "project"),
        ("reviewer", "builtin", "project"),
    ]
    assert "user (shadowed by project)" in rnix("agents").stdout
    (tmp_path / "compose.yaml").write_text(
        "agents:\n  r: {intent: review, agent: reviewer}\n  m: {intent: mine, agent: mine}\n"
    )

    def used() -> dict[str, tuple[str, str]]:
        plan = json.loads(rnix("compose", "plan", "--json").stdout)["data"]
        return {a["name"]: (a["definition_source"]["source"], a["model"]) for a in plan["agents"]}

    assert used() == {"r": ("project", "ollama/p"), "m": ("user", "mock")}
    (tmp_path / "agents" / "reviewer" / "agent.yaml").unlink()
    (tmp_path / "agents" / "reviewer" / "instructions.md").unlink()
    assert used()["r"] == ("user", "ollama/u")
    detail = json.loads(rnix("agents", "reviewer", "--json").stdout)["data"]
    assert detail["source"] == "user" and detail["instructions"] == "Do it.\n"
    assert detail["shadows"] == [{"source": "builtin", "path": detail["shadows"][0]["path"]}]


def test_invalid_definitions_are_all_reported_and_exit_1(rnix: RunRnix, tmp_path: Path) -> None:
    write_definition(tmp_path / "agents", "one", "name: one\ndescription: x\nmax_step: 3\n")
    write_definition(user_dir(), "two", "name: two\ndescription: x\ntools: {shell: {allow: [sh]}}\n", "")
    result = rnix("agents")
    assert result.returncode == 1
    assert "summarizer" in result.stdout  # the valid ones are still listed
    lines = result.stderr.splitlines()
    assert "agents/one/agent.yaml:3: max_step: unknown key (did you mean 'max_steps'?)" in lines
    assert any(
        line.endswith(
            "two/agent.yaml:3: tools.shell.allow[0]: `sh` is a shell: it runs any command, "
            "so it can never be allowed"
        )
        for line in lines
    ), lines
    assert any(
        line.endswith("two/instructions.md: is empty: write the agent's instructions here") for line in lines
    )
    assert "rnix: error: 2 agent definitions are invalid: one (project), two (user) (3 problems)" in lines
    assert "Traceback" not in result.stderr
    code, doc = agents_json(rnix)
    assert code == 1 and doc["ok"] is False and doc["error"]["code"] == "INVALID_DEFINITION"
    first = doc["error"]["problems"][0]
    assert (first["file"], first["line"]) == ("agents/one/agent.yaml", 3)


def test_show_one_definition(rnix: RunRnix) -> None:
    result = rnix("agents", "test-writer")
    assert result.returncode == 0
    assert "source: builtin" in result.stdout
    assert "  write_file: root=tests-generated, max_bytes=65536" in result.stdout
    assert "\ninstructions:\n# Test writer\n" in result.stdout
    wrong = rnix("agents", "test-writter")
    assert wrong.returncode == 1
    assert wrong.stderr == (
        "rnix: error: unknown agent definition 'test-writter' (did you mean 'test-writer'?)\n"
        "hint: `rnix agents` lists the definitions\n"
    )


def test_an_unknown_definition_fails_at_load_and_nothing_runs(rnix: RunRnix, tmp_path: Path) -> None:
    marker = uuid.uuid4().hex
    (tmp_path / "compose.yaml").write_text(
        "agents:\n"
        "  first:\n    intent: would run first\n    command: [touch, ran.txt]\n"
        "  review:\n    intent: review it\n    agent: reviewr\n    depends_on: [first]\n"
    )
    for command in (("compose", "up"), ("compose", "plan"), ("compose", "config")):
        result = rnix(*command, env={"RNIX_TEST_MARKER": marker})
        assert result.returncode == 2, command
        assert result.stderr.splitlines() == [
            "compose.yaml:7: agents.review.agent: unknown agent definition 'reviewr' "
            "(did you mean 'reviewer'?)",
            "rnix: error: compose.yaml is not a valid compose file (1 problem)",
            "hint: fix the lines above; `rnix agents` lists the definitions and where they are",
        ]
    assert not (tmp_path / "ran.txt").exists()
    assert not (tmp_path / "rnix-home" / "rnix.db").exists()
    assert_nothing_left(marker)


def test_the_task_holds_the_definition(rnix: RunRnix, tmp_path: Path) -> None:
    write_definition(
        tmp_path / "agents",
        "poet",
        "name: poet\ndescription: writes verse\nrole: a poet\nmax_steps: 3\nbudget: 3000\n",
        "Answer in three short lines.\n",
    )
    write_definition(
        tmp_path / "agents",
        "lister",
        "name: lister\ndescription: lists files\ntools:\n  list_dir: {}\n  read_file: {max_bytes: 1000}\n",
    )
    (tmp_path / "src").mkdir()
    (tmp_path / "compose.yaml").write_text(
        "agents:\n"
        "  verse: {intent: write about rain, agent: poet}\n"
        "  files: {intent: list the files, agent: lister, working_dir: src, max_steps: 4}\n"
        "  plain: {intent: no definition}\n"
    )
    marker = uuid.uuid4().hex
    result = rnix("compose", "up", "--json", env={"RNIX_TEST_MARKER": marker})
    doc = json.loads(result.stdout)
    assert result.returncode == 0, result.stderr
    agents = {a["name"]: a for a in doc["data"]["agents"]}
    assert {n: (a["status"], a["definition"], a["budget"]) for n, a in agents.items()} == {
        "verse": ("completed", "poet", 3000),
        "files": ("completed", "lister", 50000),
        "plain": ("completed", "builtin:mock", 50000),
    }
    run = tmp_path / "rnix-home" / "runs" / doc["data"]["run_id"]
    verse, files, plain = (
        json.loads((run / f"{n}.task.json").read_text()) for n in ("verse", "files", "plain")
    )
    assert verse["instructions"] == "Role: a poet\n\nAnswer in three short lines.\n"
    assert "Answer in three short lines." in verse["messages"][0]["content"]
    assert (verse["tools"], verse["max_steps"], verse["workspace"]) == ({}, 3, str(tmp_path))
    assert files["tools"] == {"list_dir": {}, "read_file": {"max_bytes": 1000}}
    assert (files["workspace"], files["max_steps"]) == (str(tmp_path / "src"), 4)
    assert (plain["instructions"], plain["tools"], plain["workspace"]) == (None, {}, str(tmp_path))
    assert_nothing_left(marker)


def test_rnix_run_with_an_agent_definition(rnix: RunRnix, tmp_path: Path) -> None:
    result = rnix("run", "--agent", "summarizer", "--json", "summarise the notes")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["data"]["agents"][0]["definition"] == "summarizer"
    wrong = rnix("run", "--agent", "sumarizer", "summarise")
    assert wrong.returncode == 2
    assert "unknown agent definition 'sumarizer' (did you mean 'summarizer'?)" in wrong.stderr


EXAMPLES = Path(__file__).resolve().parents[2] / "compose-examples"


def test_every_shipped_agent_is_used_by_an_example_and_those_examples_run_offline(rnix: RunRnix) -> None:
    used: dict[str, set[str]] = {}
    for example in sorted(EXAMPLES.glob("*.yaml")):
        config = json.loads(rnix("compose", "-f", str(example), "config", "--json").stdout)["data"]["config"]
        for name, where in config.get("x-definitions", {}).items():
            assert where["source"] == "builtin"
            used.setdefault(example.name, set()).add(name)
    assert set().union(*used.values()) == set(SHIPPED)
    marker = uuid.uuid4().hex
    for example in sorted(used):
        result = rnix(
            "compose", "-f", str(EXAMPLES / example), "up", "--json", env={"RNIX_TEST_MARKER": marker}
        )
        assert result.returncode == 0, (example, result.stderr)
        agents = json.loads(result.stdout)["data"]["agents"]
        assert {a["status"] for a in agents} == {"completed"}, example
    assert_nothing_left(marker)


def test_one_check_lists_every_problem_of_the_file_its_variables_and_definitions(
    rnix: RunRnix, tmp_path: Path
) -> None:
    """Variables, the file's own keys and broken definitions: one `config -q` names them all."""
    broken = tmp_path / "agents" / "broken"
    broken.mkdir(parents=True)
    (broken / "agent.yaml").write_text("name: broken\ndescription: d\nmodel: mock\nbogus: 1\n")
    (broken / "instructions.md").write_text("# Broken\n")
    (tmp_path / "compose.yaml").write_text(
        "agents:\n"
        "  one:\n    agent: broken\n    intent: 'x ${NOPE:?set NOPE}'\n    budget: ${B:?}\n"
        "  two:\n    intent: y\n    depends_on: [onee]\n"
    )
    result = rnix("compose", "config", "-q", env={"NOPE": "", "B": ""})
    assert result.returncode == 2
    assert result.stderr.splitlines()[:-2] == [
        "compose.yaml:3: agents.one.agent: agent definition 'broken' (agents/broken/agent.yaml) is invalid",
        "compose.yaml:4: agents.one.intent: required variable NOPE is not set: set NOPE",
        "compose.yaml:5: agents.one.budget: required variable B is missing a value",
        "compose.yaml:8: agents.two.depends_on[0]: unknown agent 'onee' (did you mean 'one'?)",
        "agents/broken/agent.yaml:4: bogus: unknown key (known keys: name, description, role, "
        "capabilities, model, tools, max_steps, budget, contract)",
    ]
    assert "(5 problems)" in result.stderr and "Traceback" not in result.stderr
