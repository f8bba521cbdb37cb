"""Agent definitions as data: the `agent.yaml` format, its validation, and how a definition applies.

A definition is a folder `agents/<name>/` with `agent.yaml` (checked against `DEFINITION`) and
`instructions.md` (required, non-empty; the agent's system instructions). `check_definition` turns
the parsed YAML tree plus the instructions text into an `AgentDefinition`, or reports every problem
at once as `FILE:LINE: key: message` (the same `Problem`s as compose files). Reading the files and
the search order (project, user, builtin) are the store's job (`rnix.store.definitions`).

`apply_definition` gives a compose agent its definition's defaults: `model`, `max_steps` and
`contract` apply unless the compose file set them (`AgentSpec.explicit`); the definition's `budget`
is applied by the plan, only when there is no budget pool (`rnix.core.plan`). Tools and
instructions come only from the definition, never from the compose file or upstream results.

The tool vocabulary (`TOOL_OPTIONS`) is the one agreed with `rnix.agent.tools`, which validates the
same mapping again inside the agent process.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import replace
from types import MappingProxyType
from typing import Any

from rnix.core.fields import AGENT_NAME, CONTRACT, definition_name, text
from rnix.core.jsonable import contract_as_dict
from rnix.core.model import AgentDefinition, AgentSpec, ComposeSpec
from rnix.core.problems import Problem, did_you_mean
from rnix.core.spec import build_contract
from rnix.core.types import (
    EXTENSION_PREFIX,
    INVALID,
    Bool,
    Checker,
    Duration,
    Field,
    Int,
    ListOf,
    Obj,
    Path,
    Str,
    Type,
    type_name,
)

INSTRUCTIONS_FILE = "instructions.md"
DEFINITION_FILE = "agent.yaml"

one_line = Str(pattern=r"[^\r\n]+", what="one line of text", max_length=200)
workspace_path = Str(
    # Relative, and no `..` segment: a tool root can narrow the workspace, never leave it.
    pattern=r"(?!/)(?!(?:.*/)?\.\.(?:/|$))[^\x00]+",
    what="a relative path inside the workspace (no leading '/', no '..')",
)
program = Str(
    pattern=r"[A-Za-z0-9_][A-Za-z0-9_.+-]*", what="a bare program name such as `ls` (no path, no spaces)"
)
MIB = 1 << 20


def _root() -> Field:
    return Field(workspace_path, "Sub-directory of the workspace the tool is confined to.", default=".")


def _max_bytes(most: int) -> Field:
    return Field(Int(minimum=1, maximum=most), "Most bytes one call reads (or writes).")


_max_entries = Field(Int(minimum=1, maximum=10_000), "Most entries (names, matches) one call returns.")
_allow_secrets = Field(
    Bool(),
    "May touch secret-bearing files (.env*, *.pem, *.key, id_*, .ssh/, ...); off by default.",
    default=False,
)

# The same names and ranges as `rnix.agent.tools.policy` (tests/core/test_definition.py checks).
TOOL_OPTIONS: Mapping[str, Obj] = MappingProxyType(
    {
        "read_file": Obj(
            {"root": _root(), "max_bytes": _max_bytes(16 * MIB), "allow_secrets": _allow_secrets}
        ),
        "list_dir": Obj({"root": _root(), "max_entries": _max_entries}),
        "glob": Obj({"root": _root(), "max_entries": _max_entries}),
        "grep": Obj(
            {
                "root": _root(),
                "max_bytes": _max_bytes(64 * MIB),
                "max_entries": _max_entries,
                "allow_secrets": _allow_secrets,
            }
        ),
        "write_file": Obj(
            {"root": _root(), "max_bytes": _max_bytes(64 * MIB), "allow_secrets": _allow_secrets}
        ),
        "shell": Obj(
            {
                "allow": Field(
                    ListOf(program, unique=True, min_items=1, label="a list of bare program names"),
                    "Programs the agent may run (argv[0], looked up on PATH; no shell syntax).",
                    required=True,
                ),
                "timeout": Field(Duration(), "Wall time after which one command is killed (at most 1h)."),
                "max_output": Field(
                    Int(minimum=1, maximum=16 * MIB), "Most bytes of output kept per command."
                ),
                "allow_secrets": Field(
                    Bool(),
                    "May name secret-bearing files (.env*, *.pem, .ssh/, ...) in arguments; off by default.",
                    default=False,
                ),
            }
        ),
    }
)
READ_ONLY_TOOLS = ("read_file", "list_dir", "glob", "grep")


class Tools(Type):
    """`tools:` — tool name -> options; `{}` or null means the tool with its defaults."""

    what: str = "a mapping of tool names to options"

    def check(self, value: object, path: Path, ck: Checker) -> Any:
        if value is None:
            return {}
        if not isinstance(value, dict):
            return self.wrong(value, path, ck)
        out: dict[str, Any] = {}
        ok = True
        for name, options in value.items():
            if not isinstance(name, str):
                ck.error(path, f"tool names must be strings, not {type_name(name)}")
                ok = False
                continue
            if name.startswith(EXTENSION_PREFIX):
                continue
            known = TOOL_OPTIONS.get(name)
            if known is None:
                hint = did_you_mean(name, TOOL_OPTIONS) or f" (known tools: {', '.join(TOOL_OPTIONS)})"
                ck.error((*path, name), f"unknown tool{hint}")
                ok = False
                continue
            out[name] = {} if options is None else known.check(options, (*path, name), ck)
            ok = ok and out[name] is not INVALID
        return out if ok else INVALID

    def schema(self) -> dict[str, Any]:
        return {
            "type": ["object", "null"],
            "properties": {n: {"anyOf": [{"type": "null"}, o.schema()]} for n, o in TOOL_OPTIONS.items()},
            "patternProperties": {"^x-": {}},
            "additionalProperties": False,
        }


DEFINITION = Obj(
    {
        "name": Field(definition_name, "The definition's name; must equal its folder's name.", True),
        "description": Field(one_line, "What the agent is for, in one line (`rnix agents` shows it).", True),
        "role": Field(one_line, "Who the agent is, e.g. 'a careful code reviewer'; opens its instructions."),
        "capabilities": Field(
            ListOf(Str(max_length=80), unique=True, label="a list of short strings"),
            "What it can do, as short phrases.",
        ),
        "model": Field(text, "Default model (a litellm model string, or 'mock'); the compose file's wins."),
        "tools": Field(Tools(), "Tools the built-in agent may use, with per-tool options; none when absent."),
        "max_steps": Field(Int(minimum=1, maximum=10_000), "Default most think/act steps."),
        "budget": Field(Int(minimum=1), "Default token budget (used without an explicit budget or a pool)."),
        "contract": Field(CONTRACT, "Default SLA contract (used when the compose agent has none)."),
    }
)


def check_definition(
    data: object,
    lines: Mapping[Path, int],
    *,
    file: str,
    folder: str,
    instructions: str | None,
    instructions_file: str,
    source: str = "builtin",
) -> tuple[AgentDefinition | None, list[Problem]]:
    """Validate one definition: `data` from `file` in folder `folder`, its instructions text (None
    when instructions.md is missing). Returns the definition, or None and every problem."""
    ck = Checker(file, lines)
    if data is None:
        ck.error((), "the file is empty: a definition needs at least `name:` and `description:`")
    elif isinstance(data, dict) and "instructions" in data:
        ck.error(("instructions",), f"instructions go in {INSTRUCTIONS_FILE} next to {DEFINITION_FILE}")
        data = {k: v for k, v in data.items() if k != "instructions"}
    checked = DEFINITION.check(data, (), ck) if data is not None else INVALID
    raw_name = data.get("name") if isinstance(data, dict) else None
    if isinstance(raw_name, str) and re.fullmatch(AGENT_NAME, raw_name) and raw_name != folder:
        ck.error(("name",), f"'{raw_name}' must equal the definition's folder name '{folder}'")
    problems = ck.problems + instructions_problems(instructions, instructions_file)
    if problems or checked is INVALID:
        return None, sorted(problems, key=lambda p: (p.file != file, p.line or 0, p.key))
    assert instructions is not None
    tools = {name: MappingProxyType(dict(options)) for name, options in checked.get("tools", {}).items()}
    return AgentDefinition(
        name=checked["name"],
        description=checked["description"],
        instructions=instructions.strip() + "\n",
        source=source,
        path=file,
        role=checked.get("role"),
        capabilities=tuple(checked.get("capabilities", ())),
        model=checked.get("model"),
        tools=MappingProxyType(tools),
        max_steps=checked.get("max_steps"),
        budget=checked.get("budget"),
        contract=build_contract(checked.get("contract")),
    ), []


def instructions_problems(instructions: str | None, file: str) -> list[Problem]:
    """instructions.md must exist (None: it does not) and hold more than white space."""
    if instructions is None:
        return [Problem(file, None, "", "missing: every definition needs its instructions")]
    if not instructions.strip():
        return [Problem(file, None, "", "is empty: write the agent's instructions here")]
    return []


def apply_definition(agent: AgentSpec, definition: AgentDefinition) -> AgentSpec:
    """`agent` with `definition`'s defaults for what the compose file left unset."""
    changes: dict[str, Any] = {"definition": definition}
    for key, value in (
        ("model", definition.model),
        ("max_steps", definition.max_steps),
        ("contract", definition.contract),
    ):
        if value is not None and key not in agent.explicit:
            changes[key] = value
    return replace(agent, **changes)


