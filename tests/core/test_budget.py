from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from rnix.core.budget import DEFAULT_AGENT_BUDGET, Request, allocate
from rnix.core.model import BudgetPool


def test_without_pool_explicit_or_default() -> None:
    alloc = allocate([Request("a", explicit=100), Request("b")], None)
    assert dict(alloc.budgets) == {"a": 100, "b": DEFAULT_AGENT_BUDGET}
    assert alloc.total is None and alloc.unfunded == ()


def test_priority_weights_four_two_one_and_rounding_goes_to_high_first() -> None:
    alloc = allocate([Request("l", "low"), Request("n", "normal"), Request("h", "high")], BudgetPool(701))
    assert dict(alloc.budgets) == {"l": 100, "n": 200, "h": 401}
    assert alloc.allocated == 701


def test_equal_split_hands_out_remainder_deterministically() -> None:
    alloc = allocate([Request("b"), Request("a"), Request("c")], BudgetPool(10, "equal"))
    assert dict(alloc.budgets) == {"b": 3, "a": 4, "c": 3}


def test_explicit_budgets_first_and_not_cut_down() -> None:
    reqs = [Request("big", "low", explicit=900), Request("small", "high", explicit=200), Request("rest")]
    alloc = allocate(reqs, BudgetPool(1000))
    # high priority is funded first; the 900 no longer fits and is not cut down
    assert dict(alloc.budgets) == {"big": 0, "small": 200, "rest": 800}
    assert alloc.unfunded == ("big",)


def test_pool_too_small_for_everyone_leaves_some_unfunded() -> None:
    alloc = allocate([Request(f"a{i}") for i in range(5)], BudgetPool(3, "equal"))
    assert sorted(alloc.budgets.values()) == [0, 0, 1, 1, 1]
    assert len(alloc.unfunded) == 2


def test_proportional_without_history_is_equal_with_a_note() -> None:
    alloc = allocate([Request("a"), Request("b")], BudgetPool(100, "proportional"))
    assert dict(alloc.budgets) == {"a": 50, "b": 50}
    assert "no history" in alloc.note


def test_proportional_follows_history_and_newcomers_get_the_mean() -> None:
    reqs = [Request("a", history=300), Request("b", history=100), Request("new")]
    alloc = allocate(reqs, BudgetPool(600, "proportional"))
    assert dict(alloc.budgets) == {"a": 300, "b": 100, "new": 200}
    assert "mean" in alloc.note


def test_critical_path_breaks_ties_for_rounding() -> None:
    alloc = allocate([Request("a"), Request("b", critical=True)], BudgetPool(3, "equal"))
    assert dict(alloc.budgets) == {"a": 1, "b": 2}


priorities = st.sampled_from(["high", "normal", "low"])
requests = st.lists(
    st.builds(
        Request,
        name=st.text("abcdefgh", min_size=1, max_size=6),
        priority=priorities,
        explicit=st.one_of(st.none(), st.integers(1, 5000)),
        critical=st.booleans(),
        history=st.one_of(st.none(), st.floats(0, 1e6)),
    ),
    max_size=30,
    unique_by=lambda r: r.name,
)
pools = st.builds(
    BudgetPool,
    total=st.integers(1, 200_000),
    allocation=st.sampled_from(["priority", "equal", "proportional"]),
)


@given(requests, pools)
def test_allocation_never_exceeds_the_pool(reqs: list[Request], pool: BudgetPool) -> None:
    alloc = allocate(reqs, pool)
    assert alloc.allocated <= pool.total
    assert set(alloc.budgets) == {r.name for r in reqs}
    assert all(b >= 0 for b in alloc.budgets.values())
    if any(r.explicit is None for r in reqs):
        assert alloc.allocated == pool.total  # nothing is left lying around
    for r in reqs:  # explicit budgets are all-or-nothing
        if r.explicit is not None:
            assert alloc.budgets[r.name] in (0, r.explicit)


@given(requests, st.integers(1, 200_000))
def test_higher_priority_never_gets_less_for_the_same_request(reqs: list[Request], total: int) -> None:
    alloc = allocate(reqs, BudgetPool(total, "priority"))
    rank = {"high": 0, "normal": 1, "low": 2}
    for a in reqs:
        for b in reqs:
            if rank[a.priority] < rank[b.priority] and a.explicit == b.explicit:
                assert alloc.budgets[a.name] >= alloc.budgets[b.name], (a, b, dict(alloc.budgets))
