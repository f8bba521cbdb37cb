"""The local spawner: agent processes forked by a fork server (`ForkServerSpawner`, a `Spawner`).

`start()` makes the supervisor a child subreaper, raises its RLIMIT_NOFILE soft limit, starts
`python -m rnix.supervisor.forkserver` from the running loop's thread (PDEATHSIG follows the thread
that forked) and waits until it is ready. `spawn()` sends one request over the control socketpair
and returns a `LocalAgentProcess` (pid == pgid, psutil start time) as soon as the process exists;
its `wait()` resolves when the fork server reaps it, with the agent's result read from its stdout
file (`exitreport.read_result`) in `ExitInfo.result`.

If the fork server ends (by `close()` or unexpectedly), every agent still running has its group
SIGKILLed and, having been re-parented to us (subreaper), is reaped here: its `wait()` completes
(with ExitInfo(None, SIGKILL) when the status is out of reach), pending and later `spawn()` calls
raise RuntimeError, and children of the supervisor in foreign sessions (escaped agent descendants;
the supervisor's own subprocesses share its session, unless started with start_new_session: keep
such a subprocess out of a supervisor whose fork server may die) are killed and reaped. So `close()`
with agents still running kills them: stop them first (`stop(grace)`) for a graceful end.

When `close()` returns no process descended from an agent is alive. Subreapers die last: a leader
ends its own subtree before it exits; an orphan of a leader that was killed goes to the fork server,
which kills it, and sweeps until none is left before it exits; what it could not catch comes to us,
and we sweep (`_sweep_strays`) after it is gone, until a round finds nobody. Each sweep is bounded
(2 s). Where a cgroup v2 is writable (cgroup.py) the fork server runs in a cgroup of its own, and
whatever is still in it after the sweeps is killed there and named in `escaped` (and logged).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import dataclasses
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import sysconfig
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rnix.supervisor import exitreport, procinfo, signals
from rnix.supervisor.api import ExitInfo, SpawnRequest
from rnix.supervisor.cgroup import RunCgroup

log = logging.getLogger(__name__)

READY_TIMEOUT = 30.0  # a cold start on a loaded machine imports the runtime in well under a second
REAP_TIMEOUT = 2.0


class SpawnError(RuntimeError):
    """The fork server refused a request (e.g. a missing stdin file or working directory)."""


class LocalAgentProcess:
    """An agent forked by the fork server (implements api.AgentProcess)."""

    node: str | None = None  # it runs on this machine

    def __init__(
        self,
        name: str,
        pid: int,
        start_time: float,
        stdout_path: str | None = None,
        start_ticks: int | None = None,
    ) -> None:
        self.name = name
        self.pid = pid
        self.start_time = start_time
        self.start_ticks = start_ticks
        self.stdout_path = stdout_path  # where the result is read from when it exits
        self._exit: asyncio.Future[ExitInfo] = asyncio.get_running_loop().create_future()

    @property
    def exit_info(self) -> ExitInfo | None:
        """How it ended, or None while it runs."""
        return self._exit.result() if self._exit.done() else None

    async def wait(self) -> ExitInfo:
        return await asyncio.shield(self._exit)

    def signal_group(self, signum: int) -> bool:
        # Once reaped the PID may be reused; never signal on the strength of a stale number.
        return not self._exit.done() and signals.send_group(self.pid, signum)

    async def stop(self, grace: float) -> ExitInfo:
        return await signals.stop_group(self, grace)

    def _finish(self, returncode: int | None, signum: int | None) -> None:
        if not self._exit.done():
            result = None if self.stdout_path is None else exitreport.read_result(self.stdout_path)
            self._exit.set_result(ExitInfo(returncode, signum, result))

    def __repr__(self) -> str:
        return f"<LocalAgentProcess {self.name} pid={self.pid} exit={self.exit_info}>"


class ForkServerSpawner:
    """Starts agents through one fork server process (implements api.Spawner)."""

    def __init__(
        self,
        *,
        environ: Mapping[str, str] | None = None,
        subreaper: bool = True,
        python: str = sys.executable,
    ) -> None:
        """`environ`: the fork server's environment (default os.environ). Keep secrets out of it: a
        forked agent's /proc/PID/environ shows it (each agent's own environment is its request's)."""
        self._environ = dict(os.environ if environ is None else environ)
        self._subreaper = subreaper
        self._python = python
        self._proc: asyncio.subprocess.Process | _AdoptedServer | None = None
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._pending: dict[int, tuple[SpawnRequest, asyncio.Future[LocalAgentProcess]]] = {}
        self._agents: dict[int, LocalAgentProcess] = {}
        self._next_id = 0
        self._running = False
        self._closing = False
        self._base_env: dict[str, str] | None = None
        self._outbox: list[bytes] = []
        self._cgroup: RunCgroup | None = None
        self.escaped: list[str] = []  # "PID command" of what the cgroup caught after the sweeps

    @property
    def server_pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    async def __aenter__(self) -> ForkServerSpawner:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        if self._proc is not None:
            raise RuntimeError("the spawner was already started")
        if self._subreaper:
            procinfo.become_subreaper()
        nofile_soft = procinfo.raise_nofile_limit()
        procinfo.create_time_from_ticks(0)  # imports psutil now rather than in the first reply
        adopted = _adopt_prestarted(self._environ, self._python)
        if adopted is not None:  # booted while the CLI loaded the file (`prestart`)
            self._proc, ours = adopted
        else:
            ours, theirs = socket.socketpair()
            try:
                self._proc = await asyncio.create_subprocess_exec(
                    *_server_command(self._python, theirs.fileno(), nofile_soft),
                    pass_fds=(theirs.fileno(),),
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=asyncio.subprocess.DEVNULL,
                    cwd="/",
                    env=_server_env(self._environ),
                )
            finally:
                theirs.close()
        # Before it can fork anything: every agent and all it starts stay in this cgroup.
        self._cgroup = RunCgroup.create(self._environ)
        if self._cgroup is not None and not self._cgroup.add(self._proc.pid):
            self._cgroup.remove()
            self._cgroup = None
        self._reader, self._writer = await asyncio.open_unix_connection(sock=ours, limit=1 << 20)
        try:
            line = await asyncio.wait_for(self._reader.readline(), READY_TIMEOUT)
            ready = json.loads(line) if line else {}
        except (asyncio.TimeoutError, ValueError):
            ready = {}
        if ready.get("op") != "ready":
            if self._proc.returncode is None:
                self._proc.kill()
            status = await self._proc.wait()
            self._writer.close()
            if self._cgroup is not None:
                self._cgroup.remove()
            raise RuntimeError(f"the rnix fork server did not start (exit status {status})")
        self._running = True
        self._reader_task = asyncio.create_task(self._read_loop())

    async def spawn(self, request: SpawnRequest) -> LocalAgentProcess:
        if not self._running or self._writer is None:
            raise RuntimeError("the rnix fork server is not running (not started, closed, or it died)")
        self._next_id += 1
        request_id = self._next_id
        future: asyncio.Future[LocalAgentProcess] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = (request, future)
        fields = {field.name: getattr(request, field.name) for field in dataclasses.fields(request)}
        message = {**fields, "op": "spawn", "id": request_id, **self._env_fields(request.env)}
        try:
            self._send(message)
            await self._writer.drain()
            return await future
        except asyncio.CancelledError:
            # Nobody will hold this agent: the reader kills it when it arrives, or we do if it has.
            if not future.cancel() and not future.cancelled() and future.exception() is None:
                future.result().signal_group(signal.SIGKILL)
            raise

    def set_base_env(self, env: Mapping[str, str]) -> None:
        """The environment most agents of the run share: sent once, then each spawn sends only
        how its environment differs from it."""
        if not self._running:
            raise RuntimeError("the rnix fork server is not running (not started, closed, or it died)")
        self._base_env = dict(env)
        self._send({"op": "base_env", "env": self._base_env})

    def _env_fields(self, env: Mapping[str, str]) -> dict[str, Any]:
        base = self._base_env
        if base is None:
            return {"env": dict(env)}
        delta = {k: v for k, v in env.items() if base.get(k) != v}
        return {"env": delta, "env_base": True, "env_unset": [k for k in base if k not in env]}

    def _send(self, message: dict[str, Any]) -> None:
        """Queue a request; the requests of one turn of the loop go out in one write (a layer of
        500 agents is a few socket writes, not 500)."""
        self._outbox.append(json.dumps(message, separators=(",", ":")).encode() + b"\n")
        if len(self._outbox) == 1:
            asyncio.get_running_loop().call_soon(self._flush_outbox)

    def _flush_outbox(self) -> None:
        data, self._outbox = b"".join(self._outbox), []
        if self._writer is not None and not self._writer.is_closing():
            self._writer.write(data)

    async def close(self) -> None:
        if self._proc is None:
            return
        self._closing = True
        if self._running and self._writer is not None:
            with contextlib.suppress(OSError):
                if self._outbox:
                    self._flush_outbox()
                self._writer.write_eof()  # half-close: exit messages already sent still arrive
        if self._reader_task is not None:
            await self._reader_task

    async def _read_loop(self) -> None:
        assert self._reader is not None
        try:
            while line := await self._reader.readline():
                try:
                    self._dispatch(json.loads(line))
                except (ValueError, KeyError, TypeError):
                    continue  # not ours to crash on; the server only sends well-formed lines
        except (OSError, ValueError):
            pass
        finally:
            await self._server_gone()

    def _dispatch(self, message: dict[str, Any]) -> None:
        op = message.get("op")
        if op == "exit":
            agent = self._agents.pop(int(message["pid"]), None)
            if agent is not None:
                agent._finish(message.get("returncode"), message.get("signal"))
            return
        request, future = self._pending.pop(int(message["id"]))
        name = request.name
        if op == "spawned":
            pid = int(message["pid"])
            ticks = int(message["start_ticks"])
            start_time = procinfo.create_time_from_ticks(ticks)
            agent = LocalAgentProcess(name, pid, start_time, request.stdout_path, ticks)
            self._agents[pid] = agent
            if future.cancelled():
                signals.send_group(pid, signal.SIGKILL)  # nobody holds a handle to it
            else:
                future.set_result(agent)
        elif not future.cancelled():
            future.set_exception(SpawnError(f"cannot start agent {name!r}: {message.get('message')}"))

    async def _server_gone(self) -> None:
        self._running = False
        why = "was closed" if self._closing else "exited unexpectedly"
        for request, future in self._pending.values():
            if not future.done():
                message = f"cannot start agent {request.name!r}: the rnix fork server {why}"
                future.set_exception(RuntimeError(message))
        self._pending.clear()
        assert self._proc is not None and self._writer is not None
        try:
            await asyncio.wait_for(self._proc.wait(), REAP_TIMEOUT)
        except asyncio.TimeoutError:
            self._proc.kill()
            await self._proc.wait()
        self._writer.close()
        # Our former grandchildren are now our children (subreaper), so we can reap them ourselves.
        live = [agent for agent in self._agents.values() if agent.exit_info is None]
        self._agents.clear()
        for agent in live:
            signals.send_group(agent.pid, signal.SIGKILL)
        await _reap(live)
        # Always, also after a clean close: an orphan the fork server killed may have handed its own
        # children to us as it died, and the fork server may have died before it could sweep.
        await _sweep_strays(self._proc.pid)
        if self._cgroup is not None:  # the backstop: whatever is left escaped the process tree
            self.escaped = await self._cgroup.kill_all()
            self._cgroup.remove()
            if self.escaped:
                log.warning("rnix: killed processes that escaped the agents' process tree: %s", self.escaped)


