"""The shell tool's rules, as data: which argvs are refused before anything runs, and why.

The allowlist is the real boundary. The shell tool runs an argv directly (never through a shell),
and only when its program, given by bare name, is on the agent's allowlist: an agent that may run
`python3` may run any Python program it can write, and that is the definition author's decision.

Everything else here is defence in depth against well-known ways to turn an allowed program into a
different one: programs that exist to run other programs (shells, `env`, `xargs`, `sudo`, ...) can
never be allowed; options that make an allowed program run a command (`find -exec`, `git -c`,
`tar --to-command`, inline code for interpreters such as `python3 -c`) are refused; so are shell
syntax the model may expect to work (`|`, `>`, `&&`, `$(...)`, backticks: no shell interprets them),
arguments naming paths outside the workspace, and (unless the tool's `allow_secrets` is set)
arguments naming secret-bearing files such as `.env` (rnix.agent.tools.secretfiles). These rules
catch the obvious moves, not every possible one: a program's options can be spelt in ways the
tables do not know (joined short options such as `-o/etc/x` are not parsed), so allowlist only
programs you would let the agent run freely inside its workspace.

`check(argv, allow, workspace)` returns the reason for refusing, or None; `prepare(argv)` adds the
options always forced on a program (`sed --sandbox`); `extra_env(program)` is what a program gets on
top of the minimal environment.
"""

from __future__ import annotations

import os
import posixpath
import re
from collections.abc import Sequence

from rnix.agent.tools import secretfiles


def _names(text: str) -> list[str]:
    """The table's words (a data table reads better as text than as a list of quoted strings)."""
    return text.split()


_SHELLS = _names(
    "sh bash dash zsh ksh mksh pdksh oksh ash yash fish csh tcsh rbash rzsh elvish nu xonsh pwsh "
    "powershell busybox toybox"
)
_LAUNCHERS = _names(
    "env nice nohup timeout stdbuf time xargs parallel sudo su doas runuser pkexec chroot setsid "
    "setpriv capsh sg newgrp ionice taskset chrt prlimit numactl cpulimit unshare nsenter "
    "systemd-run start-stop-daemon daemonize flock watch script expect strace ltrace gdb lldb "
    "valgrind faketime fakeroot firejail bwrap proxychains proxychains4 torsocks ssh rsh sshpass "
    "catchsegv nocache dbus-launch tmux screen at batch crontab exec eval command builtin source "
    "ld.so ld-linux.so.2 ld-linux-x86-64.so.2 run-parts"
)
_EDITORS = _names("vi vim nvim view vimdiff ex ed emacs emacsclient")

# Programs that can never be on an allowlist (ToolPolicy.from_json refuses them; check() too).
NEVER_ALLOWED: dict[str, str] = {
    **{name: "is a shell: it runs any command" for name in _SHELLS},
    **{name: "runs another program given in its arguments" for name in _LAUNCHERS},
    **{name: "is an editor that can run shell commands" for name in _EDITORS},
}

MIN_PATH = "/usr/local/bin:/usr/bin:/bin"
SAFE_ABSOLUTE = frozenset({"/dev/null", "/dev/stdout", "/dev/stderr"})

# Shell syntax: as whole arguments these mean the model expected a shell.
OPERATORS = frozenset(_names("| || & && ; ;; < << <<< > >> >| &> &>> <> 2> 2>> 2>&1 1>&2 >&2 >&1 <( >("))
REDIRECTION = re.compile(r"\d*(>|>>|>&|&>|&>>)\S*")  # `>out.txt`, `2>/dev/null`, `&>log`
SUBSTITUTION = ("$(", "`", "<(", ">(")


# Interpreters: options whose value is program text. `short` letters count anywhere in a short-option
# cluster (`python3 -Ic ...`, `perl -ne ...`); `long` options also in their `--opt=value` form;
# `words` are subcommands that evaluate text. Every argument is checked, not only those before the
# script name: a script of the agent's own that takes `-c` is refused too (a false refusal costs one
# step; a missed one runs code).
class Inline:
    def __init__(self, short: str = "", long: tuple[str, ...] = (), words: tuple[str, ...] = ()) -> None:
        self.short, self.long, self.words = short, long, words


