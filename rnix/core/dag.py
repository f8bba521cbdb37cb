"""The dependency graph: cycles, topological layers and the critical path.

A graph maps each node to the nodes it depends on (its predecessors). Everything is deterministic:
layers are sorted by name and ties on the critical path go to the alphabetically first node.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from graphlib import TopologicalSorter  # stdlib; the graphlib-backport package provides it before 3.9

Graph = Mapping[str, Sequence[str]]


def find_cycles(graph: Graph) -> list[list[str]]:
    """One cycle per strongly connected component, as `[a, b, a]` (a depends on b, b on a).

    Self-dependencies are not reported here (the validator words them separately).
    """
    cycles = []
    for component in _strongly_connected(graph):
        if len(component) < 2:
            continue
        members = set(component)
        start = min(component)
        cycles.append(_cycle_through(start, graph, members))
    return sorted(cycles)


def _strongly_connected(graph: Graph) -> list[list[str]]:
    """Tarjan's algorithm, iterative (no recursion limit on long chains)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work: list[tuple[str, int]] = [(root, 0)]
        while work:
            node, i = work.pop()
            if i == 0:
                index[node] = low[node] = counter
                counter += 1
                stack.append(node)
                on_stack.add(node)
            succ = [s for s in graph.get(node, ()) if s in graph and s != node]
            if i < len(succ):
                work.append((node, i + 1))
                nxt = succ[i]
                if nxt not in index:
                    work.append((nxt, 0))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                out.append(component)
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
    return out


def _cycle_through(start: str, graph: Graph, members: set[str]) -> list[str]:
    """A shortest cycle from `start` back to itself inside one component (BFS)."""
    parent: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt_frontier = []
        for node in frontier:
            for succ in sorted(graph.get(node, ())):
                if succ not in members:
                    continue
                if succ == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(parent[path[-1]])
                    return [start, *reversed(path[:-1]), start] if node != start else [start, start]
                if succ not in parent:
                    parent[succ] = node
                    nxt_frontier.append(succ)
        frontier = nxt_frontier
    return [start, start]  # pragma: no cover - members always contain a cycle


def layers(graph: Graph) -> list[list[str]]:
    """Topological layers: layer 1 has no dependencies, layer n depends only on layers < n."""
    sorter = TopologicalSorter({node: list(deps) for node, deps in graph.items()})
    sorter.prepare()
    out = []
    while sorter.is_active():
        ready = sorted(sorter.get_ready())
        out.append(ready)
        sorter.done(*ready)
    return out


def critical_path(graph: Graph, weight: Mapping[str, float] | None = None) -> list[str]:
    """The heaviest dependency chain (each node weighs `weight[node]`, default 1)."""
    best: dict[str, tuple[float, list[str]]] = {}
    for layer in layers(graph):
        for node in layer:
            own = 1.0 if weight is None else weight.get(node, 1.0)
            prev: tuple[float, list[str]] = (0.0, [])
            for dep in sorted(graph.get(node, ())):
                if best[dep][0] > prev[0]:
                    prev = best[dep]
            best[node] = (prev[0] + own, [*prev[1], node])
    if not best:
        return []
    top = max(score for score, _ in best.values())
    return min(path for score, path in best.values() if score == top)
