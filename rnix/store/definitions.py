"""Finding and loading agent definitions, and resolving the ones a compose file names.

Search order, first found wins (`search_path`):

1. `project`: `agents/` next to the compose file (for `rnix run` and `rnix agents`: the working
   directory, or the directory of `-f FILE`);
2. `user`: `<config home>/agents`, the config home being `$RNIX_CONFIG_HOME`, else
   `$XDG_CONFIG_HOME/rnix`, else `~/.config/rnix` (`Env.config_home`);
3. `builtin`: the library shipped with rnix (the repository's top-level `agents/`, installed as the
   package data `rnix/_agents`).

A folder `<root>/<name>/` is a definition when it holds `agent.yaml` or `instructions.md`; other
folders (a Python package called `agents`, `__pycache__`) are not. A definition found first shadows
those of the same name further down, even when it is invalid: a broken project definition is an
error, never a silent fall-back to the shipped one. Definitions are static files: no `${VAR}`
interpolation. A definition's tools are also put to the agent's own tool sandbox
(`rnix.agent.tools.policy`), so what it would refuse is reported now, with its line. Nothing here
prints; problems are returned (`Entry.problems`) or raised (`InvalidCompose`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from rnix.core.definition import (
    DEFINITION,
    DEFINITION_FILE,
    INSTRUCTIONS_FILE,
    apply_definitions,
    check_definition,
    instructions_problems,
    wanted,
)
from rnix.core.fields import AGENT_NAME, AGENT_NAME_MAX
from rnix.core.model import AgentDefinition, ComposeSpec
from rnix.core.problems import Problem, did_you_mean
from rnix.core.types import INVALID, Checker
from rnix.core.types import Path as KeyPath
from rnix.errors import InvalidCompose
from rnix.store.yaml_lines import MAX_BYTES, load_yaml

MAX_INSTRUCTIONS = 64 * 1024  # instructions go with every model call: more is almost surely a mistake
# A symlink to the repository's agents/ (so an editable install sees edits), a copy in a wheel.
BUILTIN_DIR = (Path(__file__).resolve().parent.parent / "_agents").resolve()


@dataclass(frozen=True)
class Root:
    """One directory of the search path."""

    source: str  # project | user | builtin
    directory: Path


@dataclass(frozen=True)
class Entry:
    """One definition folder, loaded: its definition, or the problems that stop it loading."""

    name: str
    source: str
    folder: Path
    shown: str  # agent.yaml as messages show it
    definition: AgentDefinition | None
    problems: tuple[Problem, ...]
    shadowed_by: str | None = None  # the source of the definition that wins over this one


def search_path(project_dir: Path | None, config_home: Path) -> tuple[Root, ...]:
    """The directories searched, in order; one directory reached twice counts once (the first)."""
    roots = [Root("user", config_home / "agents"), Root("builtin", BUILTIN_DIR)]
    if project_dir is not None:
        roots.insert(0, Root("project", project_dir / "agents"))
    seen: set[str] = set()
    out = []
    for root in roots:
        real = os.path.realpath(root.directory)
        if real not in seen:
            seen.add(real)
            out.append(root)
    return tuple(out)


class Library:
    """The definitions reachable through `roots`; files are read only when asked for."""

    def __init__(self, roots: tuple[Root, ...], cwd: Path) -> None:
        self.roots = roots
        self.cwd = cwd

    def names(self) -> set[str]:
        return {folder.name for root in self.roots for folder in _folders(root.directory)}

    def find(self, name: str) -> Entry | None:
        """The definition `name` as the search order finds it, or None when no root has it."""
        for root in self.roots:
            folder = root.directory / name
            if _is_definition(folder):
                return self._load(root, folder)
        return None

    def entries(self) -> list[Entry]:
        """Every definition folder of every root, by name, then in search order (shadowed ones marked)."""
        winner: dict[str, str] = {}
        out = []
        for root in self.roots:
            for folder in _folders(root.directory):
                entry = self._load(root, folder)
                if folder.name in winner:
                    entry = replace(entry, shadowed_by=winner[folder.name])
                winner.setdefault(folder.name, root.source)
                out.append(entry)
        order = {root.source: i for i, root in enumerate(self.roots)}
        return sorted(out, key=lambda e: (e.name, order[e.source]))

    def show(self, path: Path) -> str:
        """A path as messages show it: relative to the working directory when inside it."""
        relative = os.path.relpath(path, self.cwd)
        return str(path) if relative.startswith("..") else relative

    def _load(self, root: Root, folder: Path) -> Entry:
        name, shown = folder.name, self.show(folder / DEFINITION_FILE)
        shown_instructions = self.show(folder / INSTRUCTIONS_FILE)
        instructions, unread = _read_text(folder / INSTRUCTIONS_FILE, shown_instructions, MAX_INSTRUCTIONS)
        problems = unread or instructions_problems(instructions, shown_instructions)
        # Once reported, instructions.md is passed on as a stand-in so its problems are not repeated.
        stand_in = instructions if not problems else "(reported)"
        if not re.fullmatch(AGENT_NAME, name) or len(name) > AGENT_NAME_MAX:
            why = "is not a definition name (lower-case letters, digits, '-' and '_', at most 63)"
            problems.append(Problem(self.show(folder), None, "", f"the folder name '{name}' {why}"))
        raw, read_problems = _read_bytes(folder / DEFINITION_FILE, shown)
        tree = load_yaml(raw, shown) if raw is not None else None
        definition = None
        if tree is None or tree.problems:
            problems += [*read_problems, *(tree.problems if tree else ())]
        else:
            definition, found = check_definition(
                tree.data,
                tree.lines,
                file=shown,
                folder=name,
                instructions=stand_in,
                instructions_file=shown_instructions,
                source=root.source,
            )
            problems += found
            tools = _checked_tools(tree.data, shown)
            if tools and not any(p.key.startswith("tools") for p in found):
                problems += _sandbox_problems(tools, tree.lines, shown, folder)
        if problems:
            problems.sort(key=lambda p: (p.file != shown, p.file, p.line or 0, p.key))
            return Entry(name, root.source, folder, shown, None, tuple(problems))
        return Entry(name, root.source, folder, shown, definition, ())


def resolve_definitions(spec: ComposeSpec, library: Library, lines: Mapping[KeyPath, int]) -> ComposeSpec:
    """`spec` with every `agent:` resolved and every named definition (candidates too) attached.

    An unknown or invalid definition is a problem at the naming line, with "did you mean"; an invalid
    one's own problems follow. All are raised together as `InvalidCompose`.
    """
    names = wanted(spec)
    if not names:
        return spec
    found, problems = find_definitions(names, library, lines, spec.file)
    if problems:
        raise InvalidCompose(spec.file, problems, DEFINITIONS_HINT)
    return apply_definitions(spec, found)


DEFINITIONS_HINT = "fix the lines above; `rnix agents` lists the definitions and where they are"


def find_definitions(
    names: list[tuple[str, KeyPath]], library: Library, lines: Mapping[KeyPath, int], file: str
) -> tuple[dict[str, AgentDefinition], list[Problem]]:
    """The valid definitions among `names`, and the problems: the naming lines first (in line order),
    then each invalid definition's own problems."""
    ck = Checker(file, lines)
    found: dict[str, AgentDefinition] = {}
    broken: dict[str, Entry] = {}
    known: set[str] | None = None
    for name, path in names:
        if name in found:
            continue
        entry = broken[name] if name in broken else library.find(name)
        if entry is None:
            known = library.names() if known is None else known
            ck.error(path, f"unknown agent definition '{name}'{did_you_mean(name, known)}")
        elif entry.definition is None:
            ck.error(path, f"agent definition '{name}' ({entry.shown}) is invalid")
            broken[name] = entry
        else:
            found[name] = entry.definition
    problems = sorted(ck.problems, key=lambda p: (p.line or 0, p.key))
    problems += [p for entry in broken.values() for p in entry.problems]
    return found, problems


