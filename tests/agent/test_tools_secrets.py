"""Secret-bearing files: every tool refuses them by default, `allow_secrets` opts one tool in."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from rnix.agent.tools import ToolPolicy, execute
from rnix.agent.tools.secretfiles import secret_reason

CANARY = "sk-canary-0123456789"


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    (ws / "src").mkdir(parents=True)
    (ws / ".env").write_text(f"OPENAI_API_KEY={CANARY}\n")
    (ws / "server.pem").write_text(f"-----BEGIN PRIVATE KEY----- {CANARY}\n")
    (ws / "src" / "app.py").write_text("print('hello')\n")
    (ws / "notes.txt").symlink_to(".env")
    return ws


def policy(ws: Path, **tools: dict[str, Any]) -> ToolPolicy:
    return ToolPolicy.from_json(tools, str(ws))


@pytest.mark.parametrize(
    "path",
    [".env", ".env.local", ".envrc", "a/b/server.pem", "tls.KEY", "id_rsa", "id_ed25519", "id_rsa_work",
     ".netrc", ".npmrc", ".pypirc", ".git-credentials", ".aws/credentials", ".ssh/config", ".gnupg/x", ".ssh"],
)
def test_secret_bearing_names(path: str) -> None:
    assert secret_reason(tuple(path.split("/"))) is not None


@pytest.mark.parametrize("path", ["README.md", "id_rsa.pub", "id_utils.py", "src/env.py", "keys.py", "monkey"])
def test_ordinary_names(path: str) -> None:
    assert secret_reason(tuple(path.split("/"))) is None


@pytest.mark.parametrize("path", [".env", "server.pem", "notes.txt", ".ssh/id_rsa"])
def test_read_file_refuses_with_a_way_to_opt_in(ws: Path, path: str) -> None:
    result = execute(policy(ws, read_file={}), "read_file", {"path": path})
    assert result.denied and CANARY not in result.output
    assert "holds secrets" in result.output and "allow_secrets: true" in result.output


def test_read_file_allow_secrets_reads_them(ws: Path) -> None:
    result = execute(policy(ws, read_file={"allow_secrets": True}), "read_file", {"path": ".env"})
    assert result.ok and CANARY in result.output


def test_grep_does_not_search_them_and_refuses_them_by_name(ws: Path) -> None:
    tools = policy(ws, grep={})
    walked = execute(tools, "grep", {"pattern": "canary|PRIVATE", "path": "."})
    assert walked.ok and CANARY not in walked.output and "holding secrets" in walked.output
    assert execute(tools, "grep", {"pattern": "x", "path": ".env"}).denied
    allowed = execute(policy(ws, grep={"allow_secrets": True}), "grep", {"pattern": "PRIVATE", "path": "."})
    assert CANARY in allowed.output


def test_list_dir_and_glob_show_names_only(ws: Path) -> None:
    listed = execute(policy(ws, list_dir={}), "list_dir", {})
    assert ".env" in listed.output and CANARY not in listed.output
    found = execute(policy(ws, glob={}), "glob", {"pattern": "*.pem"})
    assert "server.pem" in found.output


def test_write_file_refuses_and_opts_in(ws: Path) -> None:
    denied = execute(policy(ws, write_file={}), "write_file", {"path": ".ssh/authorized_keys", "content": "k"})
    assert denied.denied and not (ws / ".ssh").exists()
    assert execute(policy(ws, write_file={}), "write_file", {"path": ".env", "content": "x"}).denied
    ok = execute(policy(ws, write_file={"allow_secrets": True}), "write_file", {"path": ".env", "content": "x"})
    assert ok.ok and (ws / ".env").read_text() == "x"


def test_shell_refuses_an_argument_naming_one(ws: Path) -> None:
    denied = execute(policy(ws, shell={"allow": ["cat"]}), "shell", {"argv": ["cat", "notes.txt"]})
    assert denied.denied and CANARY not in denied.output and "allow_secrets" in denied.output
    ok = execute(policy(ws, shell={"allow": ["cat"], "allow_secrets": True}), "shell", {"argv": ["cat", ".env"]})
    assert ok.ok and CANARY in ok.output


def test_allow_secrets_must_be_a_boolean(ws: Path) -> None:
    with pytest.raises(ValueError, match="tools.read_file.allow_secrets: must be true or false"):
        policy(ws, read_file={"allow_secrets": "yes"})
