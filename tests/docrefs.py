"""Reading the docs for tests: `rnix ...` command lines, relative links and their targets.

`command_lines(markdown)` finds the rnix commands a page shows: in shell code blocks (```sh,
```console, or no language) and in inline code spans, also inside ```text blocks and tables. A
command runs from `rnix` (or `.venv/bin/rnix`) to the next shell separator. `unresolved(root, line)`
walks one such line through the click tree and says what it could not resolve.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click

SHELL_LANGS = ("", "sh", "bash", "shell", "console")
_FENCE = re.compile(r"^```([a-z]*)\n(.*?)^```$", re.M | re.S)
_SPAN = re.compile(r"`([^`\n]+)`")
_SEPARATORS = re.compile(r"&&|\|\||\$\(|[|;()#<>`]")
_PLACEHOLDER = re.compile(r"[A-Z][A-Z_.]*(\.\.\.)?|\.\.\.|\{[a-z|]+\}")
_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _segments(text: str) -> list[str]:
    text = text.replace("\\|", "|")  # Markdown tables escape pipes
    return [part.strip() for part in _SEPARATORS.split(text)]


def command_lines(markdown: str) -> list[str]:
    """Every `rnix ...` command in `markdown`, from its first argument on (`compose up -d`)."""
    texts: list[str] = []
    for lang, body in _FENCE.findall(markdown):
        if lang in SHELL_LANGS:
            texts += [line for line in body.splitlines() if not line.lstrip().startswith("#")]
        elif lang == "text":
            texts += _SPAN.findall(body)
    prose = _FENCE.sub("", markdown)
    texts += _SPAN.findall(prose)
    out = []
    for text in texts:
        for segment in _segments(text):
            words = segment.split()
            while words and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=\S*", words[0]):
                words.pop(0)  # VAR=value rnix ...
            if words and (words[0] == "rnix" or words[0].endswith("/rnix")):
                out.append(" ".join(words[1:]))
    return out


def _words(line: str) -> list[str]:
    try:
        words = shlex.split(line)
    except ValueError:  # an unbalanced quote in a fragment: plain words are good enough
        words = line.split()
    return [w.strip("[],") for w in words if w.strip("[],")]


def _option(command: click.Command, ctx: click.Context, word: str) -> click.Parameter | None:
    name = word.split("=", 1)[0]
    for param in command.get_params(ctx):
        if isinstance(param, click.Option) and name in (*param.opts, *param.secondary_opts):
            return param
    return None


def unresolved(root: click.Group, line: str) -> list[str]:
    """What in `rnix <line>` is not a command or option of the click tree (empty when all is)."""
    problems = []
    command: click.Command = root
    ctx = click.Context(root, info_name="rnix")
    words = _words(line)
    i = 0
    while i < len(words):
        word = words[i]
        i += 1
        if word.startswith("-") and len(word) > 1:
            param = _option(command, ctx, word)
            if param is None:
                problems.append(f"{ctx.command_path}: no option {word}")
            elif (
                isinstance(param, click.Option) and not param.is_flag and not param.count and "=" not in word
            ):
                i += 1  # its value
            continue
        if isinstance(command, click.Group):
            sub = command.get_command(ctx, word)
            if sub is not None:
                command, ctx = sub, click.Context(sub, info_name=word, parent=ctx)
            elif command is root and (" " in word or _PLACEHOLDER.fullmatch(word)):
                command, ctx = root.commands["run"], click.Context(root.commands["run"], parent=ctx)
            elif not _PLACEHOLDER.fullmatch(word):
                problems.append(f"{ctx.command_path}: no command {word!r}")
                break
    return problems


def relative_links(markdown: str) -> list[str]:
    """Link targets that are files of this repository (not URLs), with their #anchors."""
    prose = _SPAN.sub("", _FENCE.sub("", markdown))  # `[text](url)` in code is an example, not a link
    return [t for t in _LINK.findall(prose) if not re.match(r"[a-z]+:", t)]


def anchors(markdown: str) -> set[str]:
    """GitHub's anchors for the headings of a Markdown page."""
    out = set()
    for heading in re.findall(r"^#{1,6} (.+)$", _FENCE.sub("", markdown), re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        out.add(slug)
    return out


def resolve_link(page: Path, target: str) -> tuple[Path, str]:
    path, _, anchor = target.partition("#")
    return ((page.parent / path).resolve() if path else page), anchor
