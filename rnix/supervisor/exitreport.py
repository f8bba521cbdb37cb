"""What an agent leaves next to itself when it ends: its result (stdout) and a durable exit report.

The spawner reads both on the node where the agent ran (a remote node agent does the same as the
local spawner), so the scheduler gets the result with the exit (`ExitInfo.result`), not from a host
path of its own.

- `read_result`: the agent's stdout file, at most `RESULT_LIMIT` bytes, decoded leniently; a longer
  output is cut and a note says where the whole of it is. A missing file reads as "".
- The exit report (`SpawnRequest.exit_path`): one JSON object
  `{"returncode": int | null, "signal": int | null, "ts": float}` that the agent's leader writes,
  atomically and durably, as the last thing before it exits, and only when the agent ended by itself
  (see leader.py). So after a supervisor crash, a report means "this agent finished, like this", and
  no report means "it was interrupted, or never ran": resume re-runs it.

The leader imports this module in every forked agent, so its top level imports json/os/time only
(`read_exit_report` imports rnix.supervisor.api, which pulls in dataclasses, when it is called).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rnix.supervisor.api import ExitInfo

RESULT_LIMIT = 1024 * 1024  # bytes of stdout kept as the result (the whole stdout stays in its file)
REPORT_LIMIT = 4096  # an exit report is ~60 bytes; anything longer is not one of ours


def read_result(path: str | os.PathLike[str], limit: int = RESULT_LIMIT) -> str:
    """The agent's stdout (at most `limit` bytes, decoded leniently; "" when unreadable).

    Read inline on the event loop: 1 MiB of text costs ~0.15 ms (ASCII) to ~3 ms (multibyte), and
    ~9 ms when it is not UTF-8 at all; the decoding holds the GIL, so a thread would not free the loop.
    """
    try:
        with open(path, "rb") as handle:
            data = handle.read(limit + 1)
    except OSError:
        return ""
    text = data[:limit].decode("utf-8", errors="replace")
    if len(data) > limit:
        text += f"\n[rnix: result truncated at {limit} bytes; the whole output is in {os.fspath(path)}]"
    return text


def write_exit_report(path: str, returncode: int | None, signal: int | None) -> None:
    """Write the report atomically and durably: a temp file in the same directory, fsync, rename over
    `path`, fsync the directory. Raises OSError (the caller decides whether to say so)."""
    directory = os.path.dirname(path) or "."
    temp = f"{path}.{os.getpid()}.tmp"
    data = json.dumps({"returncode": returncode, "signal": signal, "ts": time.time()}).encode()
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.rename(temp, path)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def remove_exit_report(path: str) -> None:
    """Remove a report left by an earlier process at `path` (durably), so that a report found there
    later is this process's. Nothing to do (and no fsync) when there is none; raises OSError."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        return
    dir_fd = os.open(os.path.dirname(path) or ".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def read_exit_report(path: str | os.PathLike[str]) -> ExitInfo | None:
    """The status in the report at `path`; None when there is none or it is unreadable or corrupt.

    Never raises. The result is not in the report: read it with `read_result` from the stdout file."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(REPORT_LIMIT + 1)
    except OSError:
        return None
    return parse_exit_report(data)


def parse_exit_report(data: bytes | str) -> ExitInfo | None:
    """The status in a report's content (as a node agent returns it); None when it is not one."""
    from rnix.supervisor.api import ExitInfo

    try:
        report = json.loads(data) if len(data) <= REPORT_LIMIT else None
    except (ValueError, RecursionError):  # ValueError: bad JSON or UTF-8; deep nesting
        return None
    if not isinstance(report, dict) or not _is_number(report.get("ts")):
        return None
    returncode, signal = report.get("returncode"), report.get("signal")
    if not all(value is None or _is_int(value) for value in (returncode, signal)):
        return None
    if (returncode is None) == (signal is None):  # exactly one of them says how it ended
        return None
    return ExitInfo(returncode, signal)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return _is_int(value) or isinstance(value, float)
