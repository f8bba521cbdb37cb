"""The fork server: a pre-warmed template process that forks agent processes on request.

Started once per supervisor (`python -m rnix.supervisor.forkserver --fd N --parent PID --nofile S`)
with one end of a socketpair as fd N. It imports only the thin agent runtime and the leader (never
asyncio, psutil, litellm, ...), so a new agent costs a fork rather than an interpreter start and
shares the imported code pages with its siblings. It dies with the supervisor (PDEATHSIG SIGTERM,
after a SIGCONT to every agent group so a paused agent can act on what follows), and its agents then
stop their own groups (their PDEATHSIG SIGTERM; see leader.py).

Control channel, JSON lines (supervisor -> server, then server -> supervisor):
    {"op":"base_env","env":{...}}  (no reply: the environment most agents of the run share)
    {"op":"spawn","id":N,"name","argv":[...]|null,"env":{...},"cwd","stdin_path","stdout_path",
     "stderr_path","grace","exit_path"|null[,"env_base":true,"env_unset":[...]]}
                               ->  {"op":"spawned","id":N,"pid":P,"start_ticks":T}
                               or  {"op":"error","id":N,"message":"..."}
    at any time                    {"op":"exit","pid":P,"returncode":R|null,"signal":S|null}
    at start                       {"op":"ready","pid":<server pid>}
With "env_base", "env" holds only what differs from the base environment and "env_unset" the base
variables the agent does not get: a spawn message stays small however large the user's
environment is. `start_ticks` is /proc/P/stat's start time, read before the child can be reaped.
The files and the working directory are opened here, before the fork, so a bad path is an "error"
reply, not a dead agent; likewise `exit_path` must be absolute and in an existing directory, and a
report left there by an earlier agent is removed before the fork (the leader writes the new one,
see exitreport.py).
"spawned" is sent once the child leads its session and, for a command agent, has exec'd the command
into its group: a signal to the group from then on reaches the command.

EOF on the channel ends the server. It is a child subreaper: when an agent's leader dies (say by
SIGKILL), what it had adopted comes to us, and anything that is not a leader is killed and reaped.
Before it exits (EOF, or SIGTERM: the supervisor's death) it sweeps: kills and reaps adopted
processes until none is left (at most SWEEP_TIMEOUT seconds), so an orphan whose grandparent we
just killed is caught here, not handed to the supervisor or init. Leaders still running are left to
their parent-death signal (and to the supervisor, which SIGKILLs their groups on close).
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import select
import signal
import socket
import sys
import time
from typing import Any, NoReturn

import rnix.agent.runtime  # noqa: F401  (pre-imported so forked built-in agents share it)
from rnix.supervisor import exitreport, leader, procinfo

_OPEN_OUT = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC
SWEEP_TIMEOUT = 2.0  # the longest a sweep before exit keeps killing adopted processes


class BadRequest(Exception):
    pass


class ForkServer:
    def __init__(self, sock: socket.socket, nofile_soft: int, supervisor_pid: int) -> None:
        self.sock = sock
        self.nofile_soft = nofile_soft
        self.pid = os.getpid()
        self.supervisor_pid = supervisor_pid
        self.leaders: set[int] = set()
        self.base_env: dict[str, str] = {}  # the run's shared environment ("base_env")
        # Children forked but not yet announced (see leader._announce): ready fd -> reply, and pid -> fd.
        self.unannounced: dict[int, dict[str, Any]] = {}
        self.ready_fds: dict[int, int] = {}
        self.poller = select.poll()
        self.buffer = b""
        self.wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.signal(signal.SIGCHLD, lambda signum, frame: None)  # the C handler feeds the pipe
        signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)

    def send(self, message: dict[str, Any]) -> None:
        self.sock.sendall(json.dumps(message, separators=(",", ":")).encode() + b"\n")

    def serve(self) -> None:
        self.poller.register(self.sock.fileno(), select.POLLIN)
        self.poller.register(self.wake_r, select.POLLIN)
        self.send({"op": "ready", "pid": self.pid})
        while True:
            # Announcements first, the channel last: only the channel creates ready fds and only the
            # first two close them, so no event of this batch can refer to a reused fd number.
            events = dict(self.poller.poll())
            for fd in [fd for fd in events if fd in self.unannounced]:
                self.announce(fd)
            if self.wake_r in events:
                with contextlib.suppress(BlockingIOError):
                    while os.read(self.wake_r, 4096):
                        pass
                self.reap()
            if self.sock.fileno() in events:
                data = self.sock.recv(1 << 16)
                if not data:
                    return  # the supervisor closed the channel (or died)
                self.buffer += data
                *lines, self.buffer = self.buffer.split(b"\n")
                for line in lines:
                    if line.strip():
                        self.handle(line)

    def handle(self, line: bytes) -> None:
        request_id: Any = None
        try:
            request = json.loads(line)
            if not isinstance(request, dict):
                raise BadRequest("a request must be a JSON object")
            request_id = request.get("id")
            if request.get("op") == "base_env":
                self.base_env = _env(request.get("env"))
                return
            if request.get("op") != "spawn":
                raise BadRequest(f"unknown op: {request.get('op')!r}")
            pid, ready_fd = self.spawn(request)
        except (BadRequest, OSError, ValueError, TypeError, KeyError) as exc:
            self.send({"op": "error", "id": request_id, "message": _describe(exc)})
            return
        ticks = procinfo.start_ticks(pid)  # the child cannot have been reaped yet: this is its entry
        reply = {"op": "spawned", "id": request_id, "pid": pid, "start_ticks": ticks}
        # Reply once the child leads its group (and a command agent's command is in it), or a signal
        # to the group could miss the command. Meanwhile we serve the next requests.
        self.unannounced[ready_fd] = reply
        self.ready_fds[pid] = ready_fd
        self.poller.register(ready_fd, select.POLLIN)

    def announce(self, ready_fd: int) -> None:
        reply = self.unannounced.pop(ready_fd)
        del self.ready_fds[reply["pid"]]
        self.poller.unregister(ready_fd)
        os.close(ready_fd)
        self.send(reply)

    def spawn(self, request: dict[str, Any]) -> tuple[int, int]:
        """Fork a leader for `request`; returns its pid and the fd it announces itself on."""
        argv = request.get("argv")
        if argv is not None and (
            not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv)
        ):
            raise BadRequest("argv must be null or a non-empty list of strings")
        env = _env(request.get("env"))
        if request.get("env_base"):  # only what differs from the run's shared environment
            unset = request.get("env_unset") or []
            env = {k: v for k, v in {**self.base_env, **env}.items() if k not in unset}
        exit_path = request.get("exit_path")
        if exit_path is not None:
            if not isinstance(exit_path, str) or not os.path.isabs(exit_path):
                raise BadRequest("exit_path must be null or an absolute path")
            if not os.path.isdir(os.path.dirname(exit_path)):
                raise BadRequest(f"no directory for the exit report: {exit_path}")
            exitreport.remove_exit_report(exit_path)
        fds: list[int] = []
        try:
            ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
            fds += [ready_r, ready_w]
            fds.append(os.open(str(request["stdin_path"]), os.O_RDONLY | os.O_CLOEXEC))
            fds.append(os.open(str(request["stdout_path"]), _OPEN_OUT, 0o644))
            fds.append(os.open(str(request["stderr_path"]), _OPEN_OUT, 0o644))
            fds.append(os.open(str(request["cwd"]), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC))
            launch = leader.Launch(
                name=str(request.get("name", "")),
                argv=argv,
                env=env,
                stdio=(fds[2], fds[3], fds[4]),
                cwd_fd=fds[5],
                ready_fd=ready_w,
                grace=float(request.get("grace", 10.0)),
                server_pid=self.pid,
                supervisor_pid=self.supervisor_pid,
                nofile_soft=self.nofile_soft,
                exit_path=exit_path,
            )
            pid = os.fork()
            if pid == 0:
                try:
                    leader.run(launch)
                finally:
                    os._exit(1)
            self.leaders.add(pid)
            fds.remove(ready_r)
            return pid, ready_r
        finally:
            for fd in fds:
                os.close(fd)

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            if pid in self.leaders:
                self.leaders.discard(pid)
                if pid in self.ready_fds:  # it died before announcing: "spawned" must come first
                    self.announce(self.ready_fds[pid])
                code = os.waitstatus_to_exitcode(status)
                returncode, signum = (code, None) if code >= 0 else (None, -code)
                self.send({"op": "exit", "pid": pid, "returncode": returncode, "signal": signum})
        # Any other child was adopted from a leader that died without cleaning up: end it too.
        self.kill_adopted()

    def kill_adopted(self) -> list[int]:
        """SIGKILL every child that is not a leader (an adopted orphan); returns their pids."""
        adopted = [kid for kid in procinfo.children(self.pid) if kid not in self.leaders]
        for kid in adopted:
            with contextlib.suppress(OSError):
                os.kill(kid, signal.SIGKILL)
        return adopted

    def sweep(self, report: bool) -> list[int]:
        """Kill and reap adopted processes until none is left or SWEEP_TIMEOUT passed; the survivors.

        Killing an orphan hands its own children to us, so this repeats until a round finds nobody.
        `report`: reap leaders too and send their "exit" (only from the serve loop: a signal handler
        must not write to the channel, it may have interrupted a write)."""
        deadline = time.monotonic() + SWEEP_TIMEOUT
        while True:
            if report:
                with contextlib.suppress(OSError):
                    self.reap()
            adopted = self.kill_adopted()
            for kid in adopted:
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(kid, os.WNOHANG)
            if not adopted or time.monotonic() >= deadline:
                return adopted
            select.select([self.wake_r], [], [], 0.01)  # SIGCHLD (or 10 ms) before the next round
            with contextlib.suppress(BlockingIOError):
                while os.read(self.wake_r, 4096):
                    pass


def _env(value: object) -> dict[str, str]:
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise BadRequest("env must be an object of strings")
    return value


def _describe(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.filename is not None:
        return f"{exc.strerror}: {exc.filename}"
    if isinstance(exc, KeyError):
        return f"missing field: {exc.args[0]}"
    return str(exc) or type(exc).__name__


def _option(argv: list[str], name: str) -> int:
    return int(argv[argv.index(name) + 1])


def _continue_agents(server: ForkServer) -> None:
    """Wake any paused agent group before we go, whichever way we go (the supervisor's death shows up
    as our PDEATHSIG or as EOF on the channel, in either order).

    Our agents stop their own groups when we die (their PDEATHSIG SIGTERM), but a SIGSTOPped agent
    would keep that signal pending for ever; SIGCONT lets it act on it.
    """
    for pid in list(server.leaders):
        with contextlib.suppress(OSError):
            os.killpg(pid, signal.SIGCONT)


def _continue_agents_and_exit(server: ForkServer) -> NoReturn:
    _continue_agents(server)
    server.sweep(report=False)
    os._exit(0)


def main(argv: list[str]) -> int:
    parent = _option(argv, "--parent")
    procinfo.set_pdeathsig(signal.SIGTERM)  # by default it ends us; once we have agents, see below
    if os.getppid() != parent:
        return 1  # the supervisor died while we started
    procinfo.become_subreaper()
    for fd in (0, 1, 2):  # a closed std fd would be reused by a pipe that a leader then dup2s over
        try:
            os.fstat(fd)
        except OSError:
            os.open(os.devnull, os.O_RDWR)
    leader.reset_signals()  # whatever the supervisor's parent ignored, agents start from defaults
    for signum in leader.SERVER_IGNORED:
        signal.signal(signum, signal.SIG_IGN)
    sock = socket.socket(fileno=_option(argv, "--fd"))
    sock.set_inheritable(False)
    server = ForkServer(sock, _option(argv, "--nofile"), parent)
    signal.signal(signal.SIGTERM, lambda signum, frame: _continue_agents_and_exit(server))
    gc.freeze()  # keep the collector from touching (and so un-sharing) the pre-imported objects
    # A broken channel means the supervisor is gone; our agents get their parent-death signal.
    try:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            server.serve()
    finally:
        _continue_agents(server)
        # Reported sweep: a leader that ends meanwhile still gets its "exit" to the supervisor.
        server.sweep(report=True)
    return 0


if __name__ == "__main__":
    os._exit(main(sys.argv[1:]))
