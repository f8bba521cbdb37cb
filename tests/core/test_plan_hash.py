"""AgentPlan.spec_hash: the pipeline keys count only when set, so existing files keep their hashes."""

from __future__ import annotations

from typing import Any

from rnix.core.plan import make_plan
from rnix.core.spec import parse_compose

BASE: dict[str, Any] = {
    "agents": {
        "a": {"intent": "x"},
        "b": {"intent": "y", "depends_on": {"a": "failed"}, "command": ["echo", "hi"]},
    }
}


def hashes(data: dict[str, Any]) -> dict[str, str]:
    plan = make_plan(parse_compose(data, {}, "compose.yaml"), "demo")
    return {a.spec.name: a.spec_hash for a in plan.agents}


def test_a_file_without_pipeline_keys_keeps_its_hashes() -> None:
    # The values before the pipeline keys existed: a resume must not re-run these agents.
    assert hashes(BASE) == {"a": "f8d87cc07fdad8d3", "b": "c5603e52ec394e88"}


def test_defaults_written_out_do_not_change_the_hash() -> None:
    loop = {"loops": {"l": {"body": ["a"], "until": "true"}}}
    assert hashes({**BASE, **loop, "vars": {"v": 1}}) == hashes(BASE)


def test_each_pipeline_key_changes_the_hash() -> None:
    base = hashes(BASE)["b"]
    variants: list[dict[str, Any]] = [
        {"when": "true"},
        {"for_each": "[1, 2]"},
        {"for_each": "[1, 2]", "item_name": "b-{{ index }}"},
        {"for_each": "[1, 2]", "for_each_policy": "any"},
        {"for_each": "[1, 2]", "max_parallel": 2},
        {"output_schema": {"type": "object"}},
    ]
    seen = {base}
    for extra in variants:
        data = {"agents": {"a": BASE["agents"]["a"], "b": {**BASE["agents"]["b"], **extra}}}
        value = hashes(data)["b"]
        assert value not in seen, extra
        seen.add(value)