def named_in(data: object) -> list[tuple[str, KeyPath]]:
    """The definitions a compose tree that did not validate names (`agent:` and `candidates:`), so
    their problems can be reported with the file's own."""
    agents = data.get("agents") if isinstance(data, dict) else None
    out: list[tuple[str, KeyPath]] = []
    for name, body in agents.items() if isinstance(agents, dict) else ():
        if not isinstance(name, str) or not isinstance(body, dict):
            continue
        if isinstance(body.get("agent"), str) and body["agent"]:
            out.append((body["agent"], ("agents", name, "agent")))
        candidates = body.get("candidates")
        for i, candidate in enumerate(candidates if isinstance(candidates, list) else ()):
            if isinstance(candidate, str) and candidate:
                out.append((candidate, ("agents", name, "candidates", i)))
    return out


def _checked_tools(data: object, shown: str) -> dict[str, Any] | None:
    """The `tools:` mapping as the task will carry it, when it passes the definition's own check."""
    if not isinstance(data, dict) or not data.get("tools"):
        return None
    tools = DEFINITION.fields["tools"].type.check(data["tools"], ("tools",), Checker(shown, {}))
    return None if tools is INVALID else dict(tools)


def _sandbox_problems(
    tools: Mapping[str, Any], lines: Mapping[KeyPath, int], shown: str, folder: Path
) -> list[Problem]:
    """What the agent's tool sandbox would refuse (`sh` in `shell.allow`, a timeout over an hour),
    found now, with its line, rather than when the agent starts. The definition folder stands in for
    the workspace: only the options are checked here."""
    from rnix.agent.tools.policy import ToolPolicy

    try:
        ToolPolicy.from_json(tools, str(folder.resolve()))
    except ValueError as exc:
        key, _, message = str(exc).partition(": ")
        path = tuple(int(part) if part.isdigit() else part for part in key.split("."))
        ck = Checker(shown, lines)
        ck.error(path, message)
        return ck.problems
    return []


