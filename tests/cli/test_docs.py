"""The docs cannot drift from the code: commands, options, compose fields, links, generated pages.

Documentation here means README.md, docs/*.md (not decisions.md, a history that may quote mistakes
on purpose) and the comments of compose-examples/*.yaml; docs/cli.md and man/ are generated and
checked for staleness instead.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from rnix.cli.clidoc import markdown as cli_markdown
from rnix.cli.helptext import root_command
from rnix.cli.manpage import ENVIRONMENT
from rnix.core.reference import SECTIONS
from rnix.core.spec import parse_compose
from rnix.errors import InvalidCompose
from tests import docrefs

ROOT = Path(__file__).resolve().parents[2]
DOCS = sorted([ROOT / "README.md", *(p for p in (ROOT / "docs").glob("*.md") if p.name != "decisions.md")])
LINKED = [*DOCS, ROOT / "docs" / "decisions.md", ROOT / "agents" / "README.md"]


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def test_cli_reference_is_current() -> None:
    on_disk = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    assert on_disk == cli_markdown(), "run: python -m rnix.cli.clidoc --write docs/cli.md"


@pytest.mark.parametrize("page", DOCS, ids=rel)
def test_every_documented_command_and_option_exists(page: Path) -> None:
    lines = docrefs.command_lines(page.read_text(encoding="utf-8"))
    problems = [f"`rnix {line}`: {p}" for line in lines for p in docrefs.unresolved(root_command(), line)]
    assert not problems, "\n".join(problems)


def test_commands_in_example_comments_exist() -> None:
    problems = []
    for example in sorted((ROOT / "compose-examples").glob("*.yaml")):
        comments = "\n".join(
            line.lstrip("# ") for line in example.read_text().splitlines() if line.startswith("#")
        )
        for line in docrefs.command_lines(f"```sh\n{comments}\n```\n"):
            problems += [
                f"{example.name}: `rnix {line}`: {p}" for p in docrefs.unresolved(root_command(), line)
            ]
    assert not problems, "\n".join(problems)


def test_the_command_resolver_catches_mistakes() -> None:
    cli = root_command()
    assert docrefs.unresolved(cli, "compose -f x.yaml up -d --abort-on-failure") == []
    assert docrefs.unresolved(cli, '"summarise this" --model mock') == []
    assert docrefs.unresolved(cli, "compose upp") == ["rnix compose: no command 'upp'"]
    assert docrefs.unresolved(cli, "compose up --detached") == ["rnix compose up: no option --detached"]
    assert docrefs.command_lines(
        "run `rnix ps -a | head`, then\n```sh\nX=1 .venv/bin/rnix log 7 -f\n```\n"
    ) == [
        "log 7 -f",
        "ps -a",
    ]


def test_readme_lists_every_top_level_command() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    table = readme.split("## Commands at a glance", 1)[1].split("\n## ", 1)[0]
    listed = {line.split()[0] for line in docrefs.command_lines(table) if line}
    ctx = root_command().make_context("rnix", [], resilient_parsing=True)
    assert set(root_command().list_commands(ctx)) <= listed | {"run"}, "add the command to README.md"


def documented_fields(text: str) -> dict[str, set[str]]:
    """Section title -> the keys in its table, from docs/compose-file.md's generated reference."""
    out = {}
    for title, body in re.findall(r"^### ([^\n]+)\n\n(\|.*?)(?=\n\n|\Z)", text, re.M | re.S):
        out[title] = set(re.findall(r"^\| `([a-z_]+)` \|", body, re.M))
    return out


def test_compose_reference_and_validator_have_the_same_fields() -> None:
    documented = documented_fields((ROOT / "docs" / "compose-file.md").read_text(encoding="utf-8"))
    assert documented == {title: set(obj.fields) for title, obj in SECTIONS}


# A valid value for every field that has no default; a new field needs one here.
SAMPLES: dict[str, Any] = {
    "name": "demo",
    "intent": "do it",
    "api_base": "http://127.0.0.1:8000/v1",
    "budget_pool": {"total": 1000},
    "max_parallel": 4,
    "resources": {"CPU": 2, "GPU": 1},
    "models": {"fast": "openai/gpt-4o-mini", "local": {"model": "ollama/llama3", "rpm": 60}},
    "agents": {"other": {"intent": "x"}},
    "total": 1000,
    "agent": "researcher",
    "candidates": ["researcher", "planner"],
    "command": "echo hi",
    "depends_on": ["other"],
    "budget": 500,
    "environment": {"X": "1", "OPENAI_API_KEY": None},
    "working_dir": ".",
    "contract": {"sla_level": "gold"},
    "output_format": "json",
    "output_quality": {"judge": "is polite"},
    "max_tokens": 100,
    "timeout": "2m",
    "vars": {"target": "src/", "retries": 2},
    "loops": {"again": {"body": ["a"], "until": "true"}},
    "output_schema": {"type": "object", "required": ["verdict"]},
    "when": 'agents.other.status == "completed"',
    "for_each": "[1, 2, 3]",
    "item_name": "a-{{ index }}",
    "body": ["a"],
    "approval": {"approvers": ["alice", "bob"], "policy": "all", "timeout": "1h"},
    "approvers": ["alice"],
    "policy": "any",
    "notify": ["./notify.sh"],
    "until": 'agents.a.status == "completed"',
    "compensate": {"command": "./undo.sh", "timeout": "1m"},
    "model": "mock",
    "aggregate": "vote",
    "vote_on": "verdict",
    "quorum": 2,
}


