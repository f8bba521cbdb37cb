"""Funding agents from the budget pool at run time. Pure and deterministic; see docs/token-economy.md.

`compose plan` divides the pool once (`budget.allocate`). At run time the scheduler asks `Pool` for a
budget as each agent is about to start (`fund`), hands back what a finished agent did not use
(`release`) and drops agents that will never start (`cancel`). Tokens that come back are divided again
among the agents that have not started yet.

Each agent is in one stage:

    waiting --fund > 0--> funded --release--> finished
    waiting --fund = 0--> refused      (must not start)
    waiting --cancel----> cancelled    (never starts)

`fund` is idempotent: a retry keeps its budget, and a refused or cancelled agent gets 0 again. `cancel`
of a refused or cancelled agent does nothing. Anything else (an unknown name, `release` before `fund`
or twice, `fund` after `release`, `cancel` of an agent that started) raises `PoolError`: a scheduler
bug, not a budget problem.

Rules:
1. No pool: every agent gets its explicit budget or `DEFAULT_AGENT_BUDGET`. This is modelled as a pool
   of their sum in which every budget is explicit: all fit, nothing is shared, and tokens that come
   back stay unused.
2. Explicit budgets are decided at construction, exactly as `budget.allocate` does: reserved in
   funding order (priority high -> low, critical path first, then name), paid by `fund`. One that does
   not fit is never cut down: `fund` returns 0. The decision is final (tokens that come back later do
   not revive it), so the run does what `compose plan` showed.
3. The other agents share the pool by weight (`priority` high 4, normal 2, low 1; `equal` 1;
   `proportional` history, as in `budget.allocate`). Each starts with exactly its `budget.allocate`
   share. Tokens that come back (`release`, or `cancel` of a waiting agent) are divided among the
   sharing agents still waiting, by the same division: `tokens * weight // sum of their weights`, the
   few tokens left by rounding one each in funding order, and added to their shares. `fund` pays the
   share as it stands. Hence:
   - with nothing coming back, every agent gets exactly its `budget.allocate` budget, whatever the
     order in which agents start;
   - a waiting agent's share never shrinks, and a return of `r` tokens adds
     `r * weight // sum of waiting weights` (or one more) to it, with the weights of that division
     (rule 4): at least 1 once `r * weight` reaches that sum;
   - the shares of the waiting sharing agents always add up to `available`: the whole pool stays
     divided. Without rounding, and as long as the pool was never short, each share would be exactly
     `available * weight / sum of waiting weights`; only the rounding of each division separates
     them.
4. Short pool and the critical path: the pool is *short* when what is available, the returned tokens
   included, cannot give each waiting sharing agent `MIN_USEFUL` tokens. Critical-path agents are
   favoured (a) always, by funding order: they are reserved before, and get rounding leftovers before,
   agents of their priority, as in `budget.allocate`; (b) while the pool is short, tokens that come
   back are divided with critical agents' weights doubled. The starting shares are not doubled, so the
   run keeps the budgets `compose plan` showed.
5. Never more than the pool: `committed + reserved + available == total`, each at least 0, at every
   step. Provider overspend (`used > budget`) returns nothing and is not charged to the pool.
6. An agent whose share is 0 when it is about to start is refused (0): it must not start, and it takes
   no part in later divisions.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import replace

from rnix.core import budget
from rnix.core.fields import DEFAULT_AGENT_BUDGET
from rnix.core.model import BudgetPool

MIN_USEFUL = 256  # tokens below which an agent can hardly do anything: a pool that cannot give this is short
CRITICAL_BOOST = 2  # weight multiplier of a critical-path agent while the pool is short


class PoolError(ValueError):
    """The scheduler asked for a step the pool's lifecycle does not allow."""


