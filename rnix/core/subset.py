"""`compose up AGENT...`: the part of a compose file that running some of its agents needs.

Contract: `only(spec, names)` keeps the named agents and, transitively, every agent they depend on
and the whole body of every loop one of them is in (a loop runs whole), in the file's order, and
returns a new `ComposeSpec` (the input is not changed); an empty `names` returns `spec` itself.
`unknown(spec, names)` lists the names that are no agent of the file, so the caller can refuse them
before planning. Pure: no I/O.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from rnix.core.model import ComposeSpec


def unknown(spec: ComposeSpec, names: Iterable[str]) -> list[str]:
    known = {agent.name for agent in spec.agents}
    return [name for name in names if name not in known]


def only(spec: ComposeSpec, names: Iterable[str]) -> ComposeSpec:
    wanted = list(dict.fromkeys(names))
    if not wanted:
        return spec
    by_name = {agent.name: agent for agent in spec.agents}
    keep: set[str] = set()
    while wanted:
        name = wanted.pop()
        if name in keep or name not in by_name:
            continue
        keep.add(name)
        wanted.extend(by_name[name].depends_on)
        loop = spec.loop_of(name)
        if loop is not None:  # a loop runs whole: its `until` reads its body
            wanted.extend(loop.body)
    return dataclasses.replace(
        spec,
        agents=tuple(a for a in spec.agents if a.name in keep),
        loops=tuple(loop for loop in spec.loops if set(loop.body) <= keep),
    )
