from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rnix.core.reputation import (
    HALF_LIFE_S,
    PRIOR_SCORE,
    Record,
    Score,
    average_usage,
    choose,
    record_value,
    score,
    scores,
    weight,
)

DOC = Path(__file__).parents[2] / "docs" / "token-economy.md"
NOW = 1_700_000_000.0
WEEK = HALF_LIFE_S


def rec(
    ts: float = NOW,
    *,
    ok: bool = True,
    definition: str = "d",
    level: str | None = None,
    tokens: int = 100,
    budget: int | None = None,
    elapsed: float = 1.0,
    timeout: float | None = None,
    max_tokens: int | None = None,
) -> Record:
    """A run that completed, with a passing contract when it has a level (ok=False: it failed)."""
    sla = None if level is None else ok
    return Record(definition, ts, ok, tokens, budget, elapsed, level, sla, timeout, max_tokens)


def rng_of(values: Iterable[float]) -> Callable[[], float]:
    it = iter(values)
    return lambda: next(it)


def of(records: list[Record], definition: str = "d") -> float:
    return score(records, NOW, definition=definition).score


# --- record_value ------------------------------------------------------------------------------------


def test_a_failure_is_worth_nothing_however_cheap() -> None:
    assert record_value(rec(ok=False, tokens=0, elapsed=0.0, budget=1000, timeout=60)) == 0.0
    contract_failed = Record("d", NOW, True, 10, 1000, 1.0, "gold", False, 60.0, 1000)
    assert record_value(contract_failed) == 0.0


def test_success_without_limits_is_worth_085() -> None:
    assert record_value(rec()) == pytest.approx(0.85)


def test_efficiency_uses_contract_max_tokens_before_budget_and_speed_the_contract_timeout() -> None:
    r = rec(tokens=250, budget=10_000, max_tokens=1000, elapsed=45.0, timeout=60.0)
    assert record_value(r) == pytest.approx(0.7 + 0.15 * 0.75 + 0.15 * 0.25)
    assert record_value(rec(tokens=250, budget=1000)) == pytest.approx(0.7 + 0.15 * 0.75 + 0.15 * 0.5)


def test_overshooting_a_limit_clamps_to_zero_not_below() -> None:
    assert record_value(rec(tokens=5000, budget=1000, elapsed=120.0, timeout=60.0)) == pytest.approx(0.7)


# --- decay, prior, levels ----------------------------------------------------------------------------


def test_no_records_means_the_prior() -> None:
    empty = score([], NOW, definition="new")
    assert empty == Score("new", PRIOR_SCORE, 0, 0.0, 0.0, 0.0, 0.0)


def test_after_one_half_life_a_record_weighs_half() -> None:
    r = rec(NOW - WEEK)
    assert weight(r, NOW) == pytest.approx(0.5)
    assert weight(r, NOW + WEEK) == pytest.approx(0.25)
    assert weight(rec(NOW + 3600), NOW) == 1.0  # clock skew: a future run counts as new


def test_an_old_failure_matters_less_than_a_new_one() -> None:
    good = [rec(NOW - i * 3600) for i in range(5)]
    assert of([*good, rec(NOW - 4 * WEEK, ok=False)]) > of([*good, rec(NOW, ok=False)])


def test_one_lucky_run_does_not_outrank_ten_good_runs() -> None:
    lucky = [rec(definition="lucky", tokens=0, budget=1000, elapsed=0, timeout=60)]
    assert record_value(lucky[0]) == 1.0
    steady = [rec(NOW - i * 3600, definition="steady") for i in range(10)]
    ranked = scores(lucky + steady, NOW)
    assert [s.definition for s in ranked] == ["steady", "lucky"]
    assert ranked[1].score == pytest.approx((2 * 0.5 + 1.0) / 3)


@pytest.mark.parametrize("ok", [True, False])
def test_a_gold_verdict_moves_the_score_more_than_bronze(ok: bool) -> None:
    base = [rec(NOW - WEEK, ok=not ok)]
    before = of(base)
    gold = of([*base, rec(ok=ok, level="gold")])
    bronze = of([*base, rec(ok=ok, level="bronze")])
    assert abs(gold - before) > abs(bronze - before) > 0


def test_records_of_other_definitions_are_ignored() -> None:
    assert of([rec(ok=False, definition="other")]) == PRIOR_SCORE


