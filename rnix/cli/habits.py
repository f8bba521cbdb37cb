"""Commands a docker user reaches for that rnix does not have, answered with the rnix way to do it.

Contract: `HabitGroup` is a click group that, for an unknown command name, raises `UsageError`
(exit 2) naming the rnix equivalent when `habits` knows the name, and otherwise asks its
`unknown` hook (by default: no such command, with a did-you-mean). Known commands are never
shadowed, so a command added later simply wins over its entry here. `logs_file_mistake` catches
`compose logs -f FILE`, where -f means --follow as in docker.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import click

from rnix.errors import UsageError

_STOP = "`rnix compose down` stops the project's run; `rnix kill PID` stops one agent"
_NOTHING_TO_BUILD = (
    "agents are processes started from compose.yaml, not images: there is nothing to {verb}; "
    "`rnix compose config -q` checks the file"
)

COMPOSE_HABITS: Mapping[str, str] = {
    "restart": "run `rnix compose up` again: it resumes the last run (--fresh starts over, "
    "--from AGENT re-runs AGENT and what depends on it)",
    "start": "`rnix compose up` (-d to run in the background)",
    "stop": _STOP,
    "kill": _STOP + " (-s SIGNAL to send another signal)",
    "rm": "there are no containers to remove: an agent's process is gone when it ends; "
    "`rnix compose down` stops a live run",
    "exec": "agents are processes, not containers: `rnix log PID -f` follows one, "
    "`rnix kill -s STOP PID` pauses it",
    "attach": "`rnix compose logs -f` follows the agents' output",
    "top": "`rnix top` watches every agent live; `rnix compose ps` lists this project's",
    "pause": "`rnix kill -s STOP PID` pauses an agent (`-s CONT` resumes it), or press p in `rnix top`",
    "unpause": "`rnix kill -s CONT PID` resumes a paused agent",
    "run": "`rnix compose up AGENT` runs AGENT and what it depends on; `rnix run INTENT` runs one "
    "agent outside a compose file",
    "create": "`rnix compose plan` shows what `up` would start",
    "pull": _NOTHING_TO_BUILD.format(verb="pull"),
    "push": _NOTHING_TO_BUILD.format(verb="push"),
    "build": _NOTHING_TO_BUILD.format(verb="build"),
    "images": _NOTHING_TO_BUILD.format(verb="list") + "; `rnix agents` lists the agent definitions",
    "events": "`rnix compose logs -f` follows the run; `rnix compose ps --json` gives its state",
    "port": "agents listen on no ports: they talk to the rnix gateway over a socket",
    "cp": "agents run in this directory: their files are where the compose file is",
    "version": "`rnix --version`",
}

TOP_HABITS: Mapping[str, str] = {
    "up": "`rnix compose up`",
    "down": "`rnix compose down`",
    "logs": "`rnix log PID` for one agent, `rnix compose logs` for a project",
    "stop": _STOP,
    "start": "`rnix compose up`, or `rnix run INTENT` for one agent",
    "restart": COMPOSE_HABITS["restart"],
    "rm": COMPOSE_HABITS["rm"],
    "exec": COMPOSE_HABITS["exec"],
    "inspect": "`rnix ps -a --json` or `rnix log PID --json`",
    "pause": COMPOSE_HABITS["pause"],
    "unpause": COMPOSE_HABITS["unpause"],
    "images": COMPOSE_HABITS["images"],
    "pull": COMPOSE_HABITS["pull"],
    "build": COMPOSE_HABITS["build"],
    "version": COMPOSE_HABITS["version"],
}


class HabitGroup(click.Group):
    habits: Mapping[str, str] = {}

    def unknown(self, ctx: click.Context, name: str) -> UsageError | None:
        """The error for an unknown command that `habits` does not know (None: click's own)."""
        from rnix.core.problems import did_you_mean

        close = did_you_mean(name, list(self.commands))
        return UsageError(
            f"{ctx.command_path} has no '{name}' command{close}", f"see `{ctx.command_path} --help`"
        )

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        name = args[0] if args else ""
        if name and not name.startswith("-") and self.get_command(ctx, name) is None:
            where = ctx.command_path
            if name in self.habits:
                raise UsageError(f"{where} has no '{name}' command", f"rnix's way: {self.habits[name]}")
            error = self.unknown(ctx, name)
            if error is not None:
                raise error
        return super().resolve_command(ctx, args)


def logs_file_mistake(cwd: Path, follow: bool, agents: Sequence[str]) -> UsageError | None:
    """`compose logs -f FILE`: -f is --follow there, so FILE became an agent name; say so."""
    if not follow:
        return None
    for name in agents:
        if name.endswith((".yaml", ".yml")) or (cwd / name).is_file():
            return UsageError(
                f"after `logs`, -f means --follow (as in docker compose), so '{name}' was taken for an agent",
                f"name the file before `logs`: rnix compose -f {name} logs -f",
            )
    return None
