"""Agent and run states: one enum each, named groups, and the only function that changes a state.

An agent instance waits for its dependencies (`pending`), runs (`running`, `paused` while a user
holds it with SIGSTOP: its timeout clock is frozen), waits to retry after a failed attempt
(`backoff`), and ends in one terminal state. `transition(current, new)` is how the fold
(`rnix.core.fold`) changes a state; any move the table below does not allow raises
`TransitionError`, so an impossible history is a loud bug, not a silently wrong `ps`.
"""

from __future__ import annotations

import enum


class AgentState(str, enum.Enum):
    PENDING = "pending"  # waiting for its dependencies
    BACKOFF = "backoff"  # an attempt failed; waiting out the delay before the next one
    RUNNING = "running"
    PAUSED = "paused"  # SIGSTOPped by a user; the clock is frozen
    COMPLETED = "completed"
    FAILED = "failed"
    TIMEOUT = "timeout"
    BUDGET_EXCEEDED = "budget_exceeded"
    SKIPPED = "skipped"  # a dependency did not complete
    CANCELLED = "cancelled"  # stopped by the user (Ctrl-C, compose down, abort-on-failure)
    WAITING_APPROVAL = "waiting_approval"  # at its approval gate: waits for people's decisions
    REJECTED = "rejected"  # its approval gate said no (or timed out with on_timeout: reject)

    @property
    def terminal(self) -> bool:
        return self in TERMINAL

    @property
    def signallable(self) -> bool:
        return self in SIGNALLABLE

    @property
    def waiting(self) -> bool:
        """Not started yet, or between attempts: nothing runs for it now."""
        return self in WAITING


TERMINAL = frozenset(
    {
        AgentState.COMPLETED,
        AgentState.FAILED,
        AgentState.TIMEOUT,
        AgentState.BUDGET_EXCEEDED,
        AgentState.SKIPPED,
        AgentState.CANCELLED,
        AgentState.REJECTED,
    }
)
SIGNALLABLE = frozenset({AgentState.RUNNING, AgentState.PAUSED})
WAITING = frozenset({AgentState.PENDING, AgentState.BACKOFF, AgentState.WAITING_APPROVAL})
_ENDS_OF_AN_ATTEMPT = TERMINAL - {AgentState.SKIPPED, AgentState.REJECTED}

_ALLOWED: dict[AgentState, frozenset[AgentState]] = {
    AgentState.PENDING: frozenset(
        {
            AgentState.RUNNING,
            AgentState.SKIPPED,
            AgentState.CANCELLED,
            AgentState.BUDGET_EXCEEDED,  # the pool could not fund it
            AgentState.COMPLETED,  # reused from an earlier run, or a for_each node whose instances ended
            AgentState.FAILED,  # a for_each node whose instances failed, or whose expression did not evaluate
            AgentState.WAITING_APPROVAL,  # at its approval gate
        }
    ),
    AgentState.WAITING_APPROVAL: frozenset(
        {
            AgentState.RUNNING,  # approved, and started
            AgentState.REJECTED,
            AgentState.CANCELLED,
            AgentState.BUDGET_EXCEEDED,  # approved, but the pool could not fund it
        }
    ),
    AgentState.BACKOFF: frozenset({AgentState.RUNNING, AgentState.CANCELLED}),
    AgentState.RUNNING: frozenset({AgentState.PAUSED, AgentState.BACKOFF, *_ENDS_OF_AN_ATTEMPT}),
    AgentState.PAUSED: frozenset({AgentState.RUNNING, AgentState.BACKOFF, *_ENDS_OF_AN_ATTEMPT}),
}


class TransitionError(ValueError):
    """A state change the lifecycle does not allow: a bug in whoever produced the event."""


def transition(current: AgentState, new: AgentState) -> AgentState:
    """Return `new` if the lifecycle allows `current -> new`, else raise TransitionError."""
    if new not in _ALLOWED.get(current, frozenset()):
        raise TransitionError(f"an agent cannot go from {current.value} to {new.value}")
    return new


def allowed(current: AgentState) -> frozenset[AgentState]:
    return _ALLOWED.get(current, frozenset())


class RunStatus(str, enum.Enum):
    RUNNING = "running"
    COMPLETED = "completed"  # every agent completed
    FAILED = "failed"  # at least one agent did not complete
    CANCELLED = "cancelled"  # stopped by the user
    LOST = "lost"  # the supervisor died without recording an end (found by ps/down/up)


def exit_state_for(
    returncode: int | None, signal: int | None, timed_out: bool, cancelled: bool
) -> AgentState:
    """The final state of one attempt from how its process ended (exit 2 = budget exceeded)."""
    if timed_out:
        return AgentState.TIMEOUT
    if cancelled:
        return AgentState.CANCELLED
    if signal is None and returncode == 0:
        return AgentState.COMPLETED
    if signal is None and returncode == 2:
        return AgentState.BUDGET_EXCEEDED
    return AgentState.FAILED
