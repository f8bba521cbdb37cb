"""After each agent: judge its SLA contract and append one record to the reputation ledger.

A contract's verdict never changes the agent's exit status; it is recorded (`agent_assessed`), shown
in `--json`, the live view and `compose ps`, and feeds reputation. `output_quality: {judge: ...}` asks
the judge model (the agent's own model, through the gateway) on an account of its own, so the
judge's tokens are accounted apart from the agent's budget. Agents that never ran, and agents the
user cancelled, are not recorded: neither says anything about the definition.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from rnix.core import sla
from rnix.core.events import AGENT_ASSESSED, Event
from rnix.core.lifecycle import AgentState
from rnix.core.model import Judge
from rnix.supervisor.scheduler import AgentRun, Clock

JUDGE_BUDGET = 4_000  # tokens per verdict, outside the pool
JUDGE_MAX_TOKENS = 300


class JudgeGateway(Protocol):
    def register(self, agent: str, *, model: str, api_base: str | None, budget: int) -> Any: ...

    async def complete_internal(
        self, agent: str, messages: list[dict[str, Any]], max_tokens: int | None = None
    ) -> dict[str, Any]: ...


class Assessor:
    def __init__(
        self, gateway: JudgeGateway, record: Callable[[Event], None], clock: Clock, run_id: str
    ) -> None:
        self.gateway = gateway
        self.record = record
        self.clock = clock
        self.run_id = run_id

    async def __call__(self, run: AgentRun) -> None:
        spec = run.plan.spec
        contract = spec.contract
        completed = run.state is AgentState.COMPLETED
        elapsed_ms = run.elapsed_ms(self.clock.monotonic())
        verdict: sla.Verdict | None = None
        judge_tokens = 0
        if contract is not None:
            judge = None
            if isinstance(contract.output_quality, Judge) and completed:
                judge = await self._judge(run, contract.output_quality.criteria)
                judge_tokens = judge.tokens
            verdict = sla.evaluate(
                contract,
                result=run.result or "",
                tokens_used=run.tokens_used,
                elapsed_s=elapsed_ms / 1000,
                completed=completed,
                judge=judge,
            )
            run.sla = verdict.as_dict()
        self.record(
            Event(
                self.run_id,
                AGENT_ASSESSED,
                self.clock.time(),
                run.name,
                {
                    "definition": run.plan.definition,
                    "status": run.state.value,
                    "completed": completed,
                    "tokens_used": run.tokens_used,
                    "budget": run.budget,
                    "elapsed_ms": elapsed_ms,
                    "model": spec.model,
                    "level": contract.sla_level if contract else None,
                    "sla": run.sla,
                    "contract_timeout_s": contract.timeout_s if contract else None,
                    "contract_max_tokens": contract.max_tokens if contract else None,
                    "judge_tokens": judge_tokens,
                },
            )
        )

    async def _judge(self, run: AgentRun, criteria: str) -> sla.JudgeVerdict:
        spec = run.plan.spec
        account = f"{run.name}#judge"
        self.gateway.register(account, model=spec.model, api_base=spec.api_base, budget=JUDGE_BUDGET)
        messages = sla.judge_messages(criteria, spec.intent, run.result or "")
        reply = await self.gateway.complete_internal(account, messages, max_tokens=JUDGE_MAX_TOKENS)
        tokens = int(reply.get("used") or 0)
        if not reply.get("ok"):
            error = reply.get("error") or {}
            return sla.JudgeVerdict(
                False, f"the judge could not answer: {error.get('message', 'error')}", tokens
            )
        passed, reason = sla.parse_judge_reply(str(reply.get("content") or ""))
        return sla.JudgeVerdict(passed, reason, tokens)
