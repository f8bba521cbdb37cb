"""glob and grep: walk a directory inside the tool's root, never leaving it.

Contract: the walk opens each directory relative to its parent fd with O_NOFOLLOW and never
descends into a symlink (a symlink can only duplicate something inside the root or lead out of it).
Like a shell glob, hidden names (a leading `.`) are matched only by a pattern segment that starts
with `.`, and `**` (any number of directories) does not enter hidden directories; grep skips hidden
files and directories below the path it was given, so `.git` and `.venv` are not searched unless
asked for. Both stop at the tool's `max_entries` matches, after scanning MAX_SCAN directory entries,
and (grep) after GREP_SECONDS; the output says where and why it stopped. grep skips symlinks, files
over `max_bytes`, binary files (a NUL in the first 8 KiB) and files with several hard links, and
reports how many it skipped. Results are paths relative to the workspace. grep never searches a
secret-bearing file (rnix.agent.tools.secretfiles; counted as skipped) and refuses a path that is
one, unless its `allow_secrets` is set; glob lists such names like any other.

The time limit uses SIGALRM (re can be interrupted by a signal handler) when called from the main
thread and nobody else uses SIGALRM; otherwise only the checks between files apply, and a regular
expression with catastrophic backtracking on one long line can run until the agent's own timeout.
"""

from __future__ import annotations

import codecs
import contextlib
import os
import re
import signal
import stat
import time
from collections.abc import Iterator
from fnmatch import fnmatchcase
from typing import Any

from rnix.agent.tools import sandbox, secretfiles
from rnix.agent.tools.files import BINARY_SNIFF, READ_FLAGS, locate_for_reading, read_regular, read_up_to
from rnix.agent.tools.policy import PathTool, ToolPolicy
from rnix.agent.tools.result import Failed, ToolResult, count, success

MAX_SCAN = 100_000  # directory entries looked at per call
MAX_DEPTH = 64
GREP_SECONDS = 10.0
LINE_SHOWN = 300  # characters of a matching line shown to the model


class _Stop(Exception):
    """Unwinds the walk: `why` is the note the output ends with."""

    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


class _TimeUp(Exception):
    pass


def _entries(fd: int, walk: _Counter) -> list[os.DirEntry[str]]:
    with os.scandir(fd) as it:
        entries = sorted(it, key=lambda entry: entry.name)
    walk.scanned += len(entries)
    if walk.scanned > MAX_SCAN:
        raise _Stop(f"stopped after scanning {MAX_SCAN:,} directory entries; search a smaller directory")
    return entries


class _Counter:
    scanned = 0


@contextlib.contextmanager
def _subdir(fd: int, name: str) -> Iterator[int | None]:
    try:
        sub: int | None = os.open(name, sandbox.DIR_FLAGS, dir_fd=fd)
    except OSError:
        sub = None  # unreadable, or swapped for a symlink since scandir: skip it
    try:
        yield sub
    finally:
        if sub is not None:
            os.close(sub)


def _is_dir(entry: os.DirEntry[str]) -> bool:
    return entry.is_dir(follow_symlinks=False)


# -- glob ------------------------------------------------------------------------------------------


def glob(policy: ToolPolicy, args: dict[str, Any]) -> ToolResult:
    pattern: str = args["pattern"]
    if "\0" in pattern or pattern.startswith("/"):
        raise Failed("the pattern must be relative to the search path (no leading `/`)")
    segments = tuple(seg for seg in pattern.split("/") if seg not in ("", "."))
    if not segments:
        raise Failed("the pattern is empty")
    if ".." in segments:
        raise sandbox.PathDenied("glob patterns may not contain `..`")
    tool, location = locate_for_reading(policy, "glob", args.get("path"))
    with location as loc:
        base = loc.parts
        if loc.stat is None or not stat.S_ISDIR(loc.stat.st_mode):
            raise Failed(f"{sandbox.show(base)} is not a directory")
        fd = _open_dir(loc)
    found: dict[tuple[str, ...], bool] = {}  # path -> is a directory
    note = ""
    try:
        _glob(fd, (), segments, 0, found, tool.max_entries, _Counter())
    except _Stop as stop:
        note = stop.why
    finally:
        os.close(fd)
    lines = [sandbox.show((*base, *rel)) + ("/" if is_dir else "") for rel, is_dir in sorted(found.items())]
    if note:
        lines.append(f"[{note}]")
    output = (
        "\n".join(lines)
        if found
        else f"no matches for `{pattern}` in {sandbox.show(base)}" + (f" [{note}]" if note else "")
    )
    return success(
        output, f"glob {pattern} in {sandbox.show(base)} -> {count(len(found), 'match', 'matches')}"
    )


