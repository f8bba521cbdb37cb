"""`rnix compose config|plan|schema` through the installed command: exit codes, stderr, JSON."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import yaml

from tests.conftest import RunRnix

VALID = """\
name: Demo Team
budget_pool:
  total: 7000
  allocation: priority
agents:
  research:
    intent: Find three facts
    priority: high
  draft:
    intent: Write a paragraph from the facts
    depends_on: [research]
  review:
    intent: Review the paragraph
    depends_on: [draft, research]
    priority: low
    timeout: 30s
  side:
    intent: Unrelated check
    command: ["python3", "-c", "print('hi')"]
"""


def write(directory: Path, text: str, name: str = "compose.yaml") -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(text))
    return path


def test_plan_json_document(rnix: RunRnix, tmp_path: Path) -> None:
    write(tmp_path, VALID)
    result = rnix("compose", "plan", "--json")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["ok"] is True
    data = doc["data"]
    assert data["project"] == "demoteam"
    assert data["layers"] == [["research", "side"], ["draft"], ["review"]]
    assert data["critical_path"] == ["research", "draft", "review"]
    agents = {a["name"]: a for a in data["agents"]}
    assert list(agents) == ["research", "side", "draft", "review"]
    assert agents["review"]["layer"] == 3 and agents["review"]["depends_on"] == ["draft", "research"]
    assert agents["review"]["timeout_s"] == 30 and agents["review"]["priority"] == "low"
    assert agents["side"]["kind"] == "command" and agents["research"]["model"] == "mock"
    # priority weights 4:2:2:1 over 7000 tokens; rounding leftovers go to high, then the critical path
    assert {n: a["budget"] for n, a in agents.items()} == {
        "research": 3112,
        "side": 1555,
        "draft": 1556,
        "review": 777,
    }
    pool = data["budget_pool"]
    assert pool["total"] == 7000 and pool["allocation"] == "priority" and pool["allocated"] == 7000
    for agent in data["agents"]:
        assert {
            "name",
            "layer",
            "depends_on",
            "model",
            "budget",
            "priority",
            "timeout_s",
            "max_retries",
        } <= set(agent)


def test_plan_human_output(rnix: RunRnix, tmp_path: Path) -> None:
    write(tmp_path, VALID)
    result = rnix("compose", "plan")
    assert result.returncode == 0, result.stderr
    assert "research" in result.stdout and "3,112" in result.stdout
    assert "critical path: research -> draft -> review" in result.stdout
    assert "\x1b[" not in result.stdout  # not a terminal: no colour codes
    assert result.stderr == ""


def test_invalid_file_reports_every_problem_with_line_and_exit_2(rnix: RunRnix, tmp_path: Path) -> None:
    write(
        tmp_path,
        """\
        agents:
          writer:
            intent: Write
            depends_on: [reviwer]
            budget: -10
          reviewer:
            intnet: Review
            priority: urgent
        """,
    )
    result = rnix("compose", "config")
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert lines == [
        "compose.yaml:4: agents.writer.depends_on[0]: unknown agent 'reviwer' (did you mean 'reviewer'?)",
        "compose.yaml:5: agents.writer.budget: must be a positive whole number, not -10",
        "compose.yaml:6: agents.reviewer: missing required key 'intent'",
        "compose.yaml:7: agents.reviewer.intnet: unknown key (did you mean 'intent'?)",
        "compose.yaml:8: agents.reviewer.priority: unknown value 'urgent': must be one of high, normal, low",
        "rnix: error: compose.yaml is not a valid compose file (5 problems)",
        "hint: fix the lines above; `rnix compose config -q` checks the file again",
    ]
    assert "Traceback" not in result.stderr


def test_invalid_file_json_error_document(rnix: RunRnix, tmp_path: Path, rnix_home: Path) -> None:
    write(
        tmp_path,
        "agents:\n  a:\n    intent: x\n    depends_on: [b]\n  b:\n    intent: y\n    depends_on: [a]\n",
    )
    result = rnix("compose", "plan", "--json")
    assert result.returncode == 2
    doc = json.loads(result.stdout)
    assert doc["ok"] is False
    assert doc["error"]["code"] == "INVALID_COMPOSE"
    assert doc["error"]["problems"] == [
        {
            "file": "compose.yaml",
            "line": 4,
            "key": "agents.a.depends_on",
            "message": "dependency cycle: a -> b -> a",
        }
    ]
    assert "dependency cycle: a -> b -> a" in result.stderr
    assert not rnix_home.exists()  # nothing is written for an invalid file


def test_yaml_syntax_error_is_one_line_with_place(rnix: RunRnix, tmp_path: Path) -> None:
    write(tmp_path, "agents:\n  a:\n    intent: x\n   bad: [\n")
    result = rnix("compose", "config", "-q")
    assert result.returncode == 2
    assert result.stderr.startswith("compose.yaml:")
    assert "invalid YAML" in result.stderr and "Traceback" not in result.stderr


def test_missing_file_and_empty_directory(rnix: RunRnix, tmp_path: Path) -> None:
    result = rnix("compose", "plan", "-f", "nope.yaml", "--json")
    assert result.returncode == 2
    assert json.loads(result.stdout)["error"]["code"] == "COMPOSE_NOT_FOUND"
    assert "rnix: error: compose file not found: nope.yaml" in result.stderr
    result = rnix("compose", "plan")
    assert result.returncode == 2
    assert "rnix: error: no compose file in" in result.stderr and "hint: " in result.stderr


def test_config_prints_a_normalised_valid_compose_file(rnix: RunRnix, tmp_path: Path) -> None:
    write(tmp_path, VALID)
    first = rnix("compose", "config")
    assert first.returncode == 0, first.stderr
    (tmp_path / "again").mkdir()
    write(tmp_path / "again", first.stdout)
    second = rnix("compose", "config", cwd=tmp_path / "again")
    assert second.returncode == 0 and second.stdout == first.stdout  # normalising is idempotent
    assert "timeout: 600" in first.stdout and "stop_grace_period: 5" in first.stdout


def test_config_quiet_and_json(rnix: RunRnix, tmp_path: Path) -> None:
    write(tmp_path, VALID)
    quiet = rnix("compose", "config", "-q")
    assert (quiet.returncode, quiet.stdout, quiet.stderr) == (0, "", "")
    doc = json.loads(rnix("compose", "config", "--json").stdout)
    assert doc["data"]["config"]["agents"]["review"]["timeout"] == 30
    assert json.loads(rnix("compose", "config", "--json", "-q").stdout)["data"]["valid"] is True


def test_interpolation_dotenv_and_secret_masking(rnix: RunRnix, tmp_path: Path) -> None:
    canary = "sk-canary-4f9d2e7a1b"
    write(
        tmp_path,
        """\
        agents:
          a:
            intent: "Use key ${DEMO_API_KEY} for ${TOPIC:-testing}"
            budget: ${BUDGET}
            environment:
              OPENAI_API_KEY: literal-secret-value
              PASS_THROUGH:
        """,
    )
    (tmp_path / ".env").write_text("BUDGET=1234\nTOPIC=from-dotenv\n")
    result = rnix("compose", "config", "--json", env={"DEMO_API_KEY": canary, "TOPIC": "from-shell"})
    assert result.returncode == 0, result.stderr
    agent = json.loads(result.stdout)["data"]["config"]["agents"]["a"]
    assert agent["budget"] == 1234  # plain scalar re-typed after interpolation
    assert agent["intent"] == "Use key *** for from-shell"  # the shell wins over .env
    assert agent["environment"] == {"OPENAI_API_KEY": "***", "PASS_THROUGH": None}
    human = rnix("compose", "config", env={"DEMO_API_KEY": canary})
    assert canary not in human.stdout + human.stderr
    assert "literal-secret-value" not in human.stdout


def test_required_variable_error(rnix: RunRnix, tmp_path: Path) -> None:
    write(tmp_path, "agents:\n  a:\n    intent: ${GOAL:?set GOAL to the task}\n")
    result = rnix("compose", "config")
    assert result.returncode == 2
    assert "compose.yaml:3: agents.a.intent:" in result.stderr and "set GOAL to the task" in result.stderr


def test_project_name_precedence(rnix: RunRnix, tmp_path: Path) -> None:
    project_dir = tmp_path / "My Project"
    project_dir.mkdir()
    write(project_dir, "agents:\n  a:\n    intent: x\n")

    def project(*args: str, env: dict[str, str] | None = None) -> str:
        out = rnix("compose", "plan", "--json", *args, cwd=project_dir, env=env)
        return str(json.loads(out.stdout)["data"]["project"])

    assert project() == "myproject"
    assert project(env={"RNIX_PROJECT_NAME": "From_Env"}) == "from_env"
    assert project("-p", "cli-name", env={"RNIX_PROJECT_NAME": "env"}) == "cli-name"
    assert rnix("compose", "-p", "grp", "plan", "--json", cwd=project_dir).stdout.count('"grp"') == 1


def test_unfunded_agents_are_warned_about(rnix: RunRnix, tmp_path: Path) -> None:
    write(
        tmp_path,
        "budget_pool: {total: 100}\nagents:\n"
        "  big: {intent: x, budget: 500}\n  small: {intent: y, budget: 50}\n",
    )
    result = rnix("compose", "plan", "--json")
    assert result.returncode == 0
    data = json.loads(result.stdout)["data"]
    assert data["budget_pool"]["unfunded"] == ["big"]
    assert {a["name"]: a["funded"] for a in data["agents"]} == {"big": False, "small": True}
    assert "cannot fund big" in result.stderr


def test_schema_is_json(rnix: RunRnix) -> None:
    result = rnix("compose", "schema")
    assert result.returncode == 0
    schema = json.loads(result.stdout)
    assert "agents" in schema["required"]
    assert json.loads(rnix("compose", "schema", "--json").stdout)["data"] == schema


def test_usage_errors_exit_2_with_hint_and_json(rnix: RunRnix) -> None:
    result = rnix("compose", "plan", "--bogus")
    assert result.returncode == 2
    assert result.stderr.startswith("rnix: error: No such option '--bogus'")
    assert "hint: see `rnix compose plan --help`" in result.stderr
    doc = json.loads(rnix("compose", "plan", "--bogus", "--json").stdout)
    assert doc["error"]["code"] == "USAGE"
    assert rnix("frobnicate").returncode == 2


def test_debug_shows_traceback_only_when_asked(rnix: RunRnix, tmp_path: Path) -> None:
    write(tmp_path, "agents: {}\n")
    plain = rnix("compose", "plan")
    assert "Traceback" not in plain.stderr
    debug = rnix("--debug", "compose", "plan")
    assert debug.returncode == 2 and "Traceback" in debug.stderr


def test_python_dash_m_and_version(tmp_path: Path) -> None:
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "rnix", "--version"], capture_output=True, text=True, check=True
    )
    assert out.stdout.startswith("rnix, version ")


def test_shipped_examples_validate_and_plan(rnix: RunRnix) -> None:
    examples = sorted((Path(__file__).resolve().parents[2] / "compose-examples").glob("*.yaml"))
    assert examples
    for example in examples:
        result = rnix("compose", "plan", "-f", str(example), "--json")
        assert result.returncode == 0, (example, result.stderr)
        assert json.loads(result.stdout)["ok"] is True


def test_config_keeps_max_parallel_and_dependency_conditions(rnix: RunRnix, tmp_path: Path) -> None:
    write(
        tmp_path,
        "max_parallel: 3\nagents:\n  build: {intent: b}\n"
        "  diagnose: {intent: d, depends_on: {build: failed}}\n  report: {intent: r, depends_on: [build]}\n",
    )
    first = rnix("compose", "config")
    assert first.returncode == 0, first.stderr
    assert "max_parallel: 3" in first.stdout and "build: failed" in first.stdout
    (tmp_path / "again").mkdir()
    write(tmp_path / "again", first.stdout)
    second = rnix("compose", "config", cwd=tmp_path / "again")
    assert second.returncode == 0 and second.stdout == first.stdout


PIPELINE = (Path(__file__).resolve().parents[1] / "fixtures" / "pipeline.yaml").read_text()


def test_config_keeps_the_pipeline_keys_and_round_trips(rnix: RunRnix, tmp_path: Path) -> None:
    write(tmp_path, PIPELINE)
    first = rnix("compose", "config")
    assert first.returncode == 0, first.stderr
    config = yaml.safe_load(first.stdout)
    assert config["vars"] == {"limit": 3}
    assert config["loops"] == {
        "polish": {
            "body": ["draft", "review"],
            "until": "agents.review.output.ok == true",
            "max_iterations": 4,
            "on_max": "fail",
        }
    }
    fix, draft = config["agents"]["fix"], config["agents"]["draft"]
    assert fix["for_each"] == "agents.triage.output.bugs" and fix["item_name"] == "fix-{{ index }}"
    assert fix["for_each_policy"] == "any" and fix["max_parallel"] == 2
    assert draft["when"] == "size(agents.triage.output.bugs) > vars.limit"
    assert "for_each_policy" not in draft and "max_parallel" not in draft
    assert config["agents"]["review"]["output_schema"]["properties"] == {"ok": {"type": "boolean"}}
    again = tmp_path / "again"
    again.mkdir()
    write(again, first.stdout)
    assert rnix("compose", "config", "-q", cwd=again).returncode == 0
    second = rnix("compose", "config", cwd=again)
    assert second.returncode == 0 and second.stdout == first.stdout
    plans = [rnix("compose", "plan", "--json", cwd=where) for where in (tmp_path, again)]
    assert all(p.returncode == 0 for p in plans), [p.stderr for p in plans]
    datas = [json.loads(p.stdout)["data"] for p in plans]
    for data in datas:
        data.pop("file")
    assert datas[0] == datas[1]


def test_plan_shows_conditions_fan_outs_schemas_and_loops(rnix: RunRnix, tmp_path: Path) -> None:
    write(tmp_path, PIPELINE)
    result = rnix("compose", "plan", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)["data"]
    agents = {a["name"]: a for a in data["agents"]}
    assert agents["draft"]["when"] == "size(agents.triage.output.bugs) > vars.limit"
    assert agents["fix"]["for_each"] == "agents.triage.output.bugs"
    assert agents["fix"]["max_parallel"] == 2 and agents["fix"]["for_each_policy"] == "any"
    assert agents["triage"]["output_properties"] == ["bugs"] and agents["triage"]["output_schema"]
    assert agents["publish"]["output_schema"] is None and agents["publish"]["when"] is None
    assert [agents[n]["loop"] for n in ("triage", "draft", "review")] == [None, "polish", "polish"]
    assert data["loops"] == [
        {
            "name": "polish",
            "body": ["draft", "review"],
            "until": "agents.review.output.ok == true",
            "max_iterations": 4,
            "on_max": "fail",
        }
    ]
    text = rnix("compose", "plan")
    assert text.returncode == 0, text.stderr
    assert "fix[*]" in text.stdout
    assert "when: draft runs only if size(agents.triage.output.bugs) > vars.limit" in text.stdout
    assert "for_each: fix[*] over agents.triage.output.bugs (policy any, max_parallel 2" in text.stdout
    assert "output_schema: triage: yes (bugs)" in text.stdout
    assert "loop polish: draft, review again until agents.review.output.ok == true" in text.stdout
    assert "(max 4 iterations, then fail)" in text.stdout
