"""Juries: an agent with `candidates` and `aggregate` runs every candidate and combines them. Pure.

The node expands into one instance per candidate (`review[0]`, `review[1]`, ... labelled with the
candidate's name, each running with its candidate's definition); `decide` says, from the members'
states and results, whether the node is decided, and how:

- `all`: once every member ended; completed if all completed. Result: the JSON list of their
  outputs in candidate order (null for one that did not complete).
- `any`: the same list, completed if at least one completed.
- `first`: as soon as one completed, with its result (the earliest to end; candidate order on a
  tie); failed once all ended without one completing.
- `merge`: once every member ended, the completed members' outputs combined in candidate order:
  structured results (an output_schema) as objects shallow-merged (a later candidate's key wins) or
  lists concatenated (anything else: the list of the values); texts joined by a blank line, without
  labels. Completed if at least one completed.
- `vote`: once every member ended, the answer with the most votes (a plurality). An answer is the
  whole result with surrounding white space stripped (a structured result: its canonical JSON), or
  with `vote_on` the value of that field. A member that did not complete (or whose result lacks the
  field) does not vote. With `weights: reputation` a vote counts the member's reputation score,
  else 1. Ties go to the answer whose voters have the higher total reputation, then to the one
  given first in candidate order. The result is the winning answer's best-reputed voter's.
- `quorum`: as soon as `quorum` members gave the same answer (counted as for `vote`, one each),
  with the result of the first of them to end; failed as soon as no answer can reach it any more.

A decided `first` or `quorum` leaves members still running or waiting: they are stopped or
cancelled (rnix.core.actions). Reputation scores come from the plan (`Plan.reputation`); a
definition without records has the prior score.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rnix.core.lifecycle import AgentState
from rnix.core.reputation import PRIOR_SCORE


@dataclass(frozen=True)
class Member:
    """One candidate's instance as the jury sees it."""

    candidate: str  # its definition's name
    state: AgentState
    result: str | None = None
    ended_at: float | None = None


@dataclass(frozen=True)
class Rule:
    """How a jury combines its members (the agent's jury keys)."""

    aggregate: str
    structured: bool = False  # the agent has an output_schema: results are JSON
    vote_on: str | None = None
    quorum: int | None = None
    weighted: bool = False  # weights: reputation


@dataclass(frozen=True)
class Verdict:
    completed: bool
    result: str | None
    error: str | None = None


def decide(rule: Rule, members: Sequence[Member], scores: Mapping[str, float]) -> Verdict | None:
    """The jury's verdict, or None while it cannot be known yet."""
    ended = all(m.state.terminal for m in members)
    done = [m for m in members if m.state is AgentState.COMPLETED]
    if rule.aggregate == "first":
        if done:
            order = {m.candidate: i for i, m in enumerate(members)}
            winner = min(done, key=lambda m: (_time(m), order[m.candidate]))
            return Verdict(True, winner.result)
        return Verdict(False, None, _failures(members)) if ended else None
    if rule.aggregate == "quorum":
        return _quorum(rule, members, done, scores)
    if not ended:
        return None
    if rule.aggregate in ("all", "any"):
        outputs = [_output(m, rule) if m.state is AgentState.COMPLETED else None for m in members]
        ok = len(done) == len(members) if rule.aggregate == "all" else bool(done)
        error = _failures(members) if len(done) < len(members) else None
        return Verdict(ok, json.dumps(outputs, ensure_ascii=False), error)
    if rule.aggregate == "merge":
        if not done:
            return Verdict(False, None, _failures(members))
        error = _failures(members) if len(done) < len(members) else None
        return Verdict(True, merge([_output(m, rule) for m in done], rule.structured), error)
    if rule.aggregate == "vote":
        return _vote(rule, members, done, scores)
    raise ValueError(f"unknown aggregate {rule.aggregate!r}")


