"""`output_schema` end to end through the installed `rnix`: command agents whose stdout must validate,
the mock model answering through submit_result offline, and `compose config -q` on bad schemas."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.cli.test_llm_path import agents_of
from tests.conftest import RunRnix

VERDICT = "{type: object, properties: {verdict: {enum: [pass, fail]}}, required: [verdict]}"


def up(rnix: RunRnix, tmp_path: Path, compose: str) -> tuple[int, dict[str, dict[str, Any]]]:
    (tmp_path / "compose.yaml").write_text(compose)
    result = rnix("compose", "up", "--json", timeout=120)
    assert "Traceback" not in result.stderr
    return result.returncode, agents_of(json.loads(result.stdout))


def test_stdout_that_does_not_validate_fails_the_agent_and_is_retried(rnix: RunRnix, tmp_path: Path) -> None:
    code, agents = up(
        rnix,
        tmp_path,
        "agents:\n"
        "  judge:\n"
        "    intent: Judge\n"
        """    command: [echo, '{"verdict": "maybe"}']\n"""
        "    max_retries: 1\n"
        f"    output_schema: {VERDICT}\n"
        "  after: {intent: Use it, command: [cat], depends_on: [judge]}\n",
    )
    judge = agents["judge"]
    assert code == 1 and judge["status"] == "failed" and judge["exit_code"] == 1
    assert judge["error"] == "output_schema: $.verdict: 'maybe' is not one of ['pass', 'fail']"
    assert judge["attempts"] == 2  # retried like any failure
    assert judge["result"].strip() == '{"verdict": "maybe"}'  # what it printed is kept, for diagnosis
    assert agents["after"]["status"] == "skipped"


def test_stdout_that_is_not_json_fails_with_one_line(rnix: RunRnix, tmp_path: Path) -> None:
    code, agents = up(
        rnix,
        tmp_path,
        f"agents:\n  judge:\n    intent: Judge\n    command: [echo, it passes]\n"
        f"    output_schema: {VERDICT}\n",
    )
    assert code == 1 and agents["judge"]["error"].startswith("output_schema: $: the result is not JSON:")


def test_a_valid_result_reaches_the_downstream_agent_as_json(rnix: RunRnix, tmp_path: Path) -> None:
    (tmp_path / "verdict.json").write_text(json.dumps({"type": "object", "required": ["verdict"]}))
    code, agents = up(
        rnix,
        tmp_path,
        "agents:\n"
        "  judge:\n"
        "    intent: Judge\n"
        """    command: [echo, '{"verdict": "pass", "issues": []}']\n"""
        "    output_schema: {$ref: verdict.json}\n"
        "  after:\n"
        "    intent: Use it\n"
        '    command: [python3, -c, \'import json,sys; print(json.load(sys.stdin)["upstream"]["judge"])\']\n'
        "    depends_on: [judge]\n",
    )
    assert code == 0, agents
    assert json.loads(agents["after"]["result"]) == {"verdict": "pass", "issues": []}


def test_the_mock_model_answers_with_a_valid_document_offline(rnix: RunRnix, tmp_path: Path) -> None:
    schema = (
        "{type: object, required: [verdict, issues], properties: "
        "{verdict: {enum: [pass, fail]}, issues: {type: array, items: {type: object, required: [line], "
        "properties: {line: {type: integer, minimum: 1}, text: {type: string, minLength: 3}}}}}}"
    )
    code, agents = up(
        rnix,
        tmp_path,
        f"model: mock\nagents:\n  review:\n    intent: Review the code\n    output_schema: {schema}\n",
    )
    review = agents["review"]
    assert code == 0 and review["status"] == "completed", review
    assert json.loads(review["result"]) == {"verdict": "pass", "issues": [{"line": 1, "text": "text"}]}
    assert review["tokens_used"] > 0


def test_config_reports_a_bad_ref_and_an_invalid_schema_at_their_lines(rnix: RunRnix, tmp_path: Path) -> None:
    (tmp_path / "broken.json").write_text('{"type": ')
    (tmp_path / "list.yaml").write_text("- not a mapping\n")
    (tmp_path / "compose.yaml").write_text(
        "agents:\n"
        "  a:\n"
        "    intent: A\n"
        "    output_schema: {$ref: missing.json}\n"
        "  b:\n"
        "    intent: B\n"
        "    output_schema: {$ref: broken.json}\n"
        "  c:\n"
        "    intent: C\n"
        "    output_schema: {type: object, properties: {n: {type: integr}}}\n"
        "  d:\n"
        "    intent: D\n"
        "    output_schema: {$ref: list.yaml}\n"
    )
    result = rnix("compose", "config", "-q")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert lines[0] == "compose.yaml:4: agents.a.output_schema: $ref missing.json: no such file"
    assert lines[1].startswith("compose.yaml:7: agents.b.output_schema: $ref broken.json: not valid JSON:")
    assert lines[2].startswith("compose.yaml:10: agents.c.output_schema: not a valid JSON Schema:")
    assert lines[2].endswith("(at properties.n.type)")
    assert lines[3] == (
        "compose.yaml:13: agents.d.output_schema: $ref list.yaml: must hold a JSON Schema object (a mapping)"
    )
    assert "4 problems" in result.stderr
    assert not (tmp_path / "rnix-home" / "runs").exists() or not any(
        (tmp_path / "rnix-home" / "runs").iterdir()
    )
    assert rnix("compose", "up").returncode == 2  # nothing starts


def test_a_yaml_ref_is_read_and_config_shows_the_schema(rnix: RunRnix, tmp_path: Path) -> None:
    (tmp_path / "schemas").mkdir()
    (tmp_path / "schemas" / "verdict.yml").write_text("type: object\nrequired: [verdict]\n")
    (tmp_path / "compose.yaml").write_text(
        "agents:\n  a:\n    intent: A\n    output_schema: {$ref: schemas/verdict.yml}\n"
    )
    result = rnix("compose", "config", "--json")
    assert result.returncode == 0, result.stderr
    config = json.loads(result.stdout)["data"]["config"]
    assert config["agents"]["a"]["output_schema"] == {"type": "object", "required": ["verdict"]}


def test_rnix_run_takes_a_schema_file(rnix: RunRnix, tmp_path: Path) -> None:
    (tmp_path / "verdict.yaml").write_text(
        "type: object\nrequired: [verdict]\nproperties: {verdict: {enum: [pass, fail]}}\n"
    )
    result = rnix("run", "--output-schema", "verdict.yaml", "Judge the change")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"verdict": "pass"}
    missing = rnix("run", "--output-schema", "nope.json", "Judge the change")
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert "rnix: error: --output-schema: $ref nope.json: no such file" in missing.stderr
