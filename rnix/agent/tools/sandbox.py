"""Confine the file tools to a root inside the agent's workspace.

Contract:
- `parse(path, workspace)` turns a model-supplied path into workspace-relative components, or raises
  `PathDenied`: a NUL byte, a path or name too long, a `..` component (never allowed, not even when
  it would stay inside), or an absolute path outside the workspace. Absolute paths inside the
  workspace are accepted (the model sees them in command output); everything is compared by
  components, so `/ws-evil` is not inside `/ws`.
- `locate(...)` walks those components from an open workspace directory fd, one `openat` per
  directory with O_NOFOLLOW|O_DIRECTORY, so a symlink swapped in between check and use makes the
  call fail instead of escaping. A symlink met on the way is resolved by hand: relative targets
  against the (real) directory it sits in, absolute targets only when they lie in the workspace,
  `..` in a target one real directory up; climbing above the workspace raises `PathDenied`. The
  final target must lie in the tool's root (also resolved this way), else `PathDenied`.
- What is returned (`Location`) is a directory fd plus the final name, so the caller opens the last
  component itself, with O_NOFOLLOW (the tools never follow a symlink they have not resolved here).
- `PathError` is an allowed path that does not work: missing, not a directory, a symlink loop.
"""

from __future__ import annotations

import os
import stat
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from rnix.agent.tools.result import Denied, Failed

MAX_PATH = 4096  # bytes, as PATH_MAX
MAX_NAME = 255  # bytes per component, as NAME_MAX
MAX_SYMLINKS = 40  # as the kernel's ELOOP limit
PROTECTED = ".git"  # no directory is created in it: git's config and hooks can make git run programs
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class PathDenied(Denied):
    """The sandbox refuses this path: the call is denied and nothing is opened."""


class PathError(Failed):
    """The path is allowed but cannot be used (missing, wrong type, a symlink loop, an OS error)."""


def show(parts: Sequence[str]) -> str:
    return "/".join(parts) or "."


def _encoded_len(text: str) -> int:
    return len(text.encode("utf-8", "surrogateescape"))


