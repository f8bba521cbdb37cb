"""The tools' API as the agent loop uses it: ToolPolicy.from_json, schemas(), execute()."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest

from rnix.agent.tools import TOOL_NAMES, TOOL_OPTIONS, ToolPolicy, ToolResult, execute, schemas
from rnix.agent.tools.policy import DEFAULT_ENTRIES, PathTool, ShellTool
from tests.fixtures import ROOT

EXAMPLE = {  # the format agreed for agent definitions (docs/agent-tools.md)
    "read_file": {},
    "list_dir": None,
    "glob": {},
    "grep": {},
    "write_file": {"root": "out"},
    "shell": {"allow": ["ls", "wc", "git"], "timeout": 30, "max_output": 65536},
}


def test_the_agreed_example_policy(tmp_path: Path) -> None:
    policy = ToolPolicy.from_json(EXAMPLE, str(tmp_path))
    assert policy.enabled == TOOL_NAMES
    assert policy.workspace == os.path.realpath(tmp_path)
    assert policy.read_file == PathTool(root=(), max_bytes=65536, max_entries=DEFAULT_ENTRIES)
    assert policy.grep == PathTool(root=(), max_bytes=1 << 20, max_entries=200)
    assert policy.write_file == PathTool(root=("out",), max_bytes=1 << 20, max_entries=200)
    assert policy.shell == ShellTool(allow=("ls", "wc", "git"), timeout=30.0, max_output=65536)
    with pytest.raises(dataclasses.FrozenInstanceError):
        policy.shell = None  # type: ignore[misc]


def test_absent_tools_are_disabled(tmp_path: Path) -> None:
    assert ToolPolicy.from_json(None, str(tmp_path)).enabled == ()
    assert ToolPolicy.from_json({}, str(tmp_path)).enabled == ()
    assert ToolPolicy.from_json({"grep": {}}, str(tmp_path)).enabled == ("grep",)


def test_tool_options_describe_what_from_json_accepts(tmp_path: Path) -> None:
    assert tuple(TOOL_OPTIONS) == TOOL_NAMES
    samples: dict[type, Any] = {str: "sub", int: 7, float: 2.5, list: ["ls"], bool: True}
    for tool, options in TOOL_OPTIONS.items():
        ToolPolicy.from_json({tool: {name: samples[kind] for name, kind in options.items()}}, str(tmp_path))


BAD = [
    (["not", "a", "mapping"], "tools: must be a mapping"),
    ({"read_fle": {}}, "tools.read_fle: unknown tool (did you mean `read_file`?)"),
    ({"rm": {}}, "tools.rm: unknown tool; known: read_file, list_dir"),
    ({"read_file": True}, "tools.read_file: must be a mapping of options or null, got a boolean"),
    ({"read_file": {"max_entries": 5}}, "tools.read_file.max_entries: unknown option"),
    ({"grep": {"max_byte": 5}}, "tools.grep.max_byte: unknown option (did you mean `max_bytes`?)"),
    ({"read_file": {"root": 3}}, "tools.read_file.root: must be a string, got an integer"),
    ({"read_file": {"root": "/etc"}}, "tools.read_file.root: must be a path relative to the workspace"),
    ({"write_file": {"root": "../x"}}, "tools.write_file.root: must stay inside the workspace"),
    ({"write_file": {"root": "a\x00"}}, "tools.write_file.root: must be a path relative"),
    ({"read_file": {"max_bytes": "big"}}, "tools.read_file.max_bytes: must be an integer, got a string"),
    ({"read_file": {"max_bytes": True}}, "tools.read_file.max_bytes: must be an integer, got a boolean"),
    ({"read_file": {"max_bytes": 0}}, "tools.read_file.max_bytes: must be between 1 and 16,777,216, got 0"),
    ({"list_dir": {"max_entries": 10**6}}, "tools.list_dir.max_entries: must be between 1 and 10,000"),
    ({"shell": {}}, "tools.shell.allow: required"),
    ({"shell": None}, "tools.shell.allow: required"),
    ({"shell": {"allow": []}}, "tools.shell.allow: must be a non-empty list"),
    (
        {"shell": {"allow": "ls"}},
        "tools.shell.allow: must be a non-empty list of program names, got a string",
    ),
    ({"shell": {"allow": ["/bin/ls"]}}, "tools.shell.allow.0: must be a bare program name"),
    ({"shell": {"allow": ["ls", "ls -l"]}}, "tools.shell.allow.1: must be a bare program name"),
    ({"shell": {"allow": ["bash"]}}, "tools.shell.allow.0: `bash` is a shell"),
    ({"shell": {"allow": ["ls"], "timeout": 0}}, "tools.shell.timeout: must be more than 0"),
    ({"shell": {"allow": ["ls"], "timeout": "30s"}}, "tools.shell.timeout: must be a number of seconds"),
    ({"shell": {"allow": ["ls"], "bogus": 1}}, "tools.shell.bogus: unknown option"),
]


@pytest.mark.parametrize(
    ("tools", "message"), BAD, ids=[m.split(":")[0] + str(i) for i, (_, m) in enumerate(BAD)]
)
def test_bad_policies_are_value_errors_naming_the_key(tmp_path: Path, tools: Any, message: str) -> None:
    with pytest.raises(ValueError) as raised:
        ToolPolicy.from_json(tools, str(tmp_path))
    assert message in str(raised.value)


def test_the_workspace_must_be_an_existing_absolute_directory(tmp_path: Path) -> None:
    for workspace, message in (
        ("relative/dir", "workspace: must be an absolute path"),
        (None, "workspace: must be an absolute path"),
        (str(tmp_path / "missing"), "is not an existing directory"),
    ):
        with pytest.raises(ValueError, match=message):
            ToolPolicy.from_json({}, workspace)


def test_schemas_cover_exactly_the_enabled_tools(tmp_path: Path) -> None:
    policy = ToolPolicy.from_json({"shell": {"allow": ["ls", "git"]}, "read_file": {}}, str(tmp_path))
    tools = schemas(policy)
    assert [tool["function"]["name"] for tool in tools] == ["read_file", "shell"]
    for tool in tools:
        assert tool["type"] == "function"
        assert set(tool["function"]) == {"name", "description", "parameters"}
        jsonschema.Draft202012Validator.check_schema(tool["function"]["parameters"])
    shell = tools[1]["function"]
    assert "Allowed programs: ls, git." in shell["description"]
    assert "WITHOUT a shell" in shell["description"]
    assert shell["parameters"]["required"] == ["argv"]
    assert schemas(ToolPolicy.from_json({}, str(tmp_path))) == []


def test_schema_and_argument_checks_agree(tmp_path: Path) -> None:
    """What the schema accepts, execute() accepts as arguments; what it rejects, execute() rejects."""
    (tmp_path / "a.txt").write_text("a\n")
    policy = ToolPolicy.from_json({"read_file": {}, "grep": {}}, str(tmp_path))
    by_name = {tool["function"]["name"]: tool["function"]["parameters"] for tool in schemas(policy)}
    cases = [
        ("read_file", {"path": "a.txt"}),
        ("read_file", {"path": "a.txt", "offset": 1}),
        ("read_file", {}),
        ("read_file", {"path": 1}),
        ("read_file", {"path": "a.txt", "offset": "1"}),
        ("read_file", {"path": "a.txt", "extra": 1}),
        ("grep", {"pattern": "a", "ignore_case": True, "include": "*.txt"}),
        ("grep", {"pattern": "a", "ignore_case": "yes"}),
    ]
    for name, args in cases:
        valid = jsonschema.Draft202012Validator(by_name[name]).is_valid(args)
        result = execute(policy, name, json.dumps(args))
        assert result.ok == valid, (name, args, result)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ("{not json", "the arguments are not valid JSON"),
        ("[1, 2]", "the arguments must be a JSON object, got list"),
        ('"a.txt"', "the arguments must be a JSON object, got str"),
        ("{}", "missing argument `path` (string)"),
        ('{"path": ["a"]}', "argument `path` must be string, got list"),
        ('{"path": "a.txt", "offset": true}', "argument `offset` must be integer, got bool"),
        ('{"path": "a.txt", "limit": 3}', "unknown argument `limit`; read_file takes: path, offset"),
    ],
)
def test_bad_arguments_become_results(tmp_path: Path, arguments: str, message: str) -> None:
    (tmp_path / "a.txt").write_text("a\n")
    result = execute(ToolPolicy.from_json({"read_file": {}}, str(tmp_path)), "read_file", arguments)
    assert isinstance(result, ToolResult)
    assert not result.ok and not result.denied
    assert result.output == f"error: {message}" or result.output.startswith(f"error: {message}")
    assert result.summary.startswith("read_file -> bad arguments: ")


def test_empty_or_parsed_arguments_are_accepted(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("a\n")
    policy = ToolPolicy.from_json({"list_dir": {}, "read_file": {}}, str(tmp_path))
    assert execute(policy, "list_dir", "").output == "a.txt  2 bytes"
    assert execute(policy, "list_dir", None).ok
    assert execute(policy, "read_file", {"path": "a.txt"}).output == "a\n"


def test_unknown_and_disabled_tools_are_denied(tmp_path: Path) -> None:
    policy = ToolPolicy.from_json({"read_file": {}}, str(tmp_path))
    unknown = execute(policy, "delete_everything", "{}")
    assert unknown.denied and not unknown.ok
    assert "`delete_everything` is not a tool for this agent (its tools: read_file)" in unknown.output
    assert unknown.summary.startswith("DENIED delete_everything: ")
    disabled = execute(policy, "shell", '{"argv": ["sh", "-c", "touch pwned"]}')
    assert disabled.denied and "`shell` is not enabled" in disabled.output
    assert not (tmp_path / "pwned").exists()


def test_outputs_are_utf8_even_for_undecodable_names(tmp_path: Path) -> None:
    os.mkdir(os.path.join(os.fsencode(tmp_path), b"bad-\xff-name"))
    result = execute(ToolPolicy.from_json({"list_dir": {}}, str(tmp_path)), "list_dir", "{}")
    assert result.output == "bad-\\udcff-name/"
    result.output.encode("utf-8")
    result.summary.encode("utf-8")


def test_importing_the_tools_loads_only_light_standard_modules() -> None:
    code = "import sys; import rnix.agent.tools; print('\\n'.join(sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    loaded = set(out.stdout.split())
    heavy = {"subprocess", "ctypes", "yaml", "psutil", "litellm", "rich", "click", "sqlite3", "asyncio"}
    assert loaded.isdisjoint(heavy), loaded & heavy
    assert not {name for name in loaded if name.startswith(("rnix.core", "rnix.supervisor", "rnix.store"))}
