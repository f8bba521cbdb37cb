"""`rnix apply`'s planner, the pure part: the offline plan, the planner model's prompt and tool, and
what a rejected proposal sends back.

Contract: `mock_plan(intent, library)` is a compose document (a plain dict) that depends only on its
arguments: keywords of the intent pick shipped definitions (`RULES`), gatherers (researcher,
code-analyst) run first in parallel, producers (planner, test-writer, doc-writer) after them, the
summarizer last over everything; at least two agents, each with an intent derived from the user's.
`system_prompt` tells a real model the definitions it may use and the format; `submit_tool` is the
one tool it answers through (its parameters: the compose JSON Schema); `repair_message` lists every
problem of a proposal for the next turn. Standard library only (rnix.core is pure).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

TOOL_NAME = "submit_compose"
MAX_REPAIRS = 3


@dataclass(frozen=True)
class Available:
    """One agent definition the planner may name (as `rnix agents` lists it)."""

    name: str
    description: str
    capabilities: tuple[str, ...] = ()
    tools: tuple[str, ...] = ()


@dataclass(frozen=True)
class Rule:
    definition: str
    keywords: tuple[str, ...]
    stage: int  # 0 gathers, 1 produces from what was gathered, 2 condenses everything
    task: str  # the agent's intent, before the user's


RULES: tuple[Rule, ...] = (
    Rule(
        "researcher",
        ("research", "find", "investigat", "look up", "facts", "compare"),
        0,
        "Collect the facts needed for this goal, each with its source",
    ),
    Rule(
        "code-analyst",
        ("code", "review", "analy", "bug", "src/", "repository", "refactor", "audit"),
        0,
        "Read the code and report what matters for this goal, citing file:line",
    ),
    Rule("planner", ("plan", "roadmap", "steps", "migrat"), 1, "Turn the findings into an ordered plan"),
    Rule("test-writer", ("test",), 1, "Write focused pytest tests for the code this goal is about"),
    Rule(
        "doc-writer",
        ("doc", "readme", "guide", "tutorial", "how-to", "write up"),
        1,
        "Write the documentation this goal asks for, from the findings",
    ),
    Rule(
        "summarizer",
        ("summar", "gist", "overview", "condense", "report", "brief"),
        2,
        "Summarise the upstream findings for this goal",
    ),
)
FALLBACK = ("researcher", "summarizer")  # an intent no keyword matched: gather, then condense


def mock_plan(intent: str, library: Sequence[Available]) -> dict[str, Any]:
    """The offline planner's compose document for `intent`, from the definitions in `library`."""
    names = {a.name for a in library}
    text = intent.lower()
    chosen = [r for r in RULES if r.definition in names and any(k in text for k in r.keywords)]
    if len(chosen) < 2:
        for fallback in FALLBACK:
            rule = next(r for r in RULES if r.definition == fallback)
            if rule.definition in names and rule not in chosen and len(chosen) < 2:
                chosen.append(rule)
    chosen.sort(key=lambda r: (r.stage, RULES.index(r)))
    agents: dict[str, dict[str, Any]] = {}
    for rule in chosen:
        # producers build on the gatherers; the summarizer on every agent before it
        upstream = [
            r.definition for r in chosen if r.stage < rule.stage and (rule.stage == 2 or r.stage == 0)
        ]
        body: dict[str, Any] = {"agent": rule.definition, "intent": f"{rule.task}: {intent}"}
        if upstream:
            body["depends_on"] = upstream
        agents[rule.definition] = body
    return {"version": "1.0", "intent": intent, "agents": agents}


def system_prompt(library: Sequence[Available]) -> str:
    """What the planner model is told: its job, the definitions it may name, the format."""
    lines = [
        "You plan a team of LLM agents for rnix, a Unix-style agent process shell.",
        "Decompose the user's goal into a small DAG of agents (two to six) and answer by calling the "
        f"`{TOOL_NAME}` tool exactly once with a compose document; its parameters are the compose "
        "JSON Schema.",
        "Each agent has a short lower-case name (a key of `agents`), an `intent` (its own task, "
        "self-contained), `depends_on` (the agents whose results it needs; no cycles) and, "
        "preferably, `agent: NAME` naming one of the definitions below (it brings instructions "
        "and tools). Use no keys the schema does not define.",
        "",
        "Available agent definitions:",
    ]
    for item in library:
        lines.append(f"- {item.name}: {item.description}")
        if item.capabilities:
            lines.append(f"  capabilities: {'; '.join(item.capabilities)}")
        if item.tools:
            lines.append(f"  tools: {', '.join(item.tools)}")
    lines += ["", "If the tool answers with problems, fix every one and call the tool again."]
    return "\n".join(lines)


