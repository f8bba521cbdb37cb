"""The event vocabulary of the append-only log. Pure: events are plain data with a kind and a dict.

The store appends every event and keeps two projections up to date from them, `runs` and
`processes`; `ps`, `top`, `logs` and `--json` read those.

Kinds, the agent they concern (or none) and their data:

- run_started (-): project, compose_file, cwd, supervisor_pid, supervisor_start_time, detached, plan
- agent_planned (agent): layer, depends_on, model, budget, priority, intent, kind
- agent_started (agent): attempt, pid, pid_start_time, budget, log_path, out_path
- llm_call (agent): attempt, try, model, status ("ok" or an error code), prompt_tokens,
  completion_tokens, total_tokens, latency_ms, used, remaining
- agent_signalled (agent): pid, signal, reason (timeout, down, abort, kill, top, interrupt)
- agent_paused, agent_resumed (agent): pid — recorded with the SIGSTOP / SIGCONT that `rnix kill`
  or `top` sent (rnix.supervisor.control.signal_agent)
- agent_exited (agent): attempt, state, exit_code, signal, tokens_used, elapsed_ms, result, error, final
- agent_skipped (agent): reason
- agent_assessed (agent): definition, status, completed, tokens_used, budget, elapsed_ms, model,
  level, sla (a Verdict as a dict, or null without a contract), contract_timeout_s,
  contract_max_tokens, judge_tokens — one reputation-ledger record
- run_stop_requested (-): grace, by_pid
- run_finished (-): status, exit_code, elapsed_ms, tokens_used
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

RUN_STARTED = "run_started"
AGENT_PLANNED = "agent_planned"
AGENT_STARTED = "agent_started"
LLM_CALL = "llm_call"
AGENT_SIGNALLED = "agent_signalled"
AGENT_PAUSED = "agent_paused"
AGENT_RESUMED = "agent_resumed"
AGENT_EXITED = "agent_exited"
AGENT_SKIPPED = "agent_skipped"
AGENT_ASSESSED = "agent_assessed"
RUN_STOP_REQUESTED = "run_stop_requested"
RUN_FINISHED = "run_finished"

KINDS = frozenset(
    {
        RUN_STARTED,
        AGENT_PLANNED,
        AGENT_STARTED,
        LLM_CALL,
        AGENT_SIGNALLED,
        AGENT_PAUSED,
        AGENT_RESUMED,
        AGENT_EXITED,
        AGENT_SKIPPED,
        AGENT_ASSESSED,
        RUN_STOP_REQUESTED,
        RUN_FINISHED,
    }
)


@dataclass(frozen=True)
class Event:
    run_id: str
    kind: str
    ts: float  # seconds since the epoch, from the injected clock
    agent: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
