"""Where rnix keeps things on disk: RNIX_HOME, per-run directories, the socket directory, run ids.

- `home_dir(home)`: RNIX_HOME (holds `rnix.db`), created 0700 when missing.
- `run_dir(home, run_id)`: `<home>/runs/<run_id>/`, created 0700; agents' task/stdout/stderr files.
- `runtime_dir(environ)`: a short private directory for Unix sockets (socket paths must stay under
  ~100 bytes): `$XDG_RUNTIME_DIR/rnix` when that is set and writable, else `/tmp/rnix-<uid>`. A
  directory we do not own, or one that group or others can open, raises `RnixError`: in a shared
  `/tmp` it could be someone else's trap.
- `new_run_id()`: 12 lowercase hex characters.
"""

from __future__ import annotations

import os
import re
import secrets
import stat
from collections.abc import Mapping
from pathlib import Path

from rnix.errors import RnixError

_PRIVATE = 0o700
_SAFE_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]*")


def home_dir(home: Path) -> Path:
    """Create `home` (mode 0700) if it is missing; return it."""
    _make_private(home)
    return home


def run_dir(home: Path, run_id: str) -> Path:
    """`<home>/runs/<run_id>/`, created 0700 (with `runs/`) if missing."""
    if not _SAFE_NAME.fullmatch(run_id):
        raise ValueError(f"not a run id: {run_id!r}")
    runs = _make_private(home_dir(home) / "runs")
    return _make_private(runs / run_id)


def runtime_dir(environ: Mapping[str, str]) -> Path:
    """The private directory for Unix sockets, created 0700; RnixError if it is not ours alone."""
    xdg = environ.get("XDG_RUNTIME_DIR")
    if xdg and os.path.isdir(xdg) and os.access(xdg, os.W_OK | os.X_OK):
        path = Path(xdg) / "rnix"
    else:
        path = Path("/tmp") / f"rnix-{os.getuid()}"
    _make_private(path)
    _check_private(path)
    return path


def new_run_id() -> str:
    """A fresh run id: 12 lowercase hex characters (48 random bits)."""
    return secrets.token_hex(6)


def _make_private(path: Path) -> Path:
    try:
        path.mkdir(mode=_PRIVATE, parents=True)
    except FileExistsError:
        return path
    os.chmod(path, _PRIVATE)  # mkdir's mode is filtered by the umask
    return path


def _check_private(path: Path) -> None:
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode):
        problem = "is not a directory"
    elif info.st_uid != os.getuid():
        problem = f"belongs to uid {info.st_uid}, not to you"
    elif info.st_mode & 0o077:
        problem = f"is open to other users (mode {stat.S_IMODE(info.st_mode):o})"
    else:
        return
    raise RnixError(
        f"the socket directory {path} {problem}",
        f"remove it (another user could intercept rnix's sockets there) or set XDG_RUNTIME_DIR "
        f"to a private directory; rnix recreates {path.name} with mode 700",
    )
