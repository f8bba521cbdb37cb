"""What the file tools give the model: contents, listings, matches, their caps and their wording."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from rnix.agent.tools import ToolPolicy, ToolResult, execute


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    (ws / "src" / "pkg").mkdir(parents=True)
    (ws / "src" / "app.py").write_text("import os\n# TODO: fix\nprint('hello')\n")
    (ws / "src" / "pkg" / "util.py").write_text("def todo():\n    return 'todo'\n")
    (ws / "README.md").write_text("# Demo\nTODO: docs\n")
    (ws / ".hidden").mkdir()
    (ws / ".hidden" / "secret.py").write_text("TODO hidden\n")
    return ws


def policy(ws: Path, **options: dict[str, Any]) -> ToolPolicy:
    tools: dict[str, Any] = {"read_file": {}, "list_dir": {}, "glob": {}, "grep": {}, "write_file": {}}
    tools.update(options)
    return ToolPolicy.from_json(tools, str(ws))


def call(p: ToolPolicy, name: str, **args: Any) -> ToolResult:
    return execute(p, name, json.dumps(args))


# -- read_file -------------------------------------------------------------------------------------


def test_read_file_returns_the_text_and_logs_its_size(ws: Path) -> None:
    (ws / "big.txt").write_text("x" * 1204)
    result = call(policy(ws), "read_file", path="big.txt")
    assert result.ok and not result.denied
    assert result.output == "x" * 1204
    assert result.summary == "read_file big.txt -> 1,204 bytes"


def test_read_file_is_capped_and_says_how_to_read_on(ws: Path) -> None:
    (ws / "long.txt").write_text("".join(f"line {i}\n" for i in range(100)))
    p = policy(ws, read_file={"max_bytes": 100})
    first = call(p, "read_file", path="long.txt")
    assert first.ok
    body, note = first.output.rsplit("\n", 1)
    assert len(body.encode()) == 100
    assert note == "[truncated: this is bytes 0-100 of 790; call read_file with offset=100 for more]"
    assert first.summary == "read_file long.txt -> 100 bytes (truncated)"
    rest = call(p, "read_file", path="long.txt", offset=710)
    assert rest.output == "".join(f"line {i}\n" for i in range(90, 100))


def test_read_file_does_not_split_a_character_at_the_cap(ws: Path) -> None:
    (ws / "utf8.txt").write_text("é" * 10)  # 2 bytes each
    result = call(policy(ws, read_file={"max_bytes": 5}), "read_file", path="utf8.txt")
    assert result.output.startswith("éé\n[truncated")


@pytest.mark.parametrize(
    ("setup", "path", "message"),
    [
        (lambda ws: None, "missing.txt", "missing.txt does not exist"),
        (lambda ws: None, "src", "src is a directory; use list_dir"),
        (lambda ws: (ws / "bin").write_bytes(b"\x7fELF\x00\x01"), "bin", "bin looks like a binary file"),
        (lambda ws: None, "missing/dir/x", "missing does not exist"),
        (lambda ws: None, "README.md/x", "README.md is not a directory"),
    ],
)
def test_read_file_errors_are_plain_and_not_denials(ws: Path, setup: Any, path: str, message: str) -> None:
    setup(ws)
    result = call(policy(ws), "read_file", path=path)
    assert not result.ok and not result.denied
    assert result.output.startswith("error: ") and message in result.output
    assert "-> error:" in result.summary


def test_read_file_of_an_empty_file_says_so(ws: Path) -> None:
    (ws / "empty").write_text("")
    assert call(policy(ws), "read_file", path="empty").output == "(empty file)"


# -- list_dir --------------------------------------------------------------------------------------


def test_list_dir_marks_kinds_and_sizes(ws: Path) -> None:
    (ws / "link").symlink_to("src/app.py")
    result = call(policy(ws), "list_dir")
    assert result.ok
    assert result.output.splitlines() == [".hidden/", "README.md  18 bytes", "link@ -> src/app.py", "src/"]
    assert result.summary == "list_dir . -> 4 entries"
    assert call(policy(ws), "list_dir", path="src").output.splitlines() == ["app.py  37 bytes", "pkg/"]


def test_list_dir_is_capped_with_a_note(ws: Path) -> None:
    (ws / "many").mkdir()
    for i in range(12):
        (ws / "many" / f"f{i:02}").write_text("")
    result = call(policy(ws, list_dir={"max_entries": 5}), "list_dir", path="many")
    lines = result.output.splitlines()
    assert lines[:5] == [f"f{i:02}  0 bytes" for i in range(5)]
    assert lines[5] == "[7 more entries not shown; at most 5 are listed]"
    assert result.summary == "list_dir many -> 12 entries"


def test_list_dir_of_a_file_or_an_empty_directory(ws: Path) -> None:
    (ws / "empty").mkdir()
    assert call(policy(ws), "list_dir", path="empty").output == "(empty directory)"
    result = call(policy(ws), "list_dir", path="README.md")
    assert not result.ok and "not a directory" in result.output


# -- glob ------------------------------------------------------------------------------------------


def test_glob_matches_recursively_and_skips_hidden_names(ws: Path) -> None:
    result = call(policy(ws), "glob", pattern="**/*.py")
    assert result.output.splitlines() == ["src/app.py", "src/pkg/util.py"]
    assert result.summary == "glob **/*.py in . -> 2 matches"
    assert call(policy(ws), "glob", pattern=".hidden/*.py").output == ".hidden/secret.py"
    assert call(policy(ws), "glob", pattern="*.py", path="src/pkg").output == "src/pkg/util.py"
    assert call(policy(ws), "glob", pattern="src/*").output.splitlines() == ["src/app.py", "src/pkg/"]


def test_glob_stops_at_the_cap_and_reports_no_matches(ws: Path) -> None:
    for i in range(10):
        (ws / f"n{i}.txt").write_text("")
    capped = call(policy(ws, glob={"max_entries": 3}), "glob", pattern="*.txt")
    assert len(capped.output.splitlines()) == 4
    assert capped.output.endswith("[stopped at 3 matches; use a narrower pattern]")
    none = call(policy(ws), "glob", pattern="*.rs")
    assert none.ok and none.output == "no matches for `*.rs` in ."


# -- grep ------------------------------------------------------------------------------------------


def test_grep_reports_path_line_text(ws: Path) -> None:
    result = call(policy(ws), "grep", pattern="TODO")
    assert result.output.splitlines() == ["README.md:2: TODO: docs", "src/app.py:2: # TODO: fix"]
    assert result.summary == "grep TODO in . -> 2 matches in 2 files"


def test_grep_options_include_ignore_case_and_a_single_file(ws: Path) -> None:
    p = policy(ws)
    result = call(p, "grep", pattern="todo", ignore_case=True, include="*.py", path="src")
    assert result.output.splitlines() == [
        "src/app.py:2: # TODO: fix",
        "src/pkg/util.py:1: def todo():",
        "src/pkg/util.py:2:     return 'todo'",
    ]
    assert call(p, "grep", pattern="^print", path="src/app.py").output == "src/app.py:3: print('hello')"
    assert call(p, "grep", pattern="TODO", path=".hidden").output == ".hidden/secret.py:1: TODO hidden"


def test_grep_skips_binary_and_large_files_and_says_so(ws: Path) -> None:
    (ws / "blob.bin").write_bytes(b"TODO\x00binary")
    (ws / "huge.txt").write_text("TODO\n" * 100)
    result = call(policy(ws, grep={"max_bytes": 100}), "grep", pattern="TODO")
    assert "blob.bin" not in result.output and "huge.txt" not in result.output
    assert result.output.splitlines()[-1] == "[skipped files: 1 larger than the size limit, 1 binary]"


def test_grep_caps_matches_and_long_lines(ws: Path) -> None:
    (ws / "many.txt").write_text("hit\n" * 50 + "hit " + "y" * 1000 + "\n")
    capped = call(policy(ws, grep={"max_entries": 10}), "grep", pattern="hit", path="many.txt")
    assert len(capped.output.splitlines()) == 11
    assert capped.output.endswith("[stopped at 10 matches; use a narrower pattern or path]")
    long = call(policy(ws), "grep", pattern="y{1000}", path="many.txt")
    assert long.output == "many.txt:51: hit " + "y" * 296 + " [...]"


def test_grep_invalid_regex_is_an_error(ws: Path) -> None:
    result = call(policy(ws), "grep", pattern="(unclosed")
    assert not result.ok and not result.denied
    assert "invalid regular expression" in result.output


def test_grep_catastrophic_regex_is_stopped_by_the_time_limit(
    ws: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rnix.agent.tools import search

    monkeypatch.setattr(search, "GREP_SECONDS", 0.3)
    (ws / "evil.txt").write_text("a" * 40 + "b\n")
    result = call(policy(ws), "grep", pattern="(a+)+$", path="evil.txt")
    assert result.ok
    assert "stopped after 0.3 s" in result.output


# -- write_file ------------------------------------------------------------------------------------


def test_write_file_creates_parents_and_replaces_keeping_the_mode(ws: Path) -> None:
    p = policy(ws)
    created = call(p, "write_file", path="out/deep/report.md", content="v1\n")
    assert created.ok and created.output == "wrote 3 bytes to out/deep/report.md (created)"
    assert created.summary == "write_file out/deep/report.md -> 3 bytes"
    os.chmod(ws / "out" / "deep" / "report.md", 0o640)
    replaced = call(p, "write_file", path="out/deep/report.md", content="version 2\n")
    assert replaced.output == "wrote 10 bytes to out/deep/report.md (replaced)"
    assert (ws / "out" / "deep" / "report.md").read_text() == "version 2\n"
    assert stat.S_IMODE(os.stat(ws / "out" / "deep" / "report.md").st_mode) == 0o640
    assert sorted(os.listdir(ws / "out" / "deep")) == ["report.md"]  # no temporary file left


def test_write_file_over_the_size_cap_is_denied_and_writes_nothing(ws: Path) -> None:
    result = call(policy(ws, write_file={"max_bytes": 10}), "write_file", path="x.txt", content="y" * 11)
    assert result.denied
    assert "at most 10 bytes" in result.output
    assert not (ws / "x.txt").exists()


def test_write_file_onto_a_directory_is_an_error(ws: Path) -> None:
    result = call(policy(ws), "write_file", path="src", content="x")
    assert not result.ok and not result.denied and "is a directory" in result.output


def test_write_file_replaces_broken_surrogates(ws: Path) -> None:
    result = execute(policy(ws), "write_file", '{"path": "e.txt", "content": "a\\ud83db"}')
    assert result.ok
    assert (ws / "e.txt").read_bytes() == b"a?b"
