"""The tools' arguments, once: the JSON schemas the model sees and the checks its calls go through.

Contract: `schemas(policy)` gives OpenAI function-calling tool schemas (`{"type": "function",
"function": {"name", "description", "parameters"}}`) for exactly the enabled tools, in a fixed order,
with this agent's limits in the descriptions. `parse_arguments(name, text)` checks a call's
arguments against the same table (`PARAMS`) and returns them as a dict, or raises `Failed` with a
message the model can act on: not JSON, not an object, a missing or unknown argument, a wrong type.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, NamedTuple

from rnix.agent.tools.policy import PathTool, ShellTool, ToolPolicy
from rnix.agent.tools.result import Failed


class Param(NamedTuple):
    name: str
    kind: str  # JSON schema type: string, integer, boolean, array (of strings)
    required: bool
    description: str


_PATH = "Path relative to the workspace root (no `..`)."
PARAMS: dict[str, tuple[Param, ...]] = {
    "read_file": (
        Param("path", "string", True, _PATH),
        Param("offset", "integer", False, "Byte offset to start reading at (default 0)."),
    ),
    "list_dir": (
        Param("path", "string", False, "Directory relative to the workspace root (default: the root)."),
    ),
    "glob": (
        Param("pattern", "string", True, "Glob pattern such as `**/*.py` or `src/*.md`, relative to `path`."),
        Param(
            "path",
            "string",
            False,
            "Directory to search in, relative to the workspace root (default: the root).",
        ),
    ),
    "grep": (
        Param("pattern", "string", True, "Python regular expression searched for in each line."),
        Param(
            "path",
            "string",
            False,
            "File or directory to search, relative to the workspace root (default: the root).",
        ),
        Param("include", "string", False, "Only search files whose name matches this glob, e.g. `*.py`."),
        Param("ignore_case", "boolean", False, "Match case-insensitively (default false)."),
    ),
    "write_file": (
        Param("path", "string", True, _PATH),
        Param("content", "string", True, "The complete new content of the file (UTF-8 text)."),
    ),
    "shell": (
        Param(
            "argv",
            "array",
            True,
            'The program and its arguments, one list element per argument, e.g. ["git", "log", "-n", "5"].',
        ),
    ),
}
_PY_TYPES: dict[str, type] = {"string": str, "integer": int, "boolean": bool, "array": list}


def _root_note(tool: PathTool, verb: str) -> str:
    return "" if not tool.root else f" Only paths under `{tool.root_text}/` can be {verb}."


def describe(policy: ToolPolicy, name: str) -> str:
    """The tool's description for the model, with this agent's limits."""
    tool = getattr(policy, name)
    if isinstance(tool, ShellTool):
        return (
            "Run one program with its arguments in the workspace, WITHOUT a shell: pipes, redirections, "
            "`&&`, globs and variables are not interpreted. Allowed programs: "
            f"{', '.join(tool.allow)}. Minimal environment (no secrets); timeout "
            f"{tool.timeout:g} s; at most {tool.max_output:,} bytes of output are returned; "
            "the exit status is reported."
        )
    assert isinstance(tool, PathTool)
    if name == "read_file":
        return (
            f"Read a text file in the workspace. Returns at most {tool.max_bytes:,} bytes per call; "
            "use `offset` to read further." + _root_note(tool, "read")
        )
    if name == "list_dir":
        return (
            "List a directory of the workspace: `name/` is a directory, `name@ -> target` a symlink, files "
            f"show their size. At most {tool.max_entries:,} entries." + _root_note(tool, "listed")
        )
    if name == "glob":
        return (
            "Find files and directories whose paths match a glob pattern (`*`, `?`, `[abc]`, `**` for any "
            "number of directories). Hidden names match only a pattern segment that starts with `.`. "
            f"At most {tool.max_entries:,} matches." + _root_note(tool, "searched")
        )
    if name == "grep":
        return (
            "Search the lines of a file, or of every file below a directory, for a Python regular "
            "expression; returns `path:line: text`. Skips hidden and binary files and files over "
            f"{tool.max_bytes:,} bytes. At most {tool.max_entries:,} matches." + _root_note(tool, "searched")
        )
    return (
        "Create or replace a text file (missing parent directories are created). At most "
        f"{tool.max_bytes:,} bytes. Never writes through a symlink or inside `.git`."
        + _root_note(tool, "written")
    )


def _schema(param: Param) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": param.kind, "description": param.description}
    if param.kind == "array":
        schema["items"] = {"type": "string"}
    return schema


def schemas(policy: ToolPolicy) -> list[dict[str, Any]]:
    return [
        {
            "type": "function",
            "function": {
                "name": name,
                "description": describe(policy, name),
                "parameters": {
                    "type": "object",
                    "properties": {param.name: _schema(param) for param in PARAMS[name]},
                    "required": [param.name for param in PARAMS[name] if param.required],
                    "additionalProperties": False,
                },
            },
        }
        for name in policy.enabled
    ]


def parse_arguments(name: str, arguments: str | Mapping[str, Any] | None) -> dict[str, Any]:
    """The call's arguments, checked against PARAMS[name] (see the module contract)."""
    if arguments is None or (isinstance(arguments, str) and not arguments.strip()):
        value: object = {}
    elif isinstance(arguments, str):
        try:
            value = json.loads(arguments)
        except ValueError as exc:
            raise Failed(f"the arguments are not valid JSON ({exc}); send a JSON object") from exc
    else:
        value = arguments
    if value is None:
        value = {}
    if not isinstance(value, Mapping):
        raise Failed(f"the arguments must be a JSON object, got {type(value).__name__}")
    params = {param.name: param for param in PARAMS[name]}
    unknown = sorted(set(value) - set(params))
    if unknown:
        raise Failed(f"unknown argument `{unknown[0]}`; {name} takes: {', '.join(params)}")
    args: dict[str, Any] = {}
    for param in params.values():
        if param.name not in value or value[param.name] is None:
            if param.required:
                raise Failed(f"missing argument `{param.name}` ({param.kind})")
            continue
        item = value[param.name]
        expected = _PY_TYPES[param.kind]
        wrong = not isinstance(item, expected) or (expected is int and isinstance(item, bool))
        if param.name == "argv" and isinstance(item, str):
            wrong = False  # a command line: split with shlex by the shell tool
        if wrong:
            raise Failed(f"argument `{param.name}` must be {param.kind}, got {type(item).__name__}")
        args[param.name] = item
    return args
