"""The shell tool: run one allowlisted argv without a shell, confined and bounded.

This is the one module of the agent package that starts processes (docs/decisions.md says why the
agent, not only rnix/supervisor, may): the command is the agent's own work, and it is confined here.

Contract for `shell(policy, args)`:
- `args["argv"]` is a list of strings (a string is split with shlex as a courtesy: quotes group,
  nothing is expanded). `shellrules.check` must pass, else `Denied` and nothing runs.
- The program is found by bare name on MIN_PATH only, and runs with cwd = the workspace, stdin =
  /dev/null, stdout and stderr on one pipe, in its own process group, with PDEATHSIG(SIGKILL) (if the
  agent dies, the command does too), and with the minimal environment: PATH=MIN_PATH, LANG=C.UTF-8,
  HOME = a new empty directory removed afterwards (not the workspace: dotfiles the agent could write
  there, such as `.gitconfig` or `.curlrc`, would configure the programs it runs), plus
  `shellrules.extra_env` (git's protected settings). Nothing else: no API keys, no RNIX_* variables.
- At most `max_output` bytes of output are kept; the rest is read and counted, not kept, so a chatty
  command is never blocked on a full pipe. On timeout the group gets SIGTERM, then SIGKILL after
  KILL_AFTER seconds. When the command exits, whatever it left in its group is killed, and the output
  is read for at most LEFTOVER_WAIT more seconds. A command in a new session (`setsid`) escapes the
  group kill; rnix's supervisor is a subreaper and reaps it in the end.
- Call it from the agent's main thread: PDEATHSIG fires when the *thread* that started the command
  exits. `kill_running()` stops commands in progress, for the agent's own SIGTERM handler.
"""

from __future__ import annotations

import contextlib
import os
import select
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from typing import Any

from rnix.agent.tools import shellrules
from rnix.agent.tools.policy import ShellTool, ToolPolicy
from rnix.agent.tools.result import Denied, Failed, ToolResult, clean, count, one_line

KILL_AFTER = 1.0  # seconds between SIGTERM and SIGKILL on timeout
LEFTOVER_WAIT = 0.5  # seconds the pipe may stay open after the command itself exited
_POLL = 0.1
_EXIT_POLL = 0.002
_PR_SET_PDEATHSIG = 1

RUNNING: dict[int, str] = {}  # process group -> HOME directory, of commands in progress


def kill_running(signum: int = signal.SIGKILL) -> None:
    """Signal the process group of every command in progress, and remove their HOME directories
    (for the agent's SIGTERM handler, which then exits without returning to the call)."""
    for pgid, home in list(RUNNING.items()):
        with contextlib.suppress(OSError):
            os.killpg(pgid, signum)
        shutil.rmtree(home, ignore_errors=True)


def split_argv(value: object) -> list[str]:
    """The argv from the model's `argv` argument: a list of strings, or a string to shlex-split."""
    if isinstance(value, str):
        try:
            return shlex.split(value)
        except ValueError as exc:
            raise Failed(f"cannot split the command line: {exc}") from exc
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return list(value)
    raise Failed('argv must be a list of strings, e.g. ["ls", "-l", "src"]')


def shell(policy: ToolPolicy, args: dict[str, Any]) -> ToolResult:
    tool = policy.shell
    assert isinstance(tool, ShellTool)
    argv = split_argv(args["argv"])
    if not argv:
        raise Failed('argv is empty; give the program and its arguments, e.g. ["ls", "-l"]')
    reason = shellrules.check(argv, tool.allow, policy.workspace, allow_secrets=tool.allow_secrets)
    if reason:
        raise Denied(reason)
    executable = which(argv[0])
    if executable is None:
        raise Failed(f"`{argv[0]}` is allowed but not installed (looked in {shellrules.MIN_PATH})")
    home = tempfile.mkdtemp(prefix="rnix-home-")
    env = {"PATH": shellrules.MIN_PATH, "HOME": home, "LANG": "C.UTF-8", **shellrules.extra_env(argv[0])}
    try:
        run = _Run(executable, shellrules.prepare(argv), policy.workspace, env, tool)
        run.wait()
    finally:
        shutil.rmtree(home, ignore_errors=True)
    return run.result(shlex.join(argv))


