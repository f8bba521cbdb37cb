"""Model aliases, providers and credentials, checked before anything runs."""

from __future__ import annotations

from rnix.core import models
from rnix.core.model import ModelAlias
from rnix.core.spec import parse_compose


def spec(agents: dict[str, object], **top: object) -> object:
    return parse_compose({"agents": agents, **top}, {("agents", "a"): 3, ("agents", "b"): 4}, "compose.yaml")


def test_aliases_resolve_with_later_sources_winning() -> None:
    mine = (ModelAlias("haiku", "anthropic/claude-3-5-haiku-latest", source="user"),)
    local = (ModelAlias("fast", "openai/qwen", api_base="http://127.0.0.1:8000/v1", source="compose"),)
    table = models.aliases_by_name(mine, local)
    assert table["haiku"].model == "anthropic/claude-3-5-haiku-latest" and table["sonnet"].source == "builtin"
    resolved = models.resolve(
        spec({"a": {"intent": "x", "model": "haiku"}, "b": {"intent": "y", "model": "fast"}}), table
    )  # type: ignore[arg-type]
    a, b = resolved.agents
    assert (a.model, a.api_base) == ("anthropic/claude-3-5-haiku-latest", None)
    assert (b.model, b.api_base) == ("openai/qwen", "http://127.0.0.1:8000/v1")


def test_unknown_alias_and_provider_are_errors_at_the_agents_line() -> None:
    table = models.aliases_by_name()
    s = spec({"a": {"intent": "x", "model": "haiku3"}, "b": {"intent": "y", "model": "antropic/claude"}})
    problems = models.check(s, table, {})  # type: ignore[arg-type]
    assert [(p.line, p.key) for p in problems] == [(3, "agents.a.model"), (4, "agents.b.model")]
    assert "did you mean 'haiku'" in problems[0].message
    assert "did you mean 'anthropic'" in problems[1].message


def test_a_missing_key_names_the_variable_and_every_agent_that_needs_it() -> None:
    s = models.resolve(
        spec({"a": {"intent": "x"}, "b": {"intent": "y"}}, model="haiku"),  # type: ignore[arg-type]
        models.aliases_by_name(),
    )
    (problem,) = models.check(s, {}, {})
    assert problem.line == 3 and "ANTHROPIC_API_KEY is not set" in problem.message
    assert "(agents: a, b)" in problem.message
    assert models.check(s, {}, {"ANTHROPIC_API_KEY": "sk-x"}) == []
    assert models.check(s, {}, {}, credentials=False) == []


def test_mock_local_servers_and_endpoints_need_no_key() -> None:
    s = spec(
        {
            "a": {"intent": "x", "model": "mock?fail=1"},
            "b": {"intent": "y", "model": "openai/m", "api_base": "http://127.0.0.1:9/v1"},
            "c": {"intent": "z", "model": "ollama/llama3"},
        }
    )
    assert models.check(s, {}, {}) == []  # type: ignore[arg-type]
