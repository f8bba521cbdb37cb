"""`compose up AGENT...`: the named agents and what they depend on, transitively, in file order."""

from __future__ import annotations

from rnix.core.spec import parse_compose
from rnix.core.subset import only, unknown

SPEC = parse_compose(
    {
        "agents": {
            "research": {"intent": "r"},
            "side": {"intent": "s"},
            "draft": {"intent": "d", "depends_on": ["research"]},
            "review": {"intent": "v", "depends_on": ["draft"]},
            "other": {"intent": "o", "depends_on": ["side"]},
        }
    },
    {},
    "compose.yaml",
)


def names(spec: object) -> list[str]:
    return [a.name for a in spec.agents]  # type: ignore[attr-defined]


def test_only_keeps_transitive_dependencies_in_file_order() -> None:
    assert names(only(SPEC, ["review"])) == ["research", "draft", "review"]
    assert names(only(SPEC, ["other", "draft"])) == ["research", "side", "draft", "other"]
    assert names(only(SPEC, ["side"])) == ["side"]
    assert only(SPEC, []) is SPEC


def test_unknown_names() -> None:
    assert unknown(SPEC, ["review", "reveiw", "x"]) == ["reveiw", "x"]
