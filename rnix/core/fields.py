"""The compose.yaml v1 format as data: every key, its type, default and documentation.

This table is the single source of the validator (`spec.py`), of `rnix compose schema` and of the
compose file reference. Defaults that the runtime fills in are in `DEFAULTS`.
"""

from __future__ import annotations

from rnix.core.types import (
    Duration,
    Enum,
    Expression,
    Field,
    Int,
    Json,
    ListOf,
    Literal,
    MapOf,
    Number,
    Obj,
    OneOf,
    Regex,
    Scalar,
    Str,
)

# `depends_on: {name: CONDITION}` (rnix.core.actions decides what each means).
DEPENDENCY_CONDITIONS = ("completed", "failed", "finished")
AGENT_NAME = r"[a-z0-9][a-z0-9_-]*"
AGENT_NAME_MAX = 63
ENV_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
PRIORITIES = ("high", "normal", "low")
ALLOCATIONS = ("priority", "equal", "proportional")
OUTPUT_FORMATS = ("text", "json", "markdown")
SLA_LEVELS = ("bronze", "silver", "gold")
VERSIONS: tuple[object, ...] = ("1", "1.0", 1)
FOR_EACH_POLICIES = ("all", "any")
APPROVAL_POLICIES = ("any", "all", "quorum")
ON_TIMEOUT = ("reject", "approve")
APPROVER = r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}"
AGGREGATES = ("all", "any", "first", "merge", "vote", "quorum")  # rnix.core.jury
WEIGHTS = ("equal", "reputation")
ON_MAX = ("fail", "continue")
LOOP_NAME = r"[a-z0-9][a-z0-9_-]*"
VAR_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
ENGINES = ("local", "ray")  # where agents run (docs/scale-out.md)
RESOURCE_NAME = r"[A-Za-z_][A-Za-z0-9_:.-]{0,127}"

DEFAULT_AGENT_BUDGET = 50_000  # tokens per agent when there is neither a budget_pool nor an explicit budget

# Values used when neither the agent nor the top level sets one (documented in docs/compose-file.md).
DEFAULTS = {
    "model": "mock",
    "timeout": 600.0,
    "stop_grace_period": 5.0,
    "max_retries": 0,
    "priority": "normal",
    "max_steps": 10,
    "budget": DEFAULT_AGENT_BUDGET,
    "allocation": "priority",
    "sla_level": "bronze",
}

agent_name = Str(
    pattern=AGENT_NAME,
    what="an agent name (lower-case letters, digits, '-' and '_', starting with a letter or digit)",
    max_length=AGENT_NAME_MAX,
)
definition_name = Str(
    pattern=AGENT_NAME,
    what="an agent definition name (lower-case letters, digits, '-' and '_')",
    max_length=AGENT_NAME_MAX,
)
text = Str()
url = Str(pattern=r"https?://\S+", what="an http:// or https:// URL")

CONTRACT = Obj(
    {
        "output_format": Field(
            Enum(OUTPUT_FORMATS), "The result must be text, parse as JSON, or look like Markdown."
        ),
        "output_quality": Field(
            OneOf(
                (
                    (str, Regex()),
                    (
                        dict,
                        Obj(
                            {
                                "judge": Field(
                                    text, "Criteria the judge model checks the result against.", True
                                )
                            }
                        ),
                    ),
                ),
                what="a regular expression or a mapping {judge: criteria}",
            ),
            "A regular expression the result must match, or {judge: criteria} for a pass/fail verdict "
            "by the judge model.",
        ),
        "max_tokens": Field(Int(minimum=1), "Most tokens the agent may use and still pass."),
        "timeout": Field(Duration(), "Longest wall time the agent may take and still pass."),
        "sla_level": Field(Enum(SLA_LEVELS), "How much the verdict weighs in reputation.", default="bronze"),
    }
)

_COMMAND = OneOf(((str, text), (list, ListOf(text, min_items=1))), what="a string or a list of strings")

