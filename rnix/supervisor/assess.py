"""After each agent: judge its SLA contract and append one record to the reputation ledger.

A contract's verdict never changes the agent's exit status; it is recorded (`agent_assessed`), shown
in `--json`, the live view and `compose ps`, and feeds reputation. `output_quality: {judge: ...}` asks
the judge model (the agent's own model, through the gateway) on an account of its own, so the
judge's tokens are accounted apart from the agent's budget. Agents that never ran, and agents the
user cancelled, are not recorded: neither says anything about the definition.
"""

from __future__ import annotations

from typing import Any, Protocol

from rnix.core import sla
from rnix.core.events import InstanceAssessed
from rnix.core.fold import Instance
from rnix.core.lifecycle import AgentState
from rnix.core.model import Judge
from rnix.core.plan import AgentPlan

JUDGE_BUDGET = 4_000  # tokens per verdict, outside the pool
JUDGE_MAX_TOKENS = 300


class JudgeGateway(Protocol):
    def infra_error(self, agent: str) -> str | None:
        """Why the agent's last model call failed, when that was not the agent's fault."""
        ...

    def register(self, agent: str, *, model: str, api_base: str | None, budget: int) -> Any: ...

    async def complete_internal(
        self, agent: str, messages: list[dict[str, Any]], max_tokens: int | None = None
    ) -> dict[str, Any]: ...


class Clock(Protocol):
    def time(self) -> float: ...


class Assessor:
    """`await assessor(plan, instance)` -> the `InstanceAssessed` event to append (None: not judged)."""

    def __init__(self, gateway: JudgeGateway, clock: Clock) -> None:
        self.gateway = gateway
        self.clock = clock
        self._judges = 0

    async def __call__(self, agent: AgentPlan, inst: Instance) -> InstanceAssessed | None:
        if not inst.ran or inst.state is AgentState.CANCELLED:
            return None  # never ran here, or the user stopped it: neither says anything
        spec = agent.spec
        contract = spec.contract
        completed = inst.state is AgentState.COMPLETED
        elapsed_ms = int(inst.elapsed_s(self.clock.time()) * 1000)
        verdict: dict[str, Any] | None = None
        judge_tokens = 0
        if contract is not None:
            judge = None
            if isinstance(contract.output_quality, Judge) and completed:
                judge = await self._judge(agent, inst, contract.output_quality.criteria)
                judge_tokens = judge.tokens
            verdict = sla.evaluate(
                contract,
                result=inst.result or "",
                tokens_used=inst.tokens_used,
                elapsed_s=elapsed_ms / 1000,
                completed=completed,
                judge=judge,
            ).as_dict()
        return InstanceAssessed(
            key=inst.key,
            definition=agent.definition,
            status=inst.state.value,
            completed=completed,
            tokens_used=inst.tokens_used,
            budget=inst.budget,
            elapsed_ms=elapsed_ms,
            model=spec.model,
            level=contract.sla_level if contract else None,
            sla=verdict,
            contract_timeout_s=contract.timeout_s if contract else None,
            contract_max_tokens=contract.max_tokens if contract else None,
            judge_tokens=judge_tokens,
            infra=None if completed else self.gateway.infra_error(inst.name),
        )

    async def _judge(self, agent: AgentPlan, inst: Instance, criteria: str) -> sla.JudgeVerdict:
        spec = agent.spec
        self._judges += 1  # an account per verdict: a resumed run may judge an earlier run's agent too
        account = f"{inst.name}#judge{self._judges}"
        self.gateway.register(account, model=spec.model, api_base=spec.api_base, budget=JUDGE_BUDGET)
        messages = sla.judge_messages(criteria, spec.intent, inst.result or "")
        reply = await self.gateway.complete_internal(account, messages, max_tokens=JUDGE_MAX_TOKENS)
        tokens = int(reply.get("used") or 0)
        if not reply.get("ok"):
            error = reply.get("error") or {}
            return sla.JudgeVerdict(
                False, f"the judge could not answer: {error.get('message', 'error')}", tokens
            )
        passed, reason = sla.parse_judge_reply(str(reply.get("content") or ""))
        return sla.JudgeVerdict(passed, reason, tokens)
