"""What the types cannot check about pipelines: what expressions and templates refer to, and loops.

- `when`, `for_each` and `{{ agents.x... }}` in an intent or command may read only agents this one
  depends on (directly or not): anything else may not have run yet. Unknown agents get a "did you
  mean". `{{ item }}` and `{{ index }}` belong to `for_each` agents; `item_name`, `max_parallel` on an
  agent and `for_each_policy` need `for_each`.
- A jury (`aggregate`) needs `candidates` and no `for_each`; `quorum` goes with and only with
  `aggregate: quorum` (1 to the number of candidates); `vote_on` needs `aggregate: vote` or `quorum`
  and an `output_schema` (naming one of its properties when it lists them); `weights` needs `vote`.
- A loop's body names agents of the file, each in one loop at most; `until` reads agents of the body
  or upstream of it; no agent outside the body may sit between two of its agents (it would wait for
  the loop to end while the loop waits for it).
- Reading `agents.x.output.p` where x's `output_schema` lists its properties and `p` is not one of
  them is a warning (it is most likely a typo, but the schema may allow more).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from rnix.core import expr
from rnix.core.model import AgentSpec, ComposeSpec
from rnix.core.problems import did_you_mean
from rnix.core.types import Checker, Path


def check(spec: ComposeSpec, graph: Mapping[str, list[str]], ck: Checker) -> list[str]:
    """Report problems to `ck`; return the warnings (as `file:line: key: message` lines)."""
    warnings: list[str] = []
    names = [a.name for a in spec.agents]
    upstream = {name: _ancestors(graph, name) for name in names}
    schemas = {a.name: a.output_schema for a in spec.agents}
    for agent in spec.agents:
        _check_agent(agent, names, upstream[agent.name], schemas, ck, warnings)
        _check_jury(agent, ck)
    _check_loops(spec, names, graph, upstream, schemas, ck, warnings)
    return warnings


def warnings_of(spec: ComposeSpec, lines: Mapping[Path, int]) -> list[str]:
    """The warnings of a valid spec, once its `output_schema: {$ref}` files have been read."""
    if not any(a.output_schema is not None for a in spec.agents):
        return list(spec.warnings)
    ck = Checker(spec.file, lines)
    return check(spec, {a.name: list(a.depends_on) for a in spec.agents}, ck)


def _check_agent(
    agent: AgentSpec,
    names: list[str],
    upstream: set[str],
    schemas: Mapping[str, object],
    ck: Checker,
    warnings: list[str],
) -> None:
    base: Path = ("agents", agent.name)
    if agent.for_each is None:
        for key, value in (
            ("item_name", agent.item_name),
            ("max_parallel", agent.max_parallel),
        ):
            if value is not None:
                ck.error((*base, key), "applies only to an agent with for_each")
        if agent.for_each_policy != "all":
            ck.error((*base, "for_each_policy"), "applies only to an agent with for_each")
    for key, text in (("when", agent.when), ("for_each", agent.for_each)):
        if text is not None and _syntax((*base, key), text, ck):
            _references((*base, key), text, agent.name, names, upstream, schemas, ck, warnings)
    templates: list[tuple[Path, str]] = [((*base, "intent"), agent.intent)]
    if agent.command is not None:
        templates += [((*base, "command"), arg) for arg in agent.command]
    if agent.item_name is not None:
        templates.append(((*base, "item_name"), agent.item_name))
    for path, text in templates:
        for placeholder in expr.template_paths(text):
            root = placeholder.split(".", 1)[0].split("[", 1)[0]
            if root in ("item", "index") and agent.for_each is None:
                ck.error(path, f"{{{{ {placeholder} }}}} is only set in an agent with for_each")
            if root == "agents":
                _references(path, placeholder, agent.name, names, upstream, schemas, ck, warnings)


def _syntax(path: Path, text: str, ck: Checker) -> bool:
    error = expr.syntax_error(text)
    if error is not None:
        ck.error(path, f"invalid expression: {error}")
    return error is None


def _references(
    path: Path,
    text: str,
    owner: str,
    names: list[str],
    upstream: set[str],
    schemas: Mapping[str, object],
    ck: Checker,
    warnings: list[str],
    what: str = "depend on",
) -> None:
    for name, prop in expr.agent_references(text):
        if name not in names:
            ck.error(path, f"unknown agent '{name}'{did_you_mean(name, names)}")
        elif name not in upstream:
            hint = f"add it to {owner}'s depends_on" if what == "depend on" else "add it to the body"
            ck.error(path, f"reads agent '{name}', which '{owner}' does not {what}: {hint}")
        elif prop is not None:
            _warn_property(path, name, prop, schemas.get(name), ck, warnings)


def _warn_property(
    path: Path, name: str, prop: str, schema: object, ck: Checker, warnings: list[str]
) -> None:
    if not isinstance(schema, Mapping):
        return
    properties = schema.get("properties")
    if not isinstance(properties, Mapping) or prop in properties:
        return
    line = ck.line(path)
    where = f"{ck.file}:{line}" if line else ck.file
    known = ", ".join(str(p) for p in properties) or "none"
    key = ".".join(str(p) for p in path)
    warnings.append(
        f"{where}: {key}: reads agents.{name}.output.{prop}, but {name}'s output_schema defines no "
        f"property '{prop}' (it defines: {known}){did_you_mean(prop, [str(p) for p in properties])}"
    )


def _check_loops(
    spec: ComposeSpec,
    names: list[str],
    graph: Mapping[str, list[str]],
    upstream: Mapping[str, set[str]],
    schemas: Mapping[str, object],
    ck: Checker,
    warnings: list[str],
) -> None:
    owner: dict[str, str] = {}
    for loop in spec.loops:
        base: Path = ("loops", loop.name)
        body = [n for n in loop.body if n in names]
        for i, name in enumerate(loop.body):
            if name not in names:
                ck.error((*base, "body", i), f"unknown agent '{name}'{did_you_mean(name, names)}")
            elif name in owner:
                ck.error((*base, "body", i), f"agent '{name}' is already in loop '{owner[name]}'")
            else:
                owner[name] = loop.name
        reach = set(body).union(*(upstream[n] for n in body)) if body else set()
        if _syntax((*base, "until"), loop.until, ck):
            _references((*base, "until"), loop.until, loop.name, names, reach, schemas, ck, warnings, "reach")
        between = _between(graph, set(body))
        for name in sorted(between):
            ck.error(
                ("agents", name, "depends_on"),
                f"'{name}' depends on an agent of loop '{loop.name}' and an agent of the loop depends "
                f"on it: it would wait for the loop to end while the loop waits for it (add it to the body)",
            )


def _ancestors(graph: Mapping[str, Iterable[str]], name: str) -> set[str]:
    seen: set[str] = set()
    todo = list(graph.get(name, ()))
    while todo:
        dep = todo.pop()
        if dep not in seen:
            seen.add(dep)
            todo.extend(graph.get(dep, ()))
    return seen


def _between(graph: Mapping[str, Iterable[str]], body: set[str]) -> set[str]:
    """Agents outside `body` that depend on one of its agents and that one of its agents depends on."""
    above = set().union(*(_ancestors(graph, n) for n in body)) - body if body else set()
    return {n for n in above if _ancestors(graph, n) & body}


def _check_jury(agent: AgentSpec, ck: Checker) -> None:
    base: Path = ("agents", agent.name)
    aggregate = agent.aggregate
    if aggregate is not None and not agent.candidates:
        ck.error((*base, "aggregate"), "needs `candidates`: the agent definitions that form the jury")
    if aggregate is not None and agent.for_each is not None:
        ck.error(
            (*base, "aggregate"), "cannot be combined with for_each (a jury's instances are its candidates)"
        )
    if aggregate == "quorum" and agent.quorum is None:
        ck.error((*base, "aggregate"), "`aggregate: quorum` needs `quorum: N` (how many must agree)")
    if agent.quorum is not None:
        if aggregate != "quorum":
            ck.error((*base, "quorum"), "applies only with `aggregate: quorum`")
        elif agent.candidates and agent.quorum > len(agent.candidates):
            ck.error(
                (*base, "quorum"),
                f"is {agent.quorum}, but there are only {len(agent.candidates)} candidates to agree",
            )
    if agent.weights != "equal" and aggregate != "vote":
        ck.error((*base, "weights"), "applies only with `aggregate: vote`")
    if agent.vote_on is not None:
        if aggregate not in ("vote", "quorum"):
            ck.error((*base, "vote_on"), "applies only with `aggregate: vote` or `aggregate: quorum`")
        if agent.output_schema is None:
            ck.error((*base, "vote_on"), "needs an output_schema: it names a field of the structured result")
        else:
            properties = agent.output_schema.get("properties")
            if isinstance(properties, Mapping) and agent.vote_on not in properties:
                hint = did_you_mean(agent.vote_on, [str(p) for p in properties])
                ck.error(
                    (*base, "vote_on"), f"'{agent.vote_on}' is not a property of the output_schema{hint}"
                )
