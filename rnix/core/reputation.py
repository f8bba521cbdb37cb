"""Reputation: a score in [0, 1] per agent definition, computed from its ledger. Pure; the clock reading
(`now`) and the random source (`rng`) are passed in. Documented in docs/token-economy.md.

Rules:
1. Each run is worth `record_value`: 0 when it failed (did not complete, or its contract failed);
   otherwise `0.7 + 0.15 * efficiency + 0.15 * speed`, so a success is worth 0.7 to 1.0, where
   efficiency = 1 - tokens_used / limit (limit = the contract's max_tokens, else the budget) and
   speed = 1 - elapsed_s / the contract's timeout, each clamped to [0, 1] and 0.5 when there is no limit.
   Efficiency and speed only grade successes: a crash that used no tokens is not "efficient".
2. A run weighs `LEVEL_WEIGHT[level] * 0.5 ** (age / HALF_LIFE_S)`: gold verdicts count three times a
   bronze one, and a run one week old counts half as much as one from now (runs dated in the future
   count as new; an unknown level weighs 1).
3. The score is the weighted mean shrunk toward the prior with `PRIOR_WEIGHT` pseudo-runs worth
   `PRIOR_SCORE`: `(PRIOR_WEIGHT * PRIOR_SCORE + sum(w * v)) / (PRIOR_WEIGHT + sum(w))`. A definition
   without runs scores 0.5; one lucky run does not beat a long good record.
4. `success_rate`, `avg_tokens` and `avg_elapsed_s` are plain means over the runs (0 without runs).
   `trend` is the level-weighted mean value of the newest `TREND_WINDOW` runs minus that of all earlier
   runs (no decay, no prior), and 0 with fewer than `2 * TREND_WINDOW` runs.
5. `choose` explores with probability `explore` (`rng() < explore`): it then picks uniformly, with a
   second `rng()`, among the candidates never tried (all candidates when every one has been tried).
   Otherwise it takes the best score, the first given on a tie; untried candidates have the prior.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

LEVEL_WEIGHT: Mapping[str | None, float] = {None: 1.0, "bronze": 1.0, "silver": 2.0, "gold": 3.0}
HALF_LIFE_S = 7 * 24 * 3600
PRIOR_WEIGHT = 2.0
PRIOR_SCORE = 0.5
SUCCESS_VALUE = 0.7
EFFICIENCY_VALUE = 0.15
SPEED_VALUE = 0.15
UNKNOWN_RATIO = 0.5  # efficiency or speed when there is no limit to measure against
TREND_WINDOW = 5


@dataclass(frozen=True)
class Record:
    """One ledger row, as the store gives it."""

    definition: str
    ts: float
    completed: bool
    tokens_used: int
    budget: int | None
    elapsed_s: float
    level: str | None  # SLA level; None when the agent had no contract
    sla_passed: bool | None  # None when the agent had no contract
    contract_timeout_s: float | None = None
    contract_max_tokens: int | None = None

    @property
    def succeeded(self) -> bool:
        return self.completed and self.sla_passed is not False


@dataclass(frozen=True)
class Score:
    definition: str
    score: float
    records: int
    success_rate: float
    avg_tokens: float
    avg_elapsed_s: float
    trend: float  # see rule 4 of the module docstring


def record_value(r: Record) -> float:
    """What one run is worth, in [0, 1] (rule 1)."""
    if not r.succeeded:
        return 0.0
    limit = r.contract_max_tokens if r.contract_max_tokens is not None else r.budget
    efficiency = _headroom(r.tokens_used, limit)
    speed = _headroom(r.elapsed_s, r.contract_timeout_s)
    return SUCCESS_VALUE + EFFICIENCY_VALUE * efficiency + SPEED_VALUE * speed


def _headroom(used: float, limit: float | None) -> float:
    """The share of `limit` left unused, in [0, 1]."""
    if limit is None or limit <= 0:
        return UNKNOWN_RATIO
    return min(1.0, max(0.0, 1.0 - used / limit))


def decay(r: Record, now: float) -> float:
    """0.5 per half-life of age; a run dated after `now` (clock skew) counts as new."""
    return math.pow(0.5, max(0.0, now - r.ts) / HALF_LIFE_S)


def weight(r: Record, now: float) -> float:
    return LEVEL_WEIGHT.get(r.level, 1.0) * decay(r, now)


def score(records: Sequence[Record], now: float, *, definition: str) -> Score:
    """The reputation of `definition`; records of other definitions are ignored (rules 2-4)."""
    own = [r for r in records if r.definition == definition]
    weights = [weight(r, now) for r in own]
    total = PRIOR_WEIGHT * PRIOR_SCORE + sum(w * record_value(r) for w, r in zip(weights, own, strict=True))
    value = total / (PRIOR_WEIGHT + sum(weights))
    n = len(own)
    return Score(
        definition=definition,
        score=min(1.0, max(0.0, value)),  # only float rounding could step outside
        records=n,
        success_rate=sum(r.succeeded for r in own) / n if n else 0.0,
        avg_tokens=sum(r.tokens_used for r in own) / n if n else 0.0,
        avg_elapsed_s=sum(r.elapsed_s for r in own) / n if n else 0.0,
        trend=trend(own),
    )


def trend(records: Sequence[Record]) -> float:
    """Newest `TREND_WINDOW` runs against all earlier ones (rule 4); > 0 means getting better."""
    if len(records) < 2 * TREND_WINDOW:
        return 0.0
    ordered = sorted(records, key=lambda r: r.ts)
    return _level_mean(ordered[-TREND_WINDOW:]) - _level_mean(ordered[:-TREND_WINDOW])


def _level_mean(records: Sequence[Record]) -> float:
    weights = [LEVEL_WEIGHT.get(r.level, 1.0) for r in records]
    return sum(w * record_value(r) for w, r in zip(weights, records, strict=True)) / sum(weights)


def scores(records: Sequence[Record], now: float) -> list[Score]:
    """One score per definition found in `records`, best first (ties by name)."""
    definitions = sorted({r.definition for r in records})
    ranked = [score(records, now, definition=d) for d in definitions]
    return sorted(ranked, key=lambda s: (-s.score, s.definition))


def average_usage(records: Sequence[Record], now: float) -> dict[str, float]:
    """Decayed mean of tokens_used per definition, for `proportional` budget allocation."""
    by_definition: dict[str, list[Record]] = {}
    for r in records:
        by_definition.setdefault(r.definition, []).append(r)
    return {name: _decayed_mean_tokens(own, now) for name, own in sorted(by_definition.items())}


def _decayed_mean_tokens(records: Sequence[Record], now: float) -> float:
    # Ages are taken relative to the newest run: scaling every weight alike leaves a mean unchanged,
    # and the newest run keeps weight 1, so a years-old ledger cannot underflow to 0 / 0.
    ages = [max(0.0, now - r.ts) for r in records]
    youngest = min(ages)
    weights = [math.pow(0.5, (age - youngest) / HALF_LIFE_S) for age in ages]
    return sum(w * r.tokens_used for w, r in zip(weights, records, strict=True)) / sum(weights)


def choose(
    candidates: Sequence[str],
    scores: Mapping[str, Score],
    *,
    rng: Callable[[], float],
    explore: float = 0.1,
) -> tuple[str, str]:
    """(definition, reason) for an agent with `candidates` (rule 5). `rng` returns floats in [0, 1)."""
    if not candidates:
        raise ValueError("choose() needs at least one candidate")
    if rng() < explore:
        untried = [c for c in candidates if c not in scores or scores[c].records == 0]
        pool = untried or list(candidates)
        return pool[min(int(rng() * len(pool)), len(pool) - 1)], "exploring"
    best = candidates[0]
    for candidate in candidates[1:]:
        if _value(candidate, scores) > _value(best, scores):
            best = candidate
    known = scores.get(best)
    n = known.records if known else 0
    runs = "no records" if n == 0 else "1 record" if n == 1 else f"{n} records"
    return best, f"best score {_value(best, scores):.2f} ({runs})"


def _value(candidate: str, scores: Mapping[str, Score]) -> float:
    known = scores.get(candidate)
    return known.score if known is not None else PRIOR_SCORE
