from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from rnix.core import dag


def test_layers_group_ready_nodes_and_sort_by_name() -> None:
    graph = {"d": ["b", "c"], "c": ["a"], "b": ["a"], "a": [], "e": []}
    assert dag.layers(graph) == [["a", "e"], ["b", "c"], ["d"]]


def test_critical_path_is_longest_chain_with_alphabetical_tie_break() -> None:
    graph = {"a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"], "x": []}
    assert dag.critical_path(graph) == ["a", "b", "d"]


def test_critical_path_uses_weights() -> None:
    graph = {"a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"]}
    assert dag.critical_path(graph, {"a": 1, "b": 1, "c": 5, "d": 1}) == ["a", "c", "d"]


def test_empty_graph() -> None:
    assert dag.layers({}) == []
    assert dag.critical_path({}) == []


def test_cycle_is_reported_as_path_back_to_start() -> None:
    graph = {"writer": ["reviewer"], "reviewer": ["editor"], "editor": ["writer"], "solo": []}
    assert dag.find_cycles(graph) == [["editor", "writer", "reviewer", "editor"]]


def test_each_cycle_component_reported_once() -> None:
    graph = {"a": ["b"], "b": ["a"], "c": ["d"], "d": ["c"], "e": ["a"]}
    assert dag.find_cycles(graph) == [["a", "b", "a"], ["c", "d", "c"]]


def test_long_chain_has_no_recursion_limit() -> None:
    graph = {f"n{i}": [f"n{i - 1}"] if i else [] for i in range(5000)}
    assert dag.find_cycles(graph) == []
    assert len(dag.layers(graph)) == 5000


@st.composite
def acyclic_graphs(draw: st.DrawFn) -> dict[str, list[str]]:
    count = draw(st.integers(min_value=0, max_value=25))
    names = [f"n{i}" for i in range(count)]
    graph: dict[str, list[str]] = {}
    for i, name in enumerate(names):
        graph[name] = draw(st.lists(st.sampled_from(names[:i]), unique=True)) if i else []
    return graph


@given(acyclic_graphs())
def test_layers_respect_every_dependency(graph: dict[str, list[str]]) -> None:
    layer_of = {n: i for i, layer in enumerate(dag.layers(graph)) for n in layer}
    assert set(layer_of) == set(graph)
    for node, deps in graph.items():
        for dep in deps:
            assert layer_of[dep] < layer_of[node]
        if deps:  # a node sits in the first layer after its last dependency
            assert layer_of[node] == max(layer_of[d] for d in deps) + 1
    assert dag.find_cycles(graph) == []


@given(acyclic_graphs())
def test_critical_path_is_a_chain_as_long_as_the_layering(graph: dict[str, list[str]]) -> None:
    path = dag.critical_path(graph)
    assert len(path) == len(dag.layers(graph))
    for earlier, later in itertools.pairwise(path):
        assert earlier in graph[later]
