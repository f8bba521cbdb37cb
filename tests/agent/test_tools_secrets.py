"""Secret-bearing files: the file tools refuse them unless a tool's options allow it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rnix.agent import tools
from rnix.agent.tools.policy import ToolPolicy
from rnix.agent.tools.secretfiles import is_secret


@pytest.mark.parametrize(
    "path",
    [".env", ".env.local", "certs/server.pem", "tls.key", "id_rsa", "home/.ssh/config", ".aws/credentials",
     ".netrc", ".npmrc", ".pypirc", ".git-credentials", ".gnupg/pubring.kbx"],
)  # fmt: skip
def test_secret_bearing_paths(path: str) -> None:
    assert is_secret(tuple(path.split("/")))


@pytest.mark.parametrize("path", ["env.py", "README.md", "id_rsa.pub", "keys/notes.txt", "src/.envrc.md"])
def test_ordinary_paths(path: str) -> None:
    assert not is_secret(tuple(path.split("/")))


def policy(workspace: Path, **options: object) -> ToolPolicy:
    return ToolPolicy.from_json(
        {"read_file": options, "grep": options, "write_file": options, "list_dir": {}}, str(workspace)
    )


def test_read_grep_and_write_refuse_secret_files_by_default(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("OPENAI_API_KEY=sk-live-123\n")
    (tmp_path / "server.key").write_text("sk-live-123\n")
    (tmp_path / "notes.txt").write_text("no key here\n")
    p = policy(tmp_path)
    read = tools.execute(p, "read_file", '{"path": ".env"}')
    assert read.denied and "sk-live" not in read.output and "allow_secrets" in read.output
    found = tools.execute(p, "grep", '{"pattern": "live-1"}')
    assert found.output.startswith("no matches")  # neither .env nor server.key was searched
    assert tools.execute(p, "grep", '{"pattern": "x", "path": "server.key"}').denied
    assert tools.execute(p, "write_file", '{"path": ".env", "content": "X=1"}').denied
    assert (tmp_path / ".env").read_text() == "OPENAI_API_KEY=sk-live-123\n"
    assert ".env" in tools.execute(p, "list_dir", "{}").output  # a name is not a secret


def test_a_tool_can_opt_in(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("DEBUG=1\n")
    opened = tools.execute(policy(tmp_path, allow_secrets=True), "read_file", '{"path": ".env"}')
    assert not opened.denied and "DEBUG=1" in opened.output
    with pytest.raises(ValueError, match="allow_secrets: must be true or false"):
        policy(tmp_path, allow_secrets="yes")


def shell_policy(workspace: Path, **options: object) -> ToolPolicy:
    return ToolPolicy.from_json({"shell": {"allow": ["cat", "wc"], **options}}, str(workspace))


@pytest.mark.parametrize(
    "argv", [["cat", ".env"], ["cat", "./sub/../.env.local"], ["wc", "--files0-from=.env"], ["cat", "link"]]
)
def test_shell_refuses_arguments_naming_secret_files(tmp_path: Path, argv: list[str]) -> None:
    (tmp_path / ".env").write_text("OPENAI_API_KEY=sk-live-123\n")
    (tmp_path / ".env.local").write_text("OPENAI_API_KEY=sk-live-123\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / ".env")  # an innocent name that resolves to the key
    ran = tools.execute(shell_policy(tmp_path), "shell", json.dumps({"argv": argv}))
    assert ran.denied and "sk-live" not in ran.output and "allow_secrets" in ran.output


def test_shell_runs_ordinary_arguments_and_opts_in(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("DEBUG=1\n")
    (tmp_path / "notes.txt").write_text("hello\n")
    assert "hello" in tools.execute(shell_policy(tmp_path), "shell", '{"argv": ["cat", "notes.txt"]}').output
    opened = tools.execute(shell_policy(tmp_path, allow_secrets=True), "shell", '{"argv": ["cat", ".env"]}')
    assert not opened.denied and "DEBUG=1" in opened.output
