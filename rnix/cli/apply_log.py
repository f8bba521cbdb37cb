"""`rnix apply`'s planning, recorded as it happens (rnix.store.planning), for `rnix log --planner`.

Contract: `PlannerLog(env, ...)` records the planning's start at once (a home that cannot hold
rnix's state fails here, before any planner call). `call(...)` records one planner call: an
`llm_call` event of the agent `planner` (model, tokens, latency, status, error) and, for an
answered call, its journal entry: the messages the request added since the previous call
(`rnix.core.journal.new_messages`) and the response, as the gateway journals an agent's calls.
`wrote`, `ran` and `finished` record the files written, the runs started and how planning ended.
Every write is one short transaction made before apply goes on; everything stored is masked with
the secret values of the environment. The store is opened per write (`compose up`, in the same
process, keeps its own connections).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rnix.core import events as ev
from rnix.core.events import InstanceKey
from rnix.core.journal import LLM, JournalEntry, new_messages, request_hash
from rnix.core.secrets import mask, secret_values
from rnix.env import Env
from rnix.store import planning
from rnix.store.db import Store


class PlannerLog:
    """One `rnix apply`'s planning in the state database (see the module docstring)."""

    def __init__(self, env: Env, *, intent: str, model: str, budget: int, file: Path) -> None:
        self.id = planning.new_planning_id()
        self._home = env.home
        self._secrets = secret_values(env.environ)
        self._sent: list[Any] = []  # the previous answered call's messages (masked)
        self._seq = 0
        started = ev.PlanningStarted(
            intent=intent, model=model, budget=budget, file=str(file), cwd=str(env.cwd)
        )
        self._append([started])

    @property
    def command(self) -> str:
        """How a user sees the planner's calls."""
        return f"rnix log --planner {self.id}"

    def call(
        self,
        number: int,
        model: str,
        status: str,
        *,
        usage: tuple[int, int] = (0, 0),
        latency_ms: float = 0.0,
        max_tokens: int | None = None,
        used: int = 0,
        remaining: int = 0,
        error: str | None = None,
        messages: list[dict[str, Any]] | None = None,
        tools: list[dict[str, Any]] | None = None,
        response: dict[str, Any] | None = None,
    ) -> None:
        """Record call `number` (1..), with its `response` (content, tool_calls, finish_reason, usage)
        when it was answered."""
        prompt, completion = usage
        event = ev.LlmCall(
            key=InstanceKey(planning.PLANNER),
            attempt=number,
            try_=0 if status == "budget_exceeded" else 1,
            model=model,
            status=status,
            prompt_tokens=prompt,
            completion_tokens=completion,
            total_tokens=prompt + completion,
            latency_ms=round(latency_ms, 1),
            max_tokens=max_tokens,
            used=used,
            remaining=remaining,
            error=error,
        )
        entry = None
        if response is not None and messages is not None:
            sent = mask(messages, self._secrets)
            self._seq += 1
            entry = JournalEntry(
                kind=LLM,
                key=request_hash(model, sent, tools, None, max_tokens),
                response=mask(response, self._secrets),
                prompt_tokens=prompt,
                completion_tokens=completion,
                total_tokens=prompt + completion,
                seq=self._seq,
                request=new_messages(self._sent, sent),
            )
            self._sent = sent
        self._append([event], entry)

    def wrote(self, file: Path, replan: int, agents: int) -> None:
        self._append([ev.PlanningWrote(file=str(file), replan=replan, agents=agents)])

    def ran(self, compose_run: str | None, file: Path, exit_code: int) -> None:
        self._append([ev.PlanningRan(compose_run=compose_run, file=str(file), exit_code=exit_code)])

    def finished(self, status: str, calls: int, tokens_used: int, error: str | None = None) -> None:
        self._append([ev.PlanningFinished(status=status, calls=calls, tokens_used=tokens_used, error=error)])

    def _append(self, events: Sequence[ev.Event], entry: JournalEntry | None = None) -> None:
        masked = [type(e).from_dict(mask(e.to_dict(), self._secrets)) for e in events]
        with Store.open(self._home) as store:
            planning.append(store, self.id, time.time(), masked, entry)
