"""Rendering a running or finished compose run: lines, a live table, and the `--json` document.

All three read the scheduler's fold of the run's events (`AgentView`: an instance beside its plan),
so they cannot disagree. Times are seconds since the epoch, like the events'.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from rnix.core.lifecycle import AgentState
from rnix.ui.text import inert, tokens

if TYPE_CHECKING:
    from rich.console import RenderableType

    from rnix.core.plan import Plan
    from rnix.supervisor.run import Outcome
    from rnix.supervisor.scheduler import AgentView

STATE_STYLE = {
    AgentState.COMPLETED: "green",
    AgentState.RUNNING: "cyan",
    AgentState.PENDING: "dim",
    AgentState.BACKOFF: "yellow",
    AgentState.SKIPPED: "yellow",
    AgentState.CANCELLED: "yellow",
    AgentState.WAITING_APPROVAL: "bold magenta",
    AgentState.REJECTED: "yellow",
}


def seconds(ms: int) -> str:
    return f"{ms / 1000:.1f}s"


def agent_line(run: AgentView, layers: int, now: float) -> str:
    """`[layer 1/3] analyzer PID 48211 | completed | 3.8s | 1,450 tokens`."""
    pid = f"PID {run.pid}" if run.pid is not None else "PID -"
    name = inert(run.name) + (f" as {inert(run.plan.choice.chosen)}" if run.plan.choice else "")
    if run.instance.label:
        name += f" ({inert(run.instance.label)})"
    state = run.state.value + (" (rate_limited)" if run.instance.rate_limited else "")
    line = (
        f"[layer {run.plan.layer}/{layers}] {name} {pid} | {state} | "
        f"{seconds(run.elapsed_ms(now))} | {tokens(run.tokens_used)} tokens"
    )
    if run.sla is not None:
        line += f" | sla {sla_word(run.sla)}"
    if run.error and run.state is not AgentState.COMPLETED:
        line += f" | {inert(run.error)}"
    if run.state is AgentState.WAITING_APPROVAL:
        line += f" | {approval_hint(run)}"
    if run.reused_from:
        line += f" | reused from run {run.reused_from}"
    return line + compensation_note(run)


def compensation_note(run: AgentView) -> str:
    """` | compensated` on an undone agent, ` | undoes b` on a compensation (rnix.core.saga)."""
    inst = run.instance
    if inst.compensation is not None:
        return f" | {inert(inst.compensation)}"
    if inst.compensates is not None:
        return f" | undoes {inert(inst.compensates)}"
    return ""


def compensation_line(outcome: Outcome) -> str | None:
    """`compensation | b compensated | a compensation failed: exit status 3`: the saga's outcome,
    in the order the compensations ran; None when none ran."""
    undone = sorted(
        (a for a in outcome.agents.values() if a.instance.compensates is not None),
        key=lambda a: a.instance.started_at or 0.0,
    )
    if not undone:
        return None
    words = []
    for comp in undone:
        of = outcome.agents.get(comp.instance.compensates or "")
        word = of.instance.compensation if of is not None else comp.state.value
        words.append(f"{inert(comp.instance.compensates or '')} {inert(word or '')}")
    return "compensation | " + " | ".join(words)


def approval_hint(run: AgentView, project: str | None = None) -> str:
    """What a gate waits for and how to decide: `waiting for bob; decide with: rnix compose -p P
    approve deploy (or reject)`."""
    from rnix.core.approval import verdict

    approval = run.plan.spec.approval
    waiting = verdict(approval, run.instance.approvals)[1] if approval is not None else "waiting"
    where = f"-p {inert(project)} " if project else ""
    return f"{waiting}; decide with: rnix compose {where}approve {inert(run.name)} (or reject)"


def sla_word(verdict: dict[str, Any] | None) -> str:
    """`passed (gold)`, or `failed (silver): max_tokens, timeout` naming failed checks; `-` for none."""
    if not verdict:
        return "-"
    level = verdict.get("level", "")
    if verdict.get("passed"):
        return f"passed ({level})"
    failed = [str(c.get("name")) for c in verdict.get("checks", []) if not c.get("passed")]
    return f"failed ({level}): {', '.join(failed)}"


def summary_line(outcome: Outcome) -> str:
    """`compose | completed | 3/3 agents | 10.5s | 3,520 tokens`."""
    agents = [a for a in outcome.agents.values() if a.instance.compensates is None]
    done = sum(a.state is AgentState.COMPLETED for a in agents)
    used = sum(a.tokens_used for a in outcome.agents.values() if not a.reused_from)  # what this run paid
    return (
        f"compose | {outcome.status.value} | {done}/{len(agents)} agents | "
        f"{seconds(outcome.elapsed_ms)} | {tokens(used)} tokens"
    )


def live_table(
    runs: Iterable[AgentView],
    layers: int,
    header: str,
) -> RenderableType:
    from rich.table import Table
    from rich.text import Text

    now = time.time()
    table = Table(title=Text(header), title_justify="left", box=None, header_style="bold", pad_edge=False)
    for column in ("LAYER", "AGENT", "PID", "STATE", "ELAPSED", "TOKENS", "SLA", "NOTE"):
        table.add_column(column, no_wrap=column != "NOTE", justify="right" if column == "TOKENS" else "left")
    for run in runs:
        budget = f"{tokens(run.tokens_used)}/{tokens(run.budget or run.plan.budget)}"
        state, elapsed = run.state.value, run.elapsed_ms(now)
        if run.instance.rate_limited:
            state += " (rate_limited)"
        style = "bold yellow" if state == AgentState.PAUSED.value else STATE_STYLE.get(run.state, "red")
        table.add_row(
            f"{run.plan.layer}/{layers}",
            Text(inert(run.name) + (f" ({inert(run.instance.label)})" if run.instance.label else "")),
            str(run.pid or "-"),
            Text(state, style=style),
            seconds(elapsed),
            budget,
            Text(
                sla_word(run.sla),
                style="green" if (run.sla or {}).get("passed") else "red" if run.sla else "dim",
            ),
            Text(
                approval_hint(run)
                if run.state is AgentState.WAITING_APPROVAL
                else inert(run.error or "") + compensation_note(run),
                style="bold magenta" if run.state is AgentState.WAITING_APPROVAL else "dim",
            ),
        )
    return table


def in_plan_order(plan: Plan, runs: dict[str, AgentView]) -> list[AgentView]:
    """Every instance: by node in plan order, then iteration, then item."""
    rank = {p.spec.name: i for i, p in enumerate(plan.agents)}
    return sorted(
        runs.values(),
        key=lambda a: (
            rank.get(a.instance.key.node, len(rank)),
            a.instance.key.iteration,
            -1 if a.instance.key.index is None else a.instance.key.index,
        ),
    )


def up_document(plan: Plan, outcome: Outcome, project: str) -> dict[str, Any]:
    """The `data` of `compose up --json`."""
    runs = outcome.agents
    now = time.time()
    agents = [
        {
            "name": a.name,
            "node": a.instance.key.node,
            "index": a.instance.key.index,
            "iteration": a.instance.key.iteration,
            "label": a.instance.label,
            "pid": a.pid,
            "cluster_node": a.instance.node,  # where `pid` lives; null: this machine
            "layer": a.plan.layer,
            "status": a.state.value,
            "rate_limited": a.instance.rate_limited,
            "approvals": [{"by": b, "decision": d, "message": m} for b, d, m in a.instance.approvals]
            if a.plan.spec.approval is not None
            else None,
            "exit_code": a.exit_code,
            "signal": a.signal,
            "attempts": a.attempt,
            "tokens_used": a.tokens_used,
            "budget": a.budget,
            "elapsed_ms": a.elapsed_ms(now),
            "result": a.result,
            "error": a.error,
            "sla": a.sla,
            "reused_from": a.reused_from,
            "definition": a.plan.definition,
            "choice": {"chosen": a.plan.choice.chosen, "reason": a.plan.choice.reason}
            if a.plan.choice
            else None,
            "compensation": a.instance.compensation,
            "compensates": a.instance.compensates,
        }
        for a in in_plan_order(plan, outcome.agents)
    ]
    undone = [a for a in outcome.agents.values() if a.instance.compensates is not None]
    runs = {n: a for n, a in runs.items() if a.instance.compensates is None}  # the saga apart
    count = {state: sum(a.state is state for a in runs.values()) for state in AgentState}
    return {
        "project": project,
        "run_id": outcome.run_id,
        "status": outcome.status.value,
        "layers": [list(layer) for layer in plan.layers],
        "agents": agents,
        "summary": {
            "total": len(runs),
            "completed": count[AgentState.COMPLETED],
            "failed": len(runs) - count[AgentState.COMPLETED] - count[AgentState.SKIPPED],
            "skipped": count[AgentState.SKIPPED],
            "by_status": {state.value: n for state, n in count.items() if n},
            "tokens_used": sum(a.tokens_used for a in outcome.agents.values() if not a.reused_from),
            "reused": sum(1 for a in runs.values() if a.reused_from),
            "elapsed_ms": outcome.elapsed_ms,
            "compensations": {
                "run": len(undone),
                "completed": sum(a.state is AgentState.COMPLETED for a in undone),
                "failed": [a.instance.compensates for a in undone if a.state is not AgentState.COMPLETED],
            },
        },
    }
