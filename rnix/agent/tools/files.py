"""read_file, list_dir and write_file, confined by rnix.agent.tools.sandbox.

Contract: each takes the policy and the already type-checked arguments, returns a successful
ToolResult, or raises `Denied` / `Failed` (the dispatcher turns those into results). Files are
opened relative to a directory fd with O_NOFOLLOW (and O_NONBLOCK, so a FIFO cannot hang a read);
only regular files are read or replaced. A file with more than one hard link is neither read nor
written: a hard link inside the workspace can be the same file as one outside it.

write_file never writes into an existing file: it writes a new file next to it and renames it over
the old one, so a symlink or hard link at the target is replaced, never written through. It refuses a
target that is a symlink, and any path with a `.git` component (git's config and hooks can make git
run programs, which would turn write access into command execution).

Secret-bearing files (rnix.agent.tools.secretfiles: `.env*`, `*.pem`, SSH keys, `.aws/`, ...) are
refused by read_file and write_file, by the path given and by the path it resolves to, unless the
tool's `allow_secrets` is set; list_dir shows their names (a name is not a secret).
"""

from __future__ import annotations

import codecs
import contextlib
import os
import stat
from typing import Any

from rnix.agent.tools import sandbox, secretfiles
from rnix.agent.tools.policy import PathTool, ToolPolicy
from rnix.agent.tools.result import Denied, Failed, ToolResult, count, success

READ_FLAGS = os.O_RDONLY | os.O_NONBLOCK
BINARY_SNIFF = 8192  # a NUL byte in the first 8 KiB means binary, as git and grep decide


def _tool(policy: ToolPolicy, name: str) -> PathTool:
    options = getattr(policy, name)
    assert isinstance(options, PathTool)  # the dispatcher checked the tool is enabled
    return options


def locate_for_reading(policy: ToolPolicy, name: str, path: str | None) -> tuple[PathTool, sandbox.Location]:
    """The read tool `name`'s options and the resolved, existing `path` (its root if None): the
    caller enters the Location (it holds the directory fd). Raises Denied/Failed like the tools.
    read_file and grep refuse a secret-bearing path (as given, or as resolved) unless allowed;
    list_dir and glob only show names, so they do not."""
    tool = _tool(policy, name)
    parts = sandbox.parse(path or tool.root_text, policy.workspace)
    guard = name in ("read_file", "grep")
    if guard:
        refuse_secret(tool, name, parts)
    ws = sandbox.open_workspace(policy.workspace)
    try:
        location = sandbox.locate_in_root(ws, policy.workspace, tool.root, parts, what="read root")
    finally:
        os.close(ws)
    try:
        if guard:
            refuse_secret(tool, name, location.parts)
        if location.stat is None:
            raise Failed(f"{path or tool.root_text} does not exist")
    except BaseException:
        location.__exit__()
        raise
    return tool, location


def refuse_secret(tool: PathTool, name: str, parts: tuple[str, ...]) -> None:
    """Denied when `parts` is a secret-bearing path and tool `name` was not allowed secrets."""
    if tool.allow_secrets:
        return
    reason = secretfiles.secret_reason(parts)
    if reason is not None:
        raise Denied(secretfiles.denial(sandbox.show(parts), reason, name))


def read_regular(location: sandbox.Location, what: str) -> tuple[int, os.stat_result]:
    """Open `location` for reading: a regular file with one link, or Failed/Denied."""
    try:
        fd = location.open(READ_FLAGS)
    except OSError as exc:
        raise Failed(f"cannot open {what}: {exc.strerror}") from exc
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise Failed(f"{what} is not a regular file")
    if st.st_nlink > 1:
        os.close(fd)
        raise Denied(
            f"{what} has {st.st_nlink} hard links; a hard-linked file may be the same file as one "
            "outside the workspace, so it is not read"
        )
    return fd, st


def read_file(policy: ToolPolicy, args: dict[str, Any]) -> ToolResult:
    path, offset = args["path"], args.get("offset", 0)
    if offset < 0:
        raise Failed("offset must be 0 or more")
    tool, location = locate_for_reading(policy, "read_file", path)
    with location as loc:
        shown = sandbox.show(loc.parts)
        if loc.name is None or (loc.stat is not None and stat.S_ISDIR(loc.stat.st_mode)):
            raise Failed(f"{path} is a directory; use list_dir")
        fd, st = read_regular(loc, shown)
    try:
        os.lseek(fd, offset, os.SEEK_SET)
        data = read_up_to(fd, tool.max_bytes)
    finally:
        os.close(fd)
    if b"\0" in data[:BINARY_SNIFF]:
        raise Failed(f"{shown} looks like a binary file ({count(st.st_size, 'byte')}); it is not shown")
    end = offset + len(data)
    truncated = end < st.st_size
    text = codecs.getincrementaldecoder("utf-8")("replace").decode(data, final=not truncated)
    if not text:
        text = (
            "(empty file)"
            if st.st_size == 0
            else f"(nothing at offset {offset:,}; the file has {st.st_size:,} bytes)"
        )
    if truncated:
        text += (
            f"\n[truncated: this is bytes {offset:,}-{end:,} of {st.st_size:,}; "
            f"call read_file with offset={end} for more]"
        )
    return success(
        text, f"read_file {shown} -> {count(len(data), 'byte')}" + (" (truncated)" if truncated else "")
    )