def parse(path: str, workspace: str) -> tuple[str, ...]:
    """Workspace-relative components of `path` (relative to the workspace, or absolute inside it)."""
    if "\0" in path:
        raise PathDenied("the path contains a NUL byte")
    if _encoded_len(path) > MAX_PATH:
        raise PathDenied(f"the path is longer than {MAX_PATH:,} bytes")
    parts = [part for part in path.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise PathDenied(
            f"`{path}` contains `..`; paths are relative to the workspace root and may not contain `..`"
        )
    for part in parts:
        if _encoded_len(part) > MAX_NAME:
            raise PathDenied(f"a name in the path is longer than {MAX_NAME} bytes")
    if path.startswith("/"):
        inside = within(parts, workspace)
        if inside is None:
            raise PathDenied(f"`{path}` is outside the workspace; use a path relative to the workspace root")
        return inside
    return tuple(parts)


def within(parts: Sequence[str], workspace: str) -> tuple[str, ...] | None:
    """The components of absolute `parts` below `workspace`, or None when they are not below it."""
    top = [part for part in workspace.split("/") if part]
    if list(parts[: len(top)]) != top:
        return None
    return tuple(parts[len(top) :])


def is_under(parts: Sequence[str], root: Sequence[str]) -> bool:
    return tuple(parts[: len(root)]) == tuple(root)


@dataclass
class Location:
    """Where a path led: `name` in the open directory `dir_fd`, or (name None) that directory itself.

    `parts` are the real workspace-relative components of the target, `stat` its lstat (None when it
    does not exist yet). The caller owns `dir_fd`: use it as a context manager.
    """

    dir_fd: int
    name: str | None
    parts: tuple[str, ...]
    stat: os.stat_result | None

    def __enter__(self) -> Location:
        return self

    def __exit__(self, *exc: object) -> None:
        os.close(self.dir_fd)

    def open(self, flags: int) -> int:
        """Open the target (never following a final symlink); for a directory, a new fd of it."""
        if self.name is None:
            return os.open(".", flags | os.O_CLOEXEC, dir_fd=self.dir_fd)
        return os.open(self.name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=self.dir_fd)


def open_workspace(workspace: str) -> int:
    try:
        return os.open(workspace, DIR_FLAGS)
    except OSError as exc:
        raise PathError(f"cannot open the workspace {workspace}: {exc.strerror}") from exc


def locate(
    ws_fd: int,
    workspace: str,
    parts: Sequence[str],
    *,
    follow_last: bool = True,
    make_dirs_in: Sequence[str] | None = None,
) -> Location:
    """Resolve workspace-relative `parts` inside the workspace (see the module contract).

    `follow_last` False leaves a final symlink unresolved (its lstat is returned). With
    `make_dirs_in` (real root components), missing directories on the way are created, but only
    inside that root or on the way to it.
    """
    todo: deque[str] = deque(parts)
    done: list[str] = []
    fd = os.dup(ws_fd)
    hops = 0
    via = ""  # the last symlink followed, for the denial message
    try:
        while todo:
            name = todo.popleft()
            if name == "..":  # only from a symlink target; `done` holds real directories only
                if not done:
                    raise PathDenied(
                        f"`{show(parts)}` leads outside the workspace through the symlink `{via}`"
                    )
                done.pop()
                os.close(fd)
                fd = _reopen(ws_fd, done)
                continue
            last = not todo
            st = _lstat(name, fd, done)
            if st is None and not last and make_dirs_in is not None:
                if not (is_under([*done, name], make_dirs_in) or is_under(make_dirs_in, [*done, name])):
                    raise PathDenied(
                        f"`{show(parts)}` leads to `{show([*done, name])}`, "
                        f"outside this tool's write root `{show(make_dirs_in)}`"
                    )
                if PROTECTED in (*done, name):
                    raise PathDenied(f"`{show(parts)}` leads into `{PROTECTED}`, where nothing is created")
                try:
                    os.mkdir(name, 0o777, dir_fd=fd)
                except FileExistsError:
                    pass  # someone else made it: look again
                except OSError as exc:
                    raise PathError(f"cannot create {show([*done, name])}: {exc.strerror}") from exc
                st = _lstat(name, fd, done)
            if st is None:
                if last:
                    return Location(fd, name, (*done, name), None)
                raise PathError(f"{show([*done, name])} does not exist")
            if stat.S_ISLNK(st.st_mode) and (follow_last or not last):
                hops += 1
                if hops > MAX_SYMLINKS:
                    raise PathError(f"too many levels of symlinks at {show([*done, name])}")
                target = _readlink(name, fd, done)
                via = show([*done, name])
                if target.startswith("/"):
                    inside = within([p for p in target.split("/") if p], workspace)
                    if inside is None:
                        raise PathDenied(
                            f"`{show(parts)}` leads outside the workspace through the symlink `{via}`"
                        )
                    done = []
                    os.close(fd)
                    fd = os.dup(ws_fd)
                    target_parts = list(inside)
                else:
                    target_parts = target.split("/")
                todo.extendleft(reversed([p for p in target_parts if p not in ("", ".")]))
                continue
            if last:
                return Location(fd, name, (*done, name), st)
            if not stat.S_ISDIR(st.st_mode):
                raise PathError(f"{show([*done, name])} is not a directory")
            try:
                new = os.open(name, DIR_FLAGS, dir_fd=fd)
            except OSError as exc:  # ELOOP/ENOTDIR: it was swapped for something else since the lstat
                raise PathError(f"cannot open {show([*done, name])}: {exc.strerror}") from exc
            os.close(fd)
            fd = new
            done.append(name)
        return Location(fd, None, tuple(done), os.fstat(fd))
    except BaseException:
        os.close(fd)
        raise


def _reopen(ws_fd: int, parts: Sequence[str]) -> int:
    fd = os.dup(ws_fd)
    try:
        for name in parts:
            new = os.open(name, DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = new
    except OSError as exc:
        os.close(fd)
        raise PathError(f"cannot open {show(parts)}: {exc.strerror}") from exc
    return fd


def _lstat(name: str, fd: int, done: Sequence[str]) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=fd, follow_symlinks=False)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        raise PathError(f"cannot read {show([*done, name])}: {exc.strerror}") from exc


def _readlink(name: str, fd: int, done: Sequence[str]) -> str:
    try:
        return os.readlink(name, dir_fd=fd)
    except OSError as exc:
        raise PathError(f"cannot read the symlink {show([*done, name])}: {exc.strerror}") from exc


def locate_in_root(
    ws_fd: int,
    workspace: str,
    root: Sequence[str],
    parts: Sequence[str],
    *,
    what: str,
    follow_last: bool = True,
    create: bool = False,
) -> Location:
    """`locate` then check the target lies in the tool's `root` (itself resolved first).

    `what` names the root in denials ("read root", "write root"). With `create`, the root and missing
    parent directories are created (write_file).
    """
    if create and not is_under(parts, root):
        # Not even the root is created for a call that will be denied. Only a symlink could lead
        # here into the root from elsewhere, and it cannot while the root does not exist.
        try:
            real_root = resolve_root(ws_fd, workspace, root)
        except PathError:
            raise PathDenied(f"`{show(parts)}` is outside this tool's {what} `{show(root)}`") from None
    else:
        real_root = resolve_root(ws_fd, workspace, root, create=create)
    location = locate(
        ws_fd, workspace, parts, follow_last=follow_last, make_dirs_in=real_root if create else None
    )
    if not is_under(location.parts, real_root):
        os.close(location.dir_fd)
        where = "" if show(parts) == show(location.parts) else f" (it resolves to `{show(location.parts)}`)"
        raise PathDenied(f"`{show(parts)}` is outside this tool's {what} `{show(root)}`{where}")
    return location


def resolve_root(ws_fd: int, workspace: str, root: Sequence[str], *, create: bool = False) -> tuple[str, ...]:
    """The real components of a tool root (created with its parents when `create`)."""
    if not root:
        return ()
    with locate(ws_fd, workspace, root, make_dirs_in=root if create else None) as location:
        if location.stat is None and create:
            try:
                os.mkdir(location.name or ".", 0o777, dir_fd=location.dir_fd)
            except FileExistsError:
                pass
            except OSError as exc:
                raise PathError(f"cannot create {show(root)}: {exc.strerror}") from exc
            return location.parts
        if location.stat is None:
            raise PathError(f"this tool's root `{show(root)}` does not exist")
        if not stat.S_ISDIR(location.stat.st_mode):
            raise PathError(f"this tool's root `{show(root)}` is not a directory")
        return location.parts
