"""An RNIX_HOME that cannot hold rnix's state: a clear error (exit 3) naming the path, never "a bug".

Real `rnix` processes. A full or read-only filesystem is a tiny tmpfs mounted in a private mount
namespace (`unshare -m`, so nothing is mounted for anyone else and it vanishes with the namespace);
root ignores file modes, so read-only is a read-only mount, not a chmod. Checked: the exit status,
one `rnix: error:` line naming the path and the cause, no traceback, no agent left running, and
that reads (`compose ps -a`, `ps -a`, `compose ls`, `reputation`, `log`) still work on the full disk.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.conftest import RNIX, RunRnix
from tests.procs import marked_pids, wait_marked_gone
from tests.teams import agent

STATE = 3  # ExitCode.STATE


def _can_mount() -> str | None:
    """Why a private tmpfs cannot be mounted here (None: it can)."""
    try:
        probe = subprocess.run(
            ["unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unshare is not available: {exc}"
    return None if probe.returncode == 0 else f"unshare -m / mount not permitted: {probe.stderr.strip()}"


NO_MOUNT = _can_mount()
needs_mount = pytest.mark.skipif(NO_MOUNT is not None, reason=NO_MOUNT or "")


def _compose(folder: Path, agents: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "compose.yaml").write_text(f"name: home\nagents:\n{agents}")
    return folder


def _one_error_line(stderr: str, *needles: str) -> str:
    assert "Traceback" not in stderr and "internal error" not in stderr and "bug in rnix" not in stderr
    errors = [line for line in stderr.splitlines() if line.startswith("rnix: error:")]
    assert len(errors) == 1, stderr
    for needle in needles:
        assert needle in errors[0], stderr
    return errors[0]


def _in_namespace(script: str, tmp_path: Path, env: dict[str, str], timeout: float = 90) -> str:
    """Run `script` (sh) in a private mount namespace; returns its stdout (asserting it succeeded)."""
    result = subprocess.run(
        ["unshare", "-m", "sh", "-eu", "-c", script],
        cwd=tmp_path,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def _started_agent(flag: Path) -> str:
    """An agent that leaves `flag` when it runs: the proof that it was (not) started."""
    code = f"open({str(flag)!r}, 'w').close()"
    return f"  a:\n    intent: leave a mark\n    command: {json.dumps([sys.executable, '-c', code])}\n"


@pytest.mark.parametrize("under", [False, True], ids=["a-file", "under-a-file"])
def test_home_that_is_a_file(rnix: RunRnix, tmp_path: Path, under: bool) -> None:
    flag = tmp_path / "started"
    folder = _compose(tmp_path / "project", _started_agent(flag))
    blocker = tmp_path / "home-file"
    blocker.write_text("")
    home = blocker / "state" if under else blocker
    up = rnix("compose", "up", cwd=folder, env={"RNIX_HOME": str(home)})
    assert up.returncode == STATE, up.stderr
    _one_error_line(up.stderr, str(home), "is not a directory")
    assert "hint:" in up.stderr and "RNIX_HOME" in up.stderr
    assert not flag.exists(), "an agent ran"


@needs_mount
def test_read_only_home(tmp_path: Path) -> None:
    flag = tmp_path / "started"
    folder = _compose(tmp_path / "project", _started_agent(flag))
    mnt = tmp_path / "ro"
    mnt.mkdir()
    script = f"""
        mount -t tmpfs -o size=1m tmpfs {mnt}
        mkdir {mnt}/home
        mount -o remount,ro {mnt}
        for home in {mnt}/home {mnt}/home/new; do
            cd {folder}
            set +e; RNIX_HOME=$home {RNIX} compose up 2>&1; echo "rc=$?"; set -e
        done
    """
    out = _in_namespace(script, tmp_path, {})
    assert out.count(f"rc={STATE}") == 2, out
    for home in (mnt / "home", mnt / "home" / "new"):
        (line,) = [x for x in out.splitlines() if x.startswith("rnix: error:") and f"{home} " in x]
        _one_error_line(line, "read-only")
    assert not flag.exists(), "an agent ran"


@needs_mount
def test_full_disk_at_start(tmp_path: Path) -> None:
    """`up` refuses at once (no 10 s wait) and starts nothing; reads keep working on the full disk."""
    flag = tmp_path / "started"
    folder = _compose(tmp_path / "project", _started_agent(flag))
    mnt = tmp_path / "full"
    mnt.mkdir()
    home = mnt / "home"
    out = tmp_path / "out"
    out.mkdir()
    script = f"""
        mount -t tmpfs -o size=4m tmpfs {mnt}
        cd {folder}
        {RNIX} compose up >/dev/null 2>&1
        rm {flag}
        dd if=/dev/zero of={mnt}/fill bs=4k 2>/dev/null || true
        start=$(date +%s.%N)
        set +e; {RNIX} compose up >{out}/up.out 2>{out}/up.err; echo $? >{out}/up.rc; set -e
        echo "$start $(date +%s.%N)" >{out}/up.time
        for cmd in "compose ps -a --json" "ps -a --json" "compose ls --json" "reputation --json"; do
            name=$(echo $cmd | tr ' ' _)
            set +e; {RNIX} $cmd >{out}/$name.out 2>{out}/$name.err; echo $? >{out}/$name.rc; set -e
        done
        pid=$({RNIX} compose ps -a -q)
        set +e; {RNIX} log $pid >{out}/log.out 2>{out}/log.err; echo $? >{out}/log.rc; set -e
    """
    _in_namespace(script, tmp_path, {"RNIX_HOME": str(home)})
    assert (out / "up.rc").read_text().strip() == str(STATE), (out / "up.err").read_text()
    _one_error_line((out / "up.err").read_text(), str(home), "full")
    start, end = map(float, (out / "up.time").read_text().split())
    assert end - start < 5, f"took {end - start:.1f} s"  # the CLI's start-up; it used to wait 10 s more
    assert not flag.exists(), "an agent ran on a full disk"
    for name in ("compose_ps_-a_--json", "ps_-a_--json", "compose_ls_--json", "reputation_--json"):
        assert (out / f"{name}.rc").read_text().strip() == "0", (out / f"{name}.err").read_text()
        assert "Traceback" not in (out / f"{name}.err").read_text()
        json.loads((out / f"{name}.out").read_text())
    (row,) = json.loads((out / "compose_ps_-a_--json.out").read_text())["data"]["processes"]
    assert row["state"] == "completed"
    assert (out / "log.rc").read_text().strip() == "0", (out / "log.err").read_text()


@needs_mount
def test_disk_fills_mid_run(tmp_path: Path) -> None:
    """The run stops its agents gracefully, exits 3 within about a second and `compose ps -a` shows
    a consistent end: no agent left running, nothing recorded as running either."""
    marker = uuid.uuid4().hex
    go = tmp_path / "go"
    ready = tmp_path / "ready"
    ready.mkdir()
    wait_go = f"touch {ready}/quick; while [ ! -e {go} ]; do sleep 0.05; done"
    sleep = f"touch {ready}/slow; exec {shlex.join(json.loads(agent('sleeper.py', '60')))}"
    folder = _compose(
        tmp_path / "project",
        f"  slow:\n    intent: sleep\n    command: {json.dumps(['sh', '-c', sleep])}\n"
        f"  quick:\n    intent: wait\n    command: {json.dumps(['sh', '-c', wait_go])}\n"
        f"  after:\n    intent: then\n    depends_on: [quick]\n    command: {agent('succeed.py')}\n",
    )
    mnt = tmp_path / "full"
    mnt.mkdir()
    home = mnt / "home"
    out = tmp_path / "out"
    out.mkdir()
    ps = f"{RNIX} compose ps -a --json"
    script = f"""
        mount -t tmpfs -o size=4m tmpfs {mnt}
        cd {folder}
        {RNIX} compose up >{out}/up.out 2>{out}/up.err &
        up=$!
        until [ -e {ready}/slow ] && [ -e {ready}/quick ]; do sleep 0.05; done
        dd if=/dev/zero of={mnt}/fill bs=4k 2>/dev/null || true
        start=$(date +%s.%N)
        touch {go}
        set +e; wait $up; echo $? >{out}/up.rc; set -e
        echo "$start $(date +%s.%N)" >{out}/up.time
        set +e; {ps} >{out}/ps.out 2>{out}/ps.err; echo $? >{out}/ps.rc; set -e
    """
    try:
        _in_namespace(script, tmp_path, {"RNIX_HOME": str(home), "RNIX_TEST_MARKER": marker})
    finally:
        left = wait_marked_gone(marker, 5)
    assert left == [], f"agents outlived the run: {left}"
    err = (out / "up.err").read_text()
    assert (out / "up.rc").read_text().strip() == str(STATE), err
    _one_error_line(err, str(home / "rnix.db"), "full", "stopped")
    start, end = map(float, (out / "up.time").read_text().split())
    assert end - start < 3, f"took {end - start:.1f} s to stop"
    assert (out / "ps.rc").read_text().strip() == "0", (out / "ps.err").read_text()
    assert "Traceback" not in (out / "ps.err").read_text()
    data = json.loads((out / "ps.out").read_text())["data"]
    states = {row["agent"]: row["state"] for row in data["processes"]}
    assert set(states) == {"slow", "quick", "after"}
    assert not {"running", "pending", "paused"} & set(states.values()), states
    assert all(run["status"] != "running" for run in data["runs"]), data["runs"]
    assert marked_pids(marker) == []


@needs_mount
def test_reads_on_a_read_only_home_show_a_lost_run_without_recording_it(tmp_path: Path) -> None:
    """`compose ps -a` records a run whose supervisor was killed as lost; on a read-only filesystem
    it still shows it as lost (from a copy in memory) and says that it could not record it."""
    marker = uuid.uuid4().hex
    ready = tmp_path / "ready"
    sleep = f"touch {ready}; exec {shlex.join(json.loads(agent('sleeper.py', '60')))}"
    folder = _compose(
        tmp_path / "project", f"  slow:\n    intent: sleep\n    command: {json.dumps(['sh', '-c', sleep])}\n"
    )
    mnt = tmp_path / "ro"
    mnt.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    ps = f"{RNIX} compose ps -a --json"
    script = f"""
        mount -t tmpfs -o size=4m tmpfs {mnt}
        cd {folder}
        RNIX_TEST_MARKER={marker} {RNIX} compose up >/dev/null 2>&1 &
        up=$!
        until {ps} 2>/dev/null | grep -q '"state": "running"'; do sleep 0.05; done
        for f in $(grep -l "RNIX_TEST_MARKER={marker}" /proc/[0-9]*/environ 2>/dev/null); do
            pid=${{f#/proc/}}; kill -9 ${{pid%/environ}} 2>/dev/null || true
        done
        wait $up || true
        sleep 0.3
        mount -o remount,ro {mnt}
        for n in 1 2; do
            set +e; {ps} >{out}/ps$n.out 2>{out}/ps$n.err; echo $? >{out}/ps$n.rc; set -e
        done
    """
    try:
        _in_namespace(script, tmp_path, {"RNIX_HOME": str(mnt / "home")})
    finally:
        left = wait_marked_gone(marker, 5)
    assert left == []
    for n in (1, 2):  # the second sees the same: nothing was recorded
        err = (out / f"ps{n}.err").read_text()
        assert (out / f"ps{n}.rc").read_text().strip() == "0", err
        assert "Traceback" not in err and "read-only" in err and "not recorded" in err
        data = json.loads((out / f"ps{n}.out").read_text())["data"]
        assert [run["status"] for run in data["runs"]] == ["lost"]
        assert [row["state"] for row in data["processes"]] == ["cancelled"]


@needs_mount
def test_disk_fills_during_a_model_call(tmp_path: Path) -> None:
    """A built-in agent's answered call cannot be journalled: the run stops just the same, without
    a traceback from the gateway."""
    marker = uuid.uuid4().hex
    ready = tmp_path / "ready"
    sleep = f"touch {ready}; exec {shlex.join(json.loads(agent('sleeper.py', '60')))}"
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "compose.yaml").write_text(
        "name: home\nmodel: mock?latency=3s\nagents:\n"
        f"  slow:\n    intent: sleep\n    command: {json.dumps(['sh', '-c', sleep])}\n"
        "  talk:\n    intent: answer slowly\n"
    )
    mnt = tmp_path / "full"
    mnt.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    script = f"""
        mount -t tmpfs -o size=4m tmpfs {mnt}
        cd {folder}
        {RNIX} compose up >{out}/up.out 2>{out}/up.err &
        up=$!
        until [ -e {ready} ]; do sleep 0.05; done
        dd if=/dev/zero of={mnt}/fill bs=4k 2>/dev/null || true
        set +e; wait $up; echo $? >{out}/up.rc; set -e
        set +e; {RNIX} compose ps -a --json >{out}/ps.out 2>{out}/ps.err; echo $? >{out}/ps.rc; set -e
    """
    try:
        _in_namespace(script, tmp_path, {"RNIX_HOME": str(mnt / "home"), "RNIX_TEST_MARKER": marker})
    finally:
        left = wait_marked_gone(marker, 5)
    assert left == [], f"agents outlived the run: {left}"
    err = (out / "up.err").read_text()
    assert (out / "up.rc").read_text().strip() == str(STATE), err
    _one_error_line(err, str(mnt / "home" / "rnix.db"), "full", "stopped")
    assert (out / "ps.rc").read_text().strip() == "0", (out / "ps.err").read_text()
    states = {
        row["agent"]: row["state"] for row in json.loads((out / "ps.out").read_text())["data"]["processes"]
    }
    assert set(states) == {"slow", "talk"}
    assert not {"running", "pending", "paused"} & set(states.values()), states
