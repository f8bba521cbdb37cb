from __future__ import annotations

from typing import Any

import pytest

from rnix.core.model import Judge
from rnix.core.spec import parse_compose
from rnix.core.types import parse_duration
from rnix.errors import InvalidCompose


def ok(data: dict[str, Any]) -> Any:
    return parse_compose(data, {}, "compose.yaml")


def problems(data: object, lines: dict[tuple[object, ...], int] | None = None) -> list[str]:
    with pytest.raises(InvalidCompose) as info:
        parse_compose(data, lines or {}, "compose.yaml")
    return [str(p) for p in info.value.problems]


def test_defaults_are_filled_in_and_top_level_defaults_inherited() -> None:
    spec = ok({"timeout": "1m", "max_retries": 2, "model": "gpt-x", "agents": {"a": {"intent": "x"}}})
    agent = spec.agents[0]
    assert (agent.model, agent.timeout_s, agent.max_retries) == ("gpt-x", 60.0, 2)
    assert (agent.stop_grace_period_s, agent.priority, agent.max_steps, agent.budget) == (
        5.0,
        "normal",
        10,
        None,
    )
    assert agent.kind == "llm"
    plain = ok({"agents": {"a": {"intent": "x"}}})
    assert plain.model == "mock" and plain.timeout_s == 600.0 and plain.budget_pool is None


def test_every_agent_field_is_read() -> None:
    spec = ok(
        {
            "version": "1.0",
            "api_base": "http://127.0.0.1:8000/v1",
            "budget_pool": {"total": 1000, "allocation": "equal"},
            "agents": {
                "a": {"intent": "x", "command": "python3 -c 'print(1)'", "environment": {"K": 1, "P": None}},
                "b": {
                    "intent": "y",
                    "agent": "reviewer",
                    "depends_on": {"a": "completed"},
                    "budget": 10,
                    "priority": "high",
                    "max_steps": 3,
                    "working_dir": "src",
                    "stop_grace_period": 0,
                    "contract": {
                        "output_quality": {"judge": "is polite"},
                        "timeout": "1h30m",
                        "sla_level": "gold",
                    },
                },
                "c": {
                    "intent": "z",
                    "candidates": ["p", "q"],
                    "depends_on": ["a", "b"],
                    "api_base": "https://h/v1",
                },
            },
        }
    )
    a, b, c = spec.agents
    assert a.command == ("python3", "-c", "print(1)") and a.kind == "command"
    assert dict(a.environment) == {"K": "1", "P": None}
    assert b.depends_on == ("a",) and b.agent == "reviewer" and b.budget == 10 and b.stop_grace_period_s == 0
    assert b.contract is not None and b.contract.output_quality == Judge("is polite")
    assert b.contract.timeout_s == 5400 and b.contract.sla_level == "gold"
    assert (
        c.candidates == ("p", "q")
        and c.api_base == "https://h/v1"
        and a.api_base == "http://127.0.0.1:8000/v1"
    )
    assert spec.budget_pool is not None and spec.budget_pool.allocation == "equal"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("5m", 300), ("1h30m", 5400), ("250ms", 0.25), ("1.5s", 1.5), ("30", 30), ("2h", 7200)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "5 m", "m5", "5x", "-5s", "1h 30m", "5mm", "1e3"])
def test_bad_durations(text: str) -> None:
    assert parse_duration(text) is None


def test_all_problems_are_reported_at_once_sorted_by_line_with_keys() -> None:
    data = {
        "agents": {
            "writer": {"intent": "w", "depends_on": ["reviwer"], "budget": -5, "priority": "urgent"},
            "reviewer": {"intnet": "r"},
        }
    }
    lines = {
        ("agents", "writer"): 3,
        ("agents", "writer", "depends_on", 0): 5,
        ("agents", "writer", "budget"): 6,
        ("agents", "writer", "priority"): 7,
        ("agents", "reviewer"): 8,
        ("agents", "reviewer", "intnet"): 9,
    }
    found = problems(data, lines)
    assert found == [
        "compose.yaml:5: agents.writer.depends_on[0]: unknown agent 'reviwer' (did you mean 'reviewer'?)",
        "compose.yaml:6: agents.writer.budget: must be a positive whole number, not -5",
        "compose.yaml:7: agents.writer.priority: unknown value 'urgent': must be one of high, normal, low",
        "compose.yaml:8: agents.reviewer: missing required key 'intent'",
        "compose.yaml:9: agents.reviewer.intnet: unknown key (did you mean 'intent'?)",
    ]


def test_cycle_is_printed_as_arrow_path() -> None:
    data = {"agents": {"a": {"intent": "x", "depends_on": ["b"]}, "b": {"intent": "y", "depends_on": ["a"]}}}
    assert any("dependency cycle: a -> b -> a" in p for p in problems(data))


def test_self_dependency() -> None:
    assert any(
        "depends on itself (cycle: a -> a)" in p
        for p in problems({"agents": {"a": {"intent": "x", "depends_on": ["a"]}}})
    )