async def _reap(agents: list[LocalAgentProcess]) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + REAP_TIMEOUT
    while agents:
        for agent in list(agents):
            try:
                pid, status = os.waitpid(agent.pid, os.WNOHANG)
            except ChildProcessError:  # not re-parented to us (no subreaper): its status is lost
                agent._finish(None, signal.SIGKILL)
                agents.remove(agent)
                continue
            if pid:
                code = os.waitstatus_to_exitcode(status)
                returncode, signum = (code, None) if code >= 0 else (None, -code)
                agent._finish(returncode, signum)
                agents.remove(agent)
        if loop.time() > deadline:
            for agent in agents:
                agent._finish(None, signal.SIGKILL)
            return
        await asyncio.sleep(0.01)


async def _sweep_strays(server_pid: int) -> None:
    """Kill and reap our children in foreign sessions: agent descendants that outlived their leader."""
    me, my_sid = os.getpid(), os.getsid(0)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + REAP_TIMEOUT
    while loop.time() < deadline:
        strays = []
        for pid in procinfo.children(me):
            try:
                if pid != server_pid and os.getsid(pid) != my_sid:
                    strays.append(pid)
            except OSError:
                continue
        if not strays:
            return
        for pid in strays:
            signals.send(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
        await asyncio.sleep(0.01)


def _server_command(python: str, fd: int, nofile_soft: int) -> list[str]:
    # -P: do not put the working directory on sys.path (a stray json.py must not shadow json).
    safe_path = ["-P"] if sys.version_info >= (3, 11) else []
    module = "rnix.supervisor.forkserver"
    options = ["--fd", str(fd), "--parent", str(os.getpid()), "--nofile", str(nofile_soft)]
    return [python, *safe_path, "-m", module, *options]


# -- prestart: the fork server boots (~80 ms of Python start-up) while the CLI still loads ----------


@dataclasses.dataclass
class _Prestarted:
    popen: subprocess.Popen[bytes]
    sock: socket.socket
    environ: dict[str, str]
    python: str


_prestarted: _Prestarted | None = None


def prestart(environ: Mapping[str, str], python: str = sys.executable) -> None:
    """Start the fork server now, from this (the main) thread, for a run this process is about to
    supervise: the run's `ForkServerSpawner.start()` adopts it when it asks for the same environment
    and Python, so its boot is off the run's clock. `environ` is the fork server's (no secrets: see
    ForkServerSpawner). Not adopted, it is killed at exit; it also dies with this process
    (PDEATHSIG), having started nothing."""
    global _prestarted
    if _prestarted is not None:
        return
    nofile_soft = procinfo.raise_nofile_limit()
    ours, theirs = socket.socketpair()
    try:
        popen = subprocess.Popen(
            _server_command(python, theirs.fileno(), nofile_soft),
            pass_fds=(theirs.fileno(),),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            cwd="/",
            env=_server_env(environ),
        )
    except OSError:
        ours.close()
        return  # the run starts one itself, and says why if it cannot
    finally:
        theirs.close()
    _prestarted = _Prestarted(popen, ours, dict(environ), python)
    atexit.register(_discard_prestarted)


def _adopt_prestarted(environ: Mapping[str, str], python: str) -> tuple[_AdoptedServer, socket.socket] | None:
    global _prestarted
    found, _prestarted = _prestarted, None
    if found is None:
        return None
    if found.environ == dict(environ) and found.python == python and found.popen.poll() is None:
        return _AdoptedServer(found.popen), found.sock
    _kill_prestarted(found)
    return None


def _discard_prestarted() -> None:
    global _prestarted
    found, _prestarted = _prestarted, None
    if found is not None:
        _kill_prestarted(found)


def _kill_prestarted(found: _Prestarted) -> None:
    found.sock.close()
    with contextlib.suppress(OSError):
        found.popen.kill()
    with contextlib.suppress(OSError, subprocess.TimeoutExpired):
        found.popen.wait(5)


class _AdoptedServer:
    """A prestarted fork server seen as the asyncio.subprocess.Process the spawner uses."""

    def __init__(self, popen: subprocess.Popen[bytes]) -> None:
        self._popen = popen
        self.pid = popen.pid

    @property
    def returncode(self) -> int | None:
        return self._popen.poll()

    def kill(self) -> None:
        with contextlib.suppress(OSError):
            self._popen.kill()

    async def wait(self) -> int:
        while (code := self._popen.poll()) is None:
            await asyncio.sleep(0.005)
        return code


def _server_env(environ: Mapping[str, str]) -> dict[str, str]:
    env = dict(environ)
    root = str(Path(__file__).resolve().parents[2])
    installed = {sysconfig.get_paths()[key] for key in ("purelib", "platlib")}
    if root not in installed:  # a source checkout: make sure the fork server imports this rnix
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    return env
