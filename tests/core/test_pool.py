from __future__ import annotations

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from rnix.core import budget
from rnix.core.budget import Request, allocate
from rnix.core.fields import DEFAULT_AGENT_BUDGET
from rnix.core.model import BudgetPool
from rnix.core.pool import CRITICAL_BOOST, Pool, PoolError, divide

RANK = budget.PRIORITY_RANK


def fund_all(pool: Pool, names: list[str]) -> dict[str, int]:
    return {name: pool.fund(name) for name in names}


# --- rule 1: no pool --------------------------------------------------------------------------------


def test_without_pool_explicit_or_default_and_nothing_is_shared() -> None:
    pool = Pool([Request("a", explicit=100), Request("b")], None)
    assert pool.total == 100 + DEFAULT_AGENT_BUDGET
    assert pool.reserved == pool.total and pool.available == 0
    assert pool.fund("a") == 100
    assert pool.release("a", 40) == 60
    assert pool.planned("b") == DEFAULT_AGENT_BUDGET  # the 60 tokens are not handed to anyone
    assert pool.available == 60 and pool.returned == 60
    assert pool.fund("b") == DEFAULT_AGENT_BUDGET


# --- rules 2 and 3: the static division, then re-division -------------------------------------------


def test_without_returns_the_run_gets_what_compose_plan_showed_in_any_order() -> None:
    reqs = [Request("l", "low"), Request("n", "normal"), Request("h", "high")]
    for order in (["l", "n", "h"], ["h", "l", "n"], ["n", "h", "l"]):
        assert fund_all(Pool(reqs, BudgetPool(701)), order) == {"l": 100, "n": 200, "h": 401}


def test_explicit_budgets_reserved_first_and_never_cut_down() -> None:
    reqs = [Request("big", "low", explicit=900), Request("small", "high", explicit=200), Request("rest")]
    pool = Pool(reqs, BudgetPool(1000))
    assert (pool.reserved, pool.available) == (200, 800)
    assert pool.fund("small") == 200
    assert pool.release("small", 50) == 150
    assert pool.fund("rest") == 950
    assert pool.fund("big") == 0  # tokens that came back do not revive a refused explicit budget


def test_unused_tokens_are_re_divided_among_agents_not_yet_started() -> None:
    pool = Pool([Request("a"), Request("b"), Request("c")], BudgetPool(1000, "equal"))
    assert [pool.planned(n) for n in "abc"] == [334, 333, 333]
    assert pool.fund("a") == 334
    assert pool.release("a", 34) == 300
    assert (pool.planned("b"), pool.planned("c")) == (483, 483)
    assert pool.fund("b") == 483
    assert pool.planned("a") == 334  # a finished agent keeps showing what it was given


def test_overspend_returns_nothing_and_is_not_charged_to_the_pool() -> None:
    pool = Pool([Request("a"), Request("b")], BudgetPool(1000, "equal"))
    pool.fund("a")
    assert pool.release("a", 5000) == 0
    assert (pool.committed, pool.returned, pool.available) == (500, 0, 500)


def test_cancel_re_divides_a_share_or_a_reservation() -> None:
    pool = Pool([Request("a"), Request("b"), Request("c")], BudgetPool(900, "equal"))
    pool.cancel("c")
    assert (pool.planned("a"), pool.planned("b"), pool.planned("c")) == (450, 450, 0)
    pool.cancel("c")  # once cancelled, cancelling again changes nothing
    assert pool.fund("c") == 0

    pool = Pool([Request("x", explicit=300), Request("y")], BudgetPool(1000))
    pool.cancel("x")
    assert (pool.reserved, pool.planned("y")) == (0, 1000)


def test_an_agent_the_plan_could_not_fund_may_start_once_tokens_come_back() -> None:
    pool = Pool([Request("a"), Request("b")], BudgetPool(1, "equal"))
    assert (pool.planned("a"), pool.planned("b")) == (1, 0)
    pool.fund("a")
    pool.release("a", 0)
    assert pool.fund("b") == 1