def _open_dir(loc: sandbox.Location) -> int:
    try:
        return loc.open(os.O_RDONLY | os.O_DIRECTORY)
    except OSError as exc:
        raise Failed(f"cannot open {sandbox.show(loc.parts)}: {exc.strerror}") from exc


def _fits(name: str, segment: str) -> bool:
    if name.startswith(".") and not segment.startswith("."):
        return False
    return fnmatchcase(name, segment)


def _glob(
    fd: int,
    rel: tuple[str, ...],
    segments: tuple[str, ...],
    i: int,
    found: dict[tuple[str, ...], bool],
    limit: int,
    walk: _Counter,
) -> None:
    segment, final = segments[i], i == len(segments) - 1
    if len(rel) > MAX_DEPTH:
        return
    if segment == "**":
        if not final:
            _glob(fd, rel, segments, i + 1, found, limit, walk)  # `**` matching no directory
        for entry in _entries(fd, walk):
            if entry.name.startswith("."):
                continue
            if final:
                _add(found, (*rel, entry.name), _is_dir(entry), limit)
            if _is_dir(entry):
                with _subdir(fd, entry.name) as sub:
                    if sub is not None:
                        _glob(sub, (*rel, entry.name), segments, i, found, limit, walk)
        return
    for entry in _entries(fd, walk):
        if not _fits(entry.name, segment):
            continue
        if final:
            _add(found, (*rel, entry.name), _is_dir(entry), limit)
        elif _is_dir(entry):
            with _subdir(fd, entry.name) as sub:
                if sub is not None:
                    _glob(sub, (*rel, entry.name), segments, i + 1, found, limit, walk)


def _add(found: dict[tuple[str, ...], bool], rel: tuple[str, ...], is_dir: bool, limit: int) -> None:
    if rel not in found and len(found) >= limit:
        raise _Stop(f"stopped at {limit:,} matches; use a narrower pattern")
    found[rel] = is_dir


# -- grep ------------------------------------------------------------------------------------------