@pytest.mark.parametrize(
    ("agent", "fragment"),
    [
        ({"intent": ""}, "intent: must not be empty"),
        ({"intent": 5}, "intent: must be a non-empty string, not the number 5"),
        ({"intent": "x", "timeout": 0}, "timeout: must be a positive duration"),
        ({"intent": "x", "timeout": "soon"}, "timeout: must be a positive duration"),
        ({"intent": "x", "stop_grace_period": -1}, "stop_grace_period: must be a non-negative duration"),
        ({"intent": "x", "budget": True}, "budget: must be a positive whole number, not a boolean"),
        ({"intent": "x", "budget": 1.5}, "budget: must be a positive whole number"),
        ({"intent": "x", "max_retries": 101}, "max_retries: must be a whole number from 0 to 100"),
        ({"intent": "x", "command": "echo 'unclosed"}, "cannot split the command line"),
        ({"intent": "x", "command": []}, "command: must have at least 1 item"),
        ({"intent": "x", "command": "a", "agent": "b"}, "'command' and 'agent' cannot be used together"),
        ({"intent": "x", "agent": "Bad Name"}, "agent: must be an agent definition name"),
        ({"intent": "x", "candidates": ["a", "a"]}, "candidates[1]: 'a' is listed twice"),
        ({"intent": "x", "api_base": "localhost:8000"}, "api_base: must be an http:// or https:// URL"),
        ({"intent": "x", "depends_on": "b"}, "depends_on: must be a list of agent names or a mapping"),
        (
            {"intent": "x", "depends_on": {"b": "started"}},
            "unknown value 'started': must be one of completed",
        ),
        ({"intent": "x", "environment": {"1BAD": "v"}}, "'1BAD' is not an environment variable name"),
        ({"intent": "x", "environment": {"K": [1]}}, "environment.K: must be a string, number or boolean"),
        ({"intent": "x", "contract": {"output_format": "yaml"}}, "must be one of text, json, markdown"),
        ({"intent": "x", "contract": {"output_quality": "("}}, "is not a valid regular expression"),
        (
            {"intent": "x", "contract": {"output_quality": {"jduge": "x"}}},
            "unknown key (did you mean 'judge'?)",
        ),
        ({"intent": "x", "contract": {"sla_level": "platinum"}}, "must be one of bronze, silver, gold"),
        (
            {"intent": "x", "contract": {"max_tokens": 0}},
            "contract.max_tokens: must be a positive whole number",
        ),
        ({"intent": "x", "contract": "strict"}, "contract: must be a mapping, not the string 'strict'"),
    ],
)
def test_agent_field_errors(agent: dict[str, Any], fragment: str) -> None:
    found = problems({"agents": {"a": agent}})
    assert any(fragment in p for p in found), found


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (None, "the file is empty"),
        ([], "must be a mapping, not a list"),
        ({}, "missing required key 'agents'"),
        ({"agents": {}}, "agents: must have at least 1 entry"),
        ({"agents": {"x-only": {}}}, "agents: must have at least 1 entry"),
        ({"agents": {"Writer": {"intent": "x"}}}, "'Writer' is not a valid agent name"),
        ({"agents": {"a" * 64: {"intent": "x"}}}, "at most 63 characters"),
        ({"agents": {"a": None}}, "agents.a: must be a mapping, not null"),
        ({"agent": {"a": {"intent": "x"}}}, "agent: unknown key (did you mean 'agents'?)"),
        ({"version": "2", "agents": {"a": {"intent": "x"}}}, "version: must be one of '1', '1.0', 1"),
        (
            {"budget_pool": {"total": -1}, "agents": {"a": {"intent": "x"}}},
            "budget_pool.total: must be a positive",
        ),
        (
            {"budget_pool": {"total": 5, "allocation": "fair"}, "agents": {"a": {"intent": "x"}}},
            "allocation: unknown value 'fair'",
        ),
        (
            {"budget_pool": {"allocation": "equal"}, "agents": {"a": {"intent": "x"}}},
            "budget_pool: missing required key 'total'",
        ),
        ({True: 1, "agents": {"a": {"intent": "x"}}}, "keys must be strings, not a boolean"),
    ],
)
def test_top_level_errors(data: object, fragment: str) -> None:
    found = problems(data)
    assert any(fragment in p for p in found), found


def test_extension_keys_are_ignored_anywhere() -> None:
    spec = ok(
        {
            "x-common": {"anything": [1, 2]},
            "agents": {
                "x-template": {"whatever": 1},
                "a": {"intent": "x", "x-note": "hi", "contract": {"x-y": 1}},
            },
        }
    )
    assert [a.name for a in spec.agents] == ["a"]


def test_version_variants() -> None:
    for version in ("1", "1.0", 1, 1.0):
        assert ok({"version": version, "agents": {"a": {"intent": "x"}}}).version == "1.0"