def test_plain_statistics_and_trend() -> None:
    records = [rec(NOW - i, ok=False, tokens=10, elapsed=2.0) for i in range(10, 5, -1)]
    records += [rec(NOW - i, tokens=30, elapsed=4.0) for i in range(5, 0, -1)]
    s = score(records, NOW, definition="d")
    assert (s.records, s.success_rate, s.avg_tokens, s.avg_elapsed_s) == (10, 0.5, 20.0, 3.0)
    assert s.trend == pytest.approx(0.85)  # newest five all succeeded, the five before all failed
    assert score(records[:9], NOW, definition="d").trend == 0.0  # too few runs


def test_scores_best_first_ties_by_name() -> None:
    records = [rec(definition="b"), rec(definition="a"), rec(definition="c", ok=False)]
    assert [s.definition for s in scores(records, NOW)] == ["a", "b", "c"]


def test_average_usage_is_decayed_per_definition() -> None:
    records = [rec(NOW, tokens=1000), rec(NOW - WEEK, tokens=4000), rec(definition="e", tokens=7)]
    usage = average_usage(records, NOW)
    assert usage == {"d": pytest.approx((1000 + 0.5 * 4000) / 1.5), "e": 7.0}


def test_average_usage_of_an_ancient_ledger_does_not_divide_by_zero() -> None:
    old = NOW - 10_000 * WEEK  # 0.5 ** 10000 underflows to 0
    assert average_usage([rec(old, tokens=10), rec(old - WEEK, tokens=40)], NOW) == {
        "d": pytest.approx((10 + 0.5 * 40) / 1.5)
    }


# --- the documented worked example -------------------------------------------------------------------

EXAMPLE = [
    Record("reviewer", NOW - WEEK, True, 2000, None, 30.0, "gold", True, 60.0, 4000),
    Record("reviewer", NOW, True, 1000, 5000, 12.0, None, None),
    Record("reviewer", NOW - 2 * WEEK, False, 300, 5000, 3.0, "silver", False),
]


def test_the_documented_worked_example() -> None:
    assert [record_value(r) for r in EXAMPLE] == pytest.approx([0.85, 0.895, 0.0])
    assert [weight(r, NOW) for r in EXAMPLE] == pytest.approx([1.5, 1.0, 0.5])
    s = score(EXAMPLE, NOW, definition="reviewer")
    assert s.score == pytest.approx(0.634)
    assert (s.records, s.trend) == (3, 0.0)
    assert s.success_rate == pytest.approx(2 / 3)
    assert average_usage(EXAMPLE, NOW)["reviewer"] == pytest.approx(2075 / 1.75)
    bronze = [*EXAMPLE[:2], Record("reviewer", NOW - 2 * WEEK, False, 300, 5000, 3.0, "bronze", False)]
    assert of(bronze, "reviewer") == pytest.approx(3.17 / 4.75)
    assert choose(["reviewer", "new"], {"reviewer": s}, rng=rng_of([0.5])) == (
        "reviewer",
        "best score 0.63 (3 records)",
    )
    doc = DOC.read_text()
    for shown in ("= 3.17 / 5 = 0.634", "≈ 1185.7", "3.17 / 4.75 ≈ 0.667", "best score 0.63 (3 records)"):
        assert shown in doc


# --- choose ------------------------------------------------------------------------------------------


def known(definition: str, value: float, records: int = 5) -> Score:
    return Score(definition, value, records, 1.0, 100.0, 1.0, 0.0)


def test_choose_takes_the_best_score_with_a_reason() -> None:
    table = {"a": known("a", 0.6), "b": known("b", 0.82, 12)}
    assert choose(["a", "b"], table, rng=rng_of([0.9])) == ("b", "best score 0.82 (12 records)")


def test_choose_ties_go_to_the_first_given_and_untried_have_the_prior() -> None:
    table = {"a": known("a", 0.5), "b": known("b", 0.4)}
    assert choose(["new", "a", "b"], table, rng=rng_of([0.5])) == ("new", "best score 0.50 (no records)")
    assert choose(["a", "new"], table, rng=rng_of([0.5]))[0] == "a"
    assert choose(["b"], {"b": known("b", 0.4, 1)}, rng=rng_of([0.5]))[1] == "best score 0.40 (1 record)"


def test_exploring_prefers_candidates_never_tried() -> None:
    table = {"a": known("a", 0.9), "b": known("b", 0.1), "c": known("c", 0.2, records=0)}
    # first draw < explore: explore; second draw picks among the untried ("new", "c")
    assert choose(["a", "new", "b", "c"], table, rng=rng_of([0.05, 0.0])) == ("new", "exploring")
    assert choose(["a", "new", "b", "c"], table, rng=rng_of([0.05, 0.99])) == ("c", "exploring")


