"""`execute(policy, name, arguments)`: run one tool call the model made; never raises for its mistakes.

Contract: every outcome is a ToolResult. An unknown or disabled tool, or a call the sandbox refuses,
is a denial (`denied` True; nothing was run or opened). Bad arguments (not JSON, wrong types, missing
ones), a missing file, a failing command: `ok` False with the reason. An unexpected exception inside
a tool is reported the same way (with its type) rather than ending the agent. The shell tool's
module (subprocess, ctypes) is imported only when a command is run.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from rnix.agent.tools import files, search
from rnix.agent.tools.policy import TOOL_NAMES, ToolPolicy
from rnix.agent.tools.result import Denied, Failed, ToolResult, denial, failure
from rnix.agent.tools.schemas import parse_arguments

Tool = Callable[[ToolPolicy, dict[str, Any]], ToolResult]


def _shell(policy: ToolPolicy, args: dict[str, Any]) -> ToolResult:
    from rnix.agent.tools.shell import shell

    return shell(policy, args)


TOOLS: dict[str, Tool] = {
    "read_file": files.read_file,
    "list_dir": files.list_dir,
    "glob": search.glob,
    "grep": search.grep,
    "write_file": files.write_file,
    "shell": _shell,
}


def describe_call(name: str, args: Mapping[str, Any]) -> str:
    """`read_file src/app.py`, `shell git log -n 5`: the call, for the log line."""
    if name == "shell":
        argv = args.get("argv")
        if isinstance(argv, list):
            import shlex

            return f"shell {shlex.join(str(item) for item in argv)}"
        return f"shell {argv}"
    for key in ("path", "pattern"):
        if isinstance(args.get(key), str):
            return f"{name} {args[key]}"
    return name


def execute(policy: ToolPolicy, name: str, arguments: str | Mapping[str, Any] | None) -> ToolResult:
    """Run tool `name` with `arguments` (the JSON text of the model's call, or an already parsed
    object) under `policy`."""
    if name not in TOOL_NAMES or name not in policy.enabled:
        what = "is not a tool" if name not in TOOL_NAMES else "is not enabled"
        have = ", ".join(policy.enabled) or "none"
        return denial(f"`{name}` {what} for this agent (its tools: {have})", str(name))
    try:
        args = parse_arguments(name, arguments)
    except Failed as exc:
        return failure(str(exc), f"{name} -> bad arguments: {exc}")
    call = describe_call(name, args)
    try:
        return TOOLS[name](policy, args)
    except Denied as exc:
        return denial(str(exc), call)
    except Failed as exc:
        return failure(str(exc), f"{call} -> error: {exc}")
    except OSError as exc:
        message = f"{exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else "")
        return failure(message, f"{call} -> error: {message}")
    except Exception as exc:  # a bug in a tool must not end the agent; the log line says what
        return failure(
            f"internal error in {name}: {type(exc).__name__}: {exc}", f"{call} -> internal error: {exc!r}"
        )
