"""RNIX_HOME's preflight: each way a home can be unusable has its own message, naming the path."""

from __future__ import annotations

import errno
import os
from pathlib import Path
from types import SimpleNamespace

import pytest

from rnix.errors import ExitCode, HomeUnusable
from rnix.store import preflight


def test_a_missing_home_is_created_and_passes(tmp_path: Path) -> None:
    home = tmp_path / "a" / "home"
    preflight.check_home(home)
    assert home.is_dir() and list(home.iterdir()) == []  # the probe is gone


@pytest.mark.parametrize("under", [False, True])
def test_a_home_that_is_or_lies_under_a_file(tmp_path: Path, under: bool) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    home = blocker / "home" if under else blocker
    with pytest.raises(HomeUnusable) as caught:
        preflight.check_home(home)
    assert caught.value.exit_code == ExitCode.STATE
    assert str(home) in caught.value.message and "is not a directory" in caught.value.message
    assert (f"under {blocker}" in caught.value.message) is under
    assert caught.value.hint is not None and "RNIX_HOME" in caught.value.hint


def test_too_little_free_space_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(preflight, "_free_bytes", lambda path: 4096)
    with pytest.raises(HomeUnusable, match=r"its filesystem is full \(4 KiB free\)"):
        preflight.check_home(tmp_path / "home")


def test_a_refused_write_names_its_cause(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(self: Path, data: bytes) -> int:
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))

    monkeypatch.setattr(Path, "write_bytes", refuse)
    with pytest.raises(HomeUnusable, match="read-only") as caught:
        preflight.check_home(tmp_path / "home")
    assert caught.value.hint is not None and caught.value.hint.startswith("remount")


def test_the_filesystem_says_why_sqlite_failed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def statvfs(flag: int, free: int) -> SimpleNamespace:
        return SimpleNamespace(f_flag=flag, f_bavail=free, f_frsize=1)

    monkeypatch.setattr(os, "statvfs", lambda path: statvfs(os.ST_RDONLY, 1 << 30))
    assert preflight.filesystem_cause(tmp_path / "rnix.db") == "its filesystem is read-only"
    monkeypatch.setattr(os, "statvfs", lambda path: statvfs(0, 0))
    assert preflight.filesystem_cause(tmp_path) == "its filesystem is full (0 bytes free)"
    monkeypatch.setattr(os, "statvfs", lambda path: statvfs(0, 1 << 30))
    assert preflight.filesystem_cause(tmp_path) is None