INTERPRETERS: tuple[tuple[re.Pattern[str], Inline], ...] = tuple(
    (re.compile(name), inline)
    for name, inline in (
        (r"(python|pypy)[0-9.]*", Inline("c")),
        (r"perl[0-9.]*", Inline("eE")),
        (r"ruby[0-9.]*|jruby|irb", Inline("e")),
        (r"node(js)?|bun", Inline("ep", ("--eval", "--print"))),
        (r"deno", Inline("e", ("--eval",), ("eval", "repl"))),
        (r"php[0-9.]*", Inline("rRBE")),  # -r code, -B/-R/-E code before/for each/after input lines
        (r"lua(jit)?[0-9.]*", Inline("e")),
        (r"R|Rscript", Inline("e")),
        (r"julia", Inline("eE", ("--eval", "--print"))),
        (r"guile|racket|sbcl|clisp|ocaml|scheme", Inline("ec", ("--eval", "--command"))),
        (r"osascript", Inline("e")),
        # awk's program is text and system() runs commands: only `-f FILE` programs (see _awk).
        (r"[gmn]?awk", Inline("e", ("--source", "--exec"))),
        (r"g?make", Inline("E", ("--eval",))),
        (r"sqlite3?", Inline("", ("-cmd", "-init"))),
    )
)
AWK = re.compile(r"[gmn]?awk")

# Options that make a non-interpreter run a command (or write where it should not). `words` match as
# whole arguments or `word=value`; `letters` anywhere in a short-option cluster.
OPTIONS: dict[str, tuple[tuple[str, ...], str]] = {
    "find": (
        ("-exec", "-execdir", "-ok", "-okdir", "-delete", "-fprint", "-fprint0", "-fprintf", "-fls"),
        "",
    ),
    "tar": (
        (
            "--to-command",
            "--checkpoint-action",
            "--use-compress-program",
            "--rsh-command",
            "--info-script",
            "--new-volume-script",
            "--rmt-command",
        ),
        "IF",
    ),
    "rsync": (("--rsh", "--rsync-path"), "e"),
    "sort": (("--compress-program",), ""),
    "zip": (("-TT", "--unzip-command"), ""),
    "man": (("--pager", "--html"), "PH"),
    "scp": ((), "SoF"),
    "sftp": ((), "SoFD"),
    "npx": (("--call",), "c"),
    "npm": (("--call",), ""),
    "tcpdump": ((), "z"),
}
FORCED = {"sed": ("--sandbox",)}  # GNU sed: no `e` (run a command), `r`, `w` in the script

