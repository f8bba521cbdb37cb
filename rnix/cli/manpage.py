"""Man pages generated from the click command tree: `rnix.1` and one page per command group.

`python -m rnix.cli.manpage --write man/` refreshes them; `tests/cli/test_manpages.py` fails when a
page in man/ differs from what the code generates.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from rnix import __version__

EXIT_STATUS = (
    ("0", "Success."),
    ("1", "The run did not fully succeed (an agent failed), or an internal error."),
    ("2", "Usage error or invalid compose file; nothing was run and no state was written."),
    ("130", "Interrupted by SIGINT (Ctrl-C)."),
    ("143", "Terminated by SIGTERM."),
)
ENVIRONMENT = (
    (
        "RNIX_HOME",
        "Where rnix keeps its state database (default: $XDG_STATE_HOME/rnix, else ~/.local/state/rnix).",
    ),
    ("RNIX_PROJECT_NAME", "Project name when -p is not given (beats name: in the compose file)."),
    ("XDG_STATE_HOME", "Base of the default RNIX_HOME."),
    (
        "*_API_KEY, *_TOKEN, *_SECRET",
        "Provider credentials. rnix reads them, masks their values as *** in all output and never passes "
        "them to agents unless the compose file lists them under environment.",
    ),
)


def _escape(text: str) -> str:
    out = text.replace("\\", "\\e").replace("-", "\\-")
    return "\n".join("\\&" + line if line.startswith((".", "'")) else line for line in out.splitlines())


def _paragraphs(help_text: str) -> list[str]:
    text = help_text.replace("\b\n", "")
    return [" ".join(p.split()) for p in text.split("\n\n") if p.strip()]


def _options(ctx: click.Context, command: click.Command) -> list[str]:
    out = []
    for param in command.get_params(ctx):
        record = param.get_help_record(ctx)
        if record is None:
            continue
        out += [".TP", f"\\fB{_escape(record[0])}\\fR", _escape(record[1] or "")]
    return out


def _command_section(ctx: click.Context, command: click.Command, path: str) -> list[str]:
    usage = " ".join(command.collect_usage_pieces(ctx))
    out = [".SS " + _escape(path), f"\\fB{_escape(path)}\\fR {_escape(usage)}", ".PP"]
    for para in _paragraphs(command.help or ""):
        out += [_escape(para), ".PP"]
    return out + _options(ctx, command)


def render(group: click.Group, path: str, section: str = "1", top: bool = False) -> str:
    """The roff source of the page for `group` (invoked as `path`)."""
    ctx = click.Context(group, info_name=path)
    title = path.replace(" ", "-")
    paragraphs = _paragraphs(group.help or "")
    summary = paragraphs[0].rstrip(".") if paragraphs else ""
    lines = [
        f'.TH "{title.upper()}" "{section}" "" "rnix {__version__}" "rnix manual"',
        ".SH NAME",
        f"{_escape(title)} \\- {_escape(summary)}",
        ".SH SYNOPSIS",
        f"\\fB{_escape(path)}\\fR {_escape(' '.join(group.collect_usage_pieces(ctx)))}",
        ".SH DESCRIPTION",
    ]
    for para in paragraphs[1:] or paragraphs:
        lines += [_escape(para), ".PP"]
    options = _options(ctx, group)
    if options:
        lines += [".SH OPTIONS", *options]
    lines.append(".SH COMMANDS")
    for name in group.list_commands(ctx):
        sub = group.get_command(ctx, name)
        assert sub is not None
        sub_ctx = click.Context(sub, info_name=name, parent=ctx)
        if isinstance(sub, click.Group) and not top:
            continue
        if isinstance(sub, click.Group):
            lines += [".TP", f"\\fB{_escape(path)} {name}\\fR", f"See \\fB{title}\\-{name}\\fR(1)."]
            continue
        lines += _command_section(sub_ctx, sub, f"{path} {name}")
    if top:
        lines.append(".SH EXIT STATUS")
        for code, meaning in EXIT_STATUS:
            lines += [".TP", f"\\fB{code}\\fR", _escape(meaning)]
        lines.append(".SH ENVIRONMENT")
        for name, meaning in ENVIRONMENT:
            lines += [".TP", f"\\fB{_escape(name)}\\fR", _escape(meaning)]
    lines += [".SH SEE ALSO", "\\fBrnix\\fR(1), \\fBrnix\\-compose\\fR(1)"]
    return "\n".join(lines) + "\n"


def pages() -> dict[str, str]:
    """File name -> roff source for every page."""
    from rnix.cli.main import cli

    out = {"rnix.1": render(cli, "rnix", top=True)}
    ctx = click.Context(cli, info_name="rnix")
    for name in cli.list_commands(ctx):
        sub = cli.get_command(ctx, name)
        if isinstance(sub, click.Group):
            out[f"rnix-{name}.1"] = render(sub, f"rnix {name}")
    return out


if __name__ == "__main__":  # pragma: no cover - a maintenance command
    if len(sys.argv) != 3 or sys.argv[1] != "--write":
        sys.exit("usage: python -m rnix.cli.manpage --write DIR")
    target = Path(sys.argv[2])
    for file_name, source in pages().items():
        (target / file_name).write_text(source, encoding="utf-8")
