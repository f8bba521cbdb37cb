"""Agents' log files for people: the last lines of a file, and the lines added since the last look.

Lines are decoded as UTF-8 (bad bytes replaced), secrets are masked and the text is made inert
(`rnix.ui.text.inert`), so callers can show them as they are. A missing file reads as empty (an agent
that has not started yet has none). Only the end of a file is read (`max_bytes`), so a log of
gigabytes costs no more than a short one.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from rnix.core.secrets import mask_text
from rnix.ui.text import inert

TAIL_BYTES = 256 * 1024


def last_lines(
    path: str | None, count: int, secrets: Sequence[str], max_bytes: int = TAIL_BYTES
) -> list[str]:
    """The last `count` lines of the file at `path`."""
    if not path or count <= 0:
        return []
    try:
        with open(path, "rb") as handle:
            size = handle.seek(0, os.SEEK_END)
            handle.seek(max(0, size - max_bytes))
            data = handle.read()
    except OSError:
        return []
    lines = data.splitlines()
    if size > max_bytes and lines:
        lines = lines[1:]  # the first one was cut
    return [_clean(line, secrets) for line in lines[-count:]]


class LogTail:
    """Follows files: `read()` returns the complete lines written to them since the previous call.

    It starts at most `max_bytes` before the current end of each file, at a line boundary.
    """

    def __init__(self, paths: Sequence[str | None], secrets: Sequence[str], max_bytes: int = TAIL_BYTES):
        self.paths = [p for p in paths if p]
        self.secrets = secrets
        self.max_bytes = max_bytes
        self._offsets: dict[str, int] = {}

    def read(self) -> list[str]:
        out: list[str] = []
        for path in self.paths:
            try:
                with open(path, "rb") as handle:
                    size = handle.seek(0, os.SEEK_END)
                    start = self._offsets.get(path)
                    if start is None or start > size:  # first look, or the file was truncated
                        start = max(0, size - self.max_bytes)
                        skip_partial = start > 0
                    else:
                        skip_partial = False
                    handle.seek(start)
                    data = handle.read(size - start)
            except OSError:
                continue
            if skip_partial:
                cut = data.find(b"\n") + 1
                data, start = data[cut:], start + cut
            complete = data[: data.rfind(b"\n") + 1]
            self._offsets[path] = start + len(complete)
            out.extend(_clean(line, self.secrets) for line in complete.splitlines())
        return out


def _clean(line: bytes, secrets: Sequence[str]) -> str:
    return inert(mask_text(line.decode("utf-8", errors="replace"), secrets))