def _document_with(section: str, key: str, value: Any) -> dict[str, Any]:
    agents: dict[str, Any] = {"other": {"intent": "x"}, "a": {"intent": "y"}}
    doc: dict[str, Any] = {"agents": agents}
    if section == "Top level":
        doc[key] = value
    elif section == "`budget_pool`":
        doc["budget_pool"] = {"total": 1000, key: value}
    elif section == "`agents.<name>`":
        agents["a"][key] = value
        agents["a"]["depends_on"] = ["other"]
        if key in ("item_name", "for_each_policy", "max_parallel"):
            agents["a"]["for_each"] = "[1, 2]"
        if key in ("aggregate", "vote_on", "quorum", "weights"):  # a jury
            agents["a"].update(
                candidates=["researcher", "planner"], aggregate=agents["a"].get("aggregate", "vote")
            )
        if key == "vote_on":
            agents["a"]["output_schema"] = SAMPLES["output_schema"]
        if key == "quorum":
            agents["a"]["aggregate"] = "quorum"
    elif section == "`agents.<name>.approval`":
        gate: dict[str, Any] = {key: value}
        if key == "quorum":
            gate["policy"] = "quorum"
        agents["a"]["approval"] = gate
    elif section == "`agents.<name>.compensate`":
        agents["a"]["compensate"] = {"command": "./undo.sh", key: value}
    elif section == "`loops.<name>`":
        doc["loops"] = {"again": {"body": ["a"], "until": "true", key: value}}
    else:
        agents["a"]["contract"] = {key: value}
    return doc


@pytest.mark.parametrize(("section", "obj"), SECTIONS, ids=[t for t, _ in SECTIONS])
def test_validator_accepts_every_documented_field_and_rejects_others(section: str, obj: Any) -> None:
    for key, field in obj.fields.items():
        value = SAMPLES.get(key, field.default)
        assert value is not None, f"add a sample value for {key!r} to SAMPLES"
        parse_compose(_document_with(section, key, value), {}, "compose.yaml")
    with pytest.raises(InvalidCompose) as caught:
        parse_compose(_document_with(section, "not_a_field", 1), {}, "compose.yaml")
    assert "unknown key" in str(caught.value.problems[0])


@pytest.mark.parametrize("page", LINKED, ids=rel)
def test_local_links_resolve(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    broken = []
    for target in docrefs.relative_links(text):
        path, anchor = docrefs.resolve_link(page, target)
        if not path.exists() or (
            anchor
            and path.suffix == ".md"
            and anchor not in docrefs.anchors(path.read_text(encoding="utf-8"))
        ):
            broken.append(target)
    assert not broken, f"{rel(page)}: broken links {broken}"


def yaml_blocks(text: str) -> list[str]:
    return re.findall(r"^```yaml\n(.*?)^```$", text, re.M | re.S)


def test_compose_snippets_in_the_docs_validate(tmp_path: Path) -> None:
    import yaml

    checked = 0
    for page in DOCS:
        for block in yaml_blocks(page.read_text(encoding="utf-8")):
            data = yaml.safe_load(block)
            if not isinstance(data, dict) or "agents" not in data:
                continue  # a fragment (`model:` and `api_base:` only), not a whole file
            parse_compose(data, {}, f"{rel(page)} snippet")
            checked += 1
    assert checked >= 2


_ENV_NAME = re.compile(
    r"(?<![A-Za-z0-9])(_?(?:RNIX|XDG)_[A-Z0-9_]*[A-Z0-9])"
    r"|(?:environ(?:\.get|\.setdefault|\.pop)?[\[(]|getenv\(|envvar=)\s*[\"']([A-Z][A-Z0-9_]+)[\"']"
)


def test_every_environment_variable_the_code_uses_is_in_rnix_1() -> None:
    documented = {name for names, _ in ENVIRONMENT for name in names.split(", ")}
    used: dict[str, str] = {}
    for source in sorted((ROOT / "rnix").rglob("*.py")):
        for match in _ENV_NAME.finditer(source.read_text(encoding="utf-8")):
            used.setdefault(match.group(1) or match.group(2), rel(source))
    missing = {name: where for name, where in used.items() if name not in documented}
    assert not missing, f"add these to ENVIRONMENT in rnix/cli/manpage.py: {missing}"
    assert {"RNIX_HOME", "RNIX_GATEWAY", "RNIX_SEED", "TIKTOKEN_CACHE_DIR"} <= set(used)
