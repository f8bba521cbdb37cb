"""The Ray spawner: the same `Spawner` seam as the local fork server, with agents on a Ray cluster.

`RaySpawner.start()` connects to the cluster (`address`), or starts a local Ray instance for the
run and shuts it down at `close()`, then starts one node agent (raynode.NodeAgent, an async actor
pinned to its node, owned by this process) on every alive node. `spawn()` places the agent:
- with `resources` (SpawnRequest.resources, the compose key): a placement group of one bundle,
  so Ray picks a node that has them and reserves them until the agent ends (other jobs of the
  cluster see the reservation; a reservation given back is kept HOLD seconds for the next agent
  with the same needs, since Ray takes about a second to grant one again); a request that no
  node of the cluster could ever satisfy is refused at `check_resources`, before anything starts;
- without: the node with the fewest of this run's agents (the supervisor's own node first).
The agent's task crosses with the request; its stdout and stderr are pulled back into the run's
files while it runs (every POLL seconds, so `compose logs -f` follows it), and its result and exit
report come with its exit: the scheduler, the journal and resume see what a local run gives them.

Agents on the supervisor's own node reach the gateway on its Unix socket, as in a local run; the
others get `tcp://HOST:PORT` (Gateway.listen_tcp) and their nonce, which is revoked when the
attempt ends: no provider key leaves this process (agent environments never carry one, and a local
Ray instance is started with secret-named variables removed from the environment it inherits).

`ray.init()` installs its own SIGTERM/SIGINT handlers: `start()` puts back the ones in place before
it, so rnix's graceful stop (and Ctrl-C twice) still apply.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from rnix.agent import protocol
from rnix.core.secrets import is_secret_name
from rnix.errors import RnixError, UsageError
from rnix.supervisor import exitreport
from rnix.supervisor.api import ExitInfo, SpawnRequest
from rnix.supervisor.raynode import READ_CHUNK, write_file

log = logging.getLogger(__name__)

POLL = 0.25  # seconds between two pulls of the running agents' output
RECHECK = 2.0  # seconds between checks that an agent waiting for resources can still get them
HOLD = 2.0  # seconds a reservation given back by an agent is kept for the next one with its needs
INSTALL_HINT = "install it with: pip install 'rnix[ray]'"
# What a shipped compose directory leaves behind (Ray's own limit is 500 MiB).
SHIP_EXCLUDES = [".git", ".venv", "venv", "node_modules", "__pycache__", ".mypy_cache", ".pytest_cache"]


def import_ray() -> Any:
    """The `ray` module, or a one-line error with the install command (exit status 2)."""
    try:
        import ray
    except ImportError as exc:
        raise UsageError(f"the Ray engine needs Ray, which is not installed ({exc})", INSTALL_HINT) from exc
    return ray


@dataclass
class _Node:
    node_id: str
    name: str  # what ps and top show: the node id's first 8 hex digits
    address: str  # its IP, as Ray knows it
    resources: dict[str, float]
    local: bool  # the supervisor's own node
    actor: Any = None
    live: dict[int, RayAgentProcess] = field(default_factory=dict)
    dead: bool = False  # its node agent is gone (the node died): nothing more is placed there


class RayAgentProcess:
    """An agent process on a node of the cluster (implements api.AgentProcess)."""

    def __init__(
        self,
        spawner: RaySpawner,
        node: _Node,
        info: Mapping[str, Any],
        request: SpawnRequest,
        group: Any = None,
    ) -> None:
        self.name = request.name
        self.pid = int(info["pid"])
        self.start_time = float(info["start_time"])
        self.start_ticks: int | None = info.get("start_ticks")
        self.node: str | None = node.name
        self._node = node
        self._spawner = spawner
        self._request = request
        self._group = group  # its placement group, removed when it ends
        self.offsets = [0, 0]  # bytes of stdout and stderr copied back so far
        self._exit: asyncio.Future[ExitInfo] = asyncio.get_running_loop().create_future()
        self._waiter = asyncio.ensure_future(self._wait())

    @property
    def exit_info(self) -> ExitInfo | None:
        return self._exit.result() if self._exit.done() else None

    async def wait(self) -> ExitInfo:
        return await asyncio.shield(self._exit)

    def signal_group(self, signum: int) -> bool:
        """Sent to the node agent, which signals the group there (the reply is not awaited)."""
        if self._exit.done():
            return False
        self._spawner._remember(self._node.actor.signal_group.remote(self.pid, int(signum)))
        return True

    async def stop(self, grace: float) -> ExitInfo:
        if not self._exit.done():
            with contextlib.suppress(Exception):  # the node is gone: _wait reports it
                await self._node.actor.stop.remote(self.pid, grace)
        return await self.wait()

    async def _wait(self) -> None:
        try:
            data = await self._node.actor.wait.remote(self.pid)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the node (or its agent) died: the process died with it
            self._node.dead = self._node.dead or _actor_died(exc)
            log.warning("rnix: node %s lost agent %s (PID %s): %s", self._node.name, self.name, self.pid, exc)
            data = {"returncode": None, "signal": signal.SIGKILL, "result": None, "report": None}
        try:
            await self._spawner._pull(self._node, until_quiet=True)
            report = data.get("report")
            if report is not None and self._request.exit_path is not None:
                await asyncio.to_thread(_write_report, self._request.exit_path, report)
        finally:
            self._node.live.pop(self.pid, None)
            self._spawner._ended(self._node, self)
            if not self._exit.done():
                self._exit.set_result(
                    ExitInfo(data.get("returncode"), data.get("signal"), data.get("result"))
                )

    def __repr__(self) -> str:
        return f"<RayAgentProcess {self.name} node={self.node} pid={self.pid} exit={self.exit_info}>"


class RaySpawner:
    """Starts agents through the node agents of a Ray cluster (implements api.Spawner)."""

    def __init__(
        self,
        *,
        run_id: str,
        address: str | None = None,
        ship_dir: str | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        """`address`: an existing cluster's (None: a local Ray instance for this run). `ship_dir`:
        a directory to ship to the cluster as the job's working directory (with an address)."""
        self.run_id = run_id
        self.address = address
        self.ship_dir = ship_dir if address else None
        self._environ = dict(os.environ if environ is None else environ)
        self._ray: Any = None
        self._started_ray = False
        self.nodes: dict[str, _Node] = {}
        self.gateway_address: str | None = None  # tcp://HOST:PORT for agents of other nodes
        self._base_env: dict[str, str] | None = None
        self._pump: asyncio.Task[None] | None = None
        self._refs: set[Any] = set()
        # Reservations (placement groups) that agents gave back, by needs: (group, node id, since).
        self._idle: dict[tuple[tuple[str, float], ...], list[tuple[Any, str, float]]] = {}
        self.escaped: list[str] = []

    # -- start ------------------------------------------------------------------------------

    async def start(self) -> None:
        ray = import_ray()
        self._ray = ray
        self._connect(ray)
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        from rnix.supervisor.raynode import NodeAgent

        here = ray.get_runtime_context().get_node_id()
        alive = [node for node in ray.nodes() if node.get("Alive")]
        alive.sort(key=lambda node: node["NodeID"] != here)  # ours first
        remote_class = ray.remote(NodeAgent)
        for node in alive:
            node_id = node["NodeID"]
            entry = _Node(
                node_id=node_id,
                name=node_id[:8],
                address=str(node.get("NodeManagerAddress", "")),
                resources={k: float(v) for k, v in (node.get("Resources") or {}).items()},
                local=node_id == here,
            )
            entry.actor = remote_class.options(
                num_cpus=0,
                max_concurrency=100_000,
                scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False),
            ).remote(self.run_id, self.ship_dir, entry.name)
            self.nodes[node_id] = entry
        try:
            await asyncio.gather(*(node.actor.start.remote() for node in self.nodes.values()))
        except Exception as exc:
            raise RnixError(
                f"cannot start the rnix node agents on the Ray cluster: {_first_line(exc)}"
            ) from exc
        self._pump = asyncio.create_task(self._pump_loop())

    def _connect(self, ray: Any) -> None:
        previous = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        kwargs: dict[str, Any] = {
            "log_to_driver": False,
            "logging_level": logging.ERROR,
            "namespace": f"rnix-{self.run_id}",
        }
        try:
            if self.address:
                if self.ship_dir:
                    kwargs["runtime_env"] = {"working_dir": self.ship_dir, "excludes": SHIP_EXCLUDES}
                ray.init(address=self.address, **kwargs)
            else:
                # The instance's processes (and so every node agent) inherit our environment: keep
                # the provider keys out of it (the gateway reads them from rnix's own copy).
                hidden = {k: v for k, v in os.environ.items() if is_secret_name(k)}
                for key in hidden:
                    del os.environ[key]
                try:
                    ray.init(address="local", include_dashboard=False, **kwargs)  # never a running one
                finally:
                    os.environ.update(hidden)
                self._started_ray = True
        except Exception as exc:
            where = f"at {self.address}" if self.address else "(a local instance)"
            raise RnixError(
                f"cannot connect to the Ray cluster {where}: {_first_line(exc)}",
                "check --ray-address / RNIX_RAY_ADDRESS (e.g. ray://HOST:10001 or HOST:6379) and that "
                "the cluster runs the same Ray and rnix versions",
            ) from exc
        finally:
            for signum, handler in previous.items():
                if handler is not None:
                    signal.signal(signum, handler)

    def gateway_host(self) -> str:
        """Where the gateway listens for agents of other nodes: loopback when every node is on this
        machine, else this node's address (RNIX_GATEWAY_HOST wins)."""
        chosen = self._environ.get("RNIX_GATEWAY_HOST")
        if chosen:
            return chosen
        mine = next((node.address for node in self.nodes.values() if node.local), "")
        if mine and all(node.address == mine for node in self.nodes.values()):
            return "127.0.0.1"
        return mine or "127.0.0.1"

    @property
    def needs_tcp(self) -> bool:
        return any(not node.local for node in self.nodes.values())

    def check_resources(self, wanted: Iterable[tuple[str, Mapping[str, float]]]) -> None:
        """Refuse (RnixError) an agent whose resources no node of the cluster has."""
        for name, resources in wanted:
            need = {k: v for k, v in resources.items() if v > 0}
            if not need:
                continue
            if not any(
                all(node.resources.get(k, 0.0) >= v for k, v in need.items()) for node in self.nodes.values()
            ):
                have = "; ".join(
                    f"{node.name}: "
                    + ", ".join(
                        f"{k}={v:g}"
                        for k, v in sorted(node.resources.items())
                        if not k.startswith(("node:", "memory", "object_store"))
                    )
                    for node in self.nodes.values()
                )
                raise UsageError(
                    f"agent {name} needs resources {_shown(need)}, which no node of the Ray cluster has",
                    f"the nodes have: {have}",
                )

    def set_base_env(self, env: Mapping[str, str]) -> None:
        self._base_env = dict(env)
        for node in self.nodes.values():
            self._remember(node.actor.set_base_env.remote(self._base_env))

    # -- spawn ------------------------------------------------------------------------------

    async def spawn(self, request: SpawnRequest) -> RayAgentProcess:
        if not self.nodes:
            raise RuntimeError("the Ray spawner is not running (not started, or closed)")
        node, group = await self._place(request)
        env = dict(request.env)
        if not node.local:
            if self.gateway_address is None:
                raise RuntimeError("the gateway does not listen for other nodes (no TCP address)")
            env[protocol.ENV_GATEWAY] = self.gateway_address
        base = self._base_env or {}
        fields = {
            "name": request.name,
            "argv": list(request.argv) if request.argv is not None else None,
            "env": {k: v for k, v in env.items() if base.get(k) != v},
            "env_unset": [k for k in base if k not in env],
            "cwd": request.cwd,
            "grace": request.grace,
            "exit_path": request.exit_path,
        }
        task = await asyncio.to_thread(_read_bytes, request.stdin_path)
        try:
            info = await node.actor.spawn.remote(fields, task)
        except Exception as exc:
            self._release(group)
            node.dead = node.dead or _actor_died(exc)
            from rnix.supervisor.spawn import SpawnError

            raise SpawnError(
                f"cannot start agent {request.name!r} on node {node.name}: {_first_line(exc)}"
            ) from exc
        process = RayAgentProcess(self, node, info, request, group)
        node.live[process.pid] = process
        if request.exit_path is not None:
            exitreport.remove_exit_report(request.exit_path)
        return process

    async def _place(self, request: SpawnRequest) -> tuple[_Node, Any]:
        need = {k: float(v) for k, v in (request.resources or {}).items() if v > 0}
        alive = [node for node in self.nodes.values() if not node.dead]
        if not need:
            if not alive:
                raise RuntimeError("no node of the Ray cluster is left to run agents on")
            return min(alive, key=lambda node: len(node.live)), None
        shape = _shape(need)
        idle = self._idle.get(shape)
        while idle:  # one that an agent of the same needs just gave back: no new reservation
            group, node_id, _since = idle.pop()
            if not self.nodes[node_id].dead:
                return self.nodes[node_id], group
            self._release(group)
        self._check_still_possible(request.name, need, ask_ray=False)
        from ray.util.placement_group import placement_group, placement_group_table

        group = placement_group([need], strategy="STRICT_PACK")
        ready = asyncio.ensure_future(group.ready())
        # Given up on (below), it fails once the group is removed: nothing is left to report.
        ready.add_done_callback(lambda done: done.cancelled() or done.exception())
        try:
            waited = 0.0
            while True:
                done, _ = await asyncio.wait({ready}, timeout=0.05)
                if done:
                    ready.result()
                    break
                self._drop_idle(0.0)  # we are waiting: what we hold idle may be what we need
                waited += 0.05
                if waited >= RECHECK:  # the nodes that had them may have died since the start
                    waited = 0.0
                    self._check_still_possible(request.name, need)
            node_id = placement_group_table(group)["bundles_to_node_id"][0]
        except BaseException:
            self._release(group)
            raise
        node = self.nodes.get(node_id)
        if node is None:  # a node that joined after the run started: no node agent there
            self._release(group)
            raise RuntimeError(
                f"Ray placed agent {request.name!r} on a node rnix does not serve ({node_id[:8]})"
            )
        return node, group

    def _check_still_possible(self, name: str, need: Mapping[str, float], ask_ray: bool = True) -> None:
        """Raise when none of the run's nodes that have `need` is alive any more (else the wait for
        them never ends): by what rnix saw (a node agent that died) and, with `ask_ray`, by Ray."""
        alive = {node.node_id for node in self.nodes.values() if not node.dead}
        if ask_ray and self._ray is not None:
            reported = {node["NodeID"] for node in self._ray.nodes() if node.get("Alive")}
            alive &= reported
        for node_id in alive:
            have = self.nodes[node_id].resources
            if all(have.get(k, 0.0) >= v for k, v in need.items()):
                return
        raise RuntimeError(
            f"agent {name!r} needs resources {_shown(need)}, which no node of the Ray cluster has any more"
        )

    def _release(self, group: Any) -> None:
        if group is not None:
            from ray.util.placement_group import remove_placement_group

            with contextlib.suppress(Exception):
                remove_placement_group(group)

    def _drop_idle(self, older_than: float) -> None:
        """Give back to Ray the reservations no agent has used for `older_than` seconds."""
        now = time.monotonic()
        for shape, groups in list(self._idle.items()):
            keep = [entry for entry in groups if now - entry[2] < older_than]
            for entry in groups:
                if entry not in keep:
                    self._release(entry[0])
            if keep:
                self._idle[shape] = keep
            else:
                del self._idle[shape]

    def _ended(self, node: _Node, process: RayAgentProcess) -> None:
        group, process._group = process._group, None
        if group is not None:
            # Kept a moment for the next agent with the same needs: Ray takes about a second to
            # grant a reservation again once it was given back.
            need = {k: float(v) for k, v in (process._request.resources or {}).items() if v > 0}
            self._idle.setdefault(_shape(need), []).append((group, node.node_id, time.monotonic()))
        self._remember(node.actor.forget.remote(process.pid))

    def _remember(self, ref: Any) -> None:
        """Keep a fire-and-forget call's reference until it completes (its errors are logged)."""
        self._refs.add(ref)
        future = asyncio.wrap_future(ref.future())

        def done(_: object) -> None:
            self._refs.discard(ref)
            if not future.cancelled() and future.exception() is not None:
                log.debug("rnix: node agent call failed: %s", future.exception())

        future.add_done_callback(done)

    # -- output -----------------------------------------------------------------------------

    async def _pump_loop(self) -> None:
        while True:
            await asyncio.sleep(POLL)
            self._drop_idle(HOLD)
            for node in list(self.nodes.values()):
                if node.live:
                    with contextlib.suppress(Exception):
                        await self._pull(node)

    async def _pull(self, node: _Node, until_quiet: bool = False) -> None:
        """Copy what `node`'s agents wrote since the last pull into the run's files."""
        while True:
            procs = dict(node.live)
            if not procs:
                return
            offsets = {pid: (p.offsets[0], p.offsets[1]) for pid, p in procs.items()}
            try:
                chunks: dict[int, tuple[bytes, bytes]] = await node.actor.read.remote(offsets)
            except Exception:
                return
            for pid, (out, err) in chunks.items():
                process = procs.get(pid)
                if process is None:
                    continue
                if out:
                    write_file(process._request.stdout_path, out, append=True)
                    process.offsets[0] += len(out)
                if err:
                    write_file(process._request.stderr_path, err, append=True)
                    process.offsets[1] += len(err)
            full = any(len(chunk) >= READ_CHUNK for pair in chunks.values() for chunk in pair)
            if not until_quiet or not full:  # a short read got everything written so far
                return

    # -- close ------------------------------------------------------------------------------

    async def close(self) -> None:
        if self._ray is None:
            return
        ray, self._ray = self._ray, None
        nodes = list(self.nodes.values())
        results = await asyncio.gather(*(node.actor.close.remote() for node in nodes), return_exceptions=True)
        for result in results:
            if isinstance(result, list):
                self.escaped.extend(result)
        waiters = [p._waiter for node in nodes for p in node.live.values()]
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.gather(*waiters, return_exceptions=True), 5.0)
        if self._pump is not None:
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump
        for node in nodes:
            with contextlib.suppress(Exception):
                ray.kill(node.actor)
        self.nodes.clear()
        self._drop_idle(0.0)
        with contextlib.suppress(Exception):
            ray.shutdown()


def _read_bytes(path: str) -> bytes:
    with open(path, "rb") as handle:
        return handle.read()


def _write_report(path: str, text: str) -> None:
    """The node's exit report, kept where a local run keeps it (atomically, durably)."""
    info = exitreport.parse_exit_report(text)
    if info is not None:
        exitreport.write_exit_report(path, info.returncode, info.signal)


def _actor_died(exc: BaseException) -> bool:
    """Whether `exc` says the node agent itself is gone (not that a call of it failed)."""
    from ray.exceptions import RayActorError

    return isinstance(exc, RayActorError)


def _shape(need: Mapping[str, float]) -> tuple[tuple[str, float], ...]:
    return tuple(sorted(need.items()))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else text


def _shown(resources: Mapping[str, float]) -> str:
    return "{" + ", ".join(f"{k}: {v:g}" for k, v in sorted(resources.items())) + "}"
