"""Path confinement of the file tools: every way out of the workspace is denied, and nothing leaks.

Layout per test (tmp_path): `ws/` is the workspace, `ws-evil/` a sibling whose name starts with the
workspace's (the prefix trick), holding a secret no tool may read or overwrite.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from rnix.agent.tools import ToolPolicy, ToolResult, execute, sandbox

SECRET = "SECRET-do-not-leak"
ALL_FILE_TOOLS: dict[str, Any] = {"read_file": {}, "list_dir": {}, "glob": {}, "grep": {}, "write_file": {}}


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    (ws / "src").mkdir(parents=True)
    (ws / "src" / "app.py").write_text("print('hello')\n")
    evil = tmp_path / "ws-evil"
    evil.mkdir()
    (evil / "secret.txt").write_text(SECRET + "\n")
    return ws


def policy(ws: Path, tools: dict[str, Any] | None = None) -> ToolPolicy:
    return ToolPolicy.from_json(ALL_FILE_TOOLS if tools is None else tools, str(ws))


def call(p: ToolPolicy, name: str, **args: Any) -> ToolResult:
    return execute(p, name, json.dumps(args))


def assert_denied(result: ToolResult) -> None:
    assert result.denied, result
    assert not result.ok
    assert result.output.startswith("denied: ")
    assert result.summary.startswith("DENIED ")
    assert SECRET not in result.output


def outside(ws: Path) -> Path:
    return ws.parent / "ws-evil"


ESCAPES = [
    "..",
    "../ws-evil/secret.txt",
    "../../etc/passwd",
    "src/../../ws-evil/secret.txt",
    "src/..",  # stays inside, still refused: no `..` at all
    "./../ws-evil",
    "src/./../../ws-evil/secret.txt",
]


@pytest.mark.parametrize("path", ESCAPES)
@pytest.mark.parametrize("tool", ["read_file", "list_dir", "glob", "grep", "write_file"])
def test_dotdot_is_denied_for_every_tool(ws: Path, tool: str, path: str) -> None:
    args = {
        "read_file": {"path": path},
        "list_dir": {"path": path},
        "glob": {"pattern": "*", "path": path},
        "grep": {"pattern": "SECRET", "path": path},
        "write_file": {"path": path, "content": "pwned"},
    }[tool]
    result = call(policy(ws), tool, **args)
    assert_denied(result)
    assert "`..`" in result.output
    assert (outside(ws) / "secret.txt").read_text() == SECRET + "\n"


@pytest.mark.parametrize("absolute", ["/etc/passwd", "/", "/etc"])
def test_absolute_paths_outside_are_denied(ws: Path, absolute: str) -> None:
    assert_denied(call(policy(ws), "read_file", path=absolute))
    assert_denied(call(policy(ws), "list_dir", path=absolute))
    assert_denied(call(policy(ws), "grep", pattern="root", path=absolute))


def test_prefix_trick_sibling_with_the_same_prefix_is_outside(ws: Path) -> None:
    evil = outside(ws)
    assert str(evil).startswith(str(ws))  # the trick: a string-prefix check would let it in
    p = policy(ws)
    assert_denied(call(p, "read_file", path=str(evil / "secret.txt")))
    assert_denied(call(p, "list_dir", path=str(evil)))
    assert_denied(call(p, "write_file", path=str(evil / "secret.txt"), content="pwned"))
    (ws / "abs-link").symlink_to(evil / "secret.txt")
    assert_denied(call(p, "read_file", path="abs-link"))
    assert (evil / "secret.txt").read_text() == SECRET + "\n"


def test_absolute_paths_inside_the_workspace_are_accepted(ws: Path) -> None:
    p = policy(ws)
    result = call(p, "read_file", path=str(ws / "src" / "app.py"))
    assert result.ok and result.output == "print('hello')\n"
    assert call(p, "list_dir", path=str(ws)).output.splitlines() == ["src/"]


@pytest.mark.parametrize("relative", [True, False])
def test_symlink_to_a_file_outside_is_denied(ws: Path, relative: bool) -> None:
    target = Path("../ws-evil/secret.txt") if relative else outside(ws) / "secret.txt"
    (ws / "leak").symlink_to(target)
    p = policy(ws)
    for result in (
        call(p, "read_file", path="leak"),
        call(p, "grep", pattern="SECRET", path="leak"),
        call(p, "write_file", path="leak", content="pwned"),
    ):
        assert_denied(result)
    assert (outside(ws) / "secret.txt").read_text() == SECRET + "\n"


@pytest.mark.parametrize("relative", [True, False])
def test_symlink_to_a_directory_outside_is_denied(ws: Path, relative: bool) -> None:
    (ws / "evildir").symlink_to(Path("../ws-evil") if relative else outside(ws))
    p = policy(ws)
    assert_denied(call(p, "list_dir", path="evildir"))
    assert_denied(call(p, "read_file", path="evildir/secret.txt"))
    assert_denied(call(p, "glob", pattern="*", path="evildir"))
    assert_denied(call(p, "grep", pattern="SECRET", path="evildir"))
    assert_denied(call(p, "write_file", path="evildir/new.txt", content="pwned"))
    assert_denied(call(p, "write_file", path="evildir/deeper/new.txt", content="pwned"))
    assert sorted(os.listdir(outside(ws))) == ["secret.txt"]


def test_walks_never_enter_a_symlinked_directory(ws: Path) -> None:
    (ws / "evildir").symlink_to(outside(ws))
    (ws / "src" / "loop").symlink_to("..")
    p = policy(ws)
    listing = call(p, "glob", pattern="**/*")
    assert listing.ok
    assert "secret" not in listing.output
    assert "evildir" in listing.output.splitlines()  # the link itself is a name inside the root
    grep = call(p, "grep", pattern="SECRET")
    assert grep.ok and SECRET not in grep.output and grep.output.startswith("no matches")


def test_symlink_chain_that_ends_outside_is_denied(ws: Path) -> None:
    (ws / "a").symlink_to("b")
    (ws / "b").symlink_to("src/c")
    (ws / "src" / "c").symlink_to("../../ws-evil/secret.txt")
    result = call(policy(ws), "read_file", path="a")
    assert_denied(result)
    assert "symlink `src/c`" in result.output


def test_symlinks_inside_pointing_inside_are_followed(ws: Path) -> None:
    (ws / "link.py").symlink_to("src/app.py")
    (ws / "srcdir").symlink_to(ws / "src")  # absolute, inside
    (ws / "src" / "up").symlink_to("../src")  # `..` in a target, staying inside
    p = policy(ws)
    for path in ("link.py", "srcdir/app.py", "src/up/app.py", "src/up/up/app.py"):
        result = call(p, "read_file", path=path)
        assert result.ok, result
        assert result.output == "print('hello')\n"
        assert result.summary == "read_file src/app.py -> 15 bytes"  # the real path is logged
    assert call(p, "list_dir", path="srcdir").output.startswith("app.py")


def test_symlink_loop_is_an_error_not_a_hang(ws: Path) -> None:
    (ws / "x").symlink_to("y")
    (ws / "y").symlink_to("x")
    result = call(policy(ws), "read_file", path="x")
    assert not result.ok and not result.denied
    assert "too many levels of symlinks" in result.output


def test_nul_byte_is_denied(ws: Path) -> None:
    p = policy(ws)
    assert_denied(call(p, "read_file", path="src/app.py\x00.txt"))
    assert_denied(call(p, "write_file", path="x\x00y", content="a"))
    assert_denied(call(p, "list_dir", path="\x00"))


def test_very_long_paths_are_denied_cleanly(ws: Path) -> None:
    p = policy(ws)
    for path in ("a/" * 3000, "b" * 300, "src/" + "c" * 256):
        assert_denied(call(p, "read_file", path=path))
        assert_denied(call(p, "write_file", path=path, content="x"))
    deep = "/".join(["d"] * 100) + "/f.txt"  # long but legal: works
    assert call(p, "write_file", path=deep, content="deep").ok
    assert (ws / deep).read_text() == "deep"


def test_write_through_a_symlink_is_refused_even_inside(ws: Path) -> None:
    (ws / "inside-link").symlink_to("src/app.py")
    p = policy(ws)
    result = call(p, "write_file", path="inside-link", content="pwned")
    assert_denied(result)
    assert "symlink" in result.output
    assert (ws / "src" / "app.py").read_text() == "print('hello')\n"
    assert os.path.islink(ws / "inside-link")


def test_write_outside_the_write_root_is_denied(ws: Path) -> None:
    (ws / "out").mkdir()
    (ws / "out" / "to-src").symlink_to("../src")
    p = policy(ws, {"write_file": {"root": "out"}})
    for path in ("src/new.txt", "new.txt", "out/to-src/new.txt", "out/to-src/sub/new.txt", str(ws / "x")):
        result = call(p, "write_file", path=path, content="pwned")
        assert_denied(result)
        assert "write root `out`" in result.output
    assert sorted(os.listdir(ws / "src")) == ["app.py"]
    assert sorted(os.listdir(ws)) == ["out", "src"]
    ok = call(p, "write_file", path="out/reports/today.md", content="# ok\n")
    assert ok.ok and (ws / "out" / "reports" / "today.md").read_text() == "# ok\n"


def test_a_denied_write_creates_nothing_not_even_the_write_root(ws: Path) -> None:
    p = policy(ws, {"write_file": {"root": "build/out"}})
    assert_denied(call(p, "write_file", path="src/new/x.txt", content="pwned"))
    assert_denied(call(p, "write_file", path="build/other/x.txt", content="pwned"))
    assert sorted(os.listdir(ws)) == ["src"]
    assert call(p, "write_file", path="build/out/x.txt", content="ok").ok


def test_write_root_that_is_a_symlink_outside_is_denied(ws: Path) -> None:
    (ws / "out").symlink_to(outside(ws))
    result = call(
        policy(ws, {"write_file": {"root": "out"}}), "write_file", path="out/x.txt", content="pwned"
    )
    assert_denied(result)
    assert sorted(os.listdir(outside(ws))) == ["secret.txt"]


def test_read_root_limits_reads(ws: Path) -> None:
    (ws / "docs").mkdir()
    (ws / "docs" / "a.md").write_text("doc\n")
    (ws / "docs" / "to-src").symlink_to("../src")
    p = policy(ws, {"read_file": {"root": "docs"}, "list_dir": {"root": "docs"}})
    assert call(p, "read_file", path="docs/a.md").output == "doc\n"
    assert_denied(call(p, "read_file", path="src/app.py"))
    assert_denied(call(p, "read_file", path="docs/to-src/app.py"))
    assert_denied(call(p, "list_dir", path="."))
    assert call(p, "list_dir").output.splitlines() == ["a.md  4 bytes", "to-src@ -> ../src"]


def test_dot_git_is_not_writable(ws: Path) -> None:
    (ws / ".git").mkdir()
    (ws / "sub").mkdir()
    p = policy(ws)
    for path in (".git/config", ".git/hooks/pre-commit", "sub/.git", "sub/.git/config"):
        assert_denied(call(p, "write_file", path=path, content="[core]\n\tfsmonitor = touch pwned\n"))
    (ws / "repo-link").symlink_to(".git")
    assert_denied(call(p, "write_file", path="repo-link/config", content="x"))
    assert_denied(call(p, "write_file", path="repo-link/hooks/pre-commit", content="x"))
    assert os.listdir(ws / ".git") == [] and os.listdir(ws / "sub") == []


def test_hard_link_to_an_outside_file_is_not_read_and_not_written_through(ws: Path) -> None:
    os.link(outside(ws) / "secret.txt", ws / "hard.txt")
    p = policy(ws)
    assert_denied(call(p, "read_file", path="hard.txt"))
    grep = call(p, "grep", pattern="SECRET")
    assert SECRET not in grep.output and "with several hard links" in grep.output
    assert call(p, "write_file", path="hard.txt", content="replaced\n").ok
    assert (ws / "hard.txt").read_text() == "replaced\n"
    assert (outside(ws) / "secret.txt").read_text() == SECRET + "\n"


def test_a_fifo_is_not_read_and_does_not_block(ws: Path) -> None:
    os.mkfifo(ws / "pipe")
    result = call(policy(ws), "read_file", path="pipe")
    assert not result.ok and "not a regular file" in result.output


def test_a_file_swapped_for_a_symlink_after_the_check_is_not_followed(ws: Path) -> None:
    """The race the sandbox is built for: between locate() and open() the final name becomes a
    symlink to a secret. O_NOFOLLOW makes the open fail instead of reading the secret."""
    workspace = os.path.realpath(ws)
    ws_fd = sandbox.open_workspace(workspace)
    try:
        with sandbox.locate(ws_fd, workspace, ("src", "app.py")) as location:
            os.replace(ws / "src" / "app.py", ws / "src" / "moved.py")
            (ws / "src" / "app.py").symlink_to(outside(ws) / "secret.txt")
            with pytest.raises(OSError) as raised:
                location.open(os.O_RDONLY)
            assert raised.value.errno == 40  # ELOOP
    finally:
        os.close(ws_fd)


def test_a_directory_swapped_for_a_symlink_keeps_the_walk_inside(ws: Path) -> None:
    workspace = os.path.realpath(ws)
    ws_fd = sandbox.open_workspace(workspace)
    try:
        with sandbox.locate(ws_fd, workspace, ("src", "app.py")) as location:
            os.rename(ws / "src", ws / "old-src")
            (ws / "src").symlink_to(outside(ws))
            (outside(ws) / "app.py").write_text(SECRET)
            fd = location.open(os.O_RDONLY)  # the directory fd still is the real, inside one
            try:
                assert os.read(fd, 100) == b"print('hello')\n"
            finally:
                os.close(fd)
    finally:
        os.close(ws_fd)