class Pool:
    """The run-time budget pool: a state machine over agents (module docstring for the rules)."""

    def __init__(
        self,
        requests: Sequence[budget.Request],
        pool: BudgetPool | None,
        *,
        critical: Collection[str] = (),
    ) -> None:
        reqs = _normalise(requests, critical)
        if pool is None:
            reqs = [replace(r, explicit=_fixed(r)) for r in reqs]
            pool = BudgetPool(sum(_fixed(r) for r in reqs), "equal")
        static = budget.allocate(reqs, pool)
        self._total = pool.total
        self._order = [r.name for r in budget.funding_order(reqs)]
        self._explicit = frozenset(r.name for r in reqs if r.explicit is not None)
        self._critical = frozenset(r.name for r in reqs if r.critical)
        # Weights are fixed once, over every sharing agent: a `proportional` newcomer keeps weighing
        # the mean of the whole run rather than of whoever happens to be still waiting.
        self._weights, _ = budget._weights([r for r in reqs if r.explicit is None], pool.allocation)
        self._waiting: dict[str, int] = dict(static.budgets)  # what `fund` would pay now
        self._funded: dict[str, int] = {}
        self._returned: dict[str, int] = {}
        self._dropped: set[str] = set()  # refused or cancelled: will never start
        # Tokens planned for nobody. Non-zero only when no sharing agent waits (allocate divides the
        # whole rest whenever one shares), and none can wait again later, so it never needs dividing.
        self._spare = pool.total - static.allocated

    @property
    def total(self) -> int:
        return self._total

    @property
    def committed(self) -> int:
        """Tokens held by funded agents: their budgets minus what finished agents gave back."""
        return sum(self._funded.values()) - self.returned

    @property
    def returned(self) -> int:
        return sum(self._returned.values())

    @property
    def reserved(self) -> int:
        """Explicit budgets promised to agents that have not started yet."""
        return sum(v for name, v in self._waiting.items() if name in self._explicit)

    @property
    def available(self) -> int:
        """Tokens neither committed nor reserved: the waiting sharing agents' shares, plus spare."""
        return sum(v for name, v in self._waiting.items() if name not in self._explicit) + self._spare

    def planned(self, name: str) -> int:
        """What `name` gets if funded now (its budget once funded; 0 when it will never start)."""
        self._known(name)
        if name in self._funded:
            return self._funded[name]
        return self._waiting.get(name, 0)

    def fund(self, name: str) -> int:
        """The budget of `name`, which is about to start; 0 means it must not start."""
        self._known(name)
        if name in self._returned:
            raise PoolError(f"{name} has finished and released its budget; it cannot start again")
        if name in self._funded:
            return self._funded[name]  # a retry keeps its budget
        if name in self._dropped:
            return 0
        amount = self._waiting.pop(name)
        if amount == 0:
            self._dropped.add(name)
        else:
            self._funded[name] = amount
        return amount

    def release(self, name: str, used: int) -> int:
        """`name` finished for good after using `used` tokens; returns the tokens given back."""
        self._known(name)
        if used < 0:
            raise PoolError(f"{name} cannot have used {used} tokens")
        if name not in self._funded:
            raise PoolError(f"{name} was never funded, so it has nothing to release")
        if name in self._returned:
            raise PoolError(f"{name} has already released its budget")
        back = max(0, self._funded[name] - used)
        self._returned[name] = back
        self._redivide(back)
        return back

    def cancel(self, name: str) -> None:
        """`name` will never start: its share or reservation goes to the agents still waiting."""
        self._known(name)
        if name in self._funded:
            raise PoolError(f"{name} has started; release its budget when it ends instead")
        if name in self._dropped:
            return
        self._dropped.add(name)
        self._redivide(self._waiting.pop(name))

    def _known(self, name: str) -> None:
        if name not in self._explicit and name not in self._weights:
            raise PoolError(f"no agent named {name!r} draws on this pool")

    def _redivide(self, tokens: int) -> None:
        sharing = [name for name in self._order if name in self._waiting and name not in self._explicit]
        if not sharing:
            self._spare += tokens
            return
        short = self.available + tokens < MIN_USEFUL * len(sharing)
        weights = {name: self._weight(name, short) for name in sharing}
        for name, extra in divide(tokens, weights).items():
            self._waiting[name] += extra

    def _weight(self, name: str, short: bool) -> int:
        boost = CRITICAL_BOOST if short and name in self._critical else 1
        return self._weights[name] * boost


def divide(tokens: int, weights: Mapping[str, int]) -> dict[str, int]:
    """`budget.allocate`'s division: shares rounded down, leftovers one each in `weights` order."""
    total_weight = sum(weights.values())
    shares = {name: tokens * weight // total_weight for name, weight in weights.items()}
    leftover = tokens - sum(shares.values())  # fewer than len(weights): each share lost less than 1
    for name in list(shares)[:leftover]:
        shares[name] += 1
    return shares


def _fixed(request: budget.Request) -> int:
    return request.explicit if request.explicit is not None else DEFAULT_AGENT_BUDGET


def _normalise(requests: Iterable[budget.Request], critical: Collection[str]) -> list[budget.Request]:
    reqs = list(requests)
    names = [r.name for r in reqs]
    if len(set(names)) != len(names):
        raise PoolError("each agent may draw on the pool only once")
    unknown = sorted(set(critical) - set(names))
    if unknown:
        raise PoolError(f"critical-path agents not in the pool: {', '.join(unknown)}")
    return [replace(r, critical=True) if r.name in critical else r for r in reqs]
