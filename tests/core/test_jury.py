"""rnix.core.jury: how a jury's verdict follows from its members' states, results and scores; and
what the compose file may say about juries."""

from __future__ import annotations

import json
from typing import Any

import pytest

from rnix.core.jury import Member, Rule, Verdict, answer, decide, merge
from rnix.core.lifecycle import AgentState
from rnix.core.plan import make_plan, pipeline_keys
from rnix.core.spec import parse_compose
from rnix.errors import InvalidCompose

C, F, R, P, X = (
    AgentState.COMPLETED,
    AgentState.FAILED,
    AgentState.RUNNING,
    AgentState.PENDING,
    AgentState.CANCELLED,
)


def members(*specs: tuple[AgentState, str | None] | tuple[AgentState, str | None, float]) -> list[Member]:
    out = []
    for i, spec in enumerate(specs):
        state, result = spec[0], spec[1]
        ended = spec[2] if len(spec) > 2 else (float(i) if state.terminal else None)  # type: ignore[misc]
        out.append(Member(f"c{i}", state, result, ended))
    return out


def test_vote_takes_the_majority_of_stripped_answers() -> None:
    jury = members((C, "A\n"), (C, "B"), (C, "  A"))
    assert decide(Rule("vote"), jury, {}) == Verdict(True, "A\n")


def test_vote_waits_for_every_member_and_ignores_those_that_did_not_complete() -> None:
    assert decide(Rule("vote"), members((C, "A"), (R, None), (C, "B")), {}) is None
    verdict = decide(Rule("vote"), members((F, None), (C, "B"), (X, None)), {})
    assert verdict is not None and verdict.completed and verdict.result == "B"
    assert verdict.error == "2 of 3 candidates did not complete: c0 failed, c2 cancelled"
    nothing = decide(Rule("vote"), members((F, None), (F, None)), {})
    assert nothing is not None and not nothing.completed
    assert nothing.error is not None and nothing.error.startswith("no candidate gave an answer")


def test_vote_ties_go_to_reputation_then_to_candidate_order() -> None:
    jury = members((C, "A"), (C, "B"))
    assert decide(Rule("vote"), jury, {}) == Verdict(True, "A")  # same prior: the first given
    assert decide(Rule("vote"), jury, {"c1": 0.8}) == Verdict(True, "B")
    # Two against two: the side with more reputation; its best-reputed voter's result.
    jury = members((C, "A"), (C, "B"), (C, "B "), (C, "A\n"))
    assert decide(Rule("vote"), jury, {"c0": 0.9, "c3": 0.95, "c1": 0.6, "c2": 0.6}) == Verdict(True, "A\n")


def test_weighted_votes_count_reputation() -> None:
    jury = members((C, "A"), (C, "B"), (C, "A"))
    scores = {"c0": 0.2, "c1": 0.9, "c2": 0.3}
    assert decide(Rule("vote", weighted=True), jury, scores) == Verdict(True, "B")
    assert decide(Rule("vote"), jury, scores) == Verdict(True, "A")
    assert decide(Rule("vote", weighted=True), jury, {"c1": 0.9}) == Verdict(True, "A")  # 0.5 + 0.5


def test_vote_on_a_field_of_structured_results() -> None:
    rule = Rule("vote", structured=True, vote_on="verdict")
    jury = members(
        (C, json.dumps({"verdict": "pass", "why": "fine"})),
        (C, json.dumps({"verdict": "fail", "why": "bug"})),
        (C, json.dumps({"why": "no verdict"})),  # lacks the field: no vote
        (C, json.dumps({"why": "looks ok", "verdict": "pass"})),
    )
    verdict = decide(rule, jury, {"c3": 0.7})
    assert verdict == Verdict(True, json.dumps({"why": "looks ok", "verdict": "pass"}))
    # Without vote_on, structured results compare as canonical JSON.
    same = members((C, '{"a": 1, "b": 2}'), (C, '{ "b":2,"a":1 }'), (C, '{"a": 3}'))
    assert decide(Rule("vote", structured=True), same, {}) == Verdict(True, '{"a": 1, "b": 2}')
    assert answer('{"v": [1, 2]}', Rule("vote", structured=True, vote_on="v")) == "[1, 2]"


def test_all_and_any_list_results_in_candidate_order() -> None:
    jury = members((C, "a"), (F, None), (C, "c"))
    verdict = decide(Rule("all"), jury, {})
    assert (
        verdict is not None and not verdict.completed and json.loads(verdict.result or "") == ["a", None, "c"]
    )
    verdict = decide(Rule("any"), jury, {})
    assert verdict is not None and verdict.completed and "c1 failed" in (verdict.error or "")
    assert decide(Rule("all"), members((C, "a"), (C, "b")), {}) == Verdict(True, '["a", "b"]')
    assert decide(Rule("any"), members((F, None), (F, None)), {}).completed is False  # type: ignore[union-attr]
    structured = decide(Rule("all", structured=True), members((C, '{"x": 1}'), (C, "[2]")), {})
    assert structured == Verdict(True, '[{"x": 1}, [2]]')
    assert decide(Rule("all"), members((C, "a"), (R, None)), {}) is None