def merge(values: Sequence[Any], structured: bool) -> str:
    """Completed members' outputs, in candidate order, as one result (see the module docstring)."""
    if not structured:
        return "\n\n".join(str(v).strip() for v in values)
    merged: Any
    if all(isinstance(v, dict) for v in values):
        merged = {}
        for value in values:
            merged.update(value)
    elif all(isinstance(v, list) for v in values):
        merged = [x for value in values for x in value]
    else:
        merged = list(values)
    return json.dumps(merged, ensure_ascii=False)


def answer(result: str | None, rule: Rule) -> str | None:
    """What a member votes for, normalised so that equal answers compare equal (None: no vote)."""
    if result is None:
        return None
    if not rule.structured and rule.vote_on is None:
        return result.strip()
    try:
        value = json.loads(result)
    except ValueError:
        return None if rule.vote_on is not None else result.strip()
    if rule.vote_on is not None:
        if not isinstance(value, dict) or rule.vote_on not in value:
            return None
        value = value[rule.vote_on]
        if isinstance(value, str):
            return value.strip()
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def score_of(candidate: str, scores: Mapping[str, float]) -> float:
    return scores.get(candidate, PRIOR_SCORE)


@dataclass
class _Side:
    answer: str
    voters: list[Member]
    first: int  # the candidate index of its first voter
    weight: float = 0.0
    reputation: float = 0.0


def tally(rule: Rule, members: Sequence[Member], scores: Mapping[str, float]) -> list[_Side]:
    """The answers given by completed members, best first (most votes, then reputation, then order)."""
    sides: dict[str, _Side] = {}
    for index, member in enumerate(members):
        if member.state is not AgentState.COMPLETED:
            continue
        said = answer(member.result, rule)
        if said is None:
            continue
        side = sides.setdefault(said, _Side(said, [], index))
        side.voters.append(member)
        score = score_of(member.candidate, scores)
        side.weight += score if rule.weighted else 1.0
        side.reputation += score
    return sorted(sides.values(), key=lambda s: (-round(s.weight, 9), -round(s.reputation, 9), s.first))


def _vote(rule: Rule, members: Sequence[Member], done: list[Member], scores: Mapping[str, float]) -> Verdict:
    sides = tally(rule, members, scores)
    if not sides:
        why = _failures(members) if len(done) < len(members) else None
        what = "no candidate gave an answer to vote on" + (f" ({rule.vote_on})" if rule.vote_on else "")
        return Verdict(False, None, f"{what}: {why}" if why else what)
    best = sides[0]
    winner = max(best.voters, key=lambda m: score_of(m.candidate, scores))  # max keeps the first on a tie
    return Verdict(True, winner.result, _failures(members))


def _quorum(
    rule: Rule, members: Sequence[Member], done: list[Member], scores: Mapping[str, float]
) -> Verdict | None:
    need = rule.quorum or 1
    plain = Rule(rule.aggregate, rule.structured, rule.vote_on)  # one vote each
    sides = tally(plain, members, scores)
    agreed = [s for s in sides if len(s.voters) >= need]
    if agreed:
        first = min(agreed, key=lambda s: (sorted(_time(v) for v in s.voters)[need - 1], s.first))
        winner = min(first.voters, key=_time)
        return Verdict(True, winner.result)
    open_ = sum(1 for m in members if not m.state.terminal)
    most = max((len(s.voters) for s in sides), default=0)
    if most + open_ < need:
        said = f"at most {most} agree" if sides else "no candidate gave an answer"
        why = _failures(members)
        return Verdict(False, None, f"no quorum of {need} possible: {said}" + (f"; {why}" if why else ""))
    return None


def _time(m: Member) -> float:
    return m.ended_at if m.ended_at is not None else float("inf")


def _output(m: Member, rule: Rule) -> Any:
    if m.result is None or not rule.structured:
        return m.result
    try:
        return json.loads(m.result)
    except ValueError:
        return m.result


def _failures(members: Sequence[Member]) -> str | None:
    bad = [m for m in members if m.state.terminal and m.state is not AgentState.COMPLETED]
    if not bad:
        return None
    shown = ", ".join(f"{m.candidate} {m.state.value}" for m in bad)
    return f"{len(bad)} of {len(members)} candidates did not complete: {shown}"
