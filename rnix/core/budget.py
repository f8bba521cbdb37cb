"""Dividing a token pool among agents. Pure and deterministic; documented in docs/budget.md.

Rules, in order:
1. Without a pool every agent gets its explicit `budget`, or `DEFAULT_AGENT_BUDGET`.
2. With a pool, explicit budgets are honoured first, in funding order (priority high -> low, then
   agents on the critical path, then name). An explicit budget that no longer fits in what is left
   is not cut down: that agent is *unfunded* (budget 0) and will not start.
3. What is left is divided among the other agents by weight: `equal` 1 each; `priority`
   high 4, normal 2, low 1; `proportional` each definition's historical average use (an agent with no
   history weighs the mean of those that have one; with no history at all the split is equal).
4. Shares are rounded down; the few tokens left by rounding go one each to agents in funding order.
   So the sum of budgets never exceeds the pool, and it equals the pool when any agent has no explicit
   budget. An agent whose share is 0 is unfunded.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from rnix.core.fields import DEFAULT_AGENT_BUDGET
from rnix.core.model import BudgetPool

PRIORITY_WEIGHT = {"high": 4, "normal": 2, "low": 1}
PRIORITY_RANK = {"high": 0, "normal": 1, "low": 2}


@dataclass(frozen=True)
class Request:
    """What one agent asks of the pool."""

    name: str
    priority: str = "normal"
    explicit: int | None = None
    critical: bool = False
    history: float | None = None  # average tokens per run of this agent's definition


@dataclass(frozen=True)
class Allocation:
    """The outcome: a budget per agent (0 = unfunded) and how it was reached."""

    budgets: Mapping[str, int]
    total: int | None
    strategy: str | None
    note: str = ""
    unfunded: tuple[str, ...] = field(default=())

    @property
    def allocated(self) -> int:
        return sum(self.budgets.values())


def funding_order(requests: Sequence[Request]) -> list[Request]:
    return sorted(requests, key=lambda r: (PRIORITY_RANK[r.priority], not r.critical, r.name))


def allocate(
    requests: Sequence[Request], pool: BudgetPool | None, default_budget: int = DEFAULT_AGENT_BUDGET
) -> Allocation:
    """Budgets for `requests` under `pool` (see the module docstring for the rules)."""
    if pool is None:
        fixed = {r.name: r.explicit if r.explicit is not None else default_budget for r in requests}
        return Allocation(MappingProxyType(fixed), None, None)
    budgets: dict[str, int] = {}
    left = pool.total
    for req in funding_order([r for r in requests if r.explicit is not None]):
        assert req.explicit is not None
        fits = req.explicit <= left
        budgets[req.name] = req.explicit if fits else 0
        left -= budgets[req.name]
    shared = funding_order([r for r in requests if r.explicit is None])
    weights, note = _weights(shared, pool.allocation)
    total_weight = sum(weights.values())
    if shared:
        shares = {r.name: left * weights[r.name] // total_weight for r in shared}
        spare = left - sum(shares.values())
        for req in shared[:spare]:
            shares[req.name] += 1
        budgets.update(shares)
    ordered = {r.name: budgets[r.name] for r in requests}
    unfunded = tuple(name for name, value in ordered.items() if value == 0)
    return Allocation(MappingProxyType(ordered), pool.total, pool.allocation, note, unfunded)


def _weights(requests: Sequence[Request], strategy: str) -> tuple[dict[str, int], str]:
    """Integer weights (exact arithmetic: no float rounding can push a sum over the pool)."""
    if strategy == "priority":
        return {r.name: PRIORITY_WEIGHT[r.priority] for r in requests}, ""
    if strategy == "proportional":
        known = [max(1, round(r.history)) for r in requests if r.history is not None]
        if not known:
            note = "no history yet: divided equally" if requests else ""
            return {r.name: 1 for r in requests}, note
        mean = max(1, round(sum(known) / len(known)))
        weights = {r.name: max(1, round(r.history)) if r.history is not None else mean for r in requests}
        missing = sum(r.history is None for r in requests)
        return weights, f"{missing} agent(s) without history weighed as the mean" if missing else ""
    return {r.name: 1 for r in requests}, ""
