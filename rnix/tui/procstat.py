"""Live facts about processes for `top`: state, parent, CPU %, RSS, children and command line.

Contract:
- `ProcReader.read(pid)` returns a `ProcInfo`, or None when there is no such process. One read of
  /proc/PID/stat gives the state, parent, CPU ticks, RSS, thread count and start time; `start_time`
  is psutil's `create_time()`, so it compares with the start times the supervisor recorded.
- `cpu_percent` is the share of one CPU the process used since this reader last read it (the same
  PID *and* start time), as top shows it; None on the first read. `end_round()` forgets processes
  that were not read since the previous `end_round()`, so the cache follows the live set.
- `children(info)` lists direct children (from /proc/PID/task/*/children); `command(info)` is the
  command line (read once per process and exec, then cached).
- Linux only, like the rest of rnix. psutil supplies the boot time, nothing per process: its
  per-process API cost 48 ms of CPU for 500 processes (cpu_percent, memory_info, status and ppid
  under oneshot()) where one parse of the stat file costs 10 ms, and `top` refreshes every second.
- For the same reason the stat and children files of the processes read in the last round stay
  open and are re-read with pread (half the cost of open/read/close). An open /proc file belongs
  to its process, not to the number: once the process is gone it fails, and the PID is looked up
  afresh. At most `max_open` files stay open (from RLIMIT_NOFILE); `close()` closes them.
"""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Callable
from typing import NamedTuple

from rnix.supervisor import procinfo

STATE_WORDS = {
    "R": "running",
    "S": "sleeping",
    "D": "disk-sleep",
    "T": "stopped",
    "t": "tracing-stop",
    "Z": "zombie",
    "X": "dead",
    "I": "idle",
}


class ProcInfo(NamedTuple):  # a tuple: a refresh makes one per process, hundreds a second
    pid: int
    ppid: int
    name: str  # the kernel's 15-character command name
    state: str  # the one-letter /proc state (R, S, D, T, Z, ...)
    start_time: float  # seconds since the epoch, as psutil's create_time()
    start_ticks: int
    cpu_percent: float | None  # of one CPU since the previous read; None on the first
    rss: int  # bytes
    threads: int

    @property
    def state_word(self) -> str:
        return STATE_WORDS.get(self.state, self.state)

    def started_at(self, recorded: float | None, recorded_ticks: int | None = None) -> bool:
        """Whether this is the process that started at `recorded` (False when it is unknown) and,
        when they were recorded, at exactly `recorded_ticks` (see procinfo.is_same_process)."""
        if recorded_ticks is not None and recorded_ticks != self.start_ticks:
            return False
        return recorded is not None and abs(self.start_time - recorded) <= procinfo.START_TIME_TOLERANCE


class ProcReader:
    """Reads /proc for one viewer; keeps what CPU % needs between reads (see the module docstring)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._hz = os.sysconf("SC_CLK_TCK")
        self._page = os.sysconf("SC_PAGE_SIZE")
        self._boot: float | None = None
        self._cpu: dict[tuple[int, int], tuple[int, float]] = {}  # (pid, start) -> (ticks, when)
        self._seen: dict[tuple[int, int], tuple[int, float]] = {}
        self._commands: dict[tuple[int, int, str], str] = {}
        self._open: dict[str, int] = {}  # /proc path -> an fd kept open for it
        self._used: set[str] = set()
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        self.max_open = 65536 if soft == resource.RLIM_INFINITY else max(0, min(65536, soft - 256))

    def read(self, pid: int) -> ProcInfo | None:
        stat = self._file(f"/proc/{pid}/stat")
        if not stat:
            return None
        close = stat.rfind(b")")
        name = stat[stat.find(b"(") + 1 : close].decode("utf-8", errors="replace")
        fields = stat[close + 2 :].split()
        ticks, start = int(fields[11]) + int(fields[12]), int(fields[19])
        now = self._clock()
        key = (pid, start)
        previous = self._cpu.get(key) or self._seen.get(key)
        self._seen[key] = (ticks, now)
        cpu = None
        if previous is not None and now > previous[1]:
            cpu = round(100.0 * (ticks - previous[0]) / self._hz / (now - previous[1]), 1)
        return ProcInfo(
            pid=pid,
            ppid=int(fields[1]),
            name=name,
            state=fields[0].decode(),
            start_time=start / self._hz + self._boot_time(),
            start_ticks=start,
            cpu_percent=cpu,
            rss=int(fields[21]) * self._page,
            threads=int(fields[17]),
        )

    def children(self, info: ProcInfo) -> list[int]:
        if info.threads == 1:  # the common case: one file, no directory listing
            found = self._file(f"/proc/{info.pid}/task/{info.pid}/children")
            if found is not None:
                return [int(child) for child in found.split()]
        return procinfo.children(info.pid)

    def command(self, info: ProcInfo) -> str:
        """`argv` joined by spaces, the program as its base name ('python3 agent.py 60')."""
        key = (info.pid, info.start_ticks, info.name)  # the name changes when the process execs
        known = self._commands.get(key)
        if known is None:
            argv = (_read(f"/proc/{info.pid}/cmdline") or b"").rstrip(b"\0").split(b"\0")
            words = [os.path.basename(argv[0]), *argv[1:]] if argv and argv[0] else []
            known = " ".join(w.decode("utf-8", errors="replace") for w in words) or info.name
            self._commands[key] = known
        return known

    def end_round(self) -> None:
        self._cpu, self._seen = self._seen, {}
        if len(self._commands) > 4 * max(len(self._cpu), 256):
            live = {pid for pid, _ in self._cpu}
            self._commands = {k: v for k, v in self._commands.items() if k[0] in live}
        for path in [path for path in self._open if path not in self._used]:
            os.close(self._open.pop(path))
        self._used = set()

    def close(self) -> None:
        for fd in self._open.values():
            os.close(fd)
        self._open.clear()

    def _file(self, path: str) -> bytes | None:
        """The content of a small /proc file, through an fd kept open from the last round."""
        fd = self._open.get(path)
        if fd is not None:
            data = _pread(fd)
            if data is not None:
                self._used.add(path)
                return data
            os.close(self._open.pop(path))  # its process is gone; the PID may be another's now
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return None
        data = _pread(fd)
        if data is None or len(self._open) >= self.max_open:
            os.close(fd)
        else:
            self._open[path] = fd
            self._used.add(path)
        return data

    def _boot_time(self) -> float:
        if self._boot is None:
            import psutil  # type: ignore[import-untyped,unused-ignore]

            self._boot = float(psutil.boot_time())
        return self._boot


def _pread(fd: int) -> bytes | None:
    """The whole file from its start (None: it cannot be read, e.g. its process is gone)."""
    try:
        data = chunk = os.pread(fd, _CHUNK, 0)
        while len(chunk) == _CHUNK:  # a short read is the end: /proc fills what it can
            chunk = os.pread(fd, _CHUNK, len(data))
            data += chunk
    except OSError:
        return None
    return data


def _read(path: str) -> bytes | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        return _pread(fd)
    finally:
        os.close(fd)


_CHUNK = 4096
