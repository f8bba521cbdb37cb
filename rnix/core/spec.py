"""Validation: a plain YAML tree (with its line map) -> `ComposeSpec`, reporting every problem at once.

Type checks come from the field table (`fields.py`); this module adds what types cannot say:
dependency targets (with "did you mean"), cycles (printed `a -> b -> a`), command-line splitting, and
the inheritance of top-level defaults. Raises `InvalidCompose` with all problems, sorted by line.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from dataclasses import replace
from types import MappingProxyType
from typing import Any

from rnix.core import dag
from rnix.core.fields import AGENT_NAME_MAX, COMPOSE, DEFAULTS
from rnix.core.model import (
    AgentSpec,
    Approval,
    BudgetPool,
    Compensation,
    ComposeSpec,
    Contract,
    Judge,
    LoopSpec,
    ModelAlias,
)
from rnix.core.problems import did_you_mean
from rnix.core.types import INVALID, Checker, Path
from rnix.errors import InvalidCompose

# The agent keys an agent definition can supply defaults for (rnix.core.definition).
DEFINITION_DEFAULTS = frozenset({"model", "budget", "max_steps", "contract"})


def parse_compose(data: object, lines: Mapping[Path, int], file: str) -> ComposeSpec:
    """Validate `data` (as loaded from `file`) and return the normalised spec."""
    ck = Checker(file, lines)
    if data is None:
        ck.error((), "the file is empty: it needs at least an `agents:` mapping")
        raise InvalidCompose(file, ck.problems)
    checked = COMPOSE.check(data, (), ck)
    agents_raw: dict[str, Any] = {}
    if isinstance(data, dict) and isinstance(data.get("agents"), dict):
        agents_raw = data["agents"]
    names = [n for n in agents_raw if isinstance(n, str) and not n.startswith("x-")]
    for name in names:
        if len(name) > AGENT_NAME_MAX:
            ck.error(("agents", name), f"agent names are at most {AGENT_NAME_MAX} characters long")
    graph = _check_dependencies(agents_raw, names, ck)
    if checked is INVALID or ck.problems:
        raise InvalidCompose(file, _sorted(ck))
    spec = _build(checked, graph, lines, file, ck)
    if ck.problems:
        raise InvalidCompose(file, _sorted(ck))
    from rnix.core import pipeline_checks

    warnings = pipeline_checks.check(spec, graph, ck)
    if ck.problems:
        raise InvalidCompose(file, _sorted(ck))
    return replace(spec, warnings=tuple(warnings)) if warnings else spec


def _sorted(ck: Checker) -> list[Any]:
    return sorted(ck.problems, key=lambda p: (p.line or 0, p.key))


def _dependency_names(raw: object) -> list[tuple[Path, str]]:
    """The names in a depends_on value (list or mapping), with their relative key path."""
    if isinstance(raw, list):
        return [((i,), v) for i, v in enumerate(raw) if isinstance(v, str)]
    if isinstance(raw, dict):
        return [((k,), k) for k in raw if isinstance(k, str) and not k.startswith("x-")]
    return []


def _conditions(raw: object) -> dict[str, str]:
    """The dependencies of a mapping-form depends_on whose condition is not `completed`."""
    if not isinstance(raw, dict):
        return {}
    return {k: v for k, v in raw.items() if isinstance(k, str) and isinstance(v, str) and v != "completed"}


def _check_dependencies(agents: dict[str, Any], names: list[str], ck: Checker) -> dict[str, list[str]]:
    """Unknown targets and cycles; returns the graph of known edges."""
    graph: dict[str, list[str]] = {}
    known = set(names)
    for name in names:
        body = agents[name]
        deps = _dependency_names(body.get("depends_on")) if isinstance(body, dict) else []
        graph[name] = []
        for rel, dep in deps:
            path = ("agents", name, "depends_on", *rel)
            if dep == name:
                ck.error(path, f"agent '{name}' depends on itself (cycle: {name} -> {name})")
            elif dep not in known:
                others = known - {name}
                ck.error(path, f"unknown agent '{dep}'{did_you_mean(dep, others)}")
            else:
                graph[name].append(dep)
    for cycle in dag.find_cycles(graph):
        first = cycle[0]
        ck.error(("agents", first, "depends_on"), "dependency cycle: " + " -> ".join(cycle))
    return graph


def _build(
    checked: dict[str, Any], graph: dict[str, list[str]], lines: Mapping[Path, int], file: str, ck: Checker
) -> ComposeSpec:
    top = {
        key: checked.get(key, DEFAULTS[key])
        for key in ("model", "timeout", "stop_grace_period", "max_retries")
    }
    pool = checked.get("budget_pool")
    top_explicit = frozenset({"model"} & checked.keys())
    agents = tuple(
        _build_agent(name, body, top, checked.get("api_base"), graph[name], lines, ck, top_explicit)
        for name, body in checked["agents"].items()
    )
    version = checked.get("version", "1.0")
    return ComposeSpec(
        file=file,
        agents=agents,
        name=checked.get("name"),
        version="1.0" if version in ("1", 1, "1.0") else str(version),
        intent=checked.get("intent"),
        model=top["model"],
        api_base=checked.get("api_base"),
        timeout_s=top["timeout"],
        stop_grace_period_s=top["stop_grace_period"],
        max_retries=top["max_retries"],
        budget_pool=BudgetPool(pool["total"], pool.get("allocation", DEFAULTS["allocation"]))
        if pool
        else None,
        models=model_aliases(checked.get("models") or {}, "compose"),
        max_parallel=checked.get("max_parallel"),
        vars=MappingProxyType(dict(checked.get("vars") or {})),
        engine=checked.get("engine"),
        loops=tuple(
            LoopSpec(
                name=name,
                body=tuple(body["body"]),
                until=body["until"],
                max_iterations=body.get("max_iterations", 5),
                on_max=body.get("on_max", "fail"),
                line=lines.get(("loops", name)),
            )
            for name, body in (checked.get("loops") or {}).items()
        ),
    )


def model_aliases(raw: Mapping[str, Any], source: str) -> tuple[ModelAlias, ...]:
    """Checked `models:` entries (a string, or a mapping with `model`) as aliases."""
    out = []
    for name, value in raw.items():
        body: Mapping[str, Any] = {"model": value} if isinstance(value, str) else value
        out.append(
            ModelAlias(
                name,
                body["model"],
                body.get("api_base"),
                body.get("max_concurrency"),
                body.get("rpm"),
                source,
            )
        )
    return tuple(out)


def _build_agent(
    name: str,
    body: dict[str, Any],
    top: dict[str, Any],
    api_base: str | None,
    deps: list[str],
    lines: Mapping[Path, int],
    ck: Checker,
    top_explicit: frozenset[str] = frozenset(),
) -> AgentSpec:
    command = body.get("command")
    argv: tuple[str, ...] | None = None
    if isinstance(command, str):
        try:
            argv = tuple(shlex.split(command))
        except ValueError as exc:
            ck.error(("agents", name, "command"), f"cannot split the command line: {exc}")
        if argv == ():
            ck.error(("agents", name, "command"), "must not be empty")
    elif isinstance(command, list):
        argv = tuple(command)
    return AgentSpec(
        name=name,
        intent=body["intent"],
        model=body.get("model", top["model"]),
        timeout_s=body.get("timeout", top["timeout"]),
        stop_grace_period_s=body.get("stop_grace_period", top["stop_grace_period"]),
        max_retries=body.get("max_retries", top["max_retries"]),
        priority=body.get("priority", DEFAULTS["priority"]),
        max_steps=body.get("max_steps", DEFAULTS["max_steps"]),
        depends_on=tuple(deps),
        conditions=MappingProxyType(_conditions(body.get("depends_on"))),
        agent=body.get("agent"),
        candidates=tuple(body.get("candidates", ())),
        command=argv,
        api_base=body.get("api_base", api_base),
        budget=body.get("budget"),
        environment=MappingProxyType(dict(body.get("environment", {}))),
        working_dir=body.get("working_dir"),
        contract=build_contract(body.get("contract")),
        line=lines.get(("agents", name)),
        explicit=top_explicit | (DEFINITION_DEFAULTS & body.keys()),
        output_schema=MappingProxyType(dict(body["output_schema"])) if "output_schema" in body else None,
        when=body.get("when"),
        for_each=body.get("for_each"),
        item_name=body.get("item_name"),
        for_each_policy=body.get("for_each_policy", "all"),
        max_parallel=body.get("max_parallel"),
        approval=_approval(body.get("approval"), ("agents", name, "approval"), ck),
        aggregate=body.get("aggregate"),
        vote_on=body.get("vote_on"),
        quorum=body.get("quorum"),
        weights=body.get("weights", "equal"),
        resources=MappingProxyType(dict(body.get("resources") or {})),
        compensate=_compensation(name, body.get("compensate"), ck),
    )


def _compensation(name: str, raw: object, ck: Checker) -> Compensation | None:
    """A checked `compensate:` value (a command, or a mapping) as a `Compensation`."""
    if raw is None:
        return None
    body: dict[str, Any] = raw if isinstance(raw, dict) else {"command": raw}
    command = body.get("command")
    path: Path = ("agents", name, "compensate") + (("command",) if isinstance(raw, dict) else ())
    argv: tuple[str, ...] | None = None
    if isinstance(command, str):
        try:
            argv = tuple(shlex.split(command))
        except ValueError as exc:
            ck.error(path, f"cannot split the command line: {exc}")
        if argv == ():
            ck.error(path, "must not be empty")
    elif isinstance(command, list):
        argv = tuple(command)
    if argv is None and body.get("intent") is None:
        ck.error(("agents", name, "compensate"), "needs a `command` or an `intent`")
    return Compensation(
        command=argv,
        intent=body.get("intent"),
        model=body.get("model"),
        timeout_s=body.get("timeout"),
        environment=MappingProxyType(dict(body.get("environment", {}))),
        budget=body.get("budget"),
    )


def _approval(raw: dict[str, Any] | None, path: tuple[object, ...], ck: Checker) -> Approval | None:
    if raw is None:
        return None
    approvers = tuple(raw.get("approvers", ()))
    policy = raw.get("policy", "any")
    quorum = raw.get("quorum")
    if policy == "quorum" and quorum is None:
        ck.error((*path, "policy"), "policy: quorum needs `quorum: N`, the approvals needed")
    if quorum is not None and policy != "quorum":
        ck.error((*path, "quorum"), "applies only with policy: quorum")
    if quorum is not None and approvers and quorum > len(approvers):
        ck.error((*path, "quorum"), f"needs {quorum} approvals but lists {len(approvers)} approvers")
    if policy == "all" and not approvers:
        ck.error((*path, "policy"), "policy: all needs `approvers`: all of whom?")
    notify = raw.get("notify")
    argv: tuple[str, ...] | None = None
    if isinstance(notify, str):
        try:
            argv = tuple(shlex.split(notify))
        except ValueError as exc:
            ck.error((*path, "notify"), f"cannot split the command line: {exc}")
    elif isinstance(notify, list):
        argv = tuple(notify)
    return Approval(
        approvers=approvers,
        policy=policy,
        quorum=quorum,
        timeout_s=raw.get("timeout"),
        on_timeout=raw.get("on_timeout", "reject"),
        notify=argv or None,
    )


def build_contract(raw: dict[str, Any] | None) -> Contract | None:
    """A checked `contract:` mapping as a `Contract` (also used for agent definitions)."""
    if raw is None:
        return None
    quality = raw.get("output_quality")
    return Contract(
        output_format=raw.get("output_format"),
        output_quality=Judge(quality["judge"]) if isinstance(quality, dict) else quality,
        max_tokens=raw.get("max_tokens"),
        timeout_s=raw.get("timeout"),
        sla_level=raw.get("sla_level", DEFAULTS["sla_level"]),
    )
