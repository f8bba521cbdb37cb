"""The plan: what `compose up` will do, computed without running anything.

Layers, the critical path, each agent's effective settings and its share of the budget pool, plus the
JSON-ready dictionaries that `compose plan --json` and `compose config` print.
"""

from __future__ import annotations

import hashlib
import json
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

from rnix.core import budget, dag
from rnix.core.jsonable import contract_as_dict, seconds
from rnix.core.model import AgentDefinition, AgentSpec, Compensation, ComposeSpec, LoopSpec
from rnix.core.secrets import redact_environment


@dataclass(frozen=True)
class Choice:
    """Which of an agent's `candidates` runs, and why (see rnix.core.reputation.choose)."""

    chosen: str
    reason: str


def definition_key(spec: AgentSpec, chosen: str | None = None) -> str:
    """What the reputation ledger is keyed by: the agent's definition, never its node name.

    A chosen candidate or `agent:`; `command:<argv>` for command agents; `builtin:<model>` for the
    built-in agent without a definition.
    """
    if chosen:
        return chosen
    if spec.agent:
        return spec.agent
    if spec.command is not None:
        return "command:" + shlex.join(spec.command)
    return f"builtin:{spec.model}"


@dataclass(frozen=True)
class AgentPlan:
    spec: AgentSpec
    layer: int  # 1-based
    budget: int  # 0 when the pool cannot fund the agent
    on_critical_path: bool
    pool_total: int | None = None
    choice: Choice | None = None  # set for agents with candidates

    @property
    def definition(self) -> str:
        return definition_key(self.spec, self.choice.chosen if self.choice else None)

    @property
    def funded(self) -> bool:
        return self.budget > 0

    @property
    def spec_hash(self) -> str:
        """What makes this agent's result what it is; a resume re-runs an agent whose hash changed.

        The task (intent, upstream names, model and endpoint, command, environment, working
        directory, step limit) and the definition it runs (instructions and tools). Limits that do
        not shape the result (timeout, retries, grace, priority, budget, contract) are left out.
        """
        spec, definition = self.spec, self.spec.definition
        content: dict[str, Any] = {
            "name": spec.name,
            "intent": spec.intent,
            "depends_on": list(spec.depends_on),
            "model": spec.model,
            "api_base": spec.api_base,
            "command": list(spec.command) if spec.command is not None else None,
            "environment": dict(spec.environment),
            "working_dir": spec.working_dir,
            "max_steps": spec.max_steps,
            "definition": self.definition,
            "instructions": definition.instructions if definition else None,
            "role": definition.role if definition else None,
            "tools": {k: dict(v) for k, v in definition.tools.items()} if definition else None,
        }
        # Only when set, so that the hashes of existing files do not change.
        if spec.conditions:
            content["conditions"] = dict(spec.conditions)
        content.update(pipeline_keys(spec))
        text = json.dumps(content, sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]

    @property
    def budget_source(self) -> str:
        if self.spec.budget is not None:
            return "explicit"
        if self.pool_total is not None:
            return "pool"
        definition = self.spec.definition
        return "definition" if definition is not None and definition.budget is not None else "default"


@dataclass(frozen=True)
class Plan:
    project: str
    spec: ComposeSpec
    layers: tuple[tuple[str, ...], ...]
    critical_path: tuple[str, ...]
    agents: tuple[AgentPlan, ...]  # in layer order, then by name
    allocation: budget.Allocation
    requests: tuple[budget.Request, ...] = ()  # what the pool was asked for (the run-time pool reuses it)
    # Reputation scores of juries' candidates, by definition (rnix.core.jury: weights, ties).
    reputation: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))

    def agent(self, name: str) -> AgentPlan:
        return next(a for a in self.agents if a.spec.name == name)


def graph_of(spec: ComposeSpec) -> dict[str, list[str]]:
    return {a.name: list(a.depends_on) for a in spec.agents}


