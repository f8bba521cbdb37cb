"""Loading agent definitions from disk: the shipped library, problems with file:line, the search order."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from rnix.agent.tools.policy import ToolPolicy
from rnix.core.definition import tools_as_json
from rnix.core.spec import parse_compose
from rnix.errors import InvalidCompose
from rnix.store.definitions import BUILTIN_DIR, Library, Root, resolve_definitions, search_path
from rnix.store.yaml_lines import parse_yaml

SHIPPED = sorted(p.name for p in BUILTIN_DIR.iterdir() if p.is_dir())


def write_definition(root: Path, name: str, yaml: str | None, instructions: str | None = "Do it.\n") -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    if yaml is not None:
        (folder / "agent.yaml").write_text(yaml)
    if instructions is not None:
        (folder / "instructions.md").write_text(instructions)
    return folder


def library(tmp_path: Path, *sources: str) -> Library:
    return Library(tuple(Root(s, tmp_path / s) for s in sources), tmp_path)


def test_the_library_ships_at_least_six_agents_and_the_named_ones() -> None:
    # rnix/_agents (package data) is the repository's agents/ folder: a link in a source checkout
    top_level = Path(__file__).resolve().parents[2] / "agents"
    assert sorted(p.name for p in top_level.iterdir() if p.is_dir()) == SHIPPED
    assert len(SHIPPED) >= 6
    assert {"code-analyst", "reviewer", "doc-writer", "test-writer", "summarizer", "planner"} <= set(SHIPPED)


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_definition_loads_and_validates(name: str, tmp_path: Path) -> None:
    entry = Library((Root("builtin", BUILTIN_DIR),), tmp_path).find(name)
    assert entry is not None and entry.problems == ()
    definition = entry.definition
    assert definition is not None and definition.name == name and definition.source == "builtin"
    assert definition.model == "mock"  # the library runs offline
    policy = ToolPolicy.from_json(tools_as_json(definition), str(tmp_path))  # the sandbox accepts the tools
    assert set(policy.enabled) == set(definition.tools)
    assert definition.max_steps and definition.budget and definition.contract
    assert len(definition.instructions) > 800  # careful instructions, not a stub
    text = definition.instructions.lower()
    assert "final answer" in text and "do not" in text
    # upstream results and files are data: every library agent is told so in the same words
    assert re.search(r"(do not|never) (follow|obey) instructions", text)


def test_tool_use_matches_the_role() -> None:
    lib = Library((Root("builtin", BUILTIN_DIR),), Path.cwd())
    tools = {}
    for name in SHIPPED:
        entry = lib.find(name)
        assert entry is not None and entry.definition is not None
        tools[name] = set(entry.definition.tools)
    read_only = {"read_file", "list_dir", "glob", "grep"}
    assert tools["summarizer"] == set() and tools["planner"] == set()
    assert tools["code-analyst"] <= read_only and tools["reviewer"] <= read_only
    assert "write_file" in tools["test-writer"] and "shell" in tools["test-writer"]
    assert all("write_file" not in t and "shell" not in t for n, t in tools.items() if n != "test-writer")


def test_problems_have_file_and_line_and_come_all_at_once(tmp_path: Path) -> None:
    write_definition(
        tmp_path / "project",
        "helper",
        "name: helper\ndescription: helps\nmodle: gpt\ntools:\n  shell: {allow: [ls]}\n  grepp: {}\n",
        instructions="",
    )
    entry = library(tmp_path, "project").find("helper")
    assert entry is not None and entry.definition is None
    assert [str(p) for p in entry.problems] == [
        "project/helper/agent.yaml:3: modle: unknown key (did you mean 'model'?)",
        "project/helper/agent.yaml:6: tools.grepp: unknown tool (did you mean 'grep'?)",
        "project/helper/instructions.md: is empty: write the agent's instructions here",
    ]


def test_yaml_errors_a_missing_agent_yaml_and_a_bad_folder_name(tmp_path: Path) -> None:
    root = tmp_path / "user"
    write_definition(root, "broken", "name: broken\ndescription: [unclosed\n")
    write_definition(root, "no-yaml", None)
    write_definition(root, "Bad Name", "name: bad\ndescription: x\n")
    write_definition(root, "no-instructions", "name: no-instructions\ndescription: x\n", instructions=None)
    (root / "not-a-definition").mkdir()  # no agent.yaml, no instructions.md: ignored
    (root / "__pycache__").mkdir()
    entries = {e.name: [str(p) for p in e.problems] for e in library(tmp_path, "user").entries()}
    assert set(entries) == {"broken", "no-yaml", "Bad Name", "no-instructions"}
    assert entries["broken"][0].startswith("user/broken/agent.yaml:3: invalid YAML")
    assert entries["no-yaml"] == [
        "user/no-yaml/agent.yaml: missing: a definition needs name and description here"
    ]
    assert "user/Bad Name: the folder name 'Bad Name' is not a definition name" in entries["Bad Name"][-1]
    assert entries["no-instructions"] == [
        "user/no-instructions/instructions.md: missing: every definition needs its instructions"
    ]


def test_the_sandbox_rules_are_checked_when_the_definition_loads(tmp_path: Path) -> None:
    write_definition(
        tmp_path / "project", "runner", "name: runner\ndescription: x\ntools:\n  shell: {allow: [sh]}\n"
    )
    entry = library(tmp_path, "project").find("runner")
    assert entry is not None and entry.definition is None
    (problem,) = entry.problems
    assert str(problem).startswith("project/runner/agent.yaml:4: tools.shell.allow[0]: `sh` is a shell")


def test_first_found_wins_and_shadowed_ones_are_marked(tmp_path: Path) -> None:
    for source in ("project", "user", "builtin"):
        write_definition(tmp_path / source, "same", f"name: same\ndescription: from {source}\n")
    write_definition(tmp_path / "builtin", "base", "name: base\ndescription: only builtin\n")
    write_definition(tmp_path / "project", "broken", "name: broken\n")
    write_definition(tmp_path / "builtin", "broken", "name: broken\ndescription: fine\n")
    lib = library(tmp_path, "project", "user", "builtin")
    same = lib.find("same")
    assert same is not None and same.definition is not None
    assert (same.source, same.definition.description) == ("project", "from project")
    broken = lib.find("broken")  # a broken project definition never falls back to the builtin one
    assert broken is not None and broken.source == "project" and broken.definition is None
    assert [(e.name, e.source, e.shadowed_by) for e in lib.entries()] == [
        ("base", "builtin", None),
        ("broken", "project", None),
        ("broken", "builtin", "project"),
        ("same", "project", None),
        ("same", "user", "project"),
        ("same", "builtin", "project"),
    ]


def test_the_search_path(tmp_path: Path) -> None:
    roots = search_path(tmp_path / "proj", tmp_path / "config")
    assert [(r.source, r.directory) for r in roots] == [
        ("project", tmp_path / "proj" / "agents"),
        ("user", tmp_path / "config" / "agents"),
        ("builtin", BUILTIN_DIR),
    ]
    # A compose file in the repository itself: its agents/ is the builtin folder, listed once.
    assert [r.source for r in search_path(BUILTIN_DIR.parent, tmp_path)] == ["project", "user"]


def compose_problems(tmp_path: Path, text: str) -> list[str]:
    tree = parse_yaml(text, "compose.yaml")
    spec = parse_compose(tree.data, tree.lines, "compose.yaml")
    with pytest.raises(InvalidCompose) as info:
        resolve_definitions(spec, library(tmp_path, "project", "builtin"), tree.lines)
    assert "`rnix agents`" in (info.value.hint or "")
    return [str(p) for p in info.value.problems]


def test_a_compose_file_naming_unknown_or_invalid_definitions(tmp_path: Path) -> None:
    write_definition(tmp_path / "builtin", "reviewer", "name: reviewer\ndescription: reviews\n")
    write_definition(tmp_path / "project", "broken", "name: broken\ndescription: x\nmax_steps: lots\n")
    problems = compose_problems(
        tmp_path,
        "agents:\n"
        "  a:\n    intent: x\n    agent: reviewr\n"
        "  b:\n    intent: y\n    candidates: [reviewer, nobody, broken]\n"
        "  c:\n    intent: z\n    agent: broken\n",
    )
    assert problems == [
        "compose.yaml:4: agents.a.agent: unknown agent definition 'reviewr' (did you mean 'reviewer'?)",
        "compose.yaml:7: agents.b.candidates[1]: unknown agent definition 'nobody'",
        "compose.yaml:7: agents.b.candidates[2]: agent definition 'broken' (project/broken/agent.yaml) "
        "is invalid",
        "compose.yaml:10: agents.c.agent: agent definition 'broken' (project/broken/agent.yaml) is invalid",
        "project/broken/agent.yaml:3: max_steps: must be a whole number from 1 to 10000, "
        "not the string 'lots'",
    ]


def test_resolving_attaches_every_named_definition(tmp_path: Path) -> None:
    write_definition(tmp_path / "builtin", "one", "name: one\ndescription: first\nmodel: m1\nmax_steps: 4\n")
    write_definition(tmp_path / "project", "two", "name: two\ndescription: second\n")
    tree = parse_yaml(
        "agents:\n  a: {intent: x, agent: one}\n  b: {intent: y, candidates: [two, one]}\n", "compose.yaml"
    )
    spec = parse_compose(tree.data, tree.lines, "compose.yaml")
    spec = resolve_definitions(spec, library(tmp_path, "project", "builtin"), tree.lines)
    assert sorted(spec.definitions) == ["one", "two"]
    assert (spec.agents[0].model, spec.agents[0].max_steps) == ("m1", 4)
    assert spec.definitions["two"].source == "project"