# --- rules 4 and 6: short pools, refusals and the critical path ------------------------------------


def test_pool_too_small_later_agents_get_nothing_and_stay_refused() -> None:
    names = [f"a{i}" for i in range(5)]
    pool = Pool([Request(n) for n in names], BudgetPool(3, "equal"))
    assert pool.fund("a4") == 0  # refused: must not start
    assert fund_all(pool, ["a0"]) == {"a0": 1}
    pool.release("a0", 0)
    assert pool.planned("a1") == 2  # the returned token went to a waiting agent, not to refused a4
    assert pool.fund("a4") == 0
    assert fund_all(pool, ["a1", "a2", "a3"]) == {"a1": 2, "a2": 1, "a3": 0}


def test_critical_explicit_budget_is_reserved_ahead_of_a_non_critical_one() -> None:
    reqs = [Request("a", explicit=600), Request("b", explicit=600)]
    pool = Pool(reqs, BudgetPool(1000), critical={"b"})
    assert pool.fund("a") == 0  # starting first does not help a: b was reserved at construction
    assert pool.fund("b") == 600


def test_critical_sharing_agent_gets_the_last_token_ahead_of_a_non_critical_one() -> None:
    pool = Pool([Request("a"), Request("b")], BudgetPool(1, "equal"), critical={"b"})
    assert (pool.fund("a"), pool.fund("b")) == (0, 1)


def test_while_short_returned_tokens_weigh_critical_agents_double() -> None:
    reqs = [Request("a"), Request("b"), Request("c"), Request("d")]
    pool = Pool(reqs, BudgetPool(400, "equal"), critical={"c"})
    assert [pool.planned(n) for n in "abc"] == [100, 100, 100]  # the plan itself is not doubled
    pool.fund("d")
    pool.release("d", 10)  # 390 available for 3 waiting agents: short of 3 * MIN_USEFUL
    # 90 tokens by weight 1:1:2, the rounding leftover to c (critical first among normal priority)
    assert [pool.planned(n) for n in "abc"] == [122, 122, 146]


def test_when_not_short_returned_tokens_are_divided_by_plain_weight() -> None:
    reqs = [Request("a"), Request("b"), Request("c"), Request("d")]
    pool = Pool(reqs, BudgetPool(4000, "equal"), critical={"c"})
    pool.fund("d")
    pool.release("d", 10)
    assert [pool.planned(n) for n in "abc"] == [1330, 1330, 1330]


def test_critical_keyword_is_the_same_as_critical_requests() -> None:
    reqs = [Request("a"), Request("b", critical=True), Request("c")]
    by_flag = Pool(reqs, BudgetPool(10, "equal"))
    by_keyword = Pool([Request("a"), Request("b"), Request("c")], BudgetPool(10, "equal"), critical=["b"])
    assert [by_flag.planned(n) for n in "abc"] == [by_keyword.planned(n) for n in "abc"] == [3, 4, 3]


# --- lifecycle misuse ------------------------------------------------------------------------------


def test_retry_keeps_its_budget() -> None:
    pool = Pool([Request("a"), Request("b")], BudgetPool(1000))
    assert pool.fund("a") == pool.fund("a") == 500
    assert pool.committed == 500


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        ([("fund", "zz", 0)], "no agent named"),
        ([("release", "a", 0)], "never funded"),
        ([("fund", "a", 0), ("release", "a", 1), ("release", "a", 1)], "already released"),
        ([("fund", "a", 0), ("release", "a", 1), ("fund", "a", 0)], "cannot start again"),
        ([("fund", "a", 0), ("cancel", "a", 0)], "has started"),
        ([("fund", "a", 0), ("release", "a", -1)], "cannot have used"),
    ],
)
def test_lifecycle_misuse_is_a_pool_error(steps: list[tuple[str, str, int]], message: str) -> None:
    pool = Pool([Request("a"), Request("b")], BudgetPool(1000))
    *setup, (kind, name, used) = steps
    for step in setup:
        apply(pool, step)
    with pytest.raises(PoolError, match=message):
        apply(pool, (kind, name, used))


