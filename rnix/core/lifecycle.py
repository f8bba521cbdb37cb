"""Agent and run states: one enum, named groups and the transitions allowed between them."""

from __future__ import annotations

import enum


class AgentState(str, enum.Enum):
    PENDING = "pending"  # waiting for dependencies (or for a retry)
    RUNNING = "running"
    PAUSED = "paused"  # SIGSTOPped by a user; the clock is frozen
    COMPLETED = "completed"
    FAILED = "failed"
    TIMEOUT = "timeout"
    BUDGET_EXCEEDED = "budget_exceeded"
    SKIPPED = "skipped"  # a dependency did not complete
    CANCELLED = "cancelled"  # stopped by the user (Ctrl-C, compose down, abort-on-failure)

    @property
    def terminal(self) -> bool:
        return self in TERMINAL

    @property
    def signallable(self) -> bool:
        return self in SIGNALLABLE


TERMINAL = frozenset(
    {
        AgentState.COMPLETED,
        AgentState.FAILED,
        AgentState.TIMEOUT,
        AgentState.BUDGET_EXCEEDED,
        AgentState.SKIPPED,
        AgentState.CANCELLED,
    }
)
SIGNALLABLE = frozenset({AgentState.RUNNING, AgentState.PAUSED})
UNSUCCESSFUL = TERMINAL - {AgentState.COMPLETED}

_ALLOWED: dict[AgentState, frozenset[AgentState]] = {
    AgentState.PENDING: frozenset(
        {AgentState.RUNNING, AgentState.SKIPPED, AgentState.CANCELLED, AgentState.BUDGET_EXCEEDED}
    ),
    AgentState.RUNNING: frozenset(
        {AgentState.PAUSED, AgentState.PENDING, *TERMINAL - {AgentState.SKIPPED}}  # PENDING = retry
    ),
    AgentState.PAUSED: frozenset({AgentState.RUNNING, *TERMINAL - {AgentState.SKIPPED}}),
}


class TransitionError(ValueError):
    pass


def transition(current: AgentState, new: AgentState) -> AgentState:
    """Return `new` if the lifecycle allows `current -> new`, else raise TransitionError."""
    if new not in _ALLOWED.get(current, frozenset()):
        raise TransitionError(f"an agent cannot go from {current.value} to {new.value}")
    return new


class RunState(str, enum.Enum):
    RUNNING = "running"
    COMPLETED = "completed"  # every agent completed
    FAILED = "failed"  # at least one agent did not complete
    CANCELLED = "cancelled"  # stopped by the user
    LOST = "lost"  # the supervisor died without recording an end (found by ps/down)


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