def read_up_to(fd: int, limit: int) -> bytes:
    chunks: list[bytes] = []
    left = limit
    while left > 0 and (chunk := os.read(fd, min(left, 1 << 20))):
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def list_dir(policy: ToolPolicy, args: dict[str, Any]) -> ToolResult:
    path = args.get("path")
    tool, location = locate_for_reading(policy, "list_dir", path)
    with location as loc:
        shown = sandbox.show(loc.parts)
        if loc.stat is None or not stat.S_ISDIR(loc.stat.st_mode):
            raise Failed(f"{path or shown} is not a directory; use read_file")
        try:
            fd = loc.open(os.O_RDONLY | os.O_DIRECTORY)
        except OSError as exc:
            raise Failed(f"cannot open {shown}: {exc.strerror}") from exc
    try:
        with os.scandir(fd) as it:
            entries = sorted(it, key=lambda entry: entry.name)
        lines = [_describe(entry, fd) for entry in entries[: tool.max_entries]]
    finally:
        os.close(fd)
    more = len(entries) - len(lines)
    if more:
        lines.append(
            f"[{count(more, 'more entry', 'more entries')} not shown; "
            f"at most {tool.max_entries:,} are listed]"
        )
    output = "\n".join(lines) if lines else "(empty directory)"
    return success(output, f"list_dir {shown} -> {count(len(entries), 'entry', 'entries')}")


def _describe(entry: os.DirEntry[str], dir_fd: int) -> str:
    try:
        st = entry.stat(follow_symlinks=False)
    except OSError:
        return entry.name
    if stat.S_ISDIR(st.st_mode):
        return entry.name + "/"
    if stat.S_ISLNK(st.st_mode):
        try:
            return f"{entry.name}@ -> {os.readlink(entry.name, dir_fd=dir_fd)}"
        except OSError:
            return entry.name + "@"
    if stat.S_ISREG(st.st_mode):
        return f"{entry.name}  {count(st.st_size, 'byte')}"
    return f"{entry.name}  (not a regular file)"


def write_file(policy: ToolPolicy, args: dict[str, Any]) -> ToolResult:
    tool = _tool(policy, "write_file")
    path, content = args["path"], args["content"]
    data = content.encode("utf-8", "replace")  # a lone surrogate from a broken JSON escape becomes "?"
    if len(data) > tool.max_bytes:
        raise Denied(
            f"the content is {count(len(data), 'byte')}; "
            f"this agent may write at most {tool.max_bytes:,} bytes per file"
        )
    parts = sandbox.parse(path, policy.workspace)
    if not parts:
        raise Failed("write_file needs a file path, not the workspace root")
    if sandbox.PROTECTED in parts:
        raise Denied("paths inside `.git` are not writable: git's config and hooks can make git run programs")
    refuse_secret(tool, "write_file", parts)
    ws = sandbox.open_workspace(policy.workspace)
    try:
        location = sandbox.locate_in_root(
            ws, policy.workspace, tool.root, parts, what="write root", follow_last=False, create=True
        )
    finally:
        os.close(ws)
    with location as loc:
        shown = sandbox.show(loc.parts)
        if sandbox.PROTECTED in loc.parts:
            raise Denied(
                f"`{shown}` is inside `.git`, which is not writable: "
                "git's config and hooks can make git run programs"
            )
        refuse_secret(tool, "write_file", loc.parts)
        mode = None  # a new file: 0o666 less the umask, as any program would create it
        if loc.stat is not None:
            if loc.name is None or stat.S_ISDIR(loc.stat.st_mode):
                raise Failed(f"{path} is a directory")
            if stat.S_ISLNK(loc.stat.st_mode):
                raise Denied(f"`{shown}` is a symlink; write_file does not write through symlinks")
            if not stat.S_ISREG(loc.stat.st_mode):
                raise Failed(f"{shown} is not a regular file")
            mode = stat.S_IMODE(loc.stat.st_mode)
        assert loc.name is not None
        _replace(loc.dir_fd, loc.name, data, mode, shown)
    verb = "created" if loc.stat is None else "replaced"
    return success(
        f"wrote {count(len(data), 'byte')} to {shown} ({verb})",
        f"write_file {shown} -> {count(len(data), 'byte')}",
    )


def _replace(dir_fd: int, name: str, data: bytes, mode: int | None, shown: str) -> None:
    """Write `data` to a new file in `dir_fd` and rename it to `name` (atomic, never follows links)."""
    temp = f".rnix-write-{os.getpid()}-{os.urandom(4).hex()}.tmp"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(temp, flags, 0o666 if mode is None else 0o600, dir_fd=dir_fd)
    except OSError as exc:
        raise Failed(f"cannot write in the directory of {shown}: {exc.strerror}") from exc
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            if mode is not None:
                os.fchmod(fd, mode)  # a replaced file keeps its permissions
        finally:
            os.close(fd)
        os.rename(temp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(temp, dir_fd=dir_fd)
        raise Failed(f"cannot write {shown}: {exc.strerror}") from exc