def which(program: str) -> str | None:
    for directory in shellrules.MIN_PATH.split(":"):
        path = os.path.join(directory, program)
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return None


def _pdeathsig() -> Callable[[], None]:
    """What the child runs before exec: its own process group, and death with its parent."""
    import ctypes  # the standard library has no prctl

    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent = os.getpid()

    def before_exec() -> None:
        os.setpgid(0, 0)
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the agent died before PDEATHSIG was armed
            os._exit(127)

    return before_exec


class _Run:
    def __init__(
        self, executable: str, argv: list[str], cwd: str, env: dict[str, str], tool: ShellTool
    ) -> None:
        self.tool = tool
        self.kept = bytearray()
        self.total = 0
        self.timed_out = self.left_running = False
        try:
            self.proc = subprocess.Popen(
                argv,
                executable=executable,
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                preexec_fn=_pdeathsig(),
                close_fds=True,
            )
        except OSError as exc:
            raise Failed(f"cannot run {argv[0]}: {exc.strerror or exc}") from exc
        self.pgid = self.proc.pid
        RUNNING[self.pgid] = env["HOME"]

    def wait(self) -> None:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        deadline = time.monotonic() + self.tool.timeout
        exited_at: float | None = None
        eof = False
        try:
            while True:
                now = time.monotonic()
                if now >= deadline:
                    self.timed_out = True
                    break
                if exited_at is None and self._exited():
                    exited_at = now
                if eof:
                    # A program may close its output before it exits (coreutils do, at exit): wait for
                    # the exit itself, or the group kill below would decide its status.
                    if exited_at is not None:
                        break
                    time.sleep(min(_EXIT_POLL, deadline - now))
                    continue
                if exited_at is not None and now - exited_at >= LEFTOVER_WAIT:
                    self.left_running = True  # something it started still holds the pipe
                    break
                if poller.poll(min(deadline - now, _POLL) * 1000) and not self._read(fd):
                    eof = True
            if self.timed_out:
                self._signal(signal.SIGTERM)
                grace = time.monotonic() + KILL_AFTER
                while time.monotonic() < grace and not self._exited():
                    if poller.poll(_POLL * 1000):
                        self._read(fd)
        finally:
            # The leader is not reaped yet (waitid WNOWAIT), so its group id cannot have been reused.
            self._signal(signal.SIGKILL)
            self.proc.stdout.close()
            self.proc.wait()
            RUNNING.pop(self.pgid, None)
            self._reap_group()

    def _read(self, fd: int) -> bool:
        data = os.read(fd, 1 << 16)
        self.total += len(data)
        room = self.tool.max_output - len(self.kept)
        if room > 0:
            self.kept += data[:room]
        return bool(data)

    def _exited(self) -> bool:
        return os.waitid(os.P_PID, self.pgid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None

    def _signal(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pgid, signum)

    def _reap_group(self) -> None:
        """Reap group members re-parented to us (the agent is a subreaper): no zombies pile up."""
        deadline = time.monotonic() + KILL_AFTER
        while time.monotonic() < deadline:
            try:
                pid, _ = os.waitpid(-self.pgid, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                time.sleep(0.01)

    def result(self, label: str) -> ToolResult:
        code = self.proc.returncode
        text = self.kept.decode("utf-8", "replace") or "(no output)"
        notes = []
        if self.total > len(self.kept):
            notes.append(f"[output truncated: showed the first {len(self.kept):,} of {self.total:,} bytes]")
        if self.timed_out:
            notes.append(
                f"[timed out after {self.tool.timeout:g} s: "
                "the command and everything it started were killed]"
            )
            status = f"timed out after {self.tool.timeout:g} s"
        elif code < 0:
            name = signal.Signals(-code).name if -code in signal.valid_signals() else str(-code)
            notes.append(f"[killed by signal {name}]")
            status = f"killed by {name}"
        else:
            notes.append(f"[exit status {code}]")
            status = f"exit {code}"
        if self.left_running and not self.timed_out:
            notes.append("[the command left processes running; they were killed]")
        output = text.rstrip("\n") + "\n" + "\n".join(notes)
        summary = one_line(f"shell {label} -> {status}, {count(self.total, 'byte')} of output")
        return ToolResult(
            ok=code == 0 and not self.timed_out, denied=False, output=clean(output), summary=summary
        )
