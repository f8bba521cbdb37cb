"""The thin built-in agent: read the task, ask the gateway (one completion, or a tool loop), print it.

Contract (docs/agent-protocol.md): the task JSON arrives on stdin, the result goes to stdout (with a
trailing newline), one-line diagnostics go to stderr, and the exit status is 0 (ok), 1 (error) or 2
(budget exceeded). The LLM is reached only through the supervisor's gateway (`$RNIX_GATEWAY`), so
this module imports nothing but json/os/socket/sys and rnix.agent: it runs in every agent process,
usually forked from the fork server, where each imported module costs memory and start time.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
from typing import TYPE_CHECKING, Any, NoReturn

from rnix.agent import protocol
from rnix.agent.client import GatewayClient, GatewayError

if TYPE_CHECKING:
    from collections.abc import Callable

    from rnix.agent.submit import Submission

PREFIX = "rnix-agent"


class TaskError(Exception):
    """The task on stdin is not a JSON object with a `messages` list."""


def read_task(fd: int = 0) -> dict[str, Any]:
    chunks = []
    while chunk := os.read(fd, 1 << 16):
        chunks.append(chunk)
    try:
        task = json.loads(b"".join(chunks))
    except ValueError as exc:  # also UnicodeDecodeError
        raise TaskError(f"the task on stdin is not JSON: {exc}") from exc
    if not isinstance(task, dict) or not isinstance(task.get("messages"), list):
        raise TaskError("the task on stdin has no `messages` list")
    return task


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _diagnose(message: str) -> None:
    _write_all(2, f"{PREFIX}: {' '.join(message.split())}\n".encode("utf-8", "replace"))


def run() -> int:
    """Do the agent's work; returns the exit status (never raises for expected failures)."""
    try:
        # Connected first: an agent forked early (rnix.supervisor.early) has said hello by the time
        # its task arrives on stdin, so only the task is on the critical path.
        with GatewayClient.from_environ() as client:
            task = read_task()
            if task.get("tools") or task.get("output_schema") is not None:
                content = _loop(client, task)
            else:
                content = client.complete(task["messages"]).get("content") or ""
        if not content.endswith("\n"):
            content += "\n"
        _write_all(1, content.encode("utf-8"))
    except GatewayError as exc:
        if exc.code == protocol.BUDGET_EXCEEDED:
            _diagnose(f"budget exceeded: {exc.message}")
            return protocol.EXIT_BUDGET
        _diagnose(f"{exc.code}: {exc.message}")
        return protocol.EXIT_ERROR
    except StepLimitReached as exc:
        _diagnose(str(exc))
        return protocol.EXIT_ERROR
    except ResultInvalid as exc:  # the one line the run shows as the error (docs/pipelines.md)
        _write_all(2, f"output_schema: {' '.join(str(exc).split())}\n".encode("utf-8", "replace"))
        return protocol.EXIT_ERROR
    except (TaskError, OSError, ValueError) as exc:
        _diagnose(str(exc) or type(exc).__name__)
        return protocol.EXIT_ERROR
    return protocol.EXIT_OK


class StepLimitReached(Exception):
    """The tool loop used all its steps; the message says so."""


class ResultInvalid(Exception):
    """No result that validates against the task's `output_schema`; the message has the errors."""


def _log(line: str) -> None:
    _write_all(2, (line + "\n").encode("utf-8", "replace"))


def _stop_tools(signum: int, frame: object) -> None:
    from rnix.agent.tools import shell

    shell.kill_running()
    os._exit(128 + signum)


def _loop(client: GatewayClient, task: dict[str, Any]) -> str:
    """The multi-step tool loop (rnix.agent.loop), imported only by agents that have tools or an
    `output_schema` (then the loop offers `submit_result`: rnix.agent.submit)."""
    from rnix.agent import loop, submit
    from rnix.agent.tools.policy import ToolPolicy

    workspace = task.get("workspace") or os.getcwd()
    policy = ToolPolicy.from_json(task.get("tools"), workspace)
    signal.signal(signal.SIGTERM, _stop_tools)  # a stopped agent takes its running command with it
    max_steps = task.get("max_steps")
    if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1:
        raise TaskError("the task's `max_steps` must be a positive integer")
    submission = _submission(task.get("output_schema"))
    try:
        outcome = loop.run_loop(
            client, task["messages"], policy, max_steps, _log, journal=client, submit=submission
        )
    except loop.StepLimit as exc:
        raise StepLimitReached(str(exc)) from None
    except submit.OutputInvalid as exc:
        raise ResultInvalid(str(exc)) from None
    return outcome.answer


def _submission(schema: object) -> Submission | None:
    """The task's `output_schema` as a rnix.agent.submit.Submission, or None without one."""
    if schema is None:
        return None
    if not isinstance(schema, dict):
        raise TaskError("the task's `output_schema` must be a JSON object")
    from rnix.agent.submit import Submission

    return Submission(schema)


def main(on_exit: Callable[[int], object] | None = None) -> NoReturn:
    """Run, flush, and leave with os._exit: no interpreter teardown (ARCHITECTURE.md).

    `on_exit(status)` runs last, once the result is in stdout: the leader writes the exit report there.
    It is not called when a signal ends the agent (it was stopped, not finished)."""
    try:
        status = run()
    except BaseException as exc:  # a bug: still one line, still a status
        with contextlib.suppress(OSError):
            _diagnose(f"internal error: {type(exc).__name__}: {exc}")
        status = protocol.EXIT_ERROR
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    if on_exit is not None:
        try:
            on_exit(status)
        except BaseException as exc:  # a bug there must not change the status
            with contextlib.suppress(OSError):
                _diagnose(f"internal error at exit: {type(exc).__name__}: {exc}")
    os._exit(status)
