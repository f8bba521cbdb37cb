"""Keys readable by agents: the supervisor (which holds the provider keys) is not dumpable, so an
agent running as the same user can neither read its /proc environ nor ptrace it, and no process an
agent can read holds a key (rnix.supervisor.procinfo.make_undumpable).

`rnix` runs without any capability (so that, started by root as in CI, it and its agents are what
an ordinary user's processes are: uid 0 without CAP_SYS_PTRACE or CAP_DAC_OVERRIDE). Then a process
may read another's environ or trace it only when the target is dumpable, which is the rule the
supervisor relies on; the agent's own check shows that other processes of the user stay readable.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import RNIX

CANARY = "sk-canary-3f9a1c0d77e2"
SNOOP = Path(__file__).parents[1] / "fixtures" / "agents" / "snoop_ancestors.py"


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [(name, ctypes.c_uint32) for name in ("effective", "permitted", "inheritable")]


def _without_capabilities() -> None:
    """preexec_fn: empty the bounding set (so exec grants none), then drop what we hold."""
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in range(64):
        libc.prctl(24, capability, 0, 0, 0)  # PR_CAPBSET_DROP; EINVAL past the last one
    if libc.capset(ctypes.byref(_CapHeader(0x20080522, 0)), (_CapData * 2)()) != 0:
        raise OSError(ctypes.get_errno(), "capset")


def test_the_flag_can_be_cleared_and_read_back() -> None:
    child = subprocess.run(
        [sys.executable, "-c",
         "from rnix.supervisor import procinfo as p; a = p.is_dumpable(); p.make_undumpable(); "
         "print(a, p.is_dumpable())"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert child.stdout.split() == ["True", "False"]


def test_an_agent_of_the_same_user_cannot_read_or_trace_the_supervisor(tmp_path: Path) -> None:
    shutil.copy(SNOOP, tmp_path / "snoop.py")
    (tmp_path / "compose.yaml").write_text(
        f"agents:\n  snoop:\n    intent: find a key\n    command: [{sys.executable}, snoop.py, {CANARY}]\n"
    )
    with subprocess.Popen(
        [RNIX, "compose", "up", "--json"],
        cwd=tmp_path,
        env={**os.environ, "OPENAI_API_KEY": CANARY},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_without_capabilities,
    ) as up:
        stdout, stderr = up.communicate(timeout=60)
    assert up.returncode == 0, stderr
    findings = json.loads(json.loads(stdout)["data"]["agents"][0]["result"])
    own, ancestors = findings[0], {seen["pid"]: seen for seen in findings[1:]}
    assert own["self"] and not own["canary"]  # the agent's own environment holds no key
    supervisor = ancestors[up.pid]  # `rnix compose up` is an ancestor of its agent
    assert not supervisor["environ"] and not supervisor["ptrace"], supervisor
    # Between them (the fork server, the agent's leader) and above (this test): readable, keyless.
    assert [pid for pid, seen in ancestors.items() if seen["canary"]] == []
    assert any(seen["environ"] for pid, seen in ancestors.items() if pid != up.pid)  # the check can see