def make_plan(
    spec: ComposeSpec,
    project: str,
    history: Mapping[str, float] | None = None,
    choices: Mapping[str, Choice] | None = None,
    reputation: Mapping[str, float] | None = None,
) -> Plan:
    """Plan `spec`. `history` maps agent names to the average tokens their definition used before;
    `choices` says which candidate runs for agents with `candidates` (the first one when missing; a
    jury runs them all); `reputation`: the scores of juries' candidates, by definition."""
    graph = graph_of(spec)
    layer_list = dag.layers(graph)
    critical = dag.critical_path(graph)
    on_path = set(critical)
    history = history or {}
    choices = dict(choices or {})
    for agent in spec.agents:
        if agent.candidates and agent.aggregate is None and agent.name not in choices:
            choices[agent.name] = Choice(agent.candidates[0], "first candidate (no choice made)")
    resolved = {a.name: _resolve(a, choices.get(a.name), spec.definitions) for a in spec.agents}
    requests = [
        budget.Request(a.name, a.priority, _requested(a, spec), a.name in on_path, history.get(a.name))
        for a in resolved.values()
    ]
    allocation = budget.allocate(requests, spec.budget_pool)
    pool_total = spec.budget_pool.total if spec.budget_pool else None
    layer_of = {name: i for i, layer in enumerate(layer_list, 1) for name in layer}
    agents = tuple(
        AgentPlan(
            resolved[name],
            layer_of[name],
            allocation.budgets[name],
            name in on_path,
            pool_total,
            choices.get(name),
        )
        for layer in layer_list
        for name in layer
    )
    return Plan(
        project=project,
        spec=spec,
        layers=tuple(tuple(layer) for layer in layer_list),
        critical_path=tuple(critical),
        agents=agents,
        allocation=allocation,
        requests=tuple(requests),
        reputation=MappingProxyType(dict(reputation or {})),
    )


def _resolve(
    agent: AgentSpec, choice: Choice | None, definitions: Mapping[str, AgentDefinition]
) -> AgentSpec:
    """A candidate's definition applies once it is chosen (`agent:` was resolved at load)."""
    if choice is not None and choice.chosen in definitions:
        from rnix.core.definition import apply_definition  # off the start-up path of `rnix`

        return apply_definition(agent, definitions[choice.chosen])
    return agent


def _requested(agent: AgentSpec, spec: ComposeSpec) -> int | None:
    """The budget an agent asks for: its own; else, without a pool, its definition's default.

    Under a budget pool the pool (the compose file's decision about money) divides the tokens.
    """
    if agent.budget is not None or spec.budget_pool is not None or agent.definition is None:
        return agent.budget
    return agent.definition.budget


def pipeline_keys(agent: AgentSpec) -> dict[str, Any]:
    """The agent's pipeline keys (docs/pipelines.md) that differ from their defaults, as written in a
    compose file: nothing at all for an agent without them."""
    out: dict[str, Any] = {
        "output_schema": _plain(agent.output_schema) if agent.output_schema is not None else None,
        "when": agent.when,
        "for_each": agent.for_each,
        "item_name": agent.item_name,
        "for_each_policy": agent.for_each_policy if agent.for_each_policy != "all" else None,
        "max_parallel": agent.max_parallel,
        "aggregate": agent.aggregate,
        "vote_on": agent.vote_on,
        "quorum": agent.quorum,
        "weights": agent.weights if agent.weights != "equal" else None,
        "compensate": compensation_as_dict(agent.compensate) if agent.compensate is not None else None,
        "resources": _plain(agent.resources) or None,
    }
    return {k: v for k, v in out.items() if v is not None}


def compensation_as_dict(comp: Compensation) -> dict[str, Any]:
    """`compensate:` as a mapping written in a compose file (only the keys that are set)."""
    out: dict[str, Any] = {
        "command": list(comp.command) if comp.command is not None else None,
        "intent": comp.intent,
        "model": comp.model,
        "timeout": seconds(comp.timeout_s) if comp.timeout_s is not None else None,
        "environment": redact_environment(comp.environment) or None,
        "budget": comp.budget,
    }
    return {k: v for k, v in out.items() if v is not None}


def loop_as_dict(loop: LoopSpec) -> dict[str, Any]:
    """One loop as written under `loops.<name>` (every key, defaults included)."""
    return {
        "body": list(loop.body),
        "until": loop.until,
        "max_iterations": loop.max_iterations,
        "on_max": loop.on_max,
    }