def submit_tool(schema: Mapping[str, Any]) -> dict[str, Any]:
    """The OpenAI-style tool the planner answers through."""
    return {
        "type": "function",
        "function": {
            "name": TOOL_NAME,
            "description": "Submit the compose document (the team of agents) for the user's goal.",
            "parameters": dict(schema),
        },
    }


def proposal_of(arguments: object) -> tuple[dict[str, Any] | None, str | None]:
    """The compose document in a tool call's arguments (a JSON string or an object), or why not."""
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except json.JSONDecodeError as exc:
            return None, f"the arguments are not valid JSON ({exc.msg} at character {exc.pos})"
    if not isinstance(arguments, dict):
        return None, "the arguments must be a JSON object: the compose document"
    return arguments, None


def repair_message(problems: Sequence[str]) -> str:
    """The tool result for a rejected proposal: every problem, one a line."""
    listed = "\n".join(f"- {p}" for p in problems)
    return (
        f"The compose document is not valid ({len(problems)} problem"
        f"{'s' if len(problems) != 1 else ''}):\n{listed}\n"
        f"Fix every problem and call {TOOL_NAME} again with the whole corrected document."
    )


RESULT_EXCERPT = 2_000  # characters of a completed agent's result shown to the replanner


@dataclass(frozen=True)
class Settled:
    """How one agent of a run ended, as the replanner sees it."""

    name: str
    completed: bool
    error: str | None = None  # why it did not complete (its status when nothing better is known)
    result: str = ""


def mock_replan(document: Mapping[str, Any], failed: Sequence[Settled]) -> dict[str, Any]:
    """The offline replacement for the failed agents: each again, told why the last attempt failed."""
    agents = document.get("agents") or {}
    out: dict[str, Any] = {}
    for agent in failed:
        body = dict(agents.get(agent.name) or {})
        why = f" (the last attempt ended: {agent.error})" if agent.error else ""
        body["intent"] = f"Try again{why}: {body.get('intent', '')}"
        out[agent.name] = body
    return {"agents": out}


def merge_replacement(
    document: Mapping[str, Any], completed: Sequence[str], proposal: Mapping[str, Any]
) -> tuple[dict[str, Any], list[str]]:
    """`document` with its failed subgraph replaced by `proposal`'s agents: the completed agents are
    kept exactly as they were (so a resume reuses them), the others are dropped; the proposal's
    top-level keys other than `agents` are ignored. Problems: a replacement named like a completed
    agent, or none at all."""
    problems: list[str] = []
    replacement = proposal.get("agents")
    if not isinstance(replacement, dict) or not replacement:
        problems.append("agents: propose at least one agent to replace the failed ones")
        replacement = {}
    agents = document.get("agents") or {}
    merged = {name: agents[name] for name in agents if name in completed}
    for name, body in replacement.items():
        if name in merged:
            problems.append(
                f"agents.{name}: '{name}' completed and is reused as it is; leave it out of the "
                "replacement (name it in depends_on to use its result)"
            )
            continue
        merged[str(name)] = body
    return {**{k: v for k, v in document.items() if k != "agents"}, "agents": merged}, problems


def replan_message(intent: str, document_yaml: str, settled: Sequence[Settled]) -> str:
    """The replanner's task: the goal, the plan that ran, what failed and why, what completed."""
    failed = [s for s in settled if not s.completed]
    completed = [s for s in settled if s.completed]
    lines = [
        f"Goal: {intent}",
        "",
        "This compose document ran:",
        "```yaml",
        document_yaml.rstrip(),
        "```",
        "",
        "These agents did not complete:",
        *(f"- {s.name}: {s.error or 'failed'}" for s in failed),
    ]
    if completed:
        lines += ["", "These agents completed; they are kept and reused as they are:"]
        for s in completed:
            excerpt = s.result if len(s.result) <= RESULT_EXCERPT else s.result[:RESULT_EXCERPT] + " [...]"
            lines.append(f"- {s.name}, result:\n{excerpt}")
    lines += [
        "",
        f"Call {TOOL_NAME} with a compose document whose `agents` replace only the agents that did "
        "not complete (the same names or new ones). Do not include the completed agents; name them "
        "in depends_on to use their results.",
    ]
    return "\n".join(lines)