# git: global options taking a separate value; global options refused; subcommands refused; options
# refused per subcommand (words, letters); arguments refused anywhere (transports that run commands).
GIT_GLOBAL_VALUE = frozenset(
    {"-C", "-c", "--git-dir", "--work-tree", "--namespace", "--config-env", "--super-prefix", "--attr-source"}
)
GIT_GLOBAL_DENIED = {
    "-c": "sets configuration, which can name programs for git to run (core.pager, alias.x=!cmd, ...)",
    "--config-env": "sets configuration, which can name programs for git to run",
    "--exec-path": "changes where git looks for the programs it runs",
    "--git-dir": "points git at another repository, whose configuration git would trust",
    "--work-tree": "points git at another work tree",
}
GIT_SUBCOMMANDS_DENIED = {
    **dict.fromkeys(("config",), "changes git's configuration, which can name programs for git to run"),
    **dict.fromkeys(
        ("filter-branch", "bisect", "submodule", "difftool", "mergetool"), "runs commands it is given"
    ),
    **dict.fromkeys(("help", "instaweb", "web--browse", "gui", "citool"), "starts a browser, pager or GUI"),
    **dict.fromkeys(
        (
            "daemon",
            "shell",
            "http-backend",
            "upload-pack",
            "receive-pack",
            "upload-archive",
            "remote-ext",
            "remote-fd",
        ),
        "is a server-side or transport program",
    ),
    **dict.fromkeys(
        _names(
            "credential credential-store credential-cache send-email imap-send p4 svn cvsimport cvsserver"
        ),
        "talks to other systems or credential helpers",
    ),
}
GIT_OPTIONS_DENIED: dict[str, tuple[tuple[str, ...], str]] = {
    "clone": (("--upload-pack", "--config", "--template"), "uc"),
    "fetch": (("--upload-pack",), ""),
    "pull": (("--upload-pack",), ""),
    "ls-remote": (("--upload-pack",), ""),
    "push": (("--receive-pack", "--exec"), ""),
    "archive": (("--exec", "--remote"), ""),
    "rebase": (("--exec",), "x"),
    "grep": (("--open-files-in-pager",), "O"),
    "init": (("--template",), ""),
}
GIT_ANYWHERE = ("--upload-pack", "--receive-pack", "--config-env")
GIT_TRANSPORTS = ("ext::", "fd::")
GIT_ENV = {  # protected configuration: an embedded bare repository cannot bring its own config
    "GIT_CONFIG_COUNT": "1",
    "GIT_CONFIG_KEY_0": "safe.bareRepository",
    "GIT_CONFIG_VALUE_0": "explicit",
    "GIT_TERMINAL_PROMPT": "0",
}


def check(
    argv: Sequence[str], allow: Sequence[str], workspace: str, *, allow_secrets: bool = False
) -> str | None:
    """Why `argv` may not run, or None when it may (see the module docstring)."""
    if not argv:
        return 'the argv is empty; give the program and its arguments, e.g. ["ls", "-l"]'
    program, args = argv[0], list(argv[1:])
    if any("\0" in arg for arg in argv):
        return "an argument contains a NUL byte"
    if "/" in program or not program or program in (".", ".."):
        return f"`{program}` is a path; give the program by its bare name (e.g. `ls`), as on the allowlist"
    if program in NEVER_ALLOWED:
        return f"`{program}` {NEVER_ALLOWED[program]}; shells and program launchers are never allowed"
    if program not in allow:
        if " " in program:
            return f"`{program}` is not a program name: give the argv as a list, one element per argument"
        return f"`{program}` is not on this agent's allowlist (allowed: {', '.join(allow)})"
    found = _program(program, args) or _syntax(args) or _paths(args, workspace)
    return found or (None if allow_secrets else _secrets(args, workspace))


def _secrets(args: Sequence[str], workspace: str) -> str | None:
    """An argument (or `--opt=value` value) naming a secret-bearing file, as written or resolved.

    Runs after `_paths`, so every path-like argument is inside the workspace. A word that is not a
    path (`-n`, `5`) is harmless here: it names a secret only if it looks like one (`.env`).
    """
    top = workspace.rstrip("/") or "/"
    for arg in args:
        if arg.startswith("-") and "=" not in arg:
            continue
        value = arg.split("=", 1)[1] if arg.startswith("-") else arg
        if not value or value in SAFE_ABSOLUTE:
            continue
        full = posixpath.normpath(value if value.startswith("/") else posixpath.join(top, value))
        for path in (full, os.path.realpath(full)):
            if _inside(path, top) and secretfiles.is_secret([p for p in path[len(top) :].split("/") if p]):
                return f"`{arg}` names a file that {secretfiles.HINT}"
    return None


def _syntax(args: Sequence[str]) -> str | None:
    for arg in args:
        if arg in OPERATORS or REDIRECTION.fullmatch(arg) or arg.endswith(";"):
            return (
                f"`{arg}` is shell syntax, and no shell is used: each argument goes to the program "
                "as it is. Run one program per call, without pipes or redirections"
            )
        if any(token in arg for token in SUBSTITUTION):
            return f"`{arg}` contains shell substitution syntax, and no shell is used to expand it"
    return None


