"""`rnix agents [NAME]`: the agent definitions a compose file can name, and where each comes from.

Without NAME: every definition of the search path (project, user, builtin; docs/agents.md), shadowed
ones marked. With NAME: that definition in full, instructions included. Invalid definitions are
listed too; then every problem is reported at once (`FILE:LINE: key: message`) and the exit status
is 1 (`InvalidDefinition`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from rnix.env import Env
from rnix.errors import ExitCode, InvalidDefinition, RnixError
from rnix.ui import jsonout

if TYPE_CHECKING:
    from rnix.store.definitions import Entry, Library


@click.command("agents")
@click.argument("name", required=False)
@click.option(
    "-f",
    "--file",
    "file",
    metavar="FILE",
    help="Include the agents/ next to this compose file (default: ./agents).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout.")
@click.pass_obj
def agents_cmd(env: Env, name: str | None, file: str | None, as_json: bool) -> int:
    """List the agent definitions (project, user, builtin), or show one in full.

    A compose agent names one with `agent: NAME` or `candidates: [NAME, ...]`. The first found wins:
    agents/ next to the compose file, then $RNIX_CONFIG_HOME/agents (default
    ~/.config/rnix/agents), then the definitions shipped with rnix. Exit status 1 when a definition
    is invalid (every problem is printed).
    """
    from rnix.cli.compose import library

    project = (env.cwd / file).parent if file else env.cwd
    lib = library(env, Path(project))
    if name is None:
        return _list(env, lib, as_json)
    return _show(env, lib, name, as_json)


def _list(env: Env, lib: Library, as_json: bool) -> int:
    entries = lib.entries()
    search = [{"source": r.source, "path": str(r.directory)} for r in lib.roots]
    if as_json:
        problems = [p for e in entries for p in e.problems]
        if problems:
            raise _invalid(entries)
        jsonout.write_ok(env.stdout, {"search_path": search, "agents": [_entry_dict(e) for e in entries]})
        return ExitCode.OK
    if entries:
        _render_list(env, entries)
    else:
        env.stderr.write("rnix: no agent definitions found\n")
    env.stderr.write(
        "search order: " + " · ".join(f"{r['source']} {lib.show(Path(r['path']))}" for r in search) + "\n"
    )
    if any(e.problems for e in entries):
        raise _invalid(entries)
    return ExitCode.OK


def _show(env: Env, lib: Library, name: str, as_json: bool) -> int:
    from rnix.core.problems import did_you_mean

    matching = [e for e in lib.entries() if e.name == name]
    if not matching:
        raise RnixError(
            f"unknown agent definition '{name}'{did_you_mean(name, lib.names())}",
            "`rnix agents` lists the definitions",
        )
    entry, shadowed = matching[0], matching[1:]
    if entry.definition is None:
        raise InvalidDefinition(f"agent definition '{name}' is invalid", entry.problems)
    if as_json:
        data = _entry_dict(entry, instructions=True)
        data["shadows"] = [{"source": e.source, "path": e.shown} for e in shadowed]
        jsonout.write_ok(env.stdout, data)
        return ExitCode.OK
    _render_detail(env, entry, shadowed)
    return ExitCode.OK


def _invalid(entries: list[Entry]) -> InvalidDefinition:
    bad = [e for e in entries if e.problems]
    noun = "definition is" if len(bad) == 1 else "definitions are"
    names = ", ".join(f"{e.name} ({e.source})" for e in bad)
    return InvalidDefinition(
        f"{len(bad)} agent {noun} invalid: {names}", [p for e in bad for p in e.problems]
    )


def _entry_dict(entry: Entry, instructions: bool = False) -> dict[str, Any]:
    from rnix.core.definition import definition_as_dict

    out: dict[str, Any] = {"name": entry.name, "source": entry.source, "path": entry.shown}
    if entry.definition is not None:
        out.update(definition_as_dict(entry.definition, instructions=instructions))
    out.update(valid=entry.definition is not None, shadowed_by=entry.shadowed_by)
    return out


def _render_list(env: Env, entries: list[Entry]) -> None:
    from rich.table import Table
    from rich.text import Text

    from rnix.ui.render import console
    from rnix.ui.text import inert

    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("NAME", "SOURCE", "MODEL", "TOOLS", "DESCRIPTION"):
        table.add_column(column, no_wrap=column != "DESCRIPTION")
    for entry in entries:
        d = entry.definition
        source = entry.source + (f" (shadowed by {entry.shadowed_by})" if entry.shadowed_by else "")
        description = Text(inert(d.description)) if d else Text(f"invalid: {len(entry.problems)} problem(s)")
        if d is None:
            description.stylize("red")
        row = [
            Text(inert(entry.name), style="dim" if entry.shadowed_by else "bold"),
            Text(source, style="dim" if entry.shadowed_by else ""),
            Text(inert(d.model or "-") if d else "-"),
            Text(_tools_text(d.tools) if d else "-"),
            description,
        ]
        table.add_row(*row)
    console(env).print(table)


def _render_detail(env: Env, entry: Entry, shadowed: list[Entry]) -> None:
    from rnix.ui.text import inert

    d = entry.definition
    assert d is not None
    lines = [
        f"name: {d.name}",
        f"description: {d.description}",
        f"source: {entry.source} ({entry.shown})",
        *(f"shadows: {e.source} ({e.shown})" for e in shadowed),
        f"role: {d.role or '-'}",
        f"capabilities: {', '.join(d.capabilities) or '-'}",
        f"model: {d.model or '- (the compose file decides)'}",
        f"max_steps: {d.max_steps if d.max_steps is not None else '-'}",
        f"budget: {f'{d.budget:,}' if d.budget is not None else '-'}",
        f"contract: {_contract_text(d.contract) if d.contract else '-'}",
        "tools:" if d.tools else "tools: -",
        *(f"  {tool}: {_options_text(options)}" for tool, options in d.tools.items()),
        "",
        "instructions:",
    ]
    text = "\n".join(inert(line) for line in lines) + "\n" + inert(d.instructions, one_line=False)
    env.stdout.write(text if text.endswith("\n") else text + "\n")


def _tools_text(tools: Any) -> str:
    """`read-only`, or the read tools as `read` and the others by name: `read, write_file, shell`."""
    from rnix.core.definition import READ_ONLY_TOOLS

    reads = [t for t in tools if t in READ_ONLY_TOOLS]
    others = [t for t in tools if t not in READ_ONLY_TOOLS]
    if not others:
        return "read-only" if reads else "-"
    return ", ".join((["read"] if reads else []) + others)


def _options_text(options: Any) -> str:
    return ", ".join(f"{k}={v}" for k, v in options.items()) or "defaults"


def _contract_text(contract: Any) -> str:
    from rnix.core.jsonable import contract_as_dict

    return ", ".join(f"{k}={v}" for k, v in contract_as_dict(contract).items())
