"""Early spawn: a built-in agent forked before its release, waiting for its task (actions.Hold).

The agent's stdin is a FIFO (`RunFiles.task_channel`) whose write end the supervisor keeps open, so
the agent's `read_task` blocks from its fork until `release` writes the task and closes that end.
Meanwhile the agent has started and said hello to the gateway: at release only the task crosses,
so its fork and start-up are off the critical path. The instance stays pending in the fold until
then; its timeout and budget count from the release.

Contract:
- `release(data)` writes all of `data` (without blocking the loop: a task larger than the pipe
  buffer is fed as the agent reads) and closes our end; it returns False, having written nothing
  more, if the process ended first (its task is then given to a new process).
- `discard()` kills the process group (it never ran: nothing to stop gracefully) and closes our
  end. A process that ended by itself before its release simply is not used.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from typing import Any

from rnix.supervisor.api import AgentProcess


class Held:
    def __init__(self, process: AgentProcess, fd: int) -> None:
        self.process = process
        self._fd: int | None = fd

    @property
    def alive(self) -> bool:
        return self._fd is not None and getattr(self.process, "exit_info", None) is None

    async def release(self, data: bytes) -> bool:
        if not self.alive or self._fd is None:
            return False
        fd, self._fd = self._fd, None
        ended = asyncio.ensure_future(self.process.wait())
        try:
            view = memoryview(data)
            while view:
                if ended.done():
                    return False
                try:
                    view = view[os.write(fd, view) :]
                except BlockingIOError:
                    await _writable_or(fd, ended)
            return not ended.done()
        finally:
            ended.cancel()
            os.close(fd)

    def discard(self) -> None:
        self.process.signal_group(signal.SIGKILL)
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None


async def _writable_or(fd: int, ended: asyncio.Future[Any]) -> None:
    loop = asyncio.get_running_loop()
    writable: asyncio.Future[None] = loop.create_future()

    def ready() -> None:
        if not writable.done():
            writable.set_result(None)

    loop.add_writer(fd, ready)
    try:
        await asyncio.wait({writable, ended}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        loop.remove_writer(fd)
        writable.cancel()
