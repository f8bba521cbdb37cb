from __future__ import annotations

import subprocess
from pathlib import Path

from rnix.cli.manpage import pages

MAN = Path(__file__).resolve().parents[2] / "man"


def test_man_pages_match_the_command_tree() -> None:
    generated = pages()
    on_disk = {p.name: p.read_text(encoding="utf-8") for p in MAN.glob("*.[1-8]")}
    stale = sorted(name for name in generated if on_disk.get(name) != generated[name])
    assert not stale, f"stale man pages {stale}: run python -m rnix.cli.manpage --write man/"


def test_rnix_page_documents_exit_codes_environment_and_every_command() -> None:
    page = pages()["rnix.1"]
    for code in ("0", "1", "2", "130", "143"):
        assert f".TP\n\\fB{code}\\fR" in page
    assert "RNIX_HOME" in page and "RNIX_PROJECT_NAME" in page
    compose = pages()["rnix-compose.1"]
    for command in ("config", "plan", "schema"):
        assert f".SS rnix compose {command}" in compose


def test_pages_render_with_man() -> None:
    for page in MAN.glob("*.1"):
        out = subprocess.run(
            ["groff", "-man", "-Tascii", "-P", "-cbou", "-ww", str(page)], capture_output=True, text=True
        )
        assert out.returncode == 0 and "warning" not in out.stderr, (page, out.stderr)
        assert "EXIT STATUS" in out.stdout or page.name != "rnix.1"
