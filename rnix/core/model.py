"""The validated, normalised compose spec: frozen dataclasses with every default resolved."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType


@dataclass(frozen=True)
class Judge:
    """`output_quality: {judge: criteria}`: a pass/fail verdict asked of the judge model."""

    criteria: str


@dataclass(frozen=True)
class Contract:
    """An SLA contract; every check is optional."""

    output_format: str | None = None
    output_quality: str | Judge | None = None  # a regex, or a judge
    max_tokens: int | None = None
    timeout_s: float | None = None
    sla_level: str = "bronze"


@dataclass(frozen=True)
class BudgetPool:
    total: int
    allocation: str = "priority"


@dataclass(frozen=True)
class AgentDefinition:
    """An agent definition (`agents/<name>/agent.yaml` + `instructions.md`), validated.

    The optional settings are defaults for a compose agent that names this definition; anything the
    compose file sets explicitly wins (`rnix.core.definition.apply_definition`).
    """

    name: str
    description: str
    instructions: str
    source: str = "builtin"  # project | user | builtin: which search directory it came from
    path: str = ""  # the agent.yaml file, for messages and `rnix agents`
    role: str | None = None
    capabilities: tuple[str, ...] = ()
    model: str | None = None
    tools: Mapping[str, Mapping[str, object]] = field(default_factory=lambda: MappingProxyType({}))
    max_steps: int | None = None
    budget: int | None = None
    contract: Contract | None = None


@dataclass(frozen=True)
class Compensation:
    """`compensate:` on an agent: a command, or an intent for the built-in agent; the keys left
    unset come from the agent (rnix.core.saga.compensation_spec)."""

    command: tuple[str, ...] | None = None
    intent: str | None = None
    model: str | None = None
    timeout_s: float | None = None
    environment: Mapping[str, str | None] = field(default_factory=lambda: MappingProxyType({}))
    budget: int | None = None


@dataclass(frozen=True)
class Approval:
    """`approval:` on an agent: a human gate before it starts (docs/pipelines.md)."""

    approvers: tuple[str, ...] = ()  # empty: anyone may decide
    policy: str = "any"  # any | all | quorum
    quorum: int | None = None
    timeout_s: float | None = None
    on_timeout: str = "reject"  # reject | approve
    notify: tuple[str, ...] | None = None  # argv


@dataclass(frozen=True)
class AgentSpec:
    """One agent node of the compose file, with the top-level defaults already applied."""

    name: str
    intent: str
    model: str
    timeout_s: float
    stop_grace_period_s: float
    max_retries: int
    priority: str
    max_steps: int
    depends_on: tuple[str, ...] = ()
    # A dependency's condition when it is not `completed` (`failed` or `finished`; rnix.core.actions).
    conditions: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    agent: str | None = None
    candidates: tuple[str, ...] = ()
    command: tuple[str, ...] | None = None
    api_base: str | None = None
    budget: int | None = None  # explicit budget; the effective one comes from the plan
    environment: Mapping[str, str | None] = field(default_factory=lambda: MappingProxyType({}))
    working_dir: str | None = None
    contract: Contract | None = None
    line: int | None = None
    # Keys the compose file set for this agent (`model` also counts when set at the top level): a
    # definition's defaults never override them.
    explicit: frozenset[str] = frozenset()
    definition: AgentDefinition | None = None  # the resolved `agent:` or chosen candidate, once known
    # Limits of the model alias the agent named (rnix.core.models.resolve): calls at once, per minute.
    max_concurrency: int | None = None
    rpm: int | None = None
    # Pipelines (docs/pipelines.md): a structured result, a condition, a fan-out.
    output_schema: Mapping[str, object] | None = None  # the resolved JSON Schema ($ref read)
    when: str | None = None  # CEL (rnix.core.expr)
    for_each: str | None = None  # CEL yielding a list
    item_name: str | None = None  # a template: how each for_each instance is shown
    for_each_policy: str = "all"
    max_parallel: int | None = None  # for_each instances alive at once
    compensate: Compensation | None = None  # saga: what undoes it when the run fails (rnix.core.saga)
    approval: Approval | None = None
    # Juries (rnix.core.jury): every candidate runs, and their results are combined.
    aggregate: str | None = None  # all | any | first | merge | vote | quorum
    vote_on: str | None = None  # the output_schema field voted on
    quorum: int | None = None  # with aggregate quorum: how many must agree
    weights: str = "equal"  # equal | reputation (votes counted by reputation score)
    # With the Ray engine: what the agent needs of a node ({CPU: 2, GPU: 1, custom: 1}).
    resources: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def kind(self) -> str:
        """`command` for custom executables, `llm` for the built-in agent runtime."""
        return "command" if self.command is not None else "llm"


@dataclass(frozen=True)
class ModelAlias:
    """A short model name (`haiku`) and what it stands for (rnix.core.models)."""

    name: str
    model: str  # the litellm model string
    api_base: str | None = None
    max_concurrency: int | None = None
    rpm: int | None = None
    source: str = "builtin"  # builtin | user (models.yaml) | compose (the file's `models:`)


@dataclass(frozen=True)
class LoopSpec:
    """`loops: {NAME: {body, until, max_iterations, on_max}}`: the body runs again until `until` holds."""

    name: str
    body: tuple[str, ...]
    until: str
    max_iterations: int = 5
    on_max: str = "fail"  # fail | continue
    line: int | None = None


@dataclass(frozen=True)
class ComposeSpec:
    """A whole compose file after validation."""

    file: str
    agents: tuple[AgentSpec, ...]
    name: str | None = None
    version: str = "1.0"
    intent: str | None = None
    model: str = "mock"
    api_base: str | None = None
    timeout_s: float = 600.0
    stop_grace_period_s: float = 5.0
    max_retries: int = 0
    budget_pool: BudgetPool | None = None
    max_parallel: int | None = None  # most agents alive at once (rnix.core.actions)
    models: tuple[ModelAlias, ...] = ()  # the file's `models:` aliases
    vars: Mapping[str, object] = field(default_factory=lambda: MappingProxyType({}))
    loops: tuple[LoopSpec, ...] = ()
    engine: str | None = None  # `engine:` as the file sets it (None: not set; the CLI decides)
    # Things worth saying that do not stop the file (e.g. an expression reading a property the
    # upstream's output_schema does not define), as `file:line: key: message` lines.
    warnings: tuple[str, ...] = ()
    # Every definition the file names (`agent:` and all `candidates`), once resolved by the loader.
    definitions: Mapping[str, AgentDefinition] = field(default_factory=lambda: MappingProxyType({}))

    def agent(self, name: str) -> AgentSpec:
        for agent in self.agents:
            if agent.name == name:
                return agent
        raise KeyError(name)

    def loop_of(self, name: str) -> LoopSpec | None:
        """The loop whose body has the agent `name`, if any."""
        return next((loop for loop in self.loops if name in loop.body), None)