# `compensate:` as a mapping: the agent keys that apply to an undo (rnix.core.saga).
COMPENSATE = Obj(
    {
        "command": Field(
            _COMMAND, "The compensation as a command line (split like a shell does) or argv list."
        ),
        "intent": Field(
            text, "The compensation as a task of the built-in agent (or the command's description)."
        ),
        "model": Field(text, "Its model (default: the agent's)."),
        "timeout": Field(Duration(), "Wall time after which it is stopped (default: the agent's)."),
        "environment": Field(
            MapOf(Scalar(), ENV_NAME, "an environment variable name"),
            "Extra environment variables, added to the agent's.",
        ),
        "budget": Field(Int(minimum=1), "Its token budget (default: the agent's planned budget)."),
    }
)

APPROVAL = Obj(
    {
        "approvers": Field(
            ListOf(
                Str(pattern=APPROVER, what="a name (letters, digits, '.', '_', '@', '-')", max_length=64),
                unique=True,
                min_items=1,
                label="a list of names",
            ),
            "Who may decide (`--as NAME`); anyone may when absent.",
        ),
        "policy": Field(
            Enum(APPROVAL_POLICIES),
            "`any`: the first decision counts; `all`: every approver must approve; `quorum`: "
            "`quorum` approvals are enough.",
            default="any",
        ),
        "quorum": Field(Int(minimum=1, maximum=1000), "Approvals needed with policy: quorum."),
        "timeout": Field(Duration(), "How long the gate waits for decisions. Default: no limit."),
        "on_timeout": Field(
            Enum(ON_TIMEOUT), "What a timeout decides: reject (the default) or approve.", default="reject"
        ),
        "notify": Field(
            OneOf(((str, text), (list, ListOf(text, min_items=1))), what="a string or a list of strings"),
            "A command run when the gate opens; it gets the run, agent and approvers as JSON on stdin.",
        ),
    }
)

