"""What a freshly forked agent process does: become a session leader, then run the agent.

Runs in the child of the fork server, never returns (os._exit). Contract:
- The process leads its own session and group (pid == pgid == sid), has fds 0/1/2 on the task file
  and the output files and no other fd, and works in `cwd`; the agent (the built-in runtime or the
  command) has exactly the requested environment.
- It asks for PDEATHSIG(SIGTERM) and is a child subreaper, so every descendant stays in its subtree
  (also those that `setsid` out of the group): the session is always a subset of that subtree.
- Built-in agent (argv None): rnix.agent.runtime runs in this process with default signal handling.
- Command agent: the command is posix_spawn'ed as a child with default signals; the leader waits for
  it and ignores signals sent to the group (they already reach the command), except SIGTERM caused by
  the death of the fork server: then it stops the whole subtree itself (TERM, `grace`, KILL) and dies
  by SIGTERM itself, whatever the command's status (a command that exits 0 on SIGTERM was interrupted,
  not finished, and must not look like a success to whoever reaps the leader). When the
  command ends, the leader ends whatever it left behind (TERM, a short wait, KILL), then exits with the
  command's status; if the command was killed by signal S, the leader kills itself with S so the fork
  server sees what a shell would. Exec failures exit 127 (not found) or 126 (not executable).
- Exit report (`exit_path`, see exitreport.py): written as the last thing before the leader exits,
  only when the agent ended by itself: the built-in runtime finished, or the command exited (or was
  killed by a signal that was not the leader's own parent-death stop). Never after that stop, and
  never for a failure once the fork server or the supervisor is dead or dying: an agent that failed
  because the gateway went away with the supervisor was interrupted, not finished (resume re-runs
  it). A success is always reported, also when the supervisor died right after it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import resource
import signal
import time
from collections.abc import Mapping, Sequence
from typing import NoReturn

from rnix.supervisor import exitreport, procinfo

_UNCATCHABLE = {signal.SIGKILL, signal.SIGSTOP}
# Faults must keep their default action, or a bug in the leader would spin instead of dying.
_SYNCHRONOUS = {signal.SIGSEGV, signal.SIGBUS, signal.SIGFPE, signal.SIGILL, signal.SIGTRAP, signal.SIGSYS}
_RESETTABLE = frozenset(signal.valid_signals() - _UNCATCHABLE)
# A command leader blocks these and collects them with sigtimedwait: nothing interrupts its loop.
_WATCHED = frozenset(_RESETTABLE - _SYNCHRONOUS - {signal.SIGABRT})
# Terminal signals are for the supervisor, which decides how its agents stop: the server ignores them.
SERVER_IGNORED = (signal.SIGINT, signal.SIGHUP, signal.SIGQUIT)
AFTER_EXIT_WAIT = 1.0  # the most a finished command's leftovers get between SIGTERM and SIGKILL
_POLL = 0.05


class Launch:
    """What the fork server hands to the child it just forked (fds are already open in it)."""

    __slots__ = (
        "argv",
        "cwd_fd",
        "env",
        "exit_path",
        "grace",
        "name",
        "nofile_soft",
        "ready_fd",
        "server_pid",
        "stdio",
        "supervisor_pid",
    )

    def __init__(
        self,
        name: str,
        argv: Sequence[str] | None,
        env: Mapping[str, str],
        stdio: tuple[int, int, int],
        cwd_fd: int,
        ready_fd: int,
        grace: float,
        server_pid: int,
        supervisor_pid: int,
        nofile_soft: int,
        exit_path: str | None = None,
    ) -> None:
        self.name, self.argv, self.env, self.stdio = name, argv, env, stdio
        self.cwd_fd, self.ready_fd, self.grace = cwd_fd, ready_fd, grace
        self.server_pid, self.supervisor_pid, self.nofile_soft = server_pid, supervisor_pid, nofile_soft
        self.exit_path = exit_path


def run(launch: Launch) -> NoReturn:
    """Become the agent's leader and run it; exits the process with the agent's status."""
    status = 1
    try:
        _become_leader(launch)
        if launch.argv is None:
            from rnix.agent import runtime

            _announce(launch)  # before the environment: rewriting os.environ takes ~0.7 ms
            os.environ.clear()
            os.environ.update(launch.env)
            runtime.main(on_exit=lambda status: report_exit(launch, status, None))  # exits by itself
        else:
            # The command gets `env` and default signals from posix_spawn; the leader needs only
            # the PATH that posix_spawnp searches.
            if "PATH" in launch.env:
                os.putenv("PATH", launch.env["PATH"])
            else:
                os.unsetenv("PATH")
            status = _Command(launch).run()
    except BaseException as exc:  # never fall back into the fork server's loop
        _say(f"rnix: agent {launch.name}: cannot start: {exc}")
    os._exit(status)


def _announce(launch: Launch) -> None:
    """Let the fork server reply "spawned". Only now may anyone signal our group: a command agent's
    command is already in it (posix_spawn returns after the exec), so no group signal can miss it."""
    if launch.ready_fd >= 0:
        os.write(launch.ready_fd, b"!")
        os.close(launch.ready_fd)
        launch.ready_fd = -1


def report_exit(launch: Launch, returncode: int | None, signum: int | None) -> None:
    """Leave the exit report of an agent that ended by itself (see the module docstring)."""
    if launch.exit_path is None:
        return
    if returncode != 0 and _supervisor_gone(launch):
        return
    try:
        exitreport.write_exit_report(launch.exit_path, returncode, signum)
    except OSError as exc:
        _say(f"rnix: agent {launch.name}: cannot write its exit report: {exc}")


def _supervisor_gone(launch: Launch) -> bool:
    """True when the fork server or the supervisor is dead or on its way out. A dying supervisor is
    marked exiting before its sockets close, so an agent that failed on the gateway's EOF sees it."""
    if os.getppid() != launch.server_pid:
        return True
    if procinfo.parent_pid(launch.server_pid) != launch.supervisor_pid:
        return True
    return procinfo.is_exiting(launch.supervisor_pid)


