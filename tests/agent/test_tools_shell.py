"""The shell tool with real processes: bypasses are denied and never run, allowed commands run
confined (minimal environment, workspace cwd, own process group), and nothing is left running.

Each bypass case is an argv that, run directly, creates the file `pwned` in its working directory:
the test first proves that (in a scratch directory), then runs it through the tool and asserts the
call was denied and no `pwned` appeared.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from rnix.agent.tools import ToolPolicy, ToolResult, execute
from rnix.agent.tools.policy import ShellTool
from tests.fixtures import ROOT, new_marker
from tests.procs import marked_pids, wait_marked_gone

PLAIN_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "notes.txt").write_text("one\ntwo\n")
    return ws


def forced(ws: Path, *allow: str, timeout: float = 10, max_output: int = 65536) -> ToolPolicy:
    """A policy with exactly `allow`, even names from_json would refuse (to test the runtime check)."""
    shell = ShellTool(allow=allow, timeout=timeout, max_output=max_output)
    return ToolPolicy(workspace=os.path.realpath(ws), shell=shell)


def run(p: ToolPolicy, argv: Any) -> ToolResult:
    return execute(p, "shell", json.dumps({"argv": argv}))


BYPASSES = [
    (["find", ".", "-maxdepth", "0", "-exec", "touch", "pwned", "{}", "+"], "-exec"),
    (["find", ".", "-maxdepth", "0", "-execdir", "touch", "pwned", "{}", "+"], "-execdir"),
    (["find", ".", "-maxdepth", "0", "-fprint", "pwned"], "-fprint"),
    (["find", ".", "-maxdepth", "0", "-fprintf", "pwned", "%p"], "-fprintf"),
    (["find", ".", "-maxdepth", "0", "-fls", "pwned"], "-fls"),
    (["sh", "-c", "touch pwned"], "is a shell"),
    (["bash", "-c", "touch pwned"], "is a shell"),
    (["dash", "-c", "touch pwned"], "is a shell"),
    (["env", "touch", "pwned"], "runs another program"),
    (["nice", "touch", "pwned"], "runs another program"),
    (["nohup", "touch", "pwned"], "runs another program"),
    (["timeout", "5", "touch", "pwned"], "runs another program"),
    (["stdbuf", "-o0", "touch", "pwned"], "runs another program"),
    (["xargs", "touch", "pwned"], "runs another program"),
    (["setsid", "touch", "pwned"], "runs another program"),
    (["git", "-c", "alias.x=!touch pwned", "x"], "sets configuration"),
    (["git", "ls-remote", "--upload-pack=touch pwned", "."], "program for git to run"),
    (["python3", "-c", "open('pwned', 'w')"], "program text"),
    (["python3", "-Ic", "open('pwned', 'w')"], "program text"),
    (["perl", "-e", "open(F, '>pwned')"], "program text"),
    (["perl", "-E", "open(F, '>pwned')"], "program text"),
    (["node", "-e", "require('fs').writeFileSync('pwned', '')"], "program text"),
    (["node", "--eval=require('fs').writeFileSync('pwned', '')"], "program text"),
    (["awk", 'BEGIN { system("touch pwned") }'], "awk is treated as an interpreter"),
    (["touch", "pwned", ">", "x"], "no shell is used"),
    (["touch", "pwned", ">>", "x"], "no shell is used"),
    (["touch", "pwned", "<", "x"], "no shell is used"),
    (["touch", "pwned", "2>/dev/null"], "no shell is used"),
    (["touch", "pwned", "|", "cat"], "no shell is used"),
    (["touch", "pwned", ";"], "no shell is used"),
    (["touch", "pwned", "&&", "ls"], "no shell is used"),
    (["touch", "pwned", "||", "ls"], "no shell is used"),
    (["touch", "pwned", "$(id)"], "substitution"),
    (["touch", "pwned", "`id`"], "substitution"),
    (["/usr/bin/touch", "pwned"], "bare name"),
]


@pytest.mark.parametrize(("argv", "why"), BYPASSES, ids=[" ".join(a)[:50] for a, _ in BYPASSES])
def test_bypass_is_denied_and_does_not_run(ws: Path, tmp_path: Path, argv: list[str], why: str) -> None:
    proof = tmp_path / "proof"
    proof.mkdir()
    subprocess.run(argv, cwd=proof, env={**PLAIN_ENV, "HOME": str(proof)}, stdin=subprocess.DEVNULL,
                   capture_output=True, timeout=30)  # fmt: skip
    assert (proof / "pwned").exists(), f"not a real bypass here: {argv}"

    program = os.path.basename(argv[0])
    result = run(forced(ws, program, "touch"), argv)
    assert result.denied and not result.ok
    assert why in result.output
    assert result.summary.startswith("DENIED shell ")
    assert not (ws / "pwned").exists()
    assert sorted(os.listdir(ws)) == ["notes.txt"]


def test_find_delete_is_denied_and_deletes_nothing(ws: Path) -> None:
    result = run(forced(ws, "find"), ["find", ".", "-name", "notes.txt", "-delete"])
    assert result.denied and "-delete" in result.output
    assert (ws / "notes.txt").exists()


def test_paths_outside_the_workspace_are_denied_and_nothing_is_created(ws: Path, tmp_path: Path) -> None:
    evil = tmp_path / "ws-evil"
    evil.mkdir()
    (ws / "link").symlink_to(evil)
    p = forced(ws, "touch")
    for argv in (["touch", str(evil / "pwned")], ["touch", "../ws-evil/pwned"], ["touch", "link/pwned"]):
        result = run(p, argv)
        assert result.denied and "outside the workspace" in result.output
    assert os.listdir(evil) == []


def test_dotfiles_in_the_workspace_do_not_configure_programs(ws: Path) -> None:
    """HOME is a fresh empty directory: a `.gitconfig` the agent wrote is not git's global config."""
    subprocess.run(["git", "init", "-q"], cwd=ws, check=True, env={**PLAIN_ENV, "HOME": str(ws)})
    (ws / ".gitconfig").write_text("[alias]\n\tx = !touch pwned\n")
    result = run(forced(ws, "git"), ["git", "x"])
    assert not result.ok and not result.denied
    assert "'x' is not a git command" in result.output
    assert not (ws / "pwned").exists()