class _Grep:
    def __init__(self, regex: re.Pattern[str], include: str | None, tool: PathTool) -> None:
        self.regex, self.include, self.tool = regex, include, tool
        self.lines: list[str] = []
        self.files_matched = 0
        self.skipped = {
            "larger than the size limit": 0,
            "binary": 0,
            "with several hard links": 0,
            "holding secrets (not searched)": 0,
        }
        self.walk = _Counter()
        self.deadline = time.monotonic() + GREP_SECONDS

    def search_file(self, fd: int, shown: str) -> None:
        st = os.fstat(fd)
        if st.st_nlink > 1:
            self.skipped["with several hard links"] += 1
            return
        if st.st_size > self.tool.max_bytes:
            self.skipped["larger than the size limit"] += 1
            return
        data = read_up_to(fd, self.tool.max_bytes)
        if b"\0" in data[:BINARY_SNIFF]:
            self.skipped["binary"] += 1
            return
        text = codecs.decode(data, "utf-8", "replace")
        hit = False
        for number, line in enumerate(text.splitlines(), 1):
            if self.regex.search(line):
                if len(self.lines) >= self.tool.max_entries:
                    raise _Stop(
                        f"stopped at {self.tool.max_entries:,} matches; use a narrower pattern or path"
                    )
                hit = True
                shown_line = line if len(line) <= LINE_SHOWN else line[:LINE_SHOWN] + " [...]"
                self.lines.append(f"{shown}:{number}: {shown_line}")
        self.files_matched += hit

    def search_dir(self, fd: int, rel: tuple[str, ...]) -> None:
        if len(rel) > MAX_DEPTH:
            return
        for entry in _entries(fd, self.walk):
            if time.monotonic() > self.deadline:
                raise _TimeUp
            if entry.name.startswith(".") or entry.is_symlink():
                continue
            if not self.tool.allow_secrets and secretfiles.secret_reason((*rel, entry.name)):
                self.skipped["holding secrets (not searched)"] += 1
                continue
            if _is_dir(entry):
                with _subdir(fd, entry.name) as sub:
                    if sub is not None:
                        self.search_dir(sub, (*rel, entry.name))
            elif entry.is_file(follow_symlinks=False) and (
                self.include is None or fnmatchcase(entry.name, self.include)
            ):
                try:
                    file_fd = os.open(entry.name, READ_FLAGS | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
                except OSError:
                    continue
                try:
                    if stat.S_ISREG(os.fstat(file_fd).st_mode):
                        self.search_file(file_fd, sandbox.show((*rel, entry.name)))
                finally:
                    os.close(file_fd)


def grep(policy: ToolPolicy, args: dict[str, Any]) -> ToolResult:
    pattern: str = args["pattern"]
    try:
        regex = re.compile(pattern, re.IGNORECASE if args.get("ignore_case") else 0)
    except re.error as exc:
        raise Failed(f"invalid regular expression {pattern!r}: {exc}") from exc
    tool, location = locate_for_reading(policy, "grep", args.get("path"))
    search = _Grep(regex, args.get("include"), tool)
    note = ""
    with location as loc:
        shown = sandbox.show(loc.parts)
        assert loc.stat is not None
        is_dir = stat.S_ISDIR(loc.stat.st_mode)
        if is_dir:
            fd = _open_dir(loc)
        else:
            fd, st = read_regular(loc, shown)
            if st.st_size > tool.max_bytes:
                os.close(fd)
                raise Failed(
                    f"{shown} is {count(st.st_size, 'byte')}; "
                    f"grep searches files up to {tool.max_bytes:,} bytes"
                )
    try:
        with _time_limit(max(0.001, search.deadline - time.monotonic())):
            if is_dir:
                search.search_dir(fd, loc.parts)
            else:
                search.search_file(fd, shown)
    except _Stop as stop:
        note = stop.why
    except _TimeUp:
        note = (
            f"stopped after {GREP_SECONDS:g} s; the results are incomplete "
            "(try a simpler pattern or a smaller path)"
        )
    finally:
        os.close(fd)
    if not is_dir and search.skipped["binary"]:
        raise Failed(f"{shown} looks like a binary file; it is not searched")
    lines = list(search.lines)
    skipped = [f"{n:,} {why}" for why, n in search.skipped.items() if n]
    if skipped:
        lines.append(f"[skipped files: {', '.join(skipped)}]")
    if note:
        lines.append(f"[{note}]")
    matches = count(len(search.lines), "match", "matches")
    if not search.lines:
        lines.insert(0, f"no matches for /{pattern}/ in {shown}")
    summary = f"grep {pattern} in {shown} -> {matches} in {count(search.files_matched, 'file')}"
    return success("\n".join(lines), summary)


@contextlib.contextmanager
def _time_limit(seconds: float) -> Iterator[None]:
    """Raise _TimeUp in this (main) thread after `seconds`, when SIGALRM is free to use."""

    def on_alarm(signum: int, frame: object) -> None:
        raise _TimeUp

    previous: Any = None
    try:
        free = (
            signal.getsignal(signal.SIGALRM) == signal.SIG_DFL and not signal.getitimer(signal.ITIMER_REAL)[0]
        )
        if free:
            previous = signal.signal(signal.SIGALRM, on_alarm)
            signal.setitimer(signal.ITIMER_REAL, seconds)
    except ValueError:  # not the main thread: only the checks between files apply
        free = False
    try:
        yield
    finally:
        if free:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
