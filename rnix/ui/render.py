"""Human output with rich. Text from files or agents is always wrapped in `Text` (never markup)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rnix.core.secrets import mask_text, secret_values
from rnix.ui.text import duration, inert, node_name, tokens, with_condition

if TYPE_CHECKING:
    from rich.console import Console

    from rnix.core.plan import Plan
    from rnix.env import Env


def console(env: Env) -> Console:
    from rich.console import Console

    width = None if env.stdout_isatty else 120
    return Console(file=env.stdout, force_terminal=env.stdout_isatty, width=width, highlight=False)


def render_plan(env: Env, plan: Plan) -> None:
    from rich.table import Table
    from rich.text import Text

    secrets = secret_values(env.environ)

    def safe(value: str) -> Text:
        return Text(inert(mask_text(value, secrets)))

    out = console(env)
    alloc = plan.allocation
    pool = f"budget pool {tokens(alloc.total)} tokens ({alloc.strategy})" if alloc.total else "no budget pool"
    count, layers = len(plan.agents), len(plan.layers)
    head = Text.assemble(
        ("project ", "dim"),
        (inert(plan.project), "bold"),
        f" · {count} agent{'s' * (count != 1)} in {layers} layer{'s' * (layers != 1)} · {pool}",
    )
    out.print(head)
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in (
        "LAYER",
        "AGENT",
        "KIND",
        "DEFINITION",
        "MODEL",
        "PRIORITY",
        "BUDGET",
        "TIMEOUT",
        "RETRIES",
        "DEPENDS ON",
    ):
        table.add_column(
            column, no_wrap=column != "DEPENDS ON", justify="right" if column == "BUDGET" else "left"
        )
    for agent in plan.agents:
        spec = agent.spec
        budget = Text(tokens(agent.budget)) if agent.funded else Text("unfunded", style="red")
        name = safe(node_name(spec.name, spec.for_each or spec.aggregate))  # a jury fans out too
        if agent.on_critical_path:
            name.stylize("bold")
        table.add_row(
            str(agent.layer),
            name,
            spec.kind,
            safe(agent.choice.chosen if agent.choice else spec.agent or "-"),
            safe(spec.model),
            spec.priority,
            budget,
            duration(spec.timeout_s),
            str(spec.max_retries),
            safe(
                ", ".join(with_condition(d, spec.conditions.get(d, "completed")) for d in spec.depends_on)
                or "-"
            ),
        )
    out.print(table)
    path = " -> ".join(plan.critical_path)
    worst = sum(plan.agent(n).spec.timeout_s for n in plan.critical_path)
    out.print(
        Text.assemble(
            ("critical path: ", "dim"),
            (inert(path), "bold"),
            (f" (at most {duration(worst)} with timeouts)", "dim"),
        )
    )
    for agent in plan.agents:
        if agent.choice is not None:
            out.print(
                Text.assemble(
                    ("candidates: ", "dim"),
                    (inert(spec_name := agent.spec.name), "bold"),
                    f" runs {inert(agent.choice.chosen)} ({inert(agent.choice.reason)}; "
                    f"of {', '.join(inert(c) for c in plan.agent(spec_name).spec.candidates)})",
                )
            )
    for label, line in pipeline_lines(plan):
        out.print(Text.assemble((f"{label}: ", "dim"), safe(line)))
    if alloc.total:
        line = f"budget: {tokens(alloc.allocated)} of {tokens(alloc.total)} tokens allocated"
        out.print(Text(line + (f"; {alloc.note}" if alloc.note else ""), style="dim"))


def pipeline_lines(plan: Plan) -> list[tuple[str, str]]:
    """What the pipeline keys add to the plan, as (label, text) lines: conditions, fan-outs,
    structured results and loops (docs/pipelines.md). Nothing for a file without them."""
    import shlex

    from rnix.core.plan import output_properties

    lines: list[tuple[str, str]] = []
    for agent in plan.agents:
        spec = agent.spec
        if spec.when is not None:
            lines.append(("when", f"{spec.name} runs only if {spec.when}"))
        if spec.for_each is not None:
            extras = [f"policy {spec.for_each_policy}"]
            if spec.max_parallel is not None:
                extras.append(f"max_parallel {spec.max_parallel}")
            if spec.item_name is not None:
                extras.append(f"named {spec.item_name}")
            lines.append(("for_each", f"{spec.name}[*] over {spec.for_each} ({', '.join(extras)})"))
        if spec.aggregate is not None:
            from rnix.ui.graph import jury_text

            members = ", ".join(spec.candidates)
            lines.append(("aggregate", f"{spec.name}[*] runs every candidate ({members}): {jury_text(spec)}"))
        if spec.output_schema is not None:
            keys = output_properties(spec)
            lines.append(("output_schema", f"{spec.name}: yes" + (f" ({', '.join(keys)})" if keys else "")))
        if spec.compensate is not None:
            comp = spec.compensate
            how = shlex.join(comp.command) if comp.command is not None else f"intent: {comp.intent}"
            lines.append(("compensate", f"{spec.name} is undone by {how} if the run fails after it"))
    for loop in plan.spec.loops:
        lines.append(
            (
                f"loop {loop.name}",
                f"{', '.join(loop.body)} again until {loop.until} "
                f"(max {loop.max_iterations} iterations, then {loop.on_max})",
            )
        )
    return lines
