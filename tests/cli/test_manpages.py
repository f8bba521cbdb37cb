"""The man pages in man/ are what the code generates, render cleanly, and cover every command."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from rnix.cli.helptext import root_command, walk
from rnix.cli.manpage import ENVIRONMENT, pages
from rnix.cli.roff import escape

MAN = Path(__file__).resolve().parents[2] / "man"


def test_man_pages_match_the_command_tree() -> None:
    generated = pages()
    on_disk = {p.name: p.read_text(encoding="utf-8") for p in MAN.glob("*.[1-8]")}
    stale = sorted(name for name in generated if on_disk.get(name) != generated[name])
    extra = sorted(set(on_disk) - set(generated))
    assert not stale and not extra, (
        f"stale man pages {stale}, pages of no command {extra}: run python -m rnix.cli.manpage --write man/"
    )


def test_every_top_level_command_has_a_page_and_every_subcommand_a_section() -> None:
    generated = pages()
    for entry in walk(root_command()):
        depth = entry.path.count(" ")
        if depth == 1:
            assert entry.path.replace(" ", "-") + ".1" in generated, entry.path
            assert f"\\fB{entry.path}\\fR" in generated["rnix.1"], entry.path
        elif depth == 2 and not entry.is_group:
            page = generated[entry.path.rsplit(" ", 1)[0].replace(" ", "-") + ".1"]
            assert f".SS {entry.path}" in page, entry.path


def test_rnix_page_documents_exit_codes_and_environment() -> None:
    page = pages()["rnix.1"]
    for code in ("0", "1", "2", "130", "143"):
        assert f".TP\n\\fB{code}\\fR" in page
    for names, _meaning in ENVIRONMENT:
        assert ".TP\n\\fB" + escape(names) + "\\fR" in page
    assert "RNIX_HOME" in page and "RNIX_PROJECT_NAME" in page


def test_compose_yaml_page_lists_the_fields() -> None:
    page = pages()["rnix-compose.yaml.5"]
    for field in ("intent", "depends_on", "budget_pool", "output_quality", "stop_grace_period"):
        assert f".TP\n\\fB{field}\\fR" in page


def test_pages_render_with_groff_and_man() -> None:
    pages_on_disk = sorted(MAN.glob("*.[1-8]"))
    assert len(pages_on_disk) >= 3
    for page in pages_on_disk:
        out = subprocess.run(
            ["groff", "-man", "-Tascii", "-P", "-cbou", "-ww", str(page)], capture_output=True, text=True
        )
        assert out.returncode == 0 and "warning" not in out.stderr, (page, out.stderr)
        assert "\\f" not in out.stdout and "\\-" not in out.stdout, page  # no escape printed literally
    env = {**os.environ, "MANWIDTH": "100", "MANPAGER": "cat", "PAGER": "cat"}
    shown = subprocess.run(["man", "-l", str(MAN / "rnix.1")], capture_output=True, text=True, env=env)
    assert shown.returncode == 0, shown.stderr
    assert "EXIT STATUS" in shown.stdout and "ENVIRONMENT" in shown.stdout and "rnix compose" in shown.stdout