def _say(line: str) -> None:
    with contextlib.suppress(OSError):
        os.write(2, (line.replace("\n", " ") + "\n").encode("utf-8", "replace"))


def _become_leader(launch: Launch) -> None:
    signal.set_wakeup_fd(-1)  # the fork server's wakeup pipe is not ours
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # the fork server's handler is not ours either
    command = launch.argv is not None
    # Block before PDEATHSIG so a SIGTERM for a dead parent cannot be lost between the two steps.
    signal.pthread_sigmask(signal.SIG_SETMASK, _WATCHED if command else ())
    os.setsid()
    procinfo.set_pdeathsig(signal.SIGTERM)
    if os.getppid() != launch.server_pid:
        os._exit(1)  # the fork server died before PDEATHSIG was armed: nobody wants this agent
    procinfo.become_subreaper()
    for target, fd in enumerate(launch.stdio):
        os.dup2(fd, target)
    os.fchdir(launch.cwd_fd)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    os.closerange(3, launch.ready_fd)
    os.closerange(launch.ready_fd + 1, max(soft, 1024))
    if launch.nofile_soft < soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (launch.nofile_soft, hard))
    if not command:
        for signum in SERVER_IGNORED:
            signal.signal(signum, signal.SIG_DFL)


def reset_signals() -> None:
    """Default dispositions, as in a fresh `python` (the fork server calls it once at start; each
    leader then only undoes what the server changed: SERVER_IGNORED, its SIGCHLD and SIGTERM handlers)."""
    for signum in _RESETTABLE:
        signal.signal(signum, signal.SIG_DFL)
    # Python code expects EPIPE/EFBIG as exceptions, as in any `python` process.
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)


class _Command:
    def __init__(self, launch: Launch) -> None:
        self.launch = launch
        self.pid = 0
        self.status: int | None = None  # the command's raw wait status once reaped

    def run(self) -> int:
        argv = list(self.launch.argv or ())
        try:
            # posix_spawnp searches the leader's PATH, which run() set to the agent's.
            self.pid = os.posix_spawnp(
                argv[0], argv, dict(self.launch.env), setsigmask=(), setsigdef=_RESETTABLE
            )
        except OSError as exc:
            _announce(self.launch)
            _say(f"rnix: {argv[0]}: {exc.strerror}")
            status = 127 if exc.errno in (errno.ENOENT, errno.ENOTDIR) else 126
            report_exit(self.launch, status, None)
            return status
        _announce(self.launch)
        orphaned = False
        while self.status is None:
            info = signal.sigtimedwait(_WATCHED, 5.0)
            if info is not None and info.si_signo == signal.SIGCHLD:
                self._reap()
            elif (info is None or info.si_signo == signal.SIGTERM) and self._orphaned():
                orphaned = True
                break
        self._end_subtree(self.launch.grace if orphaned else min(self.launch.grace, AFTER_EXIT_WAIT))
        if orphaned:
            return _die_by(signal.SIGTERM)
        if self.status is not None:  # it ended by itself, not by our orphan stop
            code = os.waitstatus_to_exitcode(self.status)
            report_exit(self.launch, *((code, None) if code >= 0 else (None, -code)))
        return self._mirror_status()

    def _orphaned(self) -> bool:
        return os.getppid() != self.launch.server_pid

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid == self.pid:
                self.status = status

    def _end_subtree(self, wait: float) -> None:
        """TERM everything below us, wait up to `wait`, then KILL level by level until nothing is left.

        The group is signalled at once; escaped sessions are reached as direct children, because as a
        subreaper we adopt every orphan of the subtree. We never KILL our own group: that would kill us.
        """
        me = os.getpid()
        kids = procinfo.children(me)
        if not kids:
            return
        _send_group(me, signal.SIGTERM)  # we block SIGTERM ourselves
        termed: set[int] = set()
        deadline = time.monotonic() + wait
        while kids:
            for kid in set(kids) - termed:
                _send(kid, signal.SIGTERM)
                _send(kid, signal.SIGCONT)
                termed.add(kid)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            signal.sigtimedwait({signal.SIGCHLD}, min(remaining, _POLL))
            self._reap()
            kids = procinfo.children(me)
        while kids:
            for kid in kids:
                _send(kid, signal.SIGKILL)
            signal.sigtimedwait({signal.SIGCHLD}, _POLL)
            self._reap()
            kids = procinfo.children(me)

    def _mirror_status(self) -> int:
        if self.status is None:
            return 1
        code = os.waitstatus_to_exitcode(self.status)
        return code if code >= 0 else _die_by(-code)


def _die_by(signum: int) -> int:
    """Kill ourselves with `signum`, so our parent sees the same signal as a shell would."""
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # the command may have dumped core; we need not
    if signum not in _UNCATCHABLE:
        signal.signal(signum, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signum})
    os.kill(os.getpid(), signum)
    return 128 + signum  # only reached for signals whose default action does not terminate


def _send(pid: int, signum: int) -> None:
    with contextlib.suppress(OSError):  # gone already (ESRCH) is the normal race here
        os.kill(pid, signum)


def _send_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(OSError):
        os.killpg(pgid, signum)