def _short_cluster(arg: str, letters: str) -> bool:
    """Whether `arg` is a short-option cluster (`-xvf`) containing one of `letters`."""
    return (
        bool(letters)
        and arg.startswith("-")
        and not arg.startswith("--")
        and any(c in letters for c in arg[1:])
    )


def _word(arg: str, words: Sequence[str]) -> str | None:
    for word in words:
        if arg == word or arg.startswith(word + "="):
            return word
    return None


def _program(program: str, args: list[str]) -> str | None:
    for pattern, inline in INTERPRETERS:
        if pattern.fullmatch(program):
            for arg in args:
                if _short_cluster(arg, inline.short) or _word(arg, inline.long) or arg in inline.words:
                    return (
                        f"`{program} {arg}` runs program text given on the command line; write the "
                        "program to a file in the workspace and run that file instead"
                    )
            if AWK.fullmatch(program) and not any(
                a in ("-f", "--file") or a.startswith("--file=") for a in args
            ):
                return (
                    f"`{program}` programs can run commands (system()), so awk is treated as an "
                    "interpreter: put the program in a file and pass it with -f FILE"
                )
    if program in OPTIONS:
        words, letters = OPTIONS[program]
        for i, arg in enumerate(args):
            old_style = program == "tar" and i == 0 and not arg.startswith("-")  # `tar xIf ...`
            if (
                _word(arg, words)
                or _short_cluster(arg, letters)
                or (old_style and _short_cluster("-" + arg, letters))
            ):
                return f"`{program} {arg}` can run another program or write outside the workspace"
    if program == "git":
        return _git(args)
    return None


def _git(args: list[str]) -> str | None:
    for arg in args:
        if any(transport in arg for transport in GIT_TRANSPORTS):
            return f"`{arg}` uses a git transport that runs a command"
        word = _word(arg, GIT_ANYWHERE)
        if word:
            return f"`git ... {word}` names a program for git to run"
    i = 0
    while i < len(args) and args[i].startswith("-"):
        arg = args[i]
        for option, why in GIT_GLOBAL_DENIED.items():
            if arg == option or arg.startswith(option + "=") or (option == "-c" and arg.startswith("-c")):
                return f"`git {arg}` {why}"
        i += 2 if arg in GIT_GLOBAL_VALUE else 1
    if i >= len(args):
        return None
    subcommand, rest = args[i], args[i + 1 :]
    if subcommand in GIT_SUBCOMMANDS_DENIED:
        return f"`git {subcommand}` {GIT_SUBCOMMANDS_DENIED[subcommand]}"
    words, letters = GIT_OPTIONS_DENIED.get(subcommand, ((), ""))
    for arg in rest:
        if _word(arg, words) or _short_cluster(arg, letters):
            return f"`git {subcommand} {arg}` can make git run a command or use outside configuration"
    return None


def _paths(args: Sequence[str], workspace: str) -> str | None:
    """Arguments (or `--opt=value` values) that name paths outside the workspace, or inside `.git`."""
    top = workspace.rstrip("/") or "/"
    for arg in args:
        value = arg.split("=", 1)[1] if arg.startswith("-") and "=" in arg else arg
        if not value:
            continue
        if ".git" in value.split("/"):
            return (
                f"`{arg}` names something inside `.git`; the repository's config and hooks are off "
                "limits because they can make git run programs"
            )
        if value in SAFE_ABSOLUTE:
            continue
        full = posixpath.normpath(value if value.startswith("/") else posixpath.join(top, value))
        if not _inside(full, top) or not _inside(os.path.realpath(full), top):
            return (
                f"`{arg}` names a path outside the workspace; commands run in the workspace and may only "
                "use paths inside it (relative paths without `..` escapes)"
            )
    return None


def _inside(path: str, top: str) -> bool:
    return path == top or path.startswith(top + "/") or top == "/"


def prepare(argv: Sequence[str]) -> list[str]:
    """The argv as run: forced options go right after the program name."""
    return [argv[0], *FORCED.get(argv[0], ()), *argv[1:]]


def extra_env(program: str) -> dict[str, str]:
    return dict(GIT_ENV) if program == "git" else {}
