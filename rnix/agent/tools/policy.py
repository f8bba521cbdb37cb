"""An agent's tool permissions: `ToolPolicy.from_json(task["tools"], task["workspace"])`.

The format (an agent definition's `tools:` mapping, passed unchanged in the task JSON; the workspace is
the absolute path of the agent's workspace root):

    tools:
      read_file: {}                 # {} or null = enabled with defaults
      list_dir: {}
      glob: {}
      grep: {}
      write_file: {root: out}       # optional `root`: a sub-directory of the workspace (default ".")
      shell: {allow: [ls, wc, git], timeout: 30, max_output: 65536}

Options per tool (a tool absent from the mapping is disabled):
  read_file   root (default "."), max_bytes (most bytes returned per call, default 65,536)
  list_dir    root, max_entries (most entries listed, default 200)
  glob        root, max_entries (most matches, default 200)
  grep        root, max_bytes (largest file searched, default 1 MiB), max_entries (most matches, 200)
  write_file  root, max_bytes (largest file written, default 1 MiB)
  shell       allow (required: non-empty list of bare program names), timeout (seconds, default 30),
              max_output (bytes of stdout+stderr returned, default 65,536)

`root` is relative to the workspace, without `..`; every path a tool touches must resolve inside it.
Shells and programs that run other programs (`sh`, `env`, `xargs`, `sudo`, ...: see
`shellrules.NEVER_ALLOWED`) cannot be allowed. Anything else that is wrong (an unknown tool or option,
a wrong type, a value out of range) is a ValueError naming the dotted key (`tools.shell.allow`), so
a bad agent definition fails before the agent does any work. `TOOL_OPTIONS` is the same vocabulary
as plain types for the definition validator (`float` also accepts an int there, as JSON does).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rnix.agent.tools.shellrules import NEVER_ALLOWED

TOOL_NAMES = ("read_file", "list_dir", "glob", "grep", "write_file", "shell")

TOOL_OPTIONS: dict[str, dict[str, type]] = {
    "read_file": {"root": str, "max_bytes": int, "allow_secrets": bool},
    "list_dir": {"root": str, "max_entries": int},
    "glob": {"root": str, "max_entries": int},
    "grep": {"root": str, "max_bytes": int, "max_entries": int, "allow_secrets": bool},
    "write_file": {"root": str, "max_bytes": int, "allow_secrets": bool},
    "shell": {"allow": list, "timeout": float, "max_output": int, "allow_secrets": bool},
}

MIB = 1 << 20
# Defaults per (tool, option), and the largest value accepted: larger is almost certainly a typo, and
# everything a tool returns ends up in the model's context.
_DEFAULT_BYTES = {"read_file": 65536, "grep": MIB, "write_file": MIB}
_MAX_BYTES = {"read_file": 16 * MIB, "grep": 64 * MIB, "write_file": 64 * MIB}
DEFAULT_ENTRIES, MAX_ENTRIES = 200, 10_000
DEFAULT_TIMEOUT, MAX_TIMEOUT = 30.0, 3600.0
DEFAULT_OUTPUT, MAX_OUTPUT = 65536, 16 * MIB

PROGRAM_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]*")


@dataclass(frozen=True)
class PathTool:
    """Options of a tool that works on paths (the fields a tool has no option for keep defaults)."""

    root: tuple[str, ...] = ()  # components relative to the workspace; () is the workspace itself
    max_bytes: int = MIB
    max_entries: int = DEFAULT_ENTRIES
    allow_secrets: bool = False  # may touch secret-bearing files (rnix.agent.tools.secretfiles)

    @property
    def root_text(self) -> str:
        return "/".join(self.root) or "."


@dataclass(frozen=True)
class ShellTool:
    allow: tuple[str, ...]
    timeout: float = DEFAULT_TIMEOUT
    max_output: int = DEFAULT_OUTPUT
    allow_secrets: bool = False  # may name secret-bearing files in its arguments


@dataclass(frozen=True)
class ToolPolicy:
    """What one agent may do. `workspace` is the real (symlink-free) absolute path of its root."""

    workspace: str
    read_file: PathTool | None = None
    list_dir: PathTool | None = None
    glob: PathTool | None = None
    grep: PathTool | None = None
    write_file: PathTool | None = None
    shell: ShellTool | None = None

    @property
    def enabled(self) -> tuple[str, ...]:
        return tuple(name for name in TOOL_NAMES if getattr(self, name) is not None)

    @classmethod
    def from_json(cls, obj: object, workspace: object) -> ToolPolicy:
        """Validate `task["tools"]` (a mapping or None: no tools) against an existing workspace."""
        real = _workspace(workspace)
        if obj is None:
            return cls(workspace=real)
        if not isinstance(obj, Mapping):
            raise ValueError(f"tools: must be a mapping of tool names to options, got {_kind(obj)}")
        tools: dict[str, Any] = {}
        for name, options in obj.items():
            if name not in TOOL_OPTIONS:
                raise ValueError(f"tools.{name}: unknown tool{_did_you_mean(str(name), TOOL_NAMES)}")
            if options is None:
                options = {}
            if not isinstance(options, Mapping):
                raise ValueError(f"tools.{name}: must be a mapping of options or null, got {_kind(options)}")
            for key in options:
                if key not in TOOL_OPTIONS[name]:
                    known = tuple(TOOL_OPTIONS[name])
                    raise ValueError(f"tools.{name}.{key}: unknown option{_did_you_mean(str(key), known)}")
            tools[name] = _shell(options) if name == "shell" else _path_tool(name, options)
        return cls(workspace=real, **tools)


def _workspace(workspace: object) -> str:
    if not isinstance(workspace, str) or not workspace.startswith("/") or "\0" in workspace:
        raise ValueError(f"workspace: must be an absolute path, got {workspace!r}")
    if not os.path.isdir(workspace):
        raise ValueError(f"workspace: {workspace} is not an existing directory")
    return os.path.realpath(workspace)


def _path_tool(name: str, options: Mapping[str, Any]) -> PathTool:
    root = _root(name, options.get("root", "."))
    max_bytes = _int(name, "max_bytes", options, _DEFAULT_BYTES.get(name, MIB), _MAX_BYTES.get(name, MIB))
    max_entries = _int(name, "max_entries", options, DEFAULT_ENTRIES, MAX_ENTRIES)
    allow_secrets = options.get("allow_secrets", False)
    if not isinstance(allow_secrets, bool):
        raise ValueError(f"tools.{name}.allow_secrets: must be true or false, got {_kind(allow_secrets)}")
    return PathTool(root=root, max_bytes=max_bytes, max_entries=max_entries, allow_secrets=allow_secrets)


def _root(name: str, value: object) -> tuple[str, ...]:
    key = f"tools.{name}.root"
    if not isinstance(value, str):
        raise ValueError(f"{key}: must be a string, got {_kind(value)}")
    if "\0" in value or value.startswith("/"):
        raise ValueError(f"{key}: must be a path relative to the workspace, got {value!r}")
    parts = tuple(part for part in value.split("/") if part not in ("", "."))
    if ".." in parts:
        raise ValueError(f"{key}: must stay inside the workspace (no `..`), got {value!r}")
    return parts


def _int(name: str, option: str, options: Mapping[str, Any], default: int, most: int) -> int:
    value = options.get(option, default)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"tools.{name}.{option}: must be an integer, got {_kind(value)}")
    if not 1 <= value <= most:
        raise ValueError(f"tools.{name}.{option}: must be between 1 and {most:,}, got {value:,}")
    return value


def _shell(options: Mapping[str, Any]) -> ShellTool:
    allow = options.get("allow")
    if allow is None:
        raise ValueError("tools.shell.allow: required: the list of programs the agent may run")
    if not isinstance(allow, list) or not allow:
        raise ValueError(f"tools.shell.allow: must be a non-empty list of program names, got {_kind(allow)}")
    names: list[str] = []
    for i, program in enumerate(allow):
        key = f"tools.shell.allow.{i}"
        if not isinstance(program, str) or not PROGRAM_NAME.fullmatch(program):
            raise ValueError(f"{key}: must be a bare program name such as `ls` (no path), got {program!r}")
        if program in NEVER_ALLOWED:
            raise ValueError(f"{key}: `{program}` {NEVER_ALLOWED[program]}, so it can never be allowed")
        if program not in names:
            names.append(program)
    timeout = options.get("timeout", DEFAULT_TIMEOUT)
    if not isinstance(timeout, (int, float)) or isinstance(timeout, bool):
        raise ValueError(f"tools.shell.timeout: must be a number of seconds, got {_kind(timeout)}")
    if not 0 < timeout <= MAX_TIMEOUT:
        raise ValueError(
            f"tools.shell.timeout: must be more than 0 and at most {MAX_TIMEOUT:g}, got {timeout}"
        )
    max_output = _int("shell", "max_output", options, DEFAULT_OUTPUT, MAX_OUTPUT)
    allow_secrets = options.get("allow_secrets", False)
    if not isinstance(allow_secrets, bool):
        raise ValueError(f"tools.shell.allow_secrets: must be true or false, got {_kind(allow_secrets)}")
    return ShellTool(
        allow=tuple(names), timeout=float(timeout), max_output=max_output, allow_secrets=allow_secrets
    )


def _kind(value: object) -> str:
    names = {type(None): "null", bool: "a boolean", int: "an integer", float: "a number", str: "a string"}
    return {**names, list: "a list", dict: "a mapping"}.get(type(value), type(value).__name__)


def _did_you_mean(word: str, choices: tuple[str, ...]) -> str:
    import difflib  # only on the error path

    close = difflib.get_close_matches(word, choices, n=1)
    hint = f" (did you mean `{close[0]}`?)" if close else ""
    return f"{hint}; known: {', '.join(choices)}"
