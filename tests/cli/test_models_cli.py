"""Models and keys are checked before anything runs: through the installed `rnix`."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from tests.conftest import RunRnix

# The original rnix documentation's example, as a new user would paste it.
ORIGINAL = """\
name: research
model: "haiku"
agents:
  researcher:
    intent: "Find three facts about SQLite"
  writer:
    intent: "Write a paragraph from the facts"
    depends_on: [researcher]
"""

NO_KEYS = {k: "" for k in ("ANTHROPIC_API_KEY", "OPENAI_API_KEY")}


def test_the_original_example_without_a_key_exits_2_at_once_and_starts_nothing(
    rnix: RunRnix, tmp_path: Path, rnix_home: Path
) -> None:
    (tmp_path / "compose.yaml").write_text(ORIGINAL)
    for command in (("compose", "config", "-q"), ("compose", "plan"), ("compose", "up")):
        started = time.monotonic()
        done = rnix(*command, env=NO_KEYS)
        assert time.monotonic() - started < 5  # well under a second of work; interpreter start aside
        assert done.returncode == 2 and done.stdout == "", command
        assert "ANTHROPIC_API_KEY is not set" in done.stderr and "researcher, writer" in done.stderr
        assert "compose.yaml:4" in done.stderr and "Traceback" not in done.stderr  # the first agent
    doc = json.loads(rnix("compose", "up", "--json", env=NO_KEYS).stdout)
    assert doc["ok"] is False and doc["error"]["code"] == "MISSING_CREDENTIALS"
    assert not (rnix_home / "runs").exists()  # nothing was spawned, no run recorded
    assert json.loads(rnix("reputation", "--json").stdout)["data"]["definitions"] == []


def test_a_key_in_dotenv_counts_and_aliases_resolve(rnix: RunRnix, tmp_path: Path) -> None:
    (tmp_path / "compose.yaml").write_text(ORIGINAL)
    (tmp_path / ".env").write_text("ANTHROPIC_API_KEY=sk-ant-test-0000\n")
    plan = rnix("compose", "plan", "--json", env=NO_KEYS)
    assert plan.returncode == 0, plan.stderr
    agents = json.loads(plan.stdout)["data"]["agents"]
    assert {a["model"] for a in agents} == {"anthropic/claude-haiku-4-5"}


def test_typos_get_a_did_you_mean_and_every_problem_at_once(rnix: RunRnix, tmp_path: Path) -> None:
    (tmp_path / "compose.yaml").write_text(
        "agents:\n  a: {intent: x, model: sonet}\n  b: {intent: y, model: antropic/claude-x}\n"
    )
    done = rnix("compose", "config", "-q")
    assert done.returncode == 2
    assert "compose.yaml:2: agents.a.model: unknown model 'sonet'" in done.stderr
    assert "did you mean 'sonnet'" in done.stderr
    assert "compose.yaml:3: agents.b.model: unknown provider 'antropic'" in done.stderr


def test_aliases_from_the_file_and_models_yaml_and_rnix_models(
    rnix: RunRnix, tmp_path: Path, rnix_home: Path
) -> None:
    config = Path(os.environ["RNIX_CONFIG_HOME"])
    config.mkdir(parents=True, exist_ok=True)
    (config / "models.yaml").write_text("haiku: anthropic/claude-3-5-haiku-latest\nmine: groq/llama-x\n")
    (tmp_path / "compose.yaml").write_text(
        "models:\n  local: {model: openai/qwen, api_base: 'http://127.0.0.1:8000/v1', rpm: 60}\n"
        "agents:\n  a: {intent: x, model: local}\n"
    )
    plan = json.loads(rnix("compose", "plan", "--json", env=NO_KEYS).stdout)["data"]
    (agent,) = plan["agents"]
    assert (agent["model"], agent["api_base"]) == ("openai/qwen", "http://127.0.0.1:8000/v1")
    listed = json.loads(rnix("models", "--json", env={**NO_KEYS, "GROQ_API_KEY": "gsk-1"}).stdout)
    rows = {r["alias"]: r for r in listed["data"]["models"]}
    assert rows["haiku"]["source"] == "user" and rows["haiku"]["model"] == "anthropic/claude-3-5-haiku-latest"
    assert rows["local"]["source"] == "compose" and rows["local"]["key"] is None
    assert rows["mine"]["key_set"] is True and rows["sonnet"]["key_set"] is False
    clients = {name: rows[name]["client"] for name in ("local", "mine", "haiku", "gpt-4o")}
    assert clients == {"local": "openai", "mine": "openai", "haiku": "litellm", "gpt-4o": "openai"}
    forced = json.loads(rnix("models", "--json", env={**NO_KEYS, "RNIX_LLM_CLIENT": "litellm"}).stdout)
    assert {r["client"] for r in forced["data"]["models"]} == {"litellm"}
    human = rnix("models", env=NO_KEYS).stdout
    assert "missing ANTHROPIC_API_KEY" in human and human.startswith("ALIAS")
    assert human.splitlines()[0].split() == ["ALIAS", "MODEL", "SOURCE", "CLIENT", "KEY"]
    (config / "models.yaml").write_text("bad alias!: x\n")
    broken = rnix("models")
    assert broken.returncode == 2 and "models.yaml:1" in broken.stderr and "Traceback" not in broken.stderr


def test_a_key_in_an_env_file_given_with_env_file_counts(rnix: RunRnix, tmp_path: Path) -> None:
    (tmp_path / "compose.yaml").write_text(ORIGINAL)
    (tmp_path / "keys.env").write_text("ANTHROPIC_API_KEY=sk-ant-test-0000\n")
    assert rnix("compose", "plan", env=NO_KEYS).returncode == 2
    assert rnix("compose", "--env-file", "keys.env", "plan", env=NO_KEYS).returncode == 0
