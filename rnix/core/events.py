"""The event vocabulary of the append-only log: typed, frozen, versioned. Pure.

Every change of a run is one event. The supervisor appends it (wrapped in a `Record`: the run and
the time) and only then acts on it; `rnix.core.fold.apply` turns the log into the run's state, and
the store keeps its SQL projection (`runs`, `processes`, `ledger`) from the same events.

Each event class has a `KIND` (the name stored in the log, unchanged since the first version, so
old logs stay readable) and a `VERSION`; `to_dict()` writes the fields plus `"v"`, `from_dict()`
reads them back and fills fields that an older version did not have with their defaults. An event
about an agent instance carries its `InstanceKey` (node, index, iteration); the log's `agent`
column holds the key's text (`writer`, `fix[2]`, `fix[2]@1`).

`decode(kind, data)` returns the typed event, or `Unknown` for a kind this version does not know
(a newer rnix wrote it): readers show it, the fold ignores it.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

_E = TypeVar("_E", bound="Event")


@dataclass(frozen=True)
class InstanceKey:
    """One agent instance: a node of the compose file, its fan-out index (None unless the node has
    `for_each`) and its loop iteration (0 outside loops, and in a loop's first iteration)."""

    node: str
    index: int | None = None
    iteration: int = 0

    def __str__(self) -> str:
        text = self.node if self.index is None else f"{self.node}[{self.index}]"
        return text if self.iteration == 0 else f"{text}@{self.iteration}"

    def __lt__(self, other: InstanceKey) -> bool:
        return self._order() < other._order()

    def _order(self) -> tuple[str, int, int]:
        return (self.node, -1 if self.index is None else self.index, self.iteration)

    @property
    def fanned(self) -> bool:
        """One item's instance of a `for_each` node."""
        return self.index is not None

    def node_key(self) -> InstanceKey:
        """The key of the node in this iteration (for a fanned-out instance: its node's)."""
        return InstanceKey(self.node, None, self.iteration)

    @classmethod
    def parse(cls, text: str) -> InstanceKey:
        """The inverse of `str(key)`: `writer`, `fix[2]`, `fix[2]@1`, `review@1`."""
        if "[" not in text and "@" not in text:
            return cls(text)
        match = _KEY.fullmatch(text)
        if match is None:
            return cls(text)
        node, index, iteration = match.groups()
        return cls(node, None if index is None else int(index), int(iteration or 0))


_KEY = re.compile(r"(.+?)(?:\[(\d+)\])?(?:@(\d+))?")


class EventVersionError(ValueError):
    """An event written by a newer, incompatible version of rnix."""


@dataclass(frozen=True)
class Event:
    """Base of all events."""

    KIND: ClassVar[str] = ""
    VERSION: ClassVar[int] = 1

    @property
    def instance(self) -> InstanceKey | None:
        key = getattr(self, "key", None)
        return key if isinstance(key, InstanceKey) else None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, InstanceKey):
                value = str(value)
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        out["v"] = self.VERSION
        return out

    @classmethod
    def from_dict(cls: type[_E], data: dict[str, Any]) -> _E:
        version = data.get("v", 1)
        if isinstance(version, int) and version > cls.VERSION:
            raise EventVersionError(f"{cls.KIND} version {version} is newer than this rnix ({cls.VERSION})")
        names = _field_names(cls)
        kwargs = {name: data[name] for name in names if name in data}
        if "key" in names:
            kwargs["key"] = _key(kwargs["key"] if "key" in kwargs else data.get("agent"))
        for name in ("depends_on", "approvers"):
            if isinstance(kwargs.get(name), list):
                kwargs[name] = tuple(kwargs[name])
        return cls(**kwargs)


_FIELDS: dict[type, tuple[str, ...]] = {}


def _field_names(cls: type) -> tuple[str, ...]:
    names = _FIELDS.get(cls)
    if names is None:
        names = _FIELDS[cls] = tuple(f.name for f in dataclasses.fields(cls))
    return names


def _key(value: Any) -> InstanceKey:
    if isinstance(value, InstanceKey):
        return value
    if isinstance(value, dict):  # the form of keys before fan-out existed: index 0 meant none
        index = value.get("index")
        return InstanceKey(
            str(value.get("node")), int(index) if index else None, int(value.get("iteration") or 0)
        )
    return InstanceKey.parse(str(value))