def test_an_embedded_bare_repository_cannot_bring_its_own_config(ws: Path) -> None:
    """Files the agent may write (not inside `.git`) that form a bare repository whose config
    defines an alias: git must refuse to use it (safe.bareRepository=explicit)."""
    p = ToolPolicy.from_json({"write_file": {}, "shell": {"allow": ["git"]}}, str(ws))
    for path, content in (
        ("evil/HEAD", "ref: refs/heads/main\n"),
        (
            "evil/config",
            "[core]\n\trepositoryformatversion = 0\n\tbare = true\n[alias]\n\tx = !touch pwned\n",
        ),
        ("evil/objects/.keep", ""),
        ("evil/refs/.keep", ""),
    ):
        assert execute(p, "write_file", json.dumps({"path": path, "content": content})).ok
    result = run(p, ["git", "-C", "evil", "x"])
    assert not result.ok and not (ws / "evil" / "pwned").exists()


def test_sed_cannot_run_commands(ws: Path) -> None:
    result = run(forced(ws, "sed"), ["sed", "-n", "1e touch pwned", "notes.txt"])
    assert not result.ok and not result.denied
    assert "sandbox" in result.output
    assert not (ws / "pwned").exists()


def test_allowed_command_runs_with_the_minimal_environment(ws: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FOO_API_KEY", "canary-1234")
    monkeypatch.setenv("RNIX_GATEWAY", "/tmp/gateway.sock")
    result = run(forced(ws, "printenv"), ["printenv"])
    assert result.ok and not result.denied
    *lines, status = result.output.splitlines()
    assert status == "[exit status 0]"
    env = dict(line.split("=", 1) for line in lines)
    assert sorted(env) == ["HOME", "LANG", "PATH"]
    assert env["PATH"] == "/usr/local/bin:/usr/bin:/bin" and env["LANG"] == "C.UTF-8"
    assert env["HOME"] != str(ws) and not os.path.exists(env["HOME"])  # fresh, and removed after
    assert "canary" not in result.output
    assert result.summary.startswith("shell printenv -> exit 0, ")


def test_runs_in_the_workspace_with_stdin_from_dev_null(ws: Path) -> None:
    p = forced(ws, "pwd", "cat")
    assert run(p, ["pwd"]).output == f"{os.path.realpath(ws)}\n[exit status 0]"
    started = time.monotonic()
    assert run(p, ["cat"]).output == "(no output)\n[exit status 0]"
    assert time.monotonic() - started < 5


def test_a_command_line_string_is_split_without_a_shell(ws: Path) -> None:
    p = forced(ws, "wc", "ls")
    assert run(p, "wc -l 'notes.txt'").output == "2 notes.txt\n[exit status 0]"
    assert run(p, "ls > out").denied
    bad = run(p, "wc 'unbalanced")
    assert not bad.ok and not bad.denied and "cannot split" in bad.output


def test_non_zero_exit_is_reported_not_denied(ws: Path) -> None:
    result = run(forced(ws, "ls"), ["ls", "missing-file"])
    assert not result.ok and not result.denied
    assert result.output.endswith("[exit status 2]")
    assert "missing-file" in result.output
    assert result.summary.startswith("shell ls missing-file -> exit 2")


def test_allowed_but_not_installed(ws: Path) -> None:
    result = run(forced(ws, "no-such-program-rnix"), ["no-such-program-rnix"])
    assert not result.ok and not result.denied and "not installed" in result.output


def test_output_is_capped_and_the_rest_counted(ws: Path) -> None:
    result = run(forced(ws, "seq", max_output=1000), ["seq", "1", "100000"])
    assert result.ok
    body, truncated, status = result.output.rsplit("\n", 2)
    assert len(body.encode()) <= 1000 and body.startswith("1\n2\n3\n")
    assert truncated == "[output truncated: showed the first 1,000 of 588,895 bytes]"
    assert status == "[exit status 0]"


SPAWNER = """
import os, subprocess, sys
env = {"RNIX_TEST_MARKER": sys.argv[1]}
subprocess.Popen(["/bin/sleep", "60"], env=env)  # a grandchild, holding the output pipe
if sys.argv[2] == "exec":
    os.execve("/bin/sleep", ["sleep", "60"], env)  # the command itself keeps running
"""


def test_timeout_kills_the_whole_process_group(ws: Path) -> None:
    (ws / "spawner.py").write_text(SPAWNER)
    marker = new_marker()
    started = time.monotonic()
    result = run(forced(ws, "python3", timeout=1), ["python3", "spawner.py", marker, "exec"])
    elapsed = time.monotonic() - started
    assert not result.ok and not result.denied
    assert result.output.endswith("[timed out after 1 s: the command and everything it started were killed]")
    assert result.summary.startswith("shell python3 spawner.py") and "timed out after 1 s" in result.summary
    assert elapsed < 5
    assert wait_marked_gone(marker, 5) == []


def test_processes_left_behind_by_a_finished_command_are_killed(ws: Path) -> None:
    (ws / "spawner.py").write_text(SPAWNER)
    marker = new_marker()
    started = time.monotonic()
    result = run(forced(ws, "python3", timeout=30), ["python3", "spawner.py", marker, "return"])
    assert time.monotonic() - started < 5
    assert result.ok
    assert result.output.endswith("[exit status 0]\n[the command left processes running; they were killed]")
    assert wait_marked_gone(marker, 5) == []


AGENT = """
import json, sys
from rnix.agent.tools import ToolPolicy, execute
policy = ToolPolicy.from_json({"shell": {"allow": ["python3"], "timeout": 60}}, sys.argv[1])
execute(policy, "shell", json.dumps({"argv": ["python3", "sleeper.py", sys.argv[2]]}))
"""


def test_a_running_command_dies_with_its_agent(ws: Path, tmp_path: Path) -> None:
    """An agent SIGKILLed mid-command (no handler can run) still takes the command with it."""
    (ws / "sleeper.py").write_text(
        "import os, sys\nos.execve('/bin/sleep', ['sleep', '60'], {'RNIX_TEST_MARKER': sys.argv[1]})\n"
    )
    marker = new_marker()
    agent = subprocess.Popen(
        [sys.executable, "-c", AGENT, str(ws), marker],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": ROOT, "TMPDIR": str(tmp_path)},
    )
    try:
        deadline = time.monotonic() + 10
        while not marked_pids(marker):
            assert time.monotonic() < deadline, "the command never started"
            assert agent.poll() is None, "the agent ended early"
            time.sleep(0.05)
        agent.send_signal(signal.SIGKILL)
        agent.wait(5)
        assert wait_marked_gone(marker, 5) == []
    finally:
        agent.kill()
        agent.wait()


TERMINATED_AGENT = """
import json, os, signal, sys
from rnix.agent.tools import ToolPolicy, execute
from rnix.agent.tools.shell import kill_running

def on_term(signum, frame):
    kill_running()
    os._exit(143)

signal.signal(signal.SIGTERM, on_term)
policy = ToolPolicy.from_json({"shell": {"allow": ["python3"], "timeout": 60}}, sys.argv[1])
execute(policy, "shell", json.dumps({"argv": ["python3", "spawner.py", sys.argv[2], "exec"]}))
"""


def test_kill_running_stops_the_command_and_its_children(ws: Path, tmp_path: Path) -> None:
    """What the agent loop's SIGTERM handler calls: the whole group goes, grandchildren included."""
    (ws / "spawner.py").write_text(SPAWNER)
    marker = new_marker()
    agent = subprocess.Popen(
        [sys.executable, "-c", TERMINATED_AGENT, str(ws), marker],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": ROOT, "TMPDIR": str(tmp_path)},
    )
    try:
        deadline = time.monotonic() + 10
        while len(marked_pids(marker)) < 2:
            assert time.monotonic() < deadline, "the command and its child never started"
            time.sleep(0.05)
        agent.send_signal(signal.SIGTERM)
        assert agent.wait(5) == 143
        assert wait_marked_gone(marker, 5) == []
        assert list(tmp_path.glob("rnix-home-*")) == []  # its HOME went with it
    finally:
        agent.kill()
        agent.wait()


@pytest.mark.parametrize(
    ("argv", "message"),
    [([], "argv is empty"), (["ls", 1], "argv must be a list of strings"), ("", "argv is empty")],
)
def test_malformed_argv_is_a_failure_not_a_denial(ws: Path, argv: Any, message: str) -> None:
    result = run(forced(ws, "ls"), argv)
    assert not result.ok and not result.denied
    assert message in result.output
