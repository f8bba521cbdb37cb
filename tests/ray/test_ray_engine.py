"""`rnix compose up --engine ray` on a local Ray cluster of two simulated nodes (ray.cluster_utils).

The head node has the custom resource `head`, the other one `worker`: an agent that asks for one of
them lands there (RNIX_NODE, which the node agent gives every agent, says where it ran). Processes
are found by RNIX_TEST_MARKER: the agents inherit it from the supervisor's environment, the Ray
cluster (started by this test process) does not have it, so "no marked process left" means no
agent and no descendant of one, on any node.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import RNIX, RunRnix
from tests.procs import marked, marked_pids, wait_gone, wait_marked_gone
from tests.teams import wait_for

ray = pytest.importorskip("ray")
from ray.cluster_utils import Cluster  # noqa: E402

SECRET = "sk-rnix-test-" + "9" * 24


@pytest.fixture(scope="module")
def cluster() -> Iterator[dict[str, str]]:
    """Two nodes on this machine; yields the address and each node's name as rnix shows it."""
    env_before = os.environ.get("RAY_USAGE_STATS_ENABLED")
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    made = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "resources": {"head": 1}})
    try:
        worker = made.add_node(num_cpus=1, resources={"worker": 1})
        made.wait_for_nodes()
        yield {
            "address": made.address,
            "head": made.head_node.node_id[:8],
            "worker": worker.node_id[:8],
        }
    finally:
        made.shutdown()
        if env_before is None:
            os.environ.pop("RAY_USAGE_STATS_ENABLED", None)


marker = pytest.fixture(marked)


def write(tmp_path: Path, text: str, name: str = "cluster") -> Path:
    folder = tmp_path / name
    folder.mkdir(exist_ok=True)
    (folder / "compose.yaml").write_text(f"name: {name}\n{text}")
    return folder


def cmd(script: str) -> str:
    """A compose `command:` running `script` with this interpreter."""
    return json.dumps([sys.executable, "-c", script])


def up_env(marker: str, **extra: str) -> dict[str, str]:
    return {"RNIX_TEST_MARKER": marker, "OPENAI_API_KEY": SECRET, **extra}


def up(rnix: RunRnix, folder: Path, cluster: dict[str, str], marker: str, *extra: str) -> Any:
    """`rnix compose up --ray-address ... [EXTRA]` in `folder`, waited for."""
    return rnix("compose", "up", *extra, "--ray-address", cluster["address"], cwd=folder, env=up_env(marker))


def logs(rnix: RunRnix, folder: Path, agent: str) -> str:
    """What `rnix compose logs --no-log-prefix AGENT` prints."""
    out: str = rnix("compose", "logs", "--no-log-prefix", agent, cwd=folder).stdout
    return out


def ps_rows(rnix: RunRnix, folder: Path) -> dict[str, dict[str, Any]]:
    result = rnix("compose", "ps", "-a", "--json", cwd=folder)
    assert result.returncode == 0, result.stderr
    return {row["agent"]: row for row in json.loads(result.stdout)["data"]["processes"]}