def _plain(value: object) -> Any:
    """A JSON value with read-only mappings turned into dicts (for yaml.safe_dump and json)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def agent_as_dict(agent: AgentSpec) -> dict[str, Any]:
    """One agent as it would be written in a normalised compose file."""
    out: dict[str, Any] = {
        "intent": agent.intent,
        "agent": agent.agent,
        "candidates": list(agent.candidates) or None,
        "command": list(agent.command) if agent.command is not None else None,
        "model": agent.model,
        "api_base": agent.api_base,
        # The mapping form only when a condition is not `completed`: the list form says the same.
        "depends_on": (
            {d: agent.conditions.get(d, "completed") for d in agent.depends_on}
            if agent.conditions
            else list(agent.depends_on)
        ),
        "timeout": seconds(agent.timeout_s),
        "stop_grace_period": seconds(agent.stop_grace_period_s),
        "max_retries": agent.max_retries,
        "budget": agent.budget,
        "priority": agent.priority,
        "max_steps": agent.max_steps,
        "environment": redact_environment(agent.environment) or None,
        "working_dir": agent.working_dir,
        "contract": contract_as_dict(agent.contract) if agent.contract else None,
        **pipeline_keys(agent),
    }
    return {k: v for k, v in out.items() if v is not None}


def spec_as_dict(spec: ComposeSpec) -> dict[str, Any]:
    """The normalised compose file: interpolated, defaults filled in; itself a valid compose file."""
    out: dict[str, Any] = {
        "version": spec.version,
        "name": spec.name,
        "intent": spec.intent,
        "model": spec.model,
        "api_base": spec.api_base,
        "timeout": seconds(spec.timeout_s),
        "stop_grace_period": seconds(spec.stop_grace_period_s),
        "max_retries": spec.max_retries,
        "budget_pool": (
            {"total": spec.budget_pool.total, "allocation": spec.budget_pool.allocation}
            if spec.budget_pool
            else None
        ),
        "max_parallel": spec.max_parallel,
        "engine": spec.engine,
        "vars": _plain(spec.vars) or None,
        "loops": {loop.name: loop_as_dict(loop) for loop in spec.loops} or None,
        "agents": {a.name: agent_as_dict(a) for a in spec.agents},
        # An extension key, so the output stays a valid compose file: where each named definition
        # was found (the model, max_steps and contract it supplied are already in the agents above).
        "x-definitions": {
            d.name: {"source": d.source, "path": d.path, "description": d.description}
            for d in spec.definitions.values()
        }
        or None,
    }
    return {k: v for k, v in out.items() if v is not None}


def output_properties(agent: AgentSpec) -> list[str] | None:
    """The top-level properties the agent's output_schema names (None without a schema or a list)."""
    properties = agent.output_schema.get("properties") if agent.output_schema else None
    return sorted(properties) if isinstance(properties, Mapping) else None


def _source(definition: AgentDefinition | None) -> dict[str, str] | None:
    return {"source": definition.source, "path": definition.path} if definition else None


def _tools(definition: AgentDefinition | None) -> list[str]:
    return sorted(definition.tools) if definition else []


def plan_as_dict(plan: Plan) -> dict[str, Any]:
    """The `data` of `rnix compose plan --json`."""
    alloc = plan.allocation
    loop_of = {name: loop.name for loop in plan.spec.loops for name in loop.body}
    return {
        "project": plan.project,
        "file": plan.spec.file,
        "layers": [list(layer) for layer in plan.layers],
        "critical_path": list(plan.critical_path),
        "agents": [
            {
                "name": a.spec.name,
                "layer": a.layer,
                "depends_on": list(a.spec.depends_on),
                "kind": a.spec.kind,
                "model": a.spec.model,
                "api_base": a.spec.api_base,
                "agent": a.spec.agent,
                "candidates": list(a.spec.candidates),
                "command": list(a.spec.command) if a.spec.command is not None else None,
                "budget": a.budget,
                "budget_source": a.budget_source,
                "funded": a.funded,
                "priority": a.spec.priority,
                "timeout_s": a.spec.timeout_s,
                "stop_grace_period_s": a.spec.stop_grace_period_s,
                "max_retries": a.spec.max_retries,
                "max_steps": a.spec.max_steps,
                "on_critical_path": a.on_critical_path,
                "definition": a.definition,
                "definition_source": _source(a.spec.definition),
                "tools": _tools(a.spec.definition),
                "choice": {"chosen": a.choice.chosen, "reason": a.choice.reason} if a.choice else None,
                "intent": a.spec.intent,
                "contract": contract_as_dict(a.spec.contract) if a.spec.contract else None,
                "when": a.spec.when,
                "for_each": a.spec.for_each,
                "item_name": a.spec.item_name,
                "for_each_policy": a.spec.for_each_policy,
                "max_parallel": a.spec.max_parallel,
                "aggregate": a.spec.aggregate,
                "output_schema": _plain(a.spec.output_schema) if a.spec.output_schema else None,
                "output_properties": output_properties(a.spec),
                "loop": loop_of.get(a.spec.name),
                "compensate": compensation_as_dict(a.spec.compensate) if a.spec.compensate else None,
                "resources": _plain(a.spec.resources) or None,
            }
            for a in plan.agents
        ],
        "loops": [{"name": loop.name, **loop_as_dict(loop)} for loop in plan.spec.loops],
        "budget_pool": {
            "total": alloc.total,
            "allocation": alloc.strategy,
            "allocated": alloc.allocated,
            "unfunded": list(alloc.unfunded),
            "note": alloc.note or None,
        },
    }


def jury_member(agent: AgentPlan, candidate: str, definitions: Mapping[str, AgentDefinition]) -> AgentPlan:
    """The plan one member of a jury runs with: the node's, with its candidate's definition applied
    (model, instructions, tools, contract) and the ledger keyed by that definition."""
    choice = Choice(candidate, f"jury member ({agent.spec.aggregate})")
    return replace(agent, spec=_resolve(agent.spec, choice, definitions), choice=choice)
