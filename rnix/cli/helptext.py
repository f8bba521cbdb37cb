"""Reading the click command tree for generated docs: every command path, its usage, help and options.

Shared by the man pages (`manpage.py`) and the Markdown CLI reference (`clidoc.py`), so both say the
same thing as `--help`. Help text follows click's conventions: paragraphs are separated by blank lines,
a paragraph after a line holding only `\\b` keeps its line breaks, and `\\f` ends the help.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from dataclasses import dataclass

import click


@dataclass(frozen=True)
class Block:
    """One paragraph of help text; `literal` ones keep their lines (click's `\\b`)."""

    text: str
    literal: bool = False


@dataclass(frozen=True)
class Entry:
    """One command of the tree, with the context click would give it."""

    path: str  # "rnix compose up"
    command: click.Command
    ctx: click.Context

    @property
    def is_group(self) -> bool:
        return isinstance(self.command, click.Group)

    @property
    def usage(self) -> str:
        return " ".join(self.command.collect_usage_pieces(self.ctx))

    @property
    def blocks(self) -> list[Block]:
        return blocks(self.command.help or "")

    @property
    def summary(self) -> str:
        """The first paragraph without its final full stop (man NAME lines, tables)."""
        first = self.blocks[:1]
        return first[0].text.rstrip(".") if first else ""

    @property
    def options(self) -> list[tuple[str, str]]:
        """(`-f, --file FILE`, help) for every option that --help shows (arguments are in the usage)."""
        out = []
        for param in self.command.get_params(self.ctx):
            record = param.get_help_record(self.ctx) if isinstance(param, click.Option) else None
            if record is not None:
                out.append((record[0], record[1] or ""))
        return out


def blocks(help_text: str) -> list[Block]:
    """Split click help text into paragraphs (re-flowed) and `\\b` literal blocks (kept as written)."""
    out = []
    for raw in inspect.cleandoc(help_text.split("\f", 1)[0]).split("\n\n"):
        if not raw.strip():
            continue
        if raw.lstrip("\n").startswith("\b\n"):
            out.append(Block(raw.lstrip("\n")[2:].rstrip(), literal=True))
        else:
            out.append(Block(" ".join(raw.split())))
    return out


def walk(root: click.Command, name: str = "rnix") -> Iterator[Entry]:
    """Every command under `root` (root first, then depth-first in click's listing order)."""
    yield from _walk(root, name, None)


def _walk(command: click.Command, path: str, parent: click.Context | None) -> Iterator[Entry]:
    settings = dict(command.context_settings)  # e.g. -h as well as --help, as on the command line
    ctx = click.Context(command, info_name=path.rsplit(" ", 1)[-1], parent=parent, **settings)
    yield Entry(path, command, ctx)
    if isinstance(command, click.Group):
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            if sub is not None and not sub.hidden:
                yield from _walk(sub, f"{path} {name}", ctx)


def root_command() -> click.Group:
    """The `rnix` group (imported late: the CLI module imports every command module)."""
    from rnix.cli.main import cli

    return cli