def test_first_takes_the_earliest_to_complete() -> None:
    assert decide(Rule("first"), members((R, None), (P, None)), {}) is None
    jury = members((R, None), (C, "late", 5.0), (C, "early", 3.0))
    assert decide(Rule("first"), jury, {}) == Verdict(True, "early")
    assert decide(Rule("first"), members((F, None), (R, None)), {}) is None  # one may still complete
    failed = decide(Rule("first"), members((F, None), (F, None)), {})
    assert failed is not None and not failed.completed


def test_quorum_completes_when_enough_agree_and_fails_when_they_cannot() -> None:
    rule = Rule("quorum", quorum=2)
    assert decide(rule, members((C, "yes"), (R, None), (R, None)), {}) is None
    assert decide(rule, members((C, "yes", 1.0), (R, None), (C, " yes", 2.0)), {}) == Verdict(True, "yes")
    # The answer that reached the quorum first wins, with the result of its first voter.
    jury = members((C, "a", 4.0), (C, "b", 1.0), (C, "b", 2.0), (C, "a", 3.0))
    assert decide(rule, jury, {}) == Verdict(True, "b")
    assert decide(rule, members((C, "a"), (C, "b"), (R, None)), {}) is None  # the third may agree
    failed = decide(rule, members((C, "a"), (C, "b"), (F, None)), {})
    assert failed is not None and not failed.completed
    assert failed.error is not None and failed.error.startswith("no quorum of 2 possible: at most 1 agree")
    three = decide(Rule("quorum", quorum=3), members((C, "a"), (C, "b"), (R, None)), {})
    assert three is not None and not three.completed  # decided before the last one ends


def test_merge_combines_objects_lists_and_texts() -> None:
    assert merge([{"a": 1, "b": 1}, {"b": 2, "c": 3}], structured=True) == '{"a": 1, "b": 2, "c": 3}'
    assert merge([[1, 2], [3]], structured=True) == "[1, 2, 3]"
    assert merge([{"a": 1}, [2]], structured=True) == '[{"a": 1}, [2]]'
    assert merge([" first\n", "second"], structured=False) == "first\n\nsecond"
    jury = members((C, "one"), (F, None), (C, "three"))
    verdict = decide(Rule("merge"), jury, {})
    assert verdict is not None and verdict.completed and verdict.result == "one\n\nthree"
    assert decide(Rule("merge"), members((F, None)), {}).completed is False  # type: ignore[union-attr]


# -- the compose file -------------------------------------------------------------------------------


def compose(**review: Any) -> dict[str, Any]:
    return {"agents": {"review": {"intent": "review", "candidates": ["a", "b", "c"], **review}}}


def problems(data: dict[str, Any]) -> list[str]:
    with pytest.raises(InvalidCompose) as info:
        parse_compose(data, {}, "compose.yaml")
    return [f"{p.key}: {p.message}" for p in info.value.problems]


def test_jury_keys_are_read_and_hashed_only_when_set() -> None:
    spec = parse_compose(compose(aggregate="quorum", quorum=2), {}, "compose.yaml")
    agent = spec.agent("review")
    assert (agent.aggregate, agent.quorum, agent.weights, agent.vote_on) == ("quorum", 2, "equal", None)
    assert pipeline_keys(agent) == {"aggregate": "quorum", "quorum": 2}
    plain = parse_compose(compose(), {}, "compose.yaml").agent("review")
    assert pipeline_keys(plain) == {}
    plan = make_plan(spec, "p")
    assert plan.agents[0].choice is None  # a jury chooses no candidate: it runs them all


def test_jury_keys_are_checked_against_each_other() -> None:
    assert problems({"agents": {"x": {"intent": "x", "aggregate": "vote"}}}) == [
        "agents.x.aggregate: needs `candidates`: the agent definitions that form the jury"
    ]
    assert problems(compose(aggregate="quorum")) == [
        "agents.review.aggregate: `aggregate: quorum` needs `quorum: N` (how many must agree)"
    ]
    assert problems(compose(aggregate="quorum", quorum=4)) == [
        "agents.review.quorum: is 4, but there are only 3 candidates to agree"
    ]
    assert problems(compose(aggregate="vote", quorum=2)) == [
        "agents.review.quorum: applies only with `aggregate: quorum`"
    ]
    assert problems(compose(aggregate="first", weights="reputation")) == [
        "agents.review.weights: applies only with `aggregate: vote`"
    ]
    assert problems(compose(aggregate="vote", vote_on="verdict")) == [
        "agents.review.vote_on: needs an output_schema: it names a field of the structured result"
    ]
    schema = {"type": "object", "properties": {"verdict": {"type": "string"}}}
    assert problems(compose(aggregate="vote", vote_on="verdit", output_schema=schema)) == [
        "agents.review.vote_on: 'verdit' is not a property of the output_schema (did you mean 'verdict'?)"
    ]
    assert problems(compose(aggregate="all", vote_on="verdict", output_schema=schema)) == [
        "agents.review.vote_on: applies only with `aggregate: vote` or `aggregate: quorum`"
    ]
    assert problems(compose(aggregate="all", for_each="[1, 2]")) == [
        "agents.review.aggregate: cannot be combined with for_each (a jury's instances are its candidates)"
    ]
    assert problems(compose(aggregate="most")) != []
    parse_compose(
        compose(aggregate="vote", vote_on="verdict", output_schema=schema, weights="reputation"), {}, "f"
    )