AGENT = Obj(
    {
        "intent": Field(text, "What this agent must achieve (its task).", required=True),
        "agent": Field(
            definition_name,
            "An agent definition to run: its instructions, tools and defaults (`rnix agents` lists them).",
        ),
        "candidates": Field(
            ListOf(definition_name, unique=True, min_items=1, label="a list of agent definition names"),
            "Agent definitions to choose from by reputation; the chosen one applies as with `agent`.",
        ),
        "command": Field(
            OneOf(((str, text), (list, ListOf(text, min_items=1))), what="a string or a list of strings"),
            "A custom executable agent: a command line (split like a shell does) or an argv list.",
        ),
        "model": Field(text, "The model for this agent (a litellm model string, or 'mock').", default="mock"),
        "api_base": Field(url, "Base URL of an OpenAI-compatible or provider endpoint."),
        "depends_on": Field(
            OneOf(
                (
                    (list, ListOf(agent_name, unique=True, label="a list of agent names")),
                    (dict, MapOf(Enum(DEPENDENCY_CONDITIONS), AGENT_NAME, "an agent name")),
                ),
                what="a list of agent names or a mapping name -> completed | failed | finished",
            ),
            "Agents this one waits for; their results are passed in. A list, or a mapping of each to "
            "the condition it must meet: `completed` (the default), `failed` (failed, timed out or ran "
            "out of budget: e.g. a diagnose agent) or `finished` (ended in any way).",
        ),
        "timeout": Field(Duration(), "Wall time after which the agent is stopped.", default="10m"),
        "stop_grace_period": Field(
            Duration(positive=False), "Time between SIGTERM and SIGKILL when stopping.", default="5s"
        ),
        "max_retries": Field(Int(minimum=0, maximum=100), "Re-runs after a failure or timeout.", default=0),
        "budget": Field(Int(minimum=1), "Hard token budget for this agent (taken from the pool first)."),
        "priority": Field(
            Enum(PRIORITIES), "Share of the budget pool under `priority` allocation.", default="normal"
        ),
        "max_steps": Field(
            Int(minimum=1, maximum=10_000), "Most think/act steps of the built-in agent.", default=10
        ),
        "environment": Field(
            MapOf(Scalar(), ENV_NAME, "an environment variable name"),
            "Extra environment variables; a null value passes the variable through from rnix's environment.",
        ),
        "working_dir": Field(text, "Working directory of the agent process (relative to the compose file)."),
        "resources": Field(
            MapOf(Number(), RESOURCE_NAME, "a resource name (letters, digits, '_', ':', '.', '-')"),
            "With the Ray engine: what the agent needs of a node, e.g. {CPU: 2, GPU: 1} or a custom "
            "resource that names a node; Ray reserves it while the agent runs. Ignored by the local "
            "engine (docs/scale-out.md).",
        ),
        "contract": Field(CONTRACT, "The SLA contract evaluated after the agent finishes."),
        "output_schema": Field(
            Json(mapping=True),
            "A JSON Schema the result must validate against (inline, or {$ref: file.json} relative to "
            "the compose file). Built-in agents answer through a `submit_result` tool; a command "
            "agent's stdout must be the JSON document.",
        ),
        "when": Field(
            Expression(),
            "A CEL expression over `agents.<name>.status`, `agents.<name>.output` and `vars`; when "
            "false the agent is skipped (reason `condition`) without blocking its dependents.",
        ),
        "for_each": Field(
            Expression(),
            "A CEL expression yielding a list: the agent runs once per item, as instances name[0], "
            "name[1], ... with {{ item }} and {{ index }} substituted in intent and command.",
        ),
        "item_name": Field(
            text, "How a for_each instance is shown, e.g. 'fix-{{ item.id }}' (default: name[index])."
        ),
        "for_each_policy": Field(
            Enum(FOR_EACH_POLICIES),
            "Whether every instance must complete (`all`) or one is enough (`any`).",
            default="all",
        ),
        "max_parallel": Field(
            Int(minimum=1, maximum=100_000),
            "With for_each: most instances of this agent alive at once. Default: no limit of its own.",
        ),
        "compensate": Field(
            OneOf(
                ((str, text), (list, ListOf(text, min_items=1)), (dict, COMPENSATE)),
                what="a command (string or argv list) or a mapping {command | intent, ...}",
            ),
            "Compensation (saga): what undoes this agent's work when the run fails after it completed. "
            "A command (string or argv list), or a mapping with `command` or `intent` and any of "
            "`model`, `timeout`, `environment`, `budget`. Compensations run in reverse order of "
            "completion, each once (docs/pipelines.md).",
        ),
        "approval": Field(
            APPROVAL,
            "A human approval gate: when its dependencies are done the agent waits (`waiting_approval`) "
            "until `rnix compose approve` (or `reject`) decides, by `policy`.",
        ),
        "aggregate": Field(
            Enum(AGGREGATES),
            "With candidates: run every candidate (a jury) instead of choosing one, and combine their "
            "results: `all`, `any`, `first`, `merge`, `vote` or `quorum` (docs/pipelines.md).",
        ),
        "vote_on": Field(
            text, "With `aggregate: vote` or `quorum` and an output_schema: the result field voted on."
        ),
        "quorum": Field(
            Int(minimum=1, maximum=100),
            "With `aggregate: quorum`: how many candidates must agree (1 to the number of candidates).",
        ),
        "weights": Field(
            Enum(WEIGHTS),
            "With `aggregate: vote`: `equal` votes, or each counted by its candidate's reputation score.",
            default="equal",
        ),
    },
    exclusive=("command", "agent", "candidates"),
)

LOOP = Obj(
    {
        "body": Field(
            ListOf(agent_name, unique=True, min_items=1, label="a list of agent names"),
            "The agents that run again in each iteration (a part of the dependency graph).",
            required=True,
        ),
        "until": Field(
            Expression(),
            "A CEL expression evaluated after each iteration; the loop ends when it is true.",
            required=True,
        ),
        "max_iterations": Field(
            Int(minimum=1, maximum=1000), "Most iterations, the first included.", default=5
        ),
        "on_max": Field(
            Enum(ON_MAX),
            "When max_iterations is reached and `until` is still false: fail the loop (its dependents "
            "are skipped and the run fails), or continue with the last iteration's results.",
            default="fail",
        ),
    }
)