@contextlib.contextmanager
def foreground_up(folder: Path, cluster: dict[str, str], marker: str) -> Iterator[subprocess.Popen[str]]:
    """`rnix compose up` on the cluster in the foreground (stderr piped); killed if still there."""
    supervisor = subprocess.Popen(
        [RNIX, "compose", "up", "--ray-address", cluster["address"]],
        cwd=folder,
        env={**os.environ, **up_env(marker)},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield supervisor
    finally:
        if supervisor.poll() is None:
            supervisor.kill()
        supervisor.communicate()


SLEEPER = "import time; print('up', flush=True); time.sleep(300)"
# One agent sleeping on each node.
SLEEPERS = f"""
agents:
  here:
    intent: sleep on the head
    command: {cmd(SLEEPER)}
    resources: {{head: 1}}
  there:
    intent: sleep on the worker
    command: {cmd(SLEEPER)}
    resources: {{worker: 1}}
    stop_grace_period: 1s
"""


def running_pids(rnix: RunRnix, folder: Path, *names: str) -> list[int] | None:
    """The PIDs of the named agents once all of them run (None before)."""
    rows = ps_rows(rnix, folder)
    if not all(rows.get(name, {}).get("state") == "running" for name in names):
        return None
    return [int(rows[name]["pid"]) for name in names]


def process_state(pid: int) -> str | None:
    """The state letter of /proc/PID/stat (T: stopped), None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read()
    except OSError:
        return None
    return stat[stat.rindex(b")") + 2 :].split()[0].decode()


def agent_pids(marker: str) -> list[int]:
    """Marked processes other than a supervisor (`rnix compose up`), which carries the marker too."""
    left = []
    for pid in marked_pids(marker):
        with contextlib.suppress(OSError):
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                argv = handle.read().split(b"\0")
            if b"compose" not in argv or b"up" not in argv:
                left.append(pid)
    return left


WHERE = "import os; print(os.environ['RNIX_NODE'])"
SECOND = (
    "import json, os, sys; t = json.load(sys.stdin); "
    "print(os.environ['RNIX_NODE'], t['upstream']['first'].strip())"
)


def test_agents_land_on_both_nodes_and_upstream_results_reach_them(
    rnix: RunRnix, tmp_path: Path, cluster: dict[str, str], marker: str
) -> None:
    folder = write(
        tmp_path,
        f"""
agents:
  first:
    intent: where am I
    command: {cmd(WHERE)}
    resources: {{head: 1}}
  second:
    intent: where am I, and what did first say
    command: {cmd(SECOND)}
    resources: {{worker: 1}}
    depends_on: [first]
  summary:
    intent: summarise both
    resources: {{worker: 0.5}}
    depends_on: [first, second]
""",
    )
    result = up(rnix, folder, cluster, marker, "--json")
    assert result.returncode == 0, result.stderr
    rows = ps_rows(rnix, folder)
    assert {name: row["state"] for name, row in rows.items()} == dict.fromkeys(rows, "completed")
    # ps says where each ran (the NODE column; `cluster_node` in --json).
    assert rows["first"]["cluster_node"] == cluster["head"]
    assert rows["second"]["cluster_node"] == rows["summary"]["cluster_node"] == cluster["worker"]
    table = rnix("compose", "ps", "-a", cwd=folder).stdout
    assert "NODE" in table.splitlines()[0] and cluster["worker"] in table
    assert logs(rnix, folder, "first").strip() == cluster["head"]
    # `second` ran on the worker node and got first's result (from the head node) as its upstream.
    assert logs(rnix, folder, "second").strip() == f"{cluster['worker']} {cluster['head']}"
    # The built-in agent on the worker reached the gateway over TCP and was answered by the mock.
    summary = logs(rnix, folder, "summary")
    assert "using results from: first, second" in summary
    assert wait_marked_gone(marker, 10) == []


def test_no_key_reaches_a_remote_agent_and_its_token_dies_with_it(
    rnix: RunRnix, tmp_path: Path, cluster: dict[str, str], marker: str
) -> None:
    # `leaker` (worker node) prints its whole environment; `replayer` (worker node) tries to use
    # the leaker's gateway token after the leaker exited.
    replay = (
        "import json, socket, sys; t = json.load(sys.stdin); env = dict("
        "line.split('=', 1) for line in t['upstream']['leaker'].splitlines() if '=' in line); "
        "host, port = env['RNIX_GATEWAY'][len('tcp://'):].rsplit(':', 1); "
        "s = socket.create_connection((host, int(port)), 10); "
        "hello = {'op': 'hello', 'id': 1, 'nonce': env['RNIX_AGENT_NONCE']}; "
        "s.sendall(json.dumps(hello).encode() + b'\\n'); "
        "print(s.makefile().readline().strip())"
    )
    folder = write(
        tmp_path,
        f"""
agents:
  leaker:
    intent: show the environment
    command: ["env"]
    resources: {{worker: 1}}
  replayer:
    intent: use the leaker's token
    command: {cmd(replay)}
    resources: {{worker: 1}}
    depends_on: [leaker]
""",
    )
    result = up(rnix, folder, cluster, marker)
    assert result.returncode == 0, result.stderr
    leaked = logs(rnix, folder, "leaker")
    assert "RNIX_GATEWAY=tcp://127.0.0.1:" in leaked  # a remote agent: the gateway over TCP
    assert "RNIX_AGENT_NONCE=" in leaked
    assert SECRET not in leaked and "OPENAI_API_KEY" not in leaked
    reply = json.loads(logs(rnix, folder, "replayer"))
    assert reply["ok"] is False and reply["error"]["code"] == "unauthorized"
    for path in (Path(os.environ["RNIX_HOME"])).rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path


def test_a_timeout_on_the_worker_kills_a_term_ignoring_agent_and_its_grandchildren(
    rnix: RunRnix, tmp_path: Path, cluster: dict[str, str], marker: str
) -> None:
    stubborn = (
        "import signal, subprocess, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "kids = [subprocess.Popen([sys.executable, '-c', 'import signal, time; "
        "signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(300)']) for _ in range(2)]; "
        "print('ready', flush=True); time.sleep(300)"
    )
    folder = write(
        tmp_path,
        f"""
agents:
  stubborn:
    intent: ignore SIGTERM
    command: {cmd(stubborn)}
    resources: {{worker: 1}}
    timeout: 2s
    stop_grace_period: 1s
""",
    )
    started = time.monotonic()
    result = up(rnix, folder, cluster, marker)
    assert result.returncode == 1, result.stderr
    assert time.monotonic() - started < 30
    row = ps_rows(rnix, folder)["stubborn"]
    assert row["state"] == "timeout"
    assert logs(rnix, folder, "stubborn").strip() == "ready"
    # The leader, the command and both grandchildren: nothing left when `up` returns.
    assert wait_gone([int(row["pid"])], 0) == [] and marked_pids(marker) == []


def test_compose_down_from_another_terminal_stops_agents_on_every_node(
    rnix: RunRnix, tmp_path: Path, cluster: dict[str, str], marker: str
) -> None:
    folder = write(tmp_path, SLEEPERS)
    detached = up(rnix, folder, cluster, marker, "-d")
    assert detached.returncode == 0, detached.stderr

    leaders = wait_for(lambda: running_pids(rnix, folder, "here", "there"), 60, "both agents to run")
    # compose logs streams the remote agent's output back while it runs.
    wait_for(lambda: "up" in rnix("compose", "logs", "there", cwd=folder).stdout, 20, "the remote output")
    # Pause and resume reach the group on its node through the supervisor.
    there = leaders[1]
    paused = rnix("kill", "-s", "STOP", str(there), "--json", cwd=folder)
    assert paused.returncode == 0, paused.stderr
    wait_for(lambda: ps_rows(rnix, folder)["there"]["state"] == "paused", 20, "the pause")
    wait_for(lambda: process_state(there) == "T", 20, "the process to stop")
    resumed = rnix("kill", "-s", "CONT", str(there), cwd=folder)
    assert resumed.returncode == 0, resumed.stderr
    wait_for(lambda: ps_rows(rnix, folder)["there"]["state"] == "running", 20, "the resume")
    wait_for(lambda: process_state(there) in ("S", "R"), 20, "the process to go on")
    down = rnix("compose", "down", "--json", cwd=folder)
    assert down.returncode == 0, down.stderr
    # Every agent on every node is gone when `down` returns.
    assert wait_gone(leaders, 0) == [] and agent_pids(marker) == []
    assert wait_marked_gone(marker, 20) == []  # and the supervisor exits (Ray's atexit takes a moment)
    rows = ps_rows(rnix, folder)
    assert {rows["here"]["state"], rows["there"]["state"]} == {"cancelled"}  # as a local run shows it


def test_sigkill_of_the_supervisor_leaves_no_agent_on_any_node(
    rnix: RunRnix, tmp_path: Path, cluster: dict[str, str], marker: str
) -> None:
    folder = write(tmp_path, SLEEPERS)
    with foreground_up(folder, cluster, marker) as supervisor:
        leaders = wait_for(lambda: running_pids(rnix, folder, "here", "there"), 60, "both agents to run")
        supervisor.kill()
        supervisor.wait(10)
        # Ray ends the node agents of a dead driver; their fork servers' and leaders' parent-death
        # signals stop every group (the leaders, the commands and whatever they started).
        assert wait_gone(leaders, 30) == []
        assert wait_marked_gone(marker, 30) == []


def test_an_agent_whose_resources_no_node_has_is_refused_before_anything_runs(
    rnix: RunRnix, tmp_path: Path, cluster: dict[str, str], marker: str
) -> None:
    folder = write(
        tmp_path,
        f"""
agents:
  fine:
    intent: would run
    command: {cmd("print('ran')")}
  greedy:
    intent: needs a GPU
    command: {cmd("print('ran')")}
    resources: {{GPU: 1}}
""",
    )
    result = up(rnix, folder, cluster, marker)
    assert result.returncode == 2, result.stderr
    assert "agent greedy needs resources {GPU: 1}, which no node of the Ray cluster has" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (rnix("compose", "logs", "fine", cwd=folder).stdout.strip())


def test_sigterm_reaches_rnix_not_ray_and_stops_gracefully(
    rnix: RunRnix, tmp_path: Path, cluster: dict[str, str], marker: str
) -> None:
    folder = write(
        tmp_path,
        f"""
agents:
  there:
    intent: sleep on the worker
    command: {cmd("import time; print('up', flush=True); time.sleep(300)")}
    resources: {{worker: 1}}
""",
    )
    with foreground_up(folder, cluster, marker) as supervisor:
        leaders = wait_for(lambda: running_pids(rnix, folder, "there"), 60, "the agent to run")
        supervisor.send_signal(signal.SIGTERM)
        _out, err = supervisor.communicate(timeout=30)
        assert supervisor.returncode == 143, err  # rnix's stop (Ray's own handler would exit 1)
        assert "Traceback" not in err
        assert wait_gone(leaders, 0) == [] and marked_pids(marker) == []
        assert ps_rows(rnix, folder)["there"]["state"] == "cancelled"


def test_a_resumed_run_reuses_what_a_remote_agent_finished_before_the_crash(
    rnix: RunRnix, tmp_path: Path, cluster: dict[str, str], marker: str
) -> None:
    flag = tmp_path / "go-on"
    slow = (
        "import json, os, sys, time; t = json.load(sys.stdin); "
        "print(t['upstream']['done'].strip(), flush=True); "
        f"os.path.exists({str(flag)!r}) or time.sleep(300)"
    )
    folder = write(
        tmp_path,
        f"""
agents:
  done:
    intent: finish at once on the worker
    command: {cmd("import os; print('done on', os.environ['RNIX_NODE'])")}
    resources: {{worker: 1}}
  slow:
    intent: wait for the flag
    command: {cmd(slow)}
    resources: {{worker: 1}}
    depends_on: [done]
""",
    )
    with foreground_up(folder, cluster, marker) as supervisor:
        leaders = wait_for(lambda: running_pids(rnix, folder, "slow"), 60, "slow to run")
        supervisor.kill()
        supervisor.wait(10)
        assert wait_gone(leaders, 30) == []
    flag.write_text("")
    again = up(rnix, folder, cluster, marker, "--json")
    assert again.returncode == 0, again.stderr
    rows = ps_rows(rnix, folder)
    # The exit report of `done` came back from its node before the crash: it is not run again.
    assert rows["done"]["reused_from"] is not None and rows["slow"]["reused_from"] is None
    assert rows["slow"]["state"] == "completed"
    # ... and its result, as its node returned it, is what `slow` gets again.
    assert logs(rnix, folder, "slow").strip() == (f"done on {cluster['worker']}")
    assert wait_marked_gone(marker, 20) == []


def test_without_an_address_a_local_ray_instance_runs_the_file_and_goes_away(
    rnix: RunRnix, tmp_path: Path, marker: str
) -> None:
    # `engine: ray` in the file; no cluster: rnix starts a Ray instance for the run (its processes
    # inherit the marker) and shuts it down at the end.
    folder = write(
        tmp_path,
        f"""
engine: ray
agents:
  one:
    intent: say the node
    command: {cmd(WHERE)}
  two:
    intent: summarise
    depends_on: [one]
""",
        name="local-ray",
    )
    result = rnix("compose", "up", "--json", cwd=folder, env=up_env(marker), timeout=120)
    assert result.returncode == 0, result.stderr
    rows = ps_rows(rnix, folder)
    assert rows["one"]["state"] == rows["two"]["state"] == "completed"
    node = logs(rnix, folder, "one").strip()
    assert len(node) == 8 and int(node, 16) >= 0  # RNIX_NODE: the Ray node id's first 8 hex digits
    assert wait_marked_gone(marker, 30) == []  # the agents and every process of the Ray instance


def test_ctrl_c_twice_kills_at_once_on_every_node(
    rnix: RunRnix, tmp_path: Path, cluster: dict[str, str], marker: str
) -> None:
    stubborn = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print('up', flush=True); time.sleep(300)"
    )
    folder = write(
        tmp_path,
        f"""
agents:
  there:
    intent: ignore SIGTERM on the worker for a minute
    command: {cmd(stubborn)}
    resources: {{worker: 1}}
    stop_grace_period: 60s
""",
    )
    with foreground_up(folder, cluster, marker) as supervisor:
        leaders = wait_for(lambda: running_pids(rnix, folder, "there"), 60, "the agent to run")
        supervisor.send_signal(signal.SIGINT)  # graceful: the agent would have 60 s
        time.sleep(2.0)
        assert supervisor.poll() is None and wait_gone(leaders, 0) == leaders  # it waits out the grace
        started = time.monotonic()
        supervisor.send_signal(signal.SIGINT)  # the second one: no more grace
        _out, err = supervisor.communicate(timeout=30)
        assert time.monotonic() - started < 20
        assert supervisor.returncode == 130, err
        assert "Traceback" not in err
        assert wait_gone(leaders, 0) == [] and marked_pids(marker) == []


def test_budgets_and_retries_hold_for_agents_on_the_worker(
    rnix: RunRnix, tmp_path: Path, cluster: dict[str, str], marker: str
) -> None:
    flag = tmp_path / "tried-once"
    flaky = (
        f"import os, sys; p = {str(flag)!r}; "
        "sys.exit(print('second try') or 0) if os.path.exists(p) else (open(p, 'w').close(), sys.exit(1))"
    )
    folder = write(
        tmp_path,
        f"""
agents:
  tight:
    intent: write a long essay about everything
    budget: 40
    resources: {{worker: 1}}
  flaky:
    intent: fail once, then succeed
    command: {cmd(flaky)}
    max_retries: 1
    resources: {{worker: 1}}
""",
    )
    result = rnix(
        "compose", "up", "--json", "--ray-address", cluster["address"], cwd=folder, env=up_env(marker)
    )
    assert result.returncode == 1, result.stderr
    rows = ps_rows(rnix, folder)
    # The gateway (on this machine) refused the remote agent's call over its budget: exit status 2.
    assert rows["tight"]["state"] == "budget_exceeded" and rows["tight"]["exit_code"] == 2
    assert rows["tight"]["tokens_used"] <= 40
    # The first attempt failed on the worker; the retry ran there too and completed.
    assert rows["flaky"]["state"] == "completed" and rows["flaky"]["attempt"] == 2
    assert rows["flaky"]["cluster_node"] == cluster["worker"]


def test_a_node_that_dies_fails_its_agents_and_the_run_goes_on(
    rnix: RunRnix, tmp_path: Path, marker: str
) -> None:
    # A cluster of its own: this test removes its worker node.
    own = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "resources": {"head": 1}})
    try:
        worker = own.add_node(num_cpus=1, resources={"worker": 1})
        own.wait_for_nodes()
        folder = write(
            tmp_path,
            f"""
agents:
  doomed:
    intent: sleep on the worker, which dies
    command: {cmd(SLEEPER)}
    resources: {{worker: 1}}
    max_retries: 1
  fine:
    intent: sleep briefly on the head
    command: {cmd("import time; time.sleep(1); print('fine')")}
    resources: {{head: 1}}
""",
            name="node-dies",
        )
        with foreground_up(folder, {"address": own.address}, marker) as supervisor:
            leaders = wait_for(lambda: running_pids(rnix, folder, "doomed"), 60, "doomed to run")
            own.remove_node(worker, allow_graceful=False)
            _out, err = supervisor.communicate(timeout=60)
            assert supervisor.returncode == 1, err  # the run ended: doomed failed, fine completed
            assert "Traceback" not in err
        rows = ps_rows(rnix, folder)
        assert rows["fine"]["state"] == "completed"
        # Killed with its node; its retry cannot be placed (no node has `worker` any more): it is
        # cancelled with the reason, as an agent that cannot be spawned is, instead of waiting forever.
        assert rows["doomed"]["state"] == "cancelled", rows["doomed"]
        assert "which no node of the Ray cluster has any more" in (rows["doomed"]["error"] or "")
        # The node's processes went with it (its node agent's fork server and leader stop them).
        assert wait_gone(leaders, 30) == []
        assert wait_marked_gone(marker, 30) == []
    finally:
        own.shutdown()
