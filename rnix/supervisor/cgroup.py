"""An optional cgroup (v2) per fork server: a backstop that finds what the subreaper sweep missed.

A process cannot leave its cgroup by forking, `setsid`, double-forking or losing its parent, so
every process descended from an agent stays in the cgroup its fork server was put in. When the
spawner closes and the sweeps are done (spawn.py) the cgroup should be empty; whatever is still in
it escaped the process tree (e.g. the sweep's time bound ran out under a fork storm) and is killed
with `cgroup.kill` (SIGKILL to every member at once, so a fork storm cannot outrun it; Linux 5.14+,
else each member is SIGKILLed until none is left), then the cgroup is removed.

Optional: `RunCgroup.create()` returns None where there is no writable cgroup v2 hierarchy at our
own cgroup (no cgroup2 mount, a cgroup v1-only host, an unprivileged user without a delegated
subtree) or when RNIX_CGROUP is "0"; rnix then relies on the subreapers alone. It cannot catch
processes that were never ours: a process that asked another service to start one (systemd-run,
at, a container engine, ssh) or that was moved to another cgroup by someone allowed to.

A supervisor that was SIGKILLed leaves its cgroup behind. The next `create()` beside it removes it
when it is empty, and otherwise logs what is still in it (it does not kill processes of a run it
does not own: `compose down` of the lost run, or the user, decides).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import re
import signal
from collections.abc import Mapping
from pathlib import Path

log = logging.getLogger(__name__)

KILL_TIMEOUT = 2.0
_NAME = re.compile(r"rnix-(\d+)-\d+")
_names = itertools.count(1)


class RunCgroup:
    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def create(cls, environ: Mapping[str, str]) -> RunCgroup | None:
        """A new, empty child of our own cgroup, or None where that is not possible (see above)."""
        if environ.get("RNIX_CGROUP", "1") == "0":
            return None
        parent = _own_cgroup_dir()
        if parent is None:
            return None
        _remove_stale(parent)
        path = parent / f"rnix-{os.getpid()}-{next(_names)}"
        try:
            path.mkdir()
        except OSError:
            return None
        return cls(path)

    def add(self, pid: int) -> bool:
        """Move `pid` (and so everything it forks from now on) into the cgroup; False if refused."""
        try:
            (self.path / "cgroup.procs").write_text(str(pid))
        except OSError:
            return False
        return True

    def pids(self) -> list[int]:
        try:
            return [int(pid) for pid in (self.path / "cgroup.procs").read_text().split()]
        except (OSError, ValueError):
            return []

    async def kill_all(self) -> list[str]:
        """Kill every member until none is left (at most KILL_TIMEOUT); returns each one found as
        "PID command"."""
        found: dict[int, str] = {}
        loop = asyncio.get_running_loop()
        deadline = loop.time() + KILL_TIMEOUT
        while (pids := self.pids()) and loop.time() < deadline:
            found.update((pid, _describe(pid)) for pid in pids if pid not in found)
            if not _write(self.path / "cgroup.kill", "1"):
                for pid in pids:
                    with contextlib.suppress(OSError):
                        os.kill(pid, signal.SIGKILL)
            _reap(pids)  # those that were re-parented to us (we are a subreaper)
            await asyncio.sleep(0.01)
        _reap(list(found))
        return list(found.values())

    def remove(self) -> None:
        with contextlib.suppress(OSError):
            self.path.rmdir()  # fails while a member is alive: then the empty directory stays


def _write(path: Path, text: str) -> bool:
    try:
        path.write_text(text)
    except OSError:
        return False
    return True


def _describe(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            command = f.read().replace(b"\0", b" ").decode("utf-8", "replace").strip()
    except OSError:
        command = ""
    return f"{pid} {command or '?'}"


def _reap(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)


def _remove_stale(parent: Path) -> None:
    """Remove the cgroups of supervisors that are gone (rmdir fails on one that has members)."""
    try:
        names = os.listdir(parent)
    except OSError:
        return
    for name in names:
        match = _NAME.fullmatch(name)
        if match is None or os.path.exists(f"/proc/{match.group(1)}"):
            continue
        stale = RunCgroup(parent / name)
        stale.remove()
        if stale.path.exists() and (left := [_describe(pid) for pid in stale.pids()]):
            log.warning("rnix: processes left by a killed rnix supervisor in cgroup %s: %s", stale.path, left)


def _own_cgroup_dir() -> Path | None:
    """The directory of our own cgroup in the mounted v2 hierarchy, if we may create children in it."""
    try:
        with open("/proc/self/cgroup") as f:
            own = next((line[3:].strip() for line in f if line.startswith("0::")), None)
        with open("/proc/self/mountinfo") as f:
            mounts = [line.split() for line in f]
    except OSError:
        return None
    if own is None:
        return None
    for fields in mounts:
        separator = fields.index("-")
        if fields[separator + 1] != "cgroup2":
            continue
        root, mountpoint = fields[3], fields[4]
        if own != root and not own.startswith(root.rstrip("/") + "/"):
            continue  # our cgroup is not below this mount's root
        directory = Path(mountpoint) / own[len(root) :].lstrip("/")
        if directory.is_dir() and os.access(directory, os.W_OK):
            return directory
    return None