BUDGET_POOL = Obj(
    {
        "total": Field(Int(minimum=1), "Tokens shared by all agents of the run.", required=True),
        "allocation": Field(Enum(ALLOCATIONS), "How the pool is divided among agents.", default="priority"),
    }
)

MODEL_ALIAS_NAME = r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}"
MODEL_ALIAS = OneOf(
    (
        (str, text),
        (
            dict,
            Obj(
                {
                    "model": Field(text, "The litellm model string the alias stands for.", required=True),
                    "api_base": Field(url, "The endpoint for this model (a local or compatible server)."),
                    "max_concurrency": Field(
                        Int(minimum=1), "At most this many calls to this model at once (the gateway queues)."
                    ),
                    "rpm": Field(Int(minimum=1), "At most this many calls a minute to this model."),
                }
            ),
        ),
    ),
    what="a model string or a mapping with `model`",
)

COMPOSE = Obj(
    {
        "version": Field(Literal(VERSIONS), "Format version; only 1.0 exists.", default="1.0"),
        "name": Field(
            Str(pattern=r"[\s\S]*[A-Za-z0-9][\s\S]*", what="a name with at least one letter or digit"),
            "Project name (overridden by -p and RNIX_PROJECT_NAME); normalised to [a-z0-9_-].",
        ),
        "intent": Field(text, "What the whole team of agents is for; given to every agent as context."),
        "model": Field(text, "Default model for all agents.", default="mock"),
        "api_base": Field(url, "Default api_base for all agents."),
        "timeout": Field(Duration(), "Default agent timeout.", default="10m"),
        "stop_grace_period": Field(
            Duration(positive=False), "Default grace period between SIGTERM and SIGKILL.", default="5s"
        ),
        "max_retries": Field(Int(minimum=0, maximum=100), "Default re-runs after a failure.", default=0),
        "budget_pool": Field(BUDGET_POOL, "A token pool divided among the agents."),
        "engine": Field(
            Enum(ENGINES),
            "Where the agents run: `local` (processes of this machine) or `ray` (a Ray cluster; "
            "--engine and RNIX_ENGINE win over it; docs/scale-out.md).",
            default="local",
        ),
        "max_parallel": Field(
            Int(minimum=1, maximum=100_000),
            "Most agents alive at once in the run (running, paused, or forked early); the others wait "
            "their turn in plan order. Default: no limit.",
        ),
        "vars": Field(
            MapOf(Json(), VAR_NAME, "a variable name (letters, digits and '_')"),
            "The run's variables: `vars.<name>` in expressions and {{ vars.<name> }} in intents and "
            "commands (values may use ${ENV} interpolation).",
        ),
        "loops": Field(
            MapOf(LOOP, LOOP_NAME, "a loop name (lower-case letters, digits, '-' and '_')"),
            "Loops by name: {body: [agents], until: EXPRESSION, max_iterations: 5, on_max: fail or "
            "continue}. The body runs again, as new instances, until `until` holds.",
        ),
        "models": Field(
            MapOf(MODEL_ALIAS, MODEL_ALIAS_NAME, "a model alias (letters, digits, '.', '-' and '_')"),
            "Model aliases for this file: a short name -> a model string, or {model, api_base, "
            "max_concurrency, rpm}. They win over models.yaml and rnix's built-in aliases.",
        ),
        "agents": Field(
            MapOf(
                AGENT, AGENT_NAME, "a valid agent name (lower-case letters, digits, '-' and '_')", min_items=1
            ),
            "The agents, by name.",
            required=True,
        ),
    },
    renamed={"services": "agents"},  # docker compose habits
)


def json_schema() -> dict[str, object]:
    """The JSON Schema (draft 2020-12) of compose.yaml v1."""
    schema: dict[str, object] = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://rnix.dev/schema/compose-1.0.json",
        "title": "rnix compose file",
        "description": (
            "compose.yaml v1 for rnix. Also checked by rnix but not expressible here: depends_on names "
            "must be agents of the file, the dependency graph must have no cycle, command strings must "
            "split like a shell command, and agent names are at most 63 characters."
        ),
        **COMPOSE.schema(),
    }
    return schema