# -- the run -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunStarted(Event):
    KIND: ClassVar[str] = "run_started"
    project: str = ""
    compose_file: str | None = None
    cwd: str | None = None
    supervisor_pid: int | None = None
    supervisor_start_time: float | None = None
    supervisor_start_ticks: int | None = None  # /proc/PID/stat field 22: exact, unlike the time
    detached: bool = False
    plan: dict[str, Any] | None = None
    resumed_from: str | None = None  # the run whose results and journal this one reuses
    control_socket: str | None = None


@dataclass(frozen=True)
class RunStopRequested(Event):
    KIND: ClassVar[str] = "run_stop_requested"
    grace: float | None = None  # None: each agent's own stop_grace_period
    by_pid: int | None = None
    reason: str = "stop"
    failure: bool = False  # the run stops because it failed (--abort-on-failure), not by a user


@dataclass(frozen=True)
class RunFinished(Event):
    KIND: ClassVar[str] = "run_finished"
    status: str = "failed"  # a lifecycle.RunStatus value
    exit_code: int | None = None
    elapsed_ms: int | None = None
    tokens_used: int | None = None
    error: str | None = None
    reason: str | None = None


# -- agent instances ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class InstancePlanned(Event):
    KIND: ClassVar[str] = "agent_planned"
    key: InstanceKey = InstanceKey("")
    layer: int | None = None
    depends_on: tuple[str, ...] = ()
    model: str | None = None
    budget: int | None = None  # the plan's share; what it gets is funded when it starts
    priority: str | None = None
    intent: str | None = None
    kind: str | None = None
    spec_hash: str | None = None  # of the resolved spec: a resume re-runs an agent whose spec changed
    item: Any = None  # a for_each instance's item (JSON)
    label: str | None = None  # a for_each instance's `item_name`


@dataclass(frozen=True)
class InstanceReused(Event):
    """Completed in an earlier run (`from_run`), unchanged since: its result is taken, not re-made."""

    KIND: ClassVar[str] = "agent_reused"
    key: InstanceKey = InstanceKey("")
    from_run: str = ""
    result: str | None = None
    tokens_used: int = 0
    elapsed_ms: int = 0
    sla: dict[str, Any] | None = None


@dataclass(frozen=True)
class InstanceStarted(Event):
    KIND: ClassVar[str] = "agent_started"
    key: InstanceKey = InstanceKey("")
    attempt: int = 1
    pid: int | None = None
    pid_start_time: float | None = None
    pid_start_ticks: int | None = None  # /proc/PID/stat field 22: exact, unlike the time
    budget: int | None = None
    log_path: str | None = None
    out_path: str | None = None
    replay_calls: int = 0  # journalled calls available to answer this attempt for free
    # The cluster node the attempt runs on (the spawner's `AgentProcess.node`); None: the
    # supervisor's machine, and in logs written before agents could run elsewhere. Not `key.node`
    # (the compose node): `pid` is a PID on this node.
    node: str | None = None


@dataclass(frozen=True)
class LlmCall(Event):
    KIND: ClassVar[str] = "llm_call"
    key: InstanceKey = InstanceKey("")
    attempt: int = 0  # the agent's request number
    try_: int = 0
    model: str | None = None
    status: str = "ok"  # ok | retry | provider_error | timeout | budget_exceeded | cancelled | replayed
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    latency_ms: float = 0.0
    max_tokens: int | None = None
    used: int | None = None
    remaining: int | None = None
    usage_counted: bool = False
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out["try"] = out.pop("try_")
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LlmCall:
        data = dict(data)
        if "try" in data:
            data["try_"] = data.pop("try")
        return super().from_dict(data)


@dataclass(frozen=True)
class InstanceSignalled(Event):
    KIND: ClassVar[str] = "agent_signalled"
    key: InstanceKey = InstanceKey("")
    pid: int | None = None
    signal: str = "SIGTERM"
    reason: str = "stop"
    by_pid: int | None = None


@dataclass(frozen=True)
class InstanceStopping(Event):
    """The supervisor is stopping the running attempt: SIGTERM to its group, `grace`, SIGKILL."""

    KIND: ClassVar[str] = "agent_stopping"
    key: InstanceKey = InstanceKey("")
    reason: str = "stop"  # "timeout", or why the run stops
    grace: float = 0.0


@dataclass(frozen=True)
class InstancePaused(Event):
    KIND: ClassVar[str] = "agent_paused"
    key: InstanceKey = InstanceKey("")
    pid: int | None = None


@dataclass(frozen=True)
class InstanceResumed(Event):
    KIND: ClassVar[str] = "agent_resumed"
    key: InstanceKey = InstanceKey("")
    pid: int | None = None


