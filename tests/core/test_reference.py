from __future__ import annotations

from pathlib import Path

from rnix.core.fields import AGENT, COMPOSE
from rnix.core.reference import markdown, refresh

DOC = Path(__file__).resolve().parents[2] / "docs" / "compose-file.md"


def test_compose_reference_in_docs_is_current() -> None:
    text = DOC.read_text(encoding="utf-8")
    assert refresh(text) == text, "run: python -m rnix.core.reference --write docs/compose-file.md"


def test_reference_names_every_field() -> None:
    generated = markdown()
    for name in [*COMPOSE.fields, *AGENT.fields]:
        assert f"| `{name}` |" in generated
