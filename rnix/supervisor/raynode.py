"""The rnix node agent: one per node of a Ray cluster, it owns that node's agent processes.

Ray's own cancellation is cooperative (`ray.cancel` sets a flag, `ray.kill` orphans subprocesses),
so rnix does not run agents as Ray tasks. `NodeAgent` is a plain class that the Ray spawner
(rayspawn.py) turns into an async actor pinned to one node. It hosts the same fork-server spawner
as a local run (spawn.py): agents are session leaders with a parent-death signal, stopped by
SIGTERM to the group, a grace, then SIGKILL, and swept as the actor's subreaper children. So:

- When the supervisor (the Ray driver that owns the actor) dies, Ray ends the actor's worker; its
  fork server gets its parent-death signal and every leader stops its own group (grace, KILL).
- Each agent finds the node's name (as `ps` shows it) in RNIX_NODE.
- Files are the node's own: the task is written, and stdout/stderr/the exit report are kept, in a
  directory of this node (`RNIX_NODE_DIR`, default `$TMPDIR/rnix-node-UID/RUN`); the supervisor pulls
  the output back while the agent runs (`read`) and gets the result and exit report with the exit.
- The working directory: the request's own when it exists here (one machine, a shared filesystem
  or the same checkout), else the same path below the actor's working directory when the run
  shipped its compose directory (`ray.init(runtime_env={"working_dir": ...})`), else the spawn fails
  with a message naming the node.

Every method takes and returns plain data (it crosses Ray's serialisation); pids are this node's.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rnix.core.secrets import is_secret_name
from rnix.supervisor import exitreport
from rnix.supervisor.api import SpawnRequest

ENV_NODE = "RNIX_NODE"  # the node an agent runs on, as `ps` shows it
READ_CHUNK = 256 * 1024  # most bytes of one stream returned by one `read`


class NodeAgent:
    """Owns the agent processes of one node for one run (see the module docstring)."""

    def __init__(self, run_id: str, shipped_dir: str | None = None, node_name: str = "") -> None:
        self.run_id = run_id
        self.node_name = node_name  # given to each agent as RNIX_NODE
        self.shipped_dir = shipped_dir  # the supervisor's compose directory, when it was shipped
        self._spawner: Any = None
        self._processes: dict[int, Any] = {}  # pid -> LocalAgentProcess
        self._files: dict[int, tuple[str, str, str | None]] = {}  # pid -> (out, log, exit report)
        self._dir: Path | None = None
        self._serial = 0  # names this node's files: an agent's attempts never share them
        self._base_env: dict[str, str] = {}

    async def start(self) -> dict[str, Any]:
        """Start this node's fork server; returns who we are ({host, pid, dir})."""
        from rnix.supervisor.spawn import ForkServerSpawner

        base = os.environ.get("RNIX_NODE_DIR") or os.path.join(
            tempfile.gettempdir(), f"rnix-node-{os.getuid()}"
        )
        self._dir = Path(base) / self.run_id
        self._dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        environ = {k: v for k, v in os.environ.items() if not is_secret_name(k)}
        self._spawner = ForkServerSpawner(environ=environ)
        await self._spawner.start()
        return {"host": socket.gethostname(), "pid": os.getpid(), "dir": str(self._dir)}

    def set_base_env(self, env: Mapping[str, str]) -> None:
        """The environment the run's agents share: sent once; each spawn sends how it differs."""
        self._base_env = dict(env)
        self._spawner.set_base_env(self._base_env)

    async def spawn(self, request: dict[str, Any], task: bytes) -> dict[str, Any]:
        """Start one agent; `request` is a SpawnRequest's fields with the supervisor's paths, its
        `env` how the agent's environment differs from the base (`env_unset`: base variables it
        does not have), `task` its stdin. Returns {pid, start_time, start_ticks}."""
        assert self._dir is not None
        name = str(request["name"])
        stem = self._dir / _file_stem(name, self._serial)
        self._serial += 1
        unset = set(request.get("env_unset") or ())
        env = {k: v for k, v in {**self._base_env, **request["env"]}.items() if k not in unset}
        if self.node_name:
            env[ENV_NODE] = self.node_name
        stdin_path = f"{stem}.task.json"
        await asyncio.to_thread(write_file, stdin_path, task)
        cwd = self._cwd(str(request["cwd"]))
        spawn = SpawnRequest(
            name=name,
            argv=tuple(request["argv"]) if request.get("argv") is not None else None,
            env=env,
            cwd=cwd,
            stdin_path=stdin_path,
            stdout_path=f"{stem}.out",
            stderr_path=f"{stem}.log",
            grace=float(request["grace"]),
            exit_path=f"{stem}.exit.json" if request.get("exit_path") else None,
        )
        process = await self._spawner.spawn(spawn)
        self._processes[process.pid] = process
        self._files[process.pid] = (spawn.stdout_path, spawn.stderr_path, spawn.exit_path)
        with contextlib.suppress(OSError):
            os.unlink(stdin_path)  # the agent holds it open; nothing else needs it
        return {"pid": process.pid, "start_time": process.start_time, "start_ticks": process.start_ticks}

    def _cwd(self, cwd: str) -> str:
        if os.path.isdir(cwd):
            return cwd
        if self.shipped_dir is not None:
            shipped = os.path.normpath(self.shipped_dir)
            relative = os.path.relpath(os.path.normpath(cwd), shipped)
            if not relative.startswith(os.pardir):
                candidate = os.path.normpath(os.path.join(os.getcwd(), relative))
                if os.path.isdir(candidate):
                    return candidate
        raise FileNotFoundError(f"the working directory {cwd} does not exist on node {socket.gethostname()}")

    async def wait(self, pid: int) -> dict[str, Any]:
        """How agent `pid` ended: {returncode, signal, result, report} (`report`: its exit report's
        text, or None when it left none)."""
        process = self._processes[pid]
        info = await process.wait()
        return self._ended(pid, info)

    def _ended(self, pid: int, info: Any) -> dict[str, Any]:
        _out, _log, exit_path = self._files[pid]
        report = None
        if exit_path is not None:
            with contextlib.suppress(OSError), open(exit_path, encoding="utf-8") as handle:
                report = handle.read(exitreport.REPORT_LIMIT + 1)
        return {"returncode": info.returncode, "signal": info.signal, "result": info.result, "report": report}

    def signal_group(self, pid: int, signum: int) -> bool:
        process = self._processes.get(pid)
        return process is not None and bool(process.signal_group(signum))

    async def stop(self, pid: int, grace: float) -> dict[str, Any]:
        process = self._processes[pid]
        info = await process.stop(grace)
        return self._ended(pid, info)

    def read(self, offsets: Mapping[int, tuple[int, int]]) -> dict[int, tuple[bytes, bytes]]:
        """What each agent wrote to stdout and stderr past the given offsets (at most READ_CHUNK of
        each): the supervisor appends it to its own copies."""
        out: dict[int, tuple[bytes, bytes]] = {}
        for pid, (out_at, log_at) in offsets.items():
            files = self._files.get(pid)
            if files is None:
                continue
            chunks = (_read_from(files[0], out_at), _read_from(files[1], log_at))
            if chunks[0] or chunks[1]:
                out[pid] = chunks
        return out

    def forget(self, pid: int) -> None:
        """The supervisor has everything of `pid`: drop it and its files."""
        self._processes.pop(pid, None)
        for path in self._files.pop(pid, ()):
            if path is not None:
                with contextlib.suppress(OSError):
                    os.unlink(path)

    async def close(self) -> list[str]:
        """Stop the fork server (killing what still runs) and remove this run's files here."""
        escaped: list[str] = []
        if self._spawner is not None:
            await self._spawner.close()
            escaped = list(self._spawner.escaped)
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
        return escaped

    def ping(self) -> int:
        return os.getpid()


def _file_stem(name: str, serial: int) -> str:
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in name)[:80]
    return f"{serial:05d}-{safe}"


def write_file(path: str, data: bytes, *, append: bool = False) -> None:
    """Write all of `data` to `path`: a task (created 0600, truncated) or an agent's output (created
    0644 as the local spawner creates it, appended to)."""
    mode, perms = (os.O_APPEND, 0o644) if append else (os.O_TRUNC, 0o600)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | mode | os.O_CLOEXEC, perms)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


def _read_from(path: str, offset: int) -> bytes:
    try:
        with open(path, "rb") as handle:
            handle.seek(offset)
            return handle.read(READ_CHUNK)
    except OSError:
        return b""
