"""One live run per project: an exclusive lock the supervisor holds for as long as its run lives.

`<home>/locks/<project>.lock`, locked with `flock(LOCK_EX | LOCK_NB)`. The kernel drops the lock
when the holding process dies, however it dies (SIGKILL included), so a crashed supervisor never
leaves a project locked, and two `compose up` started at the same instant cannot both win. The file
descriptor is not inherited by the fork server or the agents (Python opens it close-on-exec), so an
agent that outlives its supervisor does not keep the project locked.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
from pathlib import Path

from rnix.store.paths import home_dir


class ProjectLock:
    """A held lock; `release()` (or process exit) frees it."""

    def __init__(self, fd: int, path: Path) -> None:
        self._fd: int | None = fd
        self.path = path

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None

    def __enter__(self) -> ProjectLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def lock_path(home: Path, project: str) -> Path:
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", project)[:80]
    digest = hashlib.sha256(project.encode()).hexdigest()[:8]  # names that differ only in odd characters
    locks = home_dir(home) / "locks"
    locks.mkdir(mode=0o700, exist_ok=True)
    return locks / f"{safe}-{digest}.lock"


def try_lock(home: Path, project: str) -> ProjectLock | None:
    """The project's lock, or None when another live process holds it."""
    path = lock_path(home, project)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    return ProjectLock(fd, path)
