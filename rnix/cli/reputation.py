"""`rnix reputation`, and planning with the ledger: candidate choice and `proportional` history."""

from __future__ import annotations

import random
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import click

from rnix.env import Env
from rnix.errors import ExitCode, RnixError, UsageError
from rnix.ui import jsonout

if TYPE_CHECKING:
    from rnix.core.model import ComposeSpec
    from rnix.core.plan import Plan
    from rnix.core.reputation import Record
    from rnix.store.db import LedgerRow

DEFAULT_EXPLORE = 0.1  # share of choices among candidates that try one at random (docs/token-economy.md)


def to_record(row: LedgerRow) -> Record:
    from rnix.core.reputation import Record

    return Record(
        definition=row.definition,
        ts=row.ts,
        completed=row.completed,
        tokens_used=row.tokens_used,
        budget=row.budget,
        elapsed_s=row.elapsed_ms / 1000,
        level=row.level,
        sla_passed=row.sla_passed,
        contract_timeout_s=row.contract_timeout_s,
        contract_max_tokens=row.contract_max_tokens,
    )


def load_records(env: Env, definitions: set[str] | None = None) -> list[Record]:
    from rnix.store.db import Store

    if not (env.home / "rnix.db").exists():
        return []
    with Store.open(env.home, readonly=True) as store:
        # A failure that was not the agent's (no key, provider down) says nothing about its definition.
        return [to_record(row) for row in store.ledger(definitions=definitions) if row.infra is None]


def explore_rate(env: Env) -> float:
    raw = env.environ.get("RNIX_EXPLORE", str(DEFAULT_EXPLORE))
    try:
        rate = float(raw)
    except ValueError:
        rate = -1.0
    if not 0.0 <= rate <= 1.0:
        raise UsageError(
            f"RNIX_EXPLORE must be a number from 0 to 1, not {raw!r}", "unset it for the default 0.1"
        )
    return rate


def plan_with_ledger(env: Env, spec: ComposeSpec, project: str, seed: int | None) -> Plan:
    """The plan, with candidates chosen by reputation and `proportional` fed by history; juries get
    their candidates' scores (votes weighed by reputation, ties)."""
    from rnix.core import reputation
    from rnix.core.plan import Choice, definition_key, make_plan

    wanted = {c for a in spec.agents for c in a.candidates} | {definition_key(a) for a in spec.agents}
    records = load_records(env, wanted) if wanted else []
    now = time.time()
    scores = {s.definition: s for s in reputation.scores(records, now)}
    rng = random.Random(seed)
    rate = explore_rate(env)
    choices = {}
    for agent in spec.agents:
        if agent.candidates and agent.aggregate is None:  # a jury runs every candidate
            chosen, reason = reputation.choose(agent.candidates, scores, rng=rng.random, explore=rate)
            choices[agent.name] = Choice(chosen, reason)
    usage = reputation.average_usage(records, now)
    history = {
        a.name: usage[key]
        for a in spec.agents
        if (key := definition_key(a, choices[a.name].chosen if a.name in choices else None)) in usage
    }
    jurors = {c for a in spec.agents if a.aggregate is not None for c in a.candidates}
    jury_scores = {c: reputation.score(records, now, definition=c).score for c in sorted(jurors)}
    return make_plan(spec, project, history=history, choices=choices, reputation=jury_scores)


@click.command("reputation")
@click.argument("definition", required=False)
@click.option(
    "-n", "--limit", type=int, default=10, show_default=True, help="Recent verdicts in the detail view."
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout.")
@click.pass_obj
def reputation_cmd(env: Env, definition: str | None, limit: int, as_json: bool) -> int:
    """Scores of agent definitions from the reputation ledger (best first), or one definition's detail.

    The score blends success (contract passed), token efficiency and speed, weighs gold verdicts more
    than bronze, decays with a 7-day half-life and starts new definitions at 0.5 (docs/token-economy.md).
    """
    from rnix.core import reputation
    from rnix.store.db import Store

    now = time.time()
    records = load_records(env)
    scores = reputation.scores(records, now)
    if definition is None:
        rows = [_score_dict(s) for s in scores]
        if as_json:
            jsonout.write_ok(env.stdout, {"definitions": rows})
        elif not rows:
            env.stderr.write("rnix: the reputation ledger is empty; it fills as agents run\n")
        else:
            _render_scores(env, rows)
        return ExitCode.OK
    known = {s.definition for s in scores}
    if definition not in known:
        from rnix.core.problems import did_you_mean

        raise RnixError(
            f"no ledger records for '{definition}'{did_you_mean(definition, known)}",
            "`rnix reputation` lists them",
        )
    with Store.open(env.home, readonly=True) as store:
        recent = store.ledger(definitions={definition}, limit=limit)
    detail = {
        **_score_dict(next(s for s in scores if s.definition == definition)),
        "recent": [
            {
                "ts": r.ts,
                "run_id": r.run_id,
                "agent": r.agent,
                "project": r.project,
                "status": r.status,
                "tokens_used": r.tokens_used,
                "elapsed_ms": r.elapsed_ms,
                "level": r.level,
                "sla": r.sla,
            }
            for r in reversed(recent)
        ],
    }
    if as_json:
        jsonout.write_ok(env.stdout, detail)
    else:
        _render_detail(env, detail)
    return ExitCode.OK


def _score_dict(s: Any) -> dict[str, Any]:
    return {
        "definition": s.definition,
        "score": round(s.score, 3),
        "records": s.records,
        "success_rate": round(s.success_rate, 3),
        "avg_tokens": round(s.avg_tokens, 1),
        "avg_elapsed_s": round(s.avg_elapsed_s, 3),
        "trend": round(s.trend, 3),
    }


def _render_scores(env: Env, rows: Sequence[Mapping[str, Any]]) -> None:
    from rich.table import Table
    from rich.text import Text

    from rnix.ui.render import console
    from rnix.ui.text import inert

    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("AGENT", "SCORE", "RECORDS", "SUCCESS", "AVG TOKENS", "AVG TIME", "TREND"):
        table.add_column(column, justify="left" if column == "AGENT" else "right")
    for r in rows:
        arrow = "↑" if r["trend"] > 0.02 else "↓" if r["trend"] < -0.02 else "→"
        table.add_row(
            Text(inert(r["definition"])),
            f"{r['score']:.3f}",
            str(r["records"]),
            f"{r['success_rate']:.0%}",
            f"{r['avg_tokens']:,.0f}",
            f"{r['avg_elapsed_s']:.1f}s",
            f"{arrow} {r['trend']:+.2f}",
        )
    console(env).print(table)


def _render_detail(env: Env, detail: Mapping[str, Any]) -> None:
    from rnix.ui.runview import sla_word
    from rnix.ui.text import inert

    env.stdout.write(
        f"{inert(detail['definition'])}: score {detail['score']:.3f} over {detail['records']} records, "
        f"success {detail['success_rate']:.0%}, avg {detail['avg_tokens']:,.0f} tokens, "
        f"{detail['avg_elapsed_s']:.1f}s, trend {detail['trend']:+.2f}\n"
    )
    for r in detail["recent"]:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r["ts"]))
        env.stdout.write(
            f"  {when}  {r['run_id']}  {inert(r['agent'])}  {r['status']}  {r['tokens_used']:,} tokens  "
            f"{r['elapsed_ms'] / 1000:.1f}s  sla {sla_word(r['sla'])}\n"
        )