def apply_definitions(spec: ComposeSpec, definitions: Mapping[str, AgentDefinition]) -> ComposeSpec:
    """Resolve every `agent:` of `spec` and keep `definitions` (candidates resolve once chosen)."""
    agents = tuple(
        apply_definition(a, definitions[a.agent]) if a.agent and a.agent in definitions else a
        for a in spec.agents
    )
    return replace(spec, agents=agents, definitions=MappingProxyType(dict(definitions)))


def wanted(spec: ComposeSpec) -> list[tuple[str, Path]]:
    """Every definition `spec` names, with the key path of the naming entry (`agent` or a candidate)."""
    out: list[tuple[str, Path]] = []
    for agent in spec.agents:
        if agent.agent:
            out.append((agent.agent, ("agents", agent.name, "agent")))
        out += [(c, ("agents", agent.name, "candidates", i)) for i, c in enumerate(agent.candidates)]
    return out


def definition_prompt(definition: AgentDefinition | None) -> str | None:
    """What goes into the system message: the role line, then instructions.md; None without one."""
    if definition is None:
        return None
    role = f"Role: {definition.role}\n\n" if definition.role else ""
    return role + definition.instructions


def tools_as_json(definition: AgentDefinition | None) -> dict[str, dict[str, object]]:
    """The `tools` of the task JSON: plain dicts, {} without a definition."""
    if definition is None:
        return {}
    return {name: dict(options) for name, options in definition.tools.items()}


def definition_as_dict(definition: AgentDefinition, *, instructions: bool = False) -> dict[str, Any]:
    """The definition for `--json` output (instructions only on request: they can be long)."""
    out: dict[str, Any] = {
        "name": definition.name,
        "description": definition.description,
        "source": definition.source,
        "path": definition.path,
        "role": definition.role,
        "capabilities": list(definition.capabilities),
        "model": definition.model,
        "tools": tools_as_json(definition),
        "max_steps": definition.max_steps,
        "budget": definition.budget,
        "contract": contract_as_dict(definition.contract) if definition.contract else None,
    }
    if instructions:
        out["instructions"] = definition.instructions
    return out
