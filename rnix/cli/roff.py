"""Just enough roff (man(7) macros) to write rnix's man pages, with text escaped for groff.

Text from help strings is escaped so that it prints as written: backslashes, hyphens (which groff
would otherwise turn into hyphenation points or typographic dashes) and lines that start with `.` or
`'` (which groff would read as requests).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from rnix import __version__
from rnix.cli.helptext import Block


def escape(text: str) -> str:
    out = text.replace("\\", "\\e").replace("-", "\\-")
    return "\n".join("\\&" + line if line.startswith((".", "'")) else line for line in out.splitlines())


def bold(text: str) -> str:
    return f"\\fB{escape(text)}\\fR"


def ref(page: str, section: str = "1") -> str:
    """A cross-reference like `rnix-compose(1)`."""
    return f"{bold(page)}({section})"


def header(title: str, section: str, summary: str) -> list[str]:
    return [
        f'.TH "{title.upper()}" "{section}" "" "rnix {__version__}" "rnix manual"',
        ".nh",  # no hyphenation and a ragged right edge: option names and paths stay whole
        ".ad l",
        ".SH NAME",
        f"{escape(title)} \\- {escape(summary)}",
    ]


def paragraphs(blocks: Iterable[Block]) -> list[str]:
    """Help paragraphs as roff: re-flowed ones as paragraphs, literal ones indented and unfilled."""
    out: list[str] = []
    for block in blocks:
        if block.literal:
            out += [".PP", ".RS 4", ".nf", escape(block.text), ".fi", ".RE"]
        else:
            out += [".PP", escape(block.text)]
    return out


def literal(text: str) -> list[str]:
    """An example (a file, a shell session) shown as written, indented."""
    return [".PP", ".RS 4", ".nf", escape(text), ".fi", ".RE"]


def definitions(items: Sequence[tuple[str, str]]) -> list[str]:
    """A tagged list: each term in bold, its description indented below."""
    out: list[str] = []
    for term, description in items:
        out += [".TP", bold(term), escape(description) if description else "\\&"]
    return out