@dataclass(frozen=True)
class InstanceExited(Event):
    """One attempt ended. `state` is where the instance goes: a terminal state, or `backoff` when
    it will be retried (`outcome` is then how the attempt itself ended)."""

    KIND: ClassVar[str] = "agent_exited"
    key: InstanceKey = InstanceKey("")
    attempt: int = 1
    state: str = "failed"
    outcome: str | None = None
    exit_code: int | None = None
    signal: int | None = None
    tokens_used: int | None = None
    elapsed_ms: int | None = None
    result: str | None = None
    error: str | None = None
    final: bool = True
    retry_in: float | None = None  # seconds of backoff before the next attempt
    recovered: bool = False  # read from the agent's exit report after its supervisor died


@dataclass(frozen=True)
class InstanceSkipped(Event):
    """Never ran. `by_condition`: because a dependency's condition (`{x: failed}`) was not met,
    which is an outcome, not a failure: it neither fails the run nor blocks its own dependents."""

    KIND: ClassVar[str] = "agent_skipped"
    key: InstanceKey = InstanceKey("")
    reason: str | None = None
    by_condition: bool = False


@dataclass(frozen=True)
class InstanceCancelled(Event):
    """Stopped before it ran (or while it waited to retry): by the user, or because the run stopped."""

    KIND: ClassVar[str] = "agent_cancelled"
    key: InstanceKey = InstanceKey("")
    reason: str | None = None


@dataclass(frozen=True)
class InstanceUnfunded(Event):
    """The budget pool could not fund it when it was due to start: it never runs."""

    KIND: ClassVar[str] = "agent_unfunded"
    key: InstanceKey = InstanceKey("")
    available: int = 0


@dataclass(frozen=True)
class InstanceAssessed(Event):
    """The SLA verdict of one real execution: one reputation-ledger record."""

    KIND: ClassVar[str] = "agent_assessed"
    key: InstanceKey = InstanceKey("")
    definition: str = ""
    status: str = ""
    completed: bool = False
    tokens_used: int = 0
    budget: int | None = None
    elapsed_ms: int = 0
    model: str | None = None
    level: str | None = None
    sla: dict[str, Any] | None = None
    contract_timeout_s: float | None = None
    contract_max_tokens: int | None = None
    judge_tokens: int = 0
    # Set when it failed for a reason that is not the agent's (the provider unreachable, no key,
    # 5xx after retries, ...): recorded, never counted against the definition's reputation.
    infra: str | None = None


@dataclass(frozen=True)
class InstanceExpanded(Event):
    """A `for_each` node's list was evaluated: it runs as `count` instances (planned next)."""

    KIND: ClassVar[str] = "agent_expanded"
    key: InstanceKey = InstanceKey("")
    count: int = 0


@dataclass(frozen=True)
class InstanceSettled(Event):
    """Ended without a process of its own: a `for_each` node once its instances ended (its result
    the JSON list of theirs), or an agent whose `when`/`for_each` expression could not be evaluated."""

    KIND: ClassVar[str] = "agent_settled"
    key: InstanceKey = InstanceKey("")
    state: str = "failed"
    result: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class LoopIterated(Event):
    """A loop's `until` was false after an iteration: its body runs again as `iteration`."""

    KIND: ClassVar[str] = "loop_iterated"
    loop: str = ""
    iteration: int = 1
    reason: str | None = None


@dataclass(frozen=True)
class LoopEnded(Event):
    """A loop ended after `iteration`: `completed` (until held, or on_max: continue) or `failed`."""

    KIND: ClassVar[str] = "loop_ended"
    loop: str = ""
    iteration: int = 0
    status: str = "completed"
    reason: str | None = None


@dataclass(frozen=True)
class InstanceThrottled(Event):
    """A model call of the instance waits for the provider's limits (`waiting`), or stopped waiting:
    queued in the gateway behind its model's `max_concurrency` or `rpm`, or sleeping before a retry
    after an HTTP 429. Only waits longer than a moment are recorded. `until`: when the wait ends, if
    known (seconds since the epoch)."""

    KIND: ClassVar[str] = "agent_throttled"
    key: InstanceKey = InstanceKey("")
    waiting: bool = True
    reason: str = ""  # max_concurrency | rpm | http_429
    until: float | None = None


@dataclass(frozen=True)
class CompensationPlanned(Event):
    """The run failed after `of` completed: its compensation runs as the instance `key` (planned
    just before, `<node>:undo`), one at a time, in reverse order of completion (rnix.core.saga)."""

    KIND: ClassVar[str] = "compensation_planned"
    key: InstanceKey = InstanceKey("")
    of: str = ""  # the compensated instance's key text
    reason: str = ""  # why the run failed


