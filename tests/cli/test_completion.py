"""`rnix completion`: click's completion scripts, and completion answered by the installed rnix."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import RNIX, RunRnix


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_script_is_what_the_env_var_protocol_prints(rnix: RunRnix, shell: str) -> None:
    script = rnix("completion", shell)
    assert script.returncode == 0, script.stderr
    assert "_RNIX_COMPLETE" in script.stdout and f"{shell}_complete" in script.stdout
    via_env = rnix(env={"_RNIX_COMPLETE": f"{shell}_source"})
    assert via_env.returncode == 0
    assert script.stdout.rstrip("\n") == via_env.stdout.rstrip("\n")
    doc = json.loads(rnix("completion", shell, "--json").stdout)
    assert doc["data"] == {"shell": shell, "source": script.stdout}


def test_bash_script_parses(rnix: RunRnix, tmp_path: Path) -> None:
    script = tmp_path / "rnix.bash"
    script.write_text(rnix("completion", "bash").stdout)
    checked = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr


def test_unknown_shell_is_a_usage_error_listing_the_choices(rnix: RunRnix) -> None:
    result = rnix("completion", "tcsh")
    assert result.returncode == 2 and result.stdout == "" and "Traceback" not in result.stderr
    assert "'tcsh' is not one of 'bash', 'zsh', 'fish'" in result.stderr


def complete(words: str, cword: int) -> list[str]:
    env = {**os.environ, "COMP_WORDS": words, "COMP_CWORD": str(cword), "_RNIX_COMPLETE": "bash_complete"}
    out = subprocess.run([RNIX], env=env, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return out.stdout.splitlines()


def test_the_installed_rnix_answers_completion_requests() -> None:
    assert complete("rnix comp", 1) == ["plain,completion", "plain,compose"]
    assert complete("rnix compose gr", 2) == ["plain,graph"]
    assert complete("rnix compose graph --format ", 4) == ["plain,mermaid", "plain,dot", "plain,text"]


def test_bash_function_fills_compreply(rnix: RunRnix, tmp_path: Path) -> None:
    script = tmp_path / "rnix.bash"
    script.write_text(rnix("completion", "bash").stdout)
    probe = (
        f"source {script}; COMP_WORDS=(rnix comp); COMP_CWORD=1; "
        f'_rnix_completion {RNIX}; echo "${{COMPREPLY[@]}}"'
    )
    bash = shutil.which("bash")
    assert bash is not None
    out = subprocess.run([bash, "--norc", "-c", probe], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["completion", "compose"]