def apply(pool: Pool, step: tuple[str, str, int]) -> None:
    kind, name, used = step
    if kind == "fund":
        pool.fund(name)
    elif kind == "release":
        pool.release(name, used)
    else:
        pool.cancel(name)


def test_duplicate_agents_and_unknown_critical_names_are_rejected() -> None:
    with pytest.raises(PoolError, match="only once"):
        Pool([Request("a"), Request("a")], BudgetPool(10))
    with pytest.raises(PoolError, match="zz"):
        Pool([Request("a")], BudgetPool(10), critical={"zz"})


def test_divide_hands_leftovers_in_order() -> None:
    assert divide(10, {"b": 1, "a": 1, "c": 1}) == {"b": 4, "a": 3, "c": 3}
    assert divide(7, {"h": 4, "n": 2, "l": 1}) == {"h": 4, "n": 2, "l": 1}


# --- properties ------------------------------------------------------------------------------------

priorities = st.sampled_from(["high", "normal", "low"])
request_lists = st.lists(
    st.builds(
        Request,
        name=st.text("abcdefgh", min_size=1, max_size=4),
        priority=priorities,
        explicit=st.one_of(st.none(), st.integers(1, 5000)),
        critical=st.booleans(),
        history=st.one_of(st.none(), st.sampled_from([0.0, 10.0, 300.0, 1e6])),
    ),
    min_size=1,
    max_size=12,
    unique_by=lambda r: r.name,
)
real_pools = st.builds(
    BudgetPool,
    total=st.one_of(st.integers(0, 40), st.integers(1, 20_000)),
    allocation=st.sampled_from(["priority", "equal", "proportional"]),
)
pools = st.one_of(st.none(), real_pools)
ops = st.lists(
    st.tuples(st.sampled_from(["fund", "release", "cancel"]), st.integers(0, 99), st.integers(0, 6000)),
    max_size=40,
)


class Run:
    """Drives a Pool with arbitrary steps, tracking each agent's stage to know which steps are legal."""

    def __init__(self, reqs: list[Request], pool: BudgetPool | None) -> None:
        self.reqs, self.strategy = reqs, pool.allocation if pool else None
        self.pool = Pool(reqs, pool)
        self.stage = {r.name: "waiting" for r in reqs}
        self.budget: dict[str, int] = {}
        self.seen = {r.name: self.pool.planned(r.name) for r in reqs}

    def step(self, kind: str, name: str, used: int) -> None:
        stage = self.stage[name]
        if kind == "fund" and stage != "finished":
            got = self.pool.fund(name)
            assert self.pool.fund(name) == got == self.budget.setdefault(name, got)  # idempotent
            if stage == "waiting":
                self.stage[name] = "funded" if got else "refused"
        elif kind == "release" and stage == "funded":
            assert self.pool.release(name, used) == max(0, self.budget[name] - used)
            self.stage[name] = "finished"
        elif kind == "cancel" and stage not in ("funded", "finished"):
            self.pool.cancel(name)
            self.stage[name] = "cancelled" if stage == "waiting" else stage
        else:
            with pytest.raises(PoolError):
                apply(self.pool, (kind, name, used))
        self.check()

    def check(self) -> None:
        p = self.pool
        assert min(p.committed, p.reserved, p.available, p.returned) >= 0
        assert p.committed + p.reserved + p.available == p.total  # never more than the pool
        for r in self.reqs:
            planned = p.planned(r.name)
            assert planned >= 0
            if r.explicit is not None and self.strategy is not None:
                assert planned in (0, r.explicit)  # all or nothing
            if self.stage[r.name] == "waiting":
                assert planned >= self.seen[r.name]  # a waiting agent's share never shrinks
            self.seen[r.name] = planned
        self.check_order()

    def check_order(self) -> None:
        """Among waiting agents, priority (then the critical path) never gets less for the same request."""
        waiting = [r for r in self.reqs if self.stage[r.name] == "waiting"]
        for a in waiting:
            for b in waiting:
                same = a.explicit == b.explicit and (self.strategy == "priority" or a.history == b.history)
                higher = RANK[a.priority] < RANK[b.priority] and (
                    self.strategy == "priority" or a.critical == b.critical
                )
                favoured = a.priority == b.priority and a.critical and not b.critical
                if same and (higher or favoured):
                    assert self.pool.planned(a.name) >= self.pool.planned(b.name), (a, b)


