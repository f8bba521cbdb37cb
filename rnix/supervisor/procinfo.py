"""Facts about processes: start times, children, and the two Linux prctl flags rnix relies on.

`start_time` values are psutil's `create_time()` (seconds since the epoch): the supervisor records
one per agent and `is_same_process` compares against it before anything signals a stored PID, since
PIDs are reused. The fork server and agent leaders import this module too, so psutil is imported
lazily, only by the functions that need it; everything they call reads /proc or uses prctl(2).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import resource
from typing import Any

PR_SET_PDEATHSIG = 1
PR_GET_DUMPABLE = 3
PR_SET_DUMPABLE = 4
PR_SET_CHILD_SUBREAPER = 36

# psutil compares creation times to 1/CLK_TCK; /proc/stat's btime may move by a second when the wall
# clock is stepped, and a PID is very unlikely to be reused within a second of its start.
START_TIME_TOLERANCE = 1.0

_libc: Any = None


def _prctl(option: int, arg: int) -> None:
    # ctypes, because the standard library has no prctl; CDLL(None) is the already-loaded libc.
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    if _libc.prctl(option, ctypes.c_ulong(arg), 0, 0, 0) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"prctl({option}): {os.strerror(errno)}")


def set_pdeathsig(signum: int) -> None:
    """Ask for `signum` when the parent *thread* exits (call it from the main thread's children)."""
    _prctl(PR_SET_PDEATHSIG, signum)


def make_undumpable() -> None:
    """Keep other processes of this user out of this one, as ssh-agent does: with the dumpable flag
    cleared, /proc/<pid>/environ, mem, maps and fd become root's, ptrace needs CAP_SYS_PTRACE and no
    core is dumped. The flag is reset by execve, so exec'ed children (agents) are not affected."""
    _prctl(PR_SET_DUMPABLE, 0)


def is_dumpable() -> bool:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    return bool(_libc.prctl(PR_GET_DUMPABLE, 0, 0, 0, 0))


def become_subreaper() -> None:
    """Orphaned descendants are re-parented to this process instead of init, so it can reap them."""
    _prctl(PR_SET_CHILD_SUBREAPER, 1)


def _stat(pid: int) -> list[bytes]:
    """The fields of /proc/<pid>/stat after the command name: [0] is field 3 (state), [1] the ppid."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        stat = f.read()
    # The command name may contain spaces and parentheses, so split after its closing one.
    return stat[stat.rindex(b")") + 2 :].split()


def start_ticks(pid: int) -> int:
    """Field 22 of /proc/<pid>/stat: clock ticks from boot to the process's start (works on zombies)."""
    return int(_stat(pid)[19])


def parent_pid(pid: int) -> int | None:
    """The parent of `pid` (0 for a process whose parent is outside our PID namespace); None when
    there is no such process."""
    try:
        return int(_stat(pid)[1])
    except (OSError, ValueError, IndexError):
        return None


_PF_EXITING = 0x4  # include/linux/sched.h: set first thing in do_exit(), before any fd is closed


def is_exiting(pid: int) -> bool:
    """True when `pid` is gone, a zombie, or on its way out (PF_EXITING in field 9, flags): a process
    that is being killed shows this before its sockets close, so a peer that saw EOF can ask."""
    try:
        fields = _stat(pid)
        state, flags = fields[0], int(fields[6])
    except (OSError, ValueError, IndexError):
        return True
    return state in (b"Z", b"X", b"x") or bool(flags & _PF_EXITING)


def create_time_from_ticks(ticks: int) -> float:
    """The value psutil's `Process.create_time()` returns for a process that started at `ticks`."""
    import psutil  # type: ignore[import-untyped,unused-ignore]

    return float(ticks) / os.sysconf("SC_CLK_TCK") + float(psutil.boot_time())


def start_time(pid: int) -> float | None:
    """The process's creation time (psutil's create_time), or None when there is no such process."""
    import psutil  # type: ignore[import-untyped,unused-ignore]

    try:
        return float(psutil.Process(pid).create_time())
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def is_same_process(pid: int, start_time_: float | None, tolerance: float = START_TIME_TOLERANCE) -> bool:
    """True when `pid` is alive (or a zombie) and started at `start_time_`, i.e. was not reused.

    An unknown start time (None) never matches: without it we cannot tell a reused PID apart."""
    if start_time_ is None:
        return False
    current = start_time(pid)
    return current is not None and abs(current - start_time_) <= tolerance


def children(pid: int) -> list[int]:
    """Direct children of `pid` (including adopted orphans), from every thread's children list."""
    found: list[int] = []
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/children", "rb") as f:
                found.extend(int(child) for child in f.read().split())
        except FileNotFoundError:
            if os.path.exists(f"/proc/{pid}/task/{tid}"):
                return _children_by_scan(pid)  # a kernel without CONFIG_PROC_CHILDREN
            # otherwise the thread exited while we listed: its children moved to another thread
        except OSError:
            continue
    return found


def _children_by_scan(pid: int) -> list[int]:
    found: list[int] = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        if int(stat[stat.rindex(b")") + 2 :].split()[1]) == pid:
            found.append(int(entry))
    return found


def raise_nofile_limit() -> int:
    """Raise RLIMIT_NOFILE's soft limit to the hard limit (hundreds of agents); returns the old soft."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        # Some sandboxes refuse (or the hard limit is unlimited); the old limit serves small runs.
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return soft
