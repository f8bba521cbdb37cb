"""`rnix log --planner ID`: what an `rnix apply` planning asked, spent, wrote and ran, and its planner's
model calls, shown as `rnix log PID --llm` shows an agent's (rnix.cli.llmlog).

Contract: reads the store read-only; ID is a planning id (`plan-...`, printed by `rnix apply`),
`last`, or the id of a compose run the planning started; none found is an RnixError (exit 1). The
human form is a summary (the intent; model, budget, calls, tokens, how planning ended; each file
written; each run started) and then the calls. `--json` gives the same as one document. Everything
printed is masked with the secret values of this environment and made inert.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rnix.core import events as ev
from rnix.core.events import Event
from rnix.core.llmcalls import ModelCall, join
from rnix.env import Env
from rnix.errors import ExitCode, RnixError
from rnix.ui import jsonout


@dataclass
class Planning:
    """A planning as its events tell it."""

    id: str
    intent: str = ""
    model: str = ""
    budget: int = 0
    file: str | None = None
    status: str = "unfinished"  # planned | failed | unfinished (interrupted, or still planning)
    calls: int = 0
    tokens_used: int = 0
    error: str | None = None
    wrote: list[ev.PlanningWrote] = field(default_factory=list)
    ran: list[ev.PlanningRan] = field(default_factory=list)

    @classmethod
    def of(cls, planning: str, events: list[Event]) -> Planning:
        out = cls(planning)
        for event in events:
            if isinstance(event, ev.PlanningStarted):
                out.intent, out.model, out.budget, out.file = (
                    event.intent,
                    event.model,
                    event.budget,
                    event.file,
                )
            elif isinstance(event, ev.PlanningWrote):
                out.wrote.append(event)
            elif isinstance(event, ev.PlanningRan):
                out.ran.append(event)
            elif isinstance(event, ev.PlanningFinished):
                out.status, out.error = event.status, event.error
                out.calls, out.tokens_used = event.calls, event.tokens_used
            elif isinstance(event, ev.LlmCall) and out.status == "unfinished":
                out.calls, out.tokens_used = event.attempt, event.used or out.tokens_used
        return out

    def as_dict(self, calls: list[ModelCall]) -> dict[str, Any]:
        return {
            "planning": self.id,
            "intent": self.intent,
            "model": self.model,
            "budget": self.budget,
            "file": self.file,
            "status": self.status,
            "error": self.error,
            "tokens_used": self.tokens_used,
            "wrote": [{"file": w.file, "replan": w.replan, "agents": w.agents} for w in self.wrote],
            "runs": [{"run_id": r.compose_run, "file": r.file, "exit_code": r.exit_code} for r in self.ran],
            "calls": [call.as_dict() for call in calls],
        }

    def summary(self) -> list[str]:
        calls = f"{self.calls} call{'s' if self.calls != 1 else ''}"
        lines = [
            f'planning {self.id}: "{self.intent}"',
            f"model {self.model} · budget {self.budget:,} · {calls} · {self.tokens_used:,} tokens"
            f" · {self.status}",
        ]
        if self.error:
            lines.append(f"error: {self.error}")
        for w in self.wrote:
            what = f"replan {w.replan}" if w.replan else "plan"
            lines.append(f"wrote {w.file} ({what}, {w.agents} agents)")
        for r in self.ran:
            lines.append(f"ran {r.file} as run {r.compose_run or '?'}: exit {r.exit_code}")
        return lines


def show(env: Env, ref: str, as_json: bool) -> int:
    from rnix.cli.llmlog import mask_line, render
    from rnix.core.secrets import mask, secret_values
    from rnix.store import planning
    from rnix.store.db import Store

    with Store.open(env.home, readonly=True) as store:
        found = planning.resolve(store, ref)
        if found is None:
            raise RnixError(
                f"no rnix apply planning is called {ref}",
                "`rnix apply` prints its id (plan-...); `rnix log --planner last` shows the latest",
            )
        events, entries = planning.read(store, found)
    calls = [e.data for e in _records(found, events) if e.kind == ev.LlmCall.KIND]
    model_calls = join(calls, entries)
    summary = Planning.of(found, events)
    secrets = secret_values(env.environ)
    if as_json:
        jsonout.write_ok(env.stdout, mask(summary.as_dict(model_calls), secrets))
        return ExitCode.OK
    lines = summary.summary()
    for call in model_calls:
        lines.extend(render(call))
    for line in lines:
        env.stdout.write(mask_line(line, secrets) + "\n")
    env.stdout.flush()
    return ExitCode.OK


def _records(planning: str, events: list[Event]) -> list[ev.Record]:
    return [ev.Record(planning, 0.0, e) for e in events]