@dataclass(frozen=True)
class ApprovalRequested(Event):
    """The instance reached its approval gate: it waits for decisions until `deadline` (if any)."""

    KIND: ClassVar[str] = "approval_requested"
    key: InstanceKey = InstanceKey("")
    approvers: tuple[str, ...] = ()
    policy: str = "any"
    quorum: int | None = None
    deadline: float | None = None  # seconds since the epoch


@dataclass(frozen=True)
class ApprovalDecided(Event):
    """One person's decision at a gate (`approve` or `reject`); `by` is `timeout` for the gate's own
    decision when nobody decided in time."""

    KIND: ClassVar[str] = "approval_decided"
    key: InstanceKey = InstanceKey("")
    decision: str = "approve"
    by: str = ""
    message: str | None = None


# -- `rnix apply`'s planner ---------------------------------------------------------------------------
# A planning is logged under its own id (`plan-...`, in the run_id column) and has no `runs` row, so
# `ps`, `top` and `compose ps` never list it. Its model calls are `LlmCall`s of the agent `planner`,
# their answers journal entries of the instance `planner` (`rnix log --planner ID` shows them).


@dataclass(frozen=True)
class PlanningStarted(Event):
    KIND: ClassVar[str] = "planning_started"
    intent: str = ""
    model: str = ""
    budget: int = 0  # tokens for all the planner's calls
    file: str | None = None  # the compose file it plans
    cwd: str | None = None


@dataclass(frozen=True)
class PlanningWrote(Event):
    """An accepted proposal was written: the plan (replan 0) or replan N."""

    KIND: ClassVar[str] = "planning_wrote"
    file: str = ""
    replan: int = 0
    agents: int = 0


@dataclass(frozen=True)
class PlanningRan(Event):
    """A written plan ran as `compose up`: the run it became and how it ended."""

    KIND: ClassVar[str] = "planning_ran"
    compose_run: str | None = None
    file: str = ""
    exit_code: int | None = None


@dataclass(frozen=True)
class PlanningFinished(Event):
    KIND: ClassVar[str] = "planning_finished"
    status: str = "planned"  # planned | failed
    calls: int = 0
    tokens_used: int = 0
    error: str | None = None


@dataclass(frozen=True)
class Unknown(Event):
    """A kind this version of rnix does not know: kept and shown, never folded."""

    kind: str = ""
    data: dict[str, Any] = field(default_factory=dict)
    agent: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.data)


EVENT_TYPES: dict[str, type[Event]] = {
    cls.KIND: cls
    for cls in (
        RunStarted,
        RunStopRequested,
        RunFinished,
        InstancePlanned,
        InstanceReused,
        InstanceStarted,
        LlmCall,
        InstanceSignalled,
        InstanceStopping,
        InstancePaused,
        InstanceResumed,
        InstanceExited,
        InstanceSkipped,
        InstanceCancelled,
        InstanceUnfunded,
        InstanceAssessed,
        InstanceExpanded,
        InstanceSettled,
        LoopIterated,
        LoopEnded,
        InstanceThrottled,
        CompensationPlanned,
        ApprovalRequested,
        ApprovalDecided,
        PlanningStarted,
        PlanningWrote,
        PlanningRan,
        PlanningFinished,
    )
}


def decode(kind: str, data: dict[str, Any], agent: str | None = None) -> Event:
    """The typed event of a stored (kind, data); `Unknown` for kinds this version does not know."""
    cls = EVENT_TYPES.get(kind)
    if cls is None:
        return Unknown(kind, dict(data), agent)
    if agent is not None and "key" not in data:
        data = {**data, "agent": agent}
    try:
        return cls.from_dict(data)
    except (TypeError, ValueError):
        return Unknown(kind, dict(data), agent)


def kind_of(event: Event) -> str:
    return event.kind if isinstance(event, Unknown) else event.KIND


@dataclass(frozen=True)
class Record:
    """One entry of the log: an event of a run, at a time (seconds since the epoch)."""

    run_id: str
    ts: float
    event: Event

    @property
    def kind(self) -> str:
        return kind_of(self.event)

    @property
    def agent(self) -> str | None:
        if isinstance(self.event, Unknown):
            return self.event.agent
        key = self.event.instance
        return None if key is None else str(key)

    @property
    def data(self) -> dict[str, Any]:
        """The event as stored (its fields and version, without the key, which is `agent`)."""
        out = self.event.to_dict()
        out.pop("key", None)
        return out