@given(request_lists, pools, ops)
def test_any_sequence_keeps_the_pool_invariants(
    reqs: list[Request], pool: BudgetPool | None, steps: list[tuple[str, int, int]]
) -> None:
    run = Run(reqs, pool)
    run.check()
    for kind, index, used in steps:
        run.step(kind, reqs[index % len(reqs)].name, used)


@given(request_lists, pools, st.data())
def test_without_returns_every_start_order_gets_exactly_the_static_allocation(
    reqs: list[Request], pool: BudgetPool | None, data: st.DataObject
) -> None:
    order = data.draw(st.permutations([r.name for r in reqs]))
    assert fund_all(Pool(reqs, pool), order) == dict(allocate(reqs, pool).budgets)


@given(request_lists, real_pools, st.data())
def test_agents_starting_after_a_return_get_more(
    reqs: list[Request], pool: BudgetPool, data: st.DataObject
) -> None:
    order = data.draw(st.permutations(reqs))
    k = data.draw(st.integers(0, len(order) - 1))
    without, with_return = Pool(reqs, pool), Pool(reqs, pool)
    for r in order[:k]:
        assert without.fund(r.name) == with_return.fund(r.name)
    first = order[k].name
    given_ = without.fund(first)
    with_return.fund(first)
    assume(given_ > 0)
    back = data.draw(st.integers(1, given_))
    without.release(first, given_)
    with_return.release(first, given_ - back)

    weights, _ = budget._weights([r for r in reqs if r.explicit is None], pool.allocation)
    later = order[k + 1 :]
    waiting_weight = sum(weights[r.name] for r in later if r.explicit is None)
    for r in later:
        before, after = without.fund(r.name), with_return.fund(r.name)
        assert after >= before
        # enough even if everyone else were critical and doubled: this agent's share is at least 1
        if r.explicit is None and back * weights[r.name] >= CRITICAL_BOOST * waiting_weight:
            assert after > before


@given(request_lists, real_pools, st.data())
def test_returned_or_cancelled_tokens_all_go_to_waiting_sharing_agents(
    reqs: list[Request], pool: BudgetPool, data: st.DataObject
) -> None:
    p = Pool(reqs, pool)
    order = data.draw(st.permutations([r.name for r in reqs]))
    k = data.draw(st.integers(0, len(order) - 1))
    fund_all(p, order[:k])
    victim = order[k]
    sharing = [r.name for r in reqs if r.explicit is None and r.name in order[k + 1 :]]
    before = {n: p.planned(n) for n in sharing}
    if data.draw(st.booleans()):
        freed = p.planned(victim)
        p.cancel(victim)
    else:
        given_ = p.fund(victim)
        assume(given_ > 0)
        freed = p.release(victim, data.draw(st.integers(0, given_)))
    gains = {n: p.planned(n) - before[n] for n in sharing}
    if sharing:
        assert sum(gains.values()) == freed
        assert p.available == sum(p.planned(n) for n in sharing)  # the whole pool stays divided
        assert all(g >= 0 for g in gains.values())


@given(st.integers(0, 100_000), st.lists(st.integers(1, 16), min_size=1, max_size=20))
def test_divide_gives_out_exactly_the_tokens_within_one_of_proportional(tokens: int, ws: list[int]) -> None:
    weights = {str(i): w for i, w in enumerate(ws)}
    shares = divide(tokens, weights)
    assert sum(shares.values()) == tokens
    total = sum(ws)
    for name, w in weights.items():
        assert tokens * w // total <= shares[name] <= tokens * w // total + 1