def test_exploring_when_everyone_was_tried_picks_uniformly() -> None:
    table = {"a": known("a", 0.9), "b": known("b", 0.1)}
    assert choose(["a", "b"], table, rng=rng_of([0.0, 0.7])) == ("b", "exploring")


def test_choose_needs_candidates() -> None:
    with pytest.raises(ValueError):
        choose([], {}, rng=rng_of([0.5]))


# --- properties --------------------------------------------------------------------------------------

definitions = st.sampled_from(["a", "b", "c"])
levels = st.sampled_from([None, "bronze", "silver", "gold"])


@st.composite
def records(draw: st.DrawFn) -> Record:
    level = draw(levels)
    return Record(
        definition=draw(definitions),
        ts=NOW - draw(st.floats(-1e6, 1e10)),
        completed=draw(st.booleans()),
        tokens_used=draw(st.integers(0, 10**7)),
        budget=draw(st.one_of(st.none(), st.integers(0, 10**6))),
        elapsed_s=draw(st.floats(0, 1e7)),
        level=level,
        sla_passed=None if level is None else draw(st.booleans()),
        contract_timeout_s=draw(st.one_of(st.none(), st.floats(0, 1e5))),
        contract_max_tokens=draw(st.one_of(st.none(), st.integers(1, 10**6))),
    )


ledgers = st.lists(records(), max_size=40)


@given(ledgers)
def test_scores_stay_within_bounds(ledger: list[Record]) -> None:
    for r in ledger:
        assert 0.0 <= record_value(r) <= 1.0
    for s in scores(ledger, NOW):
        assert 0.0 <= s.score <= 1.0 and 0.0 <= s.success_rate <= 1.0 and -1.0 <= s.trend <= 1.0
    ranked = [s.score for s in scores(ledger, NOW)]
    assert ranked == sorted(ranked, reverse=True)
    for name, usage in average_usage(ledger, NOW).items():
        own = [r.tokens_used for r in ledger if r.definition == name]
        assert min(own) - 1e-6 <= usage <= max(own) + 1e-6


@given(ledgers, records())
def test_a_new_run_moves_the_score_toward_its_value(ledger: list[Record], new: Record) -> None:
    before = of(ledger, new.definition)
    after = of([*ledger, new], new.definition)
    value = record_value(new)
    tolerance = 1e-9
    if value >= before:
        assert after >= before - tolerance
    else:
        assert after <= before + tolerance


score_tables = st.dictionaries(definitions, st.tuples(st.floats(0, 1), st.integers(0, 50))).map(
    lambda table: {name: known(name, value, n) for name, (value, n) in table.items()}
)
candidate_lists = st.lists(st.sampled_from(["a", "b", "c", "d"]), min_size=1, max_size=4, unique=True)
draws = st.lists(st.floats(0, 1, exclude_max=True), min_size=2, max_size=2)


@given(candidate_lists, score_tables, draws, st.floats(0, 1))
def test_choose_is_deterministic_for_a_given_rng_sequence(
    candidates: list[str], table: dict[str, Score], values: list[float], explore: float
) -> None:
    first = choose(candidates, table, rng=rng_of(values), explore=explore)
    assert first == choose(candidates, table, rng=rng_of(values), explore=explore)
    assert first[0] in candidates


@given(candidate_lists, score_tables, draws)
def test_explore_zero_always_picks_the_best(
    candidates: list[str], table: dict[str, Score], values: list[float]
) -> None:
    chosen, reason = choose(candidates, table, rng=rng_of(values), explore=0.0)
    value = {c: table[c].score if c in table else PRIOR_SCORE for c in candidates}
    assert value[chosen] == max(value.values())
    assert candidates.index(chosen) == min(i for i, c in enumerate(candidates) if value[c] == value[chosen])
    assert reason.startswith("best score")


@given(candidate_lists, score_tables, draws)
def test_exploring_picks_an_untried_candidate_when_there_is_one(
    candidates: list[str], table: dict[str, Score], values: list[float]
) -> None:
    chosen, reason = choose(candidates, table, rng=rng_of(values), explore=1.0)
    untried = [c for c in candidates if c not in table or table[c].records == 0]
    assert reason == "exploring"
    assert chosen in (untried or candidates)
