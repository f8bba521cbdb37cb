"""The seam between the scheduler and whatever starts processes (the local fork server today).

An agent process is the leader of its own session and process group (pid == pgid). Its stdin is a
file holding the task JSON, its stdout and stderr are appended to files, so the supervisor never
copies output and a result survives a supervisor crash. The spawner reads the result (stdout) where
the agent ran and hands it back with the exit (`ExitInfo.result`); with `exit_path` set, an agent
that ends by itself also leaves a durable exit report there (see exitreport.py). Stopping means
SIGTERM to the group, a grace period, then SIGKILL to the group (`stop`). If the supervisor dies,
the agent's parent-death signal makes its leader take the whole group down by itself (grace, then
SIGKILL), so nothing outlives rnix.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class SpawnRequest:
    name: str  # the agent's name (diagnostics only)
    argv: tuple[str, ...] | None  # a command agent's argv (PATH-searched); None = the built-in agent
    env: Mapping[str, str]  # the agent's complete environment
    cwd: str
    stdin_path: str  # opened read-only as fd 0
    stdout_path: str  # opened O_WRONLY|O_CREAT|O_APPEND as fd 1
    stderr_path: str  # opened O_WRONLY|O_CREAT|O_APPEND as fd 2
    grace: float  # SIGTERM -> SIGKILL delay the leader uses when it must stop its group by itself
    # An absolute path for the agent's exit report, written only when the agent ended by itself (a
    # report left there by an earlier process is removed at spawn); None: no report.
    exit_path: str | None = None
    # What the agent needs of a node ({CPU: 2, GPU: 1, custom: 1}): the Ray spawner places and
    # reserves by it; the local spawner ignores it.
    resources: Mapping[str, float] | None = None


@dataclass(frozen=True, repr=False)
class ExitInfo:
    returncode: int | None  # the exit status when the process exited
    signal: int | None  # the signal that killed it, otherwise None
    # The agent's stdout as read by the spawner when it exited (exitreport.read_result: at most
    # RESULT_LIMIT bytes); None when the spawner does not read results (e.g. a test double).
    result: str | None = None

    def __repr__(self) -> str:
        result = self.result
        shown = repr(result) if result is None or len(result) <= 60 else f"<{len(result)} characters>"
        return f"ExitInfo(returncode={self.returncode!r}, signal={self.signal!r}, result={shown})"

    @property
    def shell_status(self) -> int:
        """The status a shell would show ($?): 128+N for a signal."""
        return 128 + self.signal if self.signal is not None else int(self.returncode or 0)


class AgentProcess(Protocol):
    """A started agent. Besides the attributes below, a process may have `node: str | None`: the
    short name of the cluster node it runs on (e.g. `worker-1`, a Ray node id prefix or hostname),
    on which `pid`, `start_time` and `start_ticks` hold. None, or no such attribute (the scheduler
    reads it with `getattr(process, "node", None)`), means this machine: the local spawner's
    processes have `node = None`. A process with a node is never probed or signalled by its PID
    from this machine; `signal_group` and `stop` reach it on its node."""

    pid: int  # also the process group id
    start_time: float  # process creation time, seconds since the epoch (psutil's create_time)
    start_ticks: int | None  # the exact one: /proc/PID/stat field 22 (None when not known)

    async def wait(self) -> ExitInfo: ...

    def signal_group(self, signum: int) -> bool:
        """Send `signum` to the whole group; False when it no longer exists (ESRCH/EPERM are expected)."""
        ...

    async def stop(self, grace: float) -> ExitInfo:
        """SIGTERM to the group, wait up to `grace`, then SIGKILL to the group; returns how it ended."""
        ...


class Spawner(Protocol):
    async def start(self) -> None: ...

    async def spawn(self, request: SpawnRequest) -> AgentProcess: ...

    async def close(self) -> None:
        """Release the spawner (e.g. end the fork server). Running agents are the caller's business."""
        ...