def _is_definition(folder: Path) -> bool:
    return folder.is_dir() and ((folder / DEFINITION_FILE).exists() or (folder / INSTRUCTIONS_FILE).exists())


def _folders(directory: Path) -> list[Path]:
    try:
        children = sorted(directory.iterdir())
    except OSError:  # missing or unreadable: nothing found there (`rnix agents` shows the search path)
        return []
    return [c for c in children if not c.name.startswith((".", "_")) and _is_definition(c)]


def _read_bytes(path: Path, shown: str, limit: int = MAX_BYTES) -> tuple[bytes | None, list[Problem]]:
    try:
        with path.open("rb") as handle:
            raw = handle.read(limit + 1)
    except FileNotFoundError:
        return None, [Problem(shown, None, "", "missing: a definition needs name and description here")]
    except OSError as exc:
        reason = "permission denied" if isinstance(exc, PermissionError) else exc.strerror or str(exc)
        return None, [Problem(shown, None, "", f"cannot read the file: {reason}")]
    if len(raw) > limit:
        return None, [Problem(shown, None, "", f"file is larger than {limit // 1024} KiB")]
    return raw, []


def _read_text(path: Path, shown: str, limit: int) -> tuple[str | None, list[Problem]]:
    """The file's text; None (and no problem) when it is missing, so the caller can say so once."""
    if not path.exists():
        return None, []
    raw, problems = _read_bytes(path, shown, limit)
    if raw is None:
        return "", problems
    try:
        return raw.decode("utf-8-sig"), []
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        return "", [Problem(shown, line, "", "not valid UTF-8; save as UTF-8")]
