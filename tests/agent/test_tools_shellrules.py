"""The shell tool's refusal rules as a table: what is refused (and why), and what must still pass.

Pure checks of `shellrules.check` (no process runs here): they cover programs this machine may not
have (ruby, php, busybox). test_tools_shell.py runs the installed ones for real.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from rnix.agent.tools import ToolPolicy
from rnix.agent.tools.shellrules import NEVER_ALLOWED, check, prepare

PROGRAMS = [
    "ls",
    "cat",
    "grep",
    "find",
    "git",
    "python3",
    "python3.11",
    "pypy3",
    "perl",
    "ruby",
    "node",
    "php",
    "lua",
    "awk",
    "mawk",
    "sed",
    "tar",
    "rsync",
    "sort",
    "zip",
    "make",
    "man",
    "npx",
    "sqlite3",
    "touch",
    "wc",
    "head",
]


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    (ws / "src").mkdir(parents=True)
    (tmp_path / "ws-evil").mkdir()
    return ws


DENIED = [
    # program names
    (["/bin/sh", "-c", "x"], "bare name"),
    (["./touch", "x"], "bare name"),
    (["../x"], "bare name"),
    (["sh", "-c", "touch x"], "is a shell"),
    (["bash", "-c", "x"], "is a shell"),
    (["busybox", "sh"], "is a shell"),
    (["env", "touch", "x"], "runs another program"),
    (["xargs", "touch"], "runs another program"),
    (["sudo", "ls"], "runs another program"),
    (["nice", "ls"], "runs another program"),
    (["timeout", "5", "ls"], "runs another program"),
    (["vim", "-c", "!touch x"], "editor"),
    (["rm", "-rf", "."], "not on this agent's allowlist"),
    (["ls -la"], "give the argv as a list"),
    # shell syntax
    (["ls", "|", "wc"], "no shell is used"),
    (["ls", ">", "out"], "no shell is used"),
    (["ls", ">>", "out"], "no shell is used"),
    (["ls", ">out.txt"], "no shell is used"),
    (["ls", "2>/dev/null"], "no shell is used"),
    (["ls", "2>&1"], "no shell is used"),
    (["cat", "<", "x"], "no shell is used"),
    (["ls", ";", "touch", "x"], "no shell is used"),
    (["ls", "src;"], "no shell is used"),
    (["ls", "&&", "touch", "x"], "no shell is used"),
    (["ls", "||", "touch", "x"], "no shell is used"),
    (["ls", "&"], "no shell is used"),
    (["ls", "$(touch x)"], "substitution"),
    (["ls", "`touch x`"], "substitution"),
    # find
    (["find", ".", "-exec", "touch", "x", "{}", "+"], "-exec"),
    (["find", ".", "-execdir", "rm", "{}", "+"], "-execdir"),
    (["find", ".", "-exec", "rm", "{}", ";"], "-exec"),
    (["find", ".", "-ok", "rm", "{}", "+"], "-ok"),
    (["find", ".", "-okdir", "rm", "{}", "+"], "-okdir"),
    (["find", ".", "-delete"], "-delete"),
    (["find", ".", "-fprint", "x"], "-fprint"),
    (["find", ".", "-fprint0", "x"], "-fprint0"),
    (["find", ".", "-fprintf", "x", "%p"], "-fprintf"),
    (["find", ".", "-fls", "x"], "-fls"),
    # interpreters with inline code
    (["python3", "-c", "import os"], "program text"),
    (["python3", "-Ic", "import os"], "program text"),
    (["python3.11", "-c", "1"], "program text"),
    (["pypy3", "-c", "1"], "program text"),
    (["python3", "script.py", "-c", "x"], "program text"),  # conservative: anywhere
    (["perl", "-e", "system 'x'"], "program text"),
    (["perl", "-E", "say 1"], "program text"),
    (["perl", "-ne", "print"], "program text"),
    (["perl", "-lane", "print"], "program text"),
    (["ruby", "-e", "system 'x'"], "program text"),
    (["node", "-e", "1"], "program text"),
    (["node", "--eval", "1"], "program text"),
    (["node", "--eval=1"], "program text"),
    (["node", "-p", "1"], "program text"),
    (["php", "-r", "system('x');"], "program text"),
    (["php", "-R", "x"], "program text"),
    (["lua", "-e", "os.execute('x')"], "program text"),
    (["awk", 'BEGIN{system("touch x")}'], "awk is treated as an interpreter"),
    (["mawk", "{print}", "file"], "awk is treated as an interpreter"),
    (["awk", "-f", "prog.awk", "-e", "x"], "program text"),
    (["make", "--eval=all:;touch x"], "program text"),
    (["sqlite3", "-cmd", ".shell touch x", "db"], "program text"),
    # other programs that run programs
    (["tar", "-xf", "a.tar", "--to-command=sh"], "can run another program"),
    (
        ["tar", "--checkpoint=1", "--checkpoint-action=exec=sh", "-cf", "a.tar", "src"],
        "can run another program",
    ),
    (["tar", "-I", "sh", "-xf", "a.tar"], "can run another program"),
    (["tar", "xIf", "sh", "a.tar"], "can run another program"),
    (["rsync", "-e", "sh -c x", "a", "b"], "can run another program"),
    (["rsync", "--rsync-path=x", "a", "b"], "can run another program"),
    (["sort", "--compress-program=sh", "x"], "can run another program"),
    (["zip", "-TT", "sh", "a.zip", "x"], "can run another program"),
    (["man", "-P", "sh", "ls"], "can run another program"),
    (["npx", "-c", "touch x"], "can run another program"),
    # git
    (["git", "-c", "alias.x=!touch pwned", "x"], "sets configuration"),
    (["git", "-c", "core.pager=touch pwned", "-p", "log"], "sets configuration"),
    (["git", "-ccore.pager=x", "log"], "sets configuration"),
    (["git", "--config-env=core.pager=X", "log"], "program for git to run"),
    (["git", "--exec-path=.", "x"], "changes where git looks"),
    (["git", "--exec-path", "x"], "changes where git looks"),
    (["git", "--git-dir=src", "log"], "another repository"),
    (["git", "--work-tree=src", "status"], "another work tree"),
    (["git", "config", "alias.x", "!touch pwned"], "changes git's configuration"),
    (["git", "-C", "src", "config", "core.pager", "x"], "changes git's configuration"),
    (["git", "submodule", "foreach", "touch x"], "runs commands"),
    (["git", "bisect", "run", "touch"], "runs commands"),
    (["git", "filter-branch", "--tree-filter", "x"], "runs commands"),
    (["git", "difftool", "-x", "x"], "runs commands"),
    (["git", "help", "-w", "log"], "browser"),
    (["git", "ls-remote", "--upload-pack=touch pwned", "."], "program for git to run"),
    (["git", "fetch", "--upload-pack", "touch pwned", "origin"], "program for git to run"),
    (["git", "push", "--receive-pack=x", "origin"], "program for git to run"),
    (["git", "clone", "-u", "touch pwned", "src", "dst"], "run a command"),
    (["git", "clone", "-c", "core.fsmonitor=touch pwned", "src", "dst"], "run a command"),
    (["git", "clone", "--config", "core.fsmonitor=touch pwned", "src", "dst"], "run a command"),
    (["git", "clone", "--template=src", "src", "dst"], "run a command"),
    (["git", "rebase", "-x", "touch pwned", "HEAD~1"], "run a command"),
    (["git", "rebase", "--exec=touch pwned", "HEAD~1"], "run a command"),
    (["git", "grep", "-O", "x"], "run a command"),
    (["git", "ls-remote", "ext::sh -c touch% pwned"], "transport"),
    (["git", "clone", "fd::3", "x"], "transport"),
    # paths
    (["cat", "/etc/passwd"], "outside the workspace"),
    (["cat", "../ws-evil/x"], "outside the workspace"),
    (["cat", "src/../../ws-evil/x"], "outside the workspace"),
    (["ls", "--directory=/etc"], "outside the workspace"),
    (["git", "-C", "..", "status"], "outside the workspace"),
    (["git", "-C", "/", "status"], "outside the workspace"),
    (["cat", ".git/config"], "inside `.git`"),
    (["touch", "src/.git/hooks/pre-commit"], "inside `.git`"),
    (["cat", "a\x00b"], "NUL"),
    ([], "empty"),
]


@pytest.mark.parametrize(("argv", "why"), DENIED, ids=[" ".join(a)[:40] or "empty" for a, _ in DENIED])
def test_refused(ws: Path, argv: list[str], why: str) -> None:
    reason = check(argv, PROGRAMS, str(ws))
    assert reason is not None, argv
    assert why in reason


def test_prefix_sibling_and_symlinks_out_are_outside(ws: Path) -> None:
    evil = ws.parent / "ws-evil"
    (ws / "out").symlink_to(evil)
    assert "outside" in (check(["cat", f"{evil}/x"], PROGRAMS, str(ws)) or "")
    assert "outside" in (check(["cat", "out/x"], PROGRAMS, str(ws)) or "")
    assert "outside" in (check(["touch", "--reference=out/x", "y"], PROGRAMS, str(ws)) or "")


ALLOWED = [
    ["ls", "-la", "src"],
    ["grep", "-rn", "foo|bar", "src"],  # `|` inside an argument is just a character
    ["grep", "-n", "<div", "index.html"],
    ["grep", "-c", "a;b", "x"],
    ["find", ".", "-name", "*.py", "-type", "f"],
    ["find", ".", "(", "-name", "a", "-o", "-name", "b", ")"],
    ["git", "log", "-n", "5", "--oneline"],
    ["git", "-C", "src", "status"],
    ["git", "commit", "-m", "fix: it"],
    ["git", "cherry-pick", "-x", "abc123"],
    ["git", "add", "-u"],
    ["git", "add", ".gitignore", ".github/workflows/ci.yml"],
    ["git", "diff", "--output=out.diff"],
    ["git", "clone", "https://example.com/x/y.git", "y"],
    ["python3", "script.py", "--verbose"],
    ["python3", "-m", "pytest", "-q"],
    ["perl", "script.pl"],
    ["node", "app.js"],
    ["awk", "-f", "prog.awk", "data.txt"],
    ["sed", "-n", "1,5p", "src/a.py"],
    ["sed", "-i", "s/a/b/g", "x"],
    ["tar", "-xzf", "a.tar.gz"],
    ["tar", "czf", "a.tgz", "src"],
    ["sort", "-u", "x"],
    ["wc", "-l", "/dev/null"],
    ["head", "-n", "3", "README.md"],
]


@pytest.mark.parametrize("argv", ALLOWED, ids=[" ".join(a)[:40] for a in ALLOWED])
def test_ordinary_commands_pass(ws: Path, argv: list[str]) -> None:
    assert check(argv, PROGRAMS, str(ws)) is None


def test_absolute_paths_inside_the_workspace_pass(ws: Path) -> None:
    assert check(["ls", str(ws / "src")], PROGRAMS, str(ws)) is None
    assert check(["ls", str(ws)], PROGRAMS, str(ws)) is None


def test_sed_always_runs_sandboxed() -> None:
    assert prepare(["sed", "-n", "1p", "x"]) == ["sed", "--sandbox", "-n", "1p", "x"]
    assert prepare(["ls", "-l"]) == ["ls", "-l"]


@pytest.mark.parametrize(
    "program", ["sh", "bash", "env", "xargs", "sudo", "busybox", "nohup", "setsid", "vim"]
)
def test_policy_refuses_to_allow_shells_and_launchers(tmp_path: Path, program: str) -> None:
    assert program in NEVER_ALLOWED
    with pytest.raises(ValueError, match=rf"tools\.shell\.allow\.1: `{program}` .* can never be allowed"):
        ToolPolicy.from_json({"shell": {"allow": ["ls", program]}}, str(tmp_path))
