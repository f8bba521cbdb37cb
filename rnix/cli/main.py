"""The `rnix` entry point and the one place that maps exceptions to messages and exit codes.

Every command returns an `ExitCode` (or None for success) and raises `RnixError` for failures a user
can cause. `run()` turns those into `rnix: error: ...` / `hint: ...` on stderr, the `--json` error
document on stdout when `--json` was given, and the exit status. Only `--debug` shows a traceback.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Sequence
from typing import NoReturn

import click

from rnix import __version__
from rnix.cli import (
    agents,
    apply,
    compose_graph,
    compose_ls,
    compose_results,
    compose_run,
    models,
    procs,
    reputation,
)
from rnix.cli.completion import completion_cmd
from rnix.cli.compose import compose
from rnix.cli.habits import TOP_HABITS, HabitGroup
from rnix.cli.top import top_cmd
from rnix.env import Env
from rnix.errors import (
    ExitCode,
    HomeUnusable,
    InvalidCompose,
    InvalidDefinition,
    RnixError,
    UsageError,
)
from rnix.ui import jsonout

# imported for their side effect: they add commands to compose
_ = compose_run, compose_graph, compose_results, compose_ls

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class RnixGroup(HabitGroup):
    """`rnix "some intent"`: a first argument that is no command (nor an option) means `run`.

    A docker command rnix lacks names the rnix way (`habits`); another unknown word that looks like
    no command is taken for an intent that lacked quotes or `run`, and says so.
    """

    habits = TOP_HABITS

    def unknown(self, ctx: click.Context, name: str) -> UsageError | None:
        from rnix.core.problems import did_you_mean

        if did_you_mean(name, list(self.commands)):
            return super().unknown(ctx, name)
        return UsageError(
            f"rnix has no '{name}' command", f'to run an agent with that intent: rnix run "{name}"'
        )

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        first = next((i for i, a in enumerate(args) if not a.startswith("-")), None)
        if first is not None and args[first] not in self.commands and " " in args[first]:
            args = [*args[:first], "run", *args[first:]]
        return super().parse_args(ctx, args)


@click.group(cls=RnixGroup, context_settings=CONTEXT)
@click.version_option(__version__, "-V", "--version", prog_name="rnix")
@click.option("--debug", is_flag=True, help="Show a traceback when a command fails.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """rnix runs LLM agents the way Unix runs programs.

    Each agent is a real process with a PID, an exit status, stdin/stdout and logs. Describe a team of
    agents in compose.yaml, check it with `rnix compose plan` and run it with `rnix compose up`.
    `rnix "INTENT"` runs a single agent.

    \b
    Exit status: 0 success; 1 the run did not fully succeed; 2 usage error or invalid
    compose file (nothing was run); 3 RNIX_HOME cannot hold rnix's state (not a directory,
    read-only, full); 130/143 interrupted by SIGINT/SIGTERM.
    """
    env = ctx.ensure_object(Env)
    env.debug = env.debug or debug


cli.add_command(compose)
for _command in (
    *procs.COMMANDS,
    top_cmd,
    reputation.reputation_cmd,
    completion_cmd,
    agents.agents_cmd,
    models.models_cmd,
    apply.apply_cmd,
):
    cli.add_command(_command)


def report(env: Env, error: RnixError) -> None:
    """Print an error the one rnix way (and the JSON document when --json was asked for)."""
    if isinstance(error, (InvalidCompose, InvalidDefinition)):
        for problem in error.problems:
            env.stderr.write(f"{problem}\n")
    env.stderr.write(f"rnix: error: {error.message}\n")
    if error.hint:
        env.stderr.write(f"hint: {error.hint}\n")
    if env.json_errors:
        jsonout.write_error(env.stdout, error)


def main(argv: Sequence[str] | None = None, env: Env | None = None) -> int:
    """Run one command; return its exit status. Never raises (but SystemExit from click's --help)."""
    args = list(sys.argv[1:] if argv is None else argv)
    env = env or Env.from_os()
    env.json_errors = "--json" in args
    env.debug = env.debug or "--debug" in args
    try:
        result = cli.main(args=args, prog_name="rnix", standalone_mode=False, obj=env)
        return int(result) if isinstance(result, int) else ExitCode.OK
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.exceptions.NoArgsIsHelpError as exc:
        env.stderr.write(exc.format_message() + "\n")
        return ExitCode.USAGE
    except click.ClickException as exc:
        cmd = exc.ctx.command_path if getattr(exc, "ctx", None) else "rnix"  # type: ignore[attr-defined]
        report(env, UsageError(exc.format_message(), f"see `{cmd} --help`"))
        return ExitCode.USAGE
    except RnixError as exc:
        if env.debug:
            traceback.print_exc(file=env.stderr)
        report(env, exc)
        return exc.exit_code
    except (KeyboardInterrupt, click.exceptions.Abort):
        env.stderr.write("rnix: interrupted\n")
        return ExitCode.INTERRUPTED
    except BrokenPipeError:
        return _broken_pipe()
    except Exception as exc:  # the one catch-all: a bug must still not print a bare traceback
        if env.debug:
            traceback.print_exc(file=env.stderr)
        unusable = _home_error(env, exc)
        if unusable is not None:
            report(env, unusable)
            return unusable.exit_code
        internal = RnixError(
            f"internal error: {type(exc).__name__}: {exc}",
            "this is a bug in rnix; run again with --debug for a traceback and report it",
        )
        internal.code = "INTERNAL"
        report(env, internal)
        return ExitCode.FAILURE


def _home_error(env: Env, exc: Exception) -> RnixError | None:
    """A write under RNIX_HOME the filesystem refused (full, read-only, not a directory) that no
    check caught: the user's to fix, not a bug."""
    from pathlib import Path

    from rnix.store.preflight import cause_of, fix_hint

    filename = getattr(exc, "filename", None)
    if not isinstance(exc, OSError) or not filename:
        return None
    path = Path(str(filename))
    if path != env.home and env.home not in path.parents:
        return None
    cause = cause_of(path, exc)
    if cause is None:
        return None
    return HomeUnusable(f"cannot write {path} (RNIX_HOME): {cause}", fix_hint(cause))


def _broken_pipe() -> int:
    """The reader went away (`rnix ... | head`): stop quietly, like other Unix tools."""
    import os

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return ExitCode.FAILURE


def run() -> NoReturn:
    """Console-script entry point."""
    sys.exit(main())
