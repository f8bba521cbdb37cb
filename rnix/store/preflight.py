"""Whether RNIX_HOME can hold rnix's state: checked before a run starts anything, and explained
when a write fails mid-run.

- `check_home(home)` creates the home when missing (as `paths.home_dir` does), writes and removes a
  small probe file and checks the free space; it raises `HomeUnusable` (exit status 3) naming the
  path, what is wrong and how to fix it: a path that is (or lies under) a file, a read-only
  filesystem, no permission, a filesystem with less than `MIN_FREE` bytes free.
- `cause_of(path, exc)` says in a few words why a write under `path` failed (the filesystem is full,
  read-only, ...), or None when `exc` is no such failure. It looks at the filesystem too: SQLite
  reports a full tmpfs as a "disk I/O error" when it cannot grow its shared-memory file.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from rnix.errors import HomeUnusable
from rnix.store.paths import home_dir

MIN_FREE = 1 << 20  # below this a run's events may not fit: refuse to start one
_PROBE = ".rnix-probe"

_ERRNO_CAUSES = {
    errno.ENOSPC: "its filesystem is full",
    errno.EDQUOT: "your disk quota there is used up",
    errno.EROFS: "its filesystem is read-only",
    errno.EACCES: "you have no permission to write there",
    errno.EPERM: "you have no permission to write there",
    errno.ENOTDIR: "it is not a directory",
    errno.EIO: "the disk reported an I/O error",
}


def check_home(home: Path) -> None:
    """Raise HomeUnusable unless `home` is (or could be made) a writable directory with space."""
    blocker = next((p for p in (home, *home.parents) if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        what = "is a file" if blocker == home else f"lies under {blocker}, which is a file"
        raise _unusable(home, f"is not a directory: it {what}", "not a directory")
    try:
        home_dir(home)
        probe = home / f"{_PROBE}-{os.getpid()}"
        try:
            probe.write_bytes(b"\0" * 4096)
        finally:
            probe.unlink(missing_ok=True)
    except OSError as exc:
        cause = cause_of(home, exc) or f"it cannot be written ({exc.strerror or exc})"
        raise _unusable(home, f"cannot be used: {cause}", cause) from exc
    free = _free_bytes(home)
    if free is not None and free < MIN_FREE:
        cause = f"its filesystem is full ({_size(free)} free)"
        raise _unusable(home, f"cannot be used: {cause}", cause)


def cause_of(path: Path, exc: BaseException) -> str | None:
    """Why writing under `path` failed, in a few words; None when `exc` says nothing of the kind."""
    if isinstance(exc, OSError) and exc.errno in _ERRNO_CAUSES:
        return _ERRNO_CAUSES[exc.errno]
    return filesystem_cause(path)


def filesystem_cause(path: Path) -> str | None:
    """ "its filesystem is read-only" / "... is full" when statvfs says so, else None."""
    directory = next((p for p in (path, *path.parents) if p.is_dir()), None)
    if directory is None:
        return None
    try:
        info = os.statvfs(directory)
    except OSError:
        return None
    if info.f_flag & os.ST_RDONLY:
        return _ERRNO_CAUSES[errno.EROFS]
    if info.f_bavail * info.f_frsize < MIN_FREE // 16:  # a few pages: SQLite cannot grow its files
        return f"its filesystem is full ({_size(info.f_bavail * info.f_frsize)} free)"
    return None


def fix_hint(cause: str) -> str:
    """What to do about `cause` (a `cause_of` answer)."""
    if "full" in cause or "quota" in cause:
        first = "free some space there"
    elif "read-only" in cause:
        first = "remount that filesystem read-write"
    elif "permission" in cause:
        first = "make the directory yours and writable (mode 700)"
    elif "not a directory" in cause:
        first = "remove or rename that file"
    else:
        first = "check that filesystem"
    fix = f"{first}, or set RNIX_HOME to a writable directory elsewhere"
    return fix if "directory" in cause else f"{fix}; reads (`rnix ps -a`) still work"


def _unusable(home: Path, what: str, cause: str) -> HomeUnusable:
    return HomeUnusable(f"the state directory {home} (RNIX_HOME) {what}", fix_hint(cause))


def _free_bytes(path: Path) -> int | None:
    try:
        info = os.statvfs(path)
    except OSError:
        return None
    return info.f_bavail * info.f_frsize


def _size(count: int) -> str:
    return f"{count} bytes" if count < 1024 else f"{count // 1024} KiB"
