"""`rnix compose ...`: reading, checking and planning a compose file (running comes with `up`)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from rnix.core.model import ComposeSpec
from rnix.core.secrets import mask, merge_secrets, secret_values
from rnix.env import Env
from rnix.errors import ExitCode
from rnix.ui import jsonout

if TYPE_CHECKING:
    from rnix.store.definitions import Library

file_option = click.option(
    "-f", "--file", "file", metavar="FILE", help="The compose file (default: compose.yaml in this directory)."
)
project_option = click.option(
    "-p",
    "--project-name",
    "project",
    metavar="NAME",
    help="Project name (default: `name:` or the directory).",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout.")
seed_option = click.option(
    "--seed", type=int, envvar="RNIX_SEED", help="Seed for choosing among candidates (also $RNIX_SEED)."
)


@dataclass(frozen=True)
class Loaded:
    spec: ComposeSpec
    project: str
    path: Path  # absolute path of the compose file
    dotenv: Mapping[str, str] = field(default_factory=dict)  # the `.env` beside it (holds secrets)

    def secrets(self, environ: Mapping[str, str]) -> tuple[str, ...]:
        """Every secret value to mask in output: the environment's and the `.env`'s."""
        return merge_secrets(secret_values(environ), secret_values(self.dotenv))


def load(env: Env, file: str | None, project: str | None) -> Loaded:
    """Find, read, interpolate and validate the compose file; print its warnings on stderr."""
    from rnix.core.spec import parse_compose
    from rnix.store.compose_file import find_compose_file, load_compose, resolve_project_name
    from rnix.store.definitions import resolve_definitions

    ctx = click.get_current_context()
    file = file or ctx.meta.get("rnix.compose.file")
    project = project or ctx.meta.get("rnix.compose.project")
    path, display, warnings = find_compose_file(env.cwd, file)
    loaded = load_compose(path, display, env.environ)
    for warning in (*warnings, *loaded.warnings):
        env.warn(warning)
    spec = parse_compose(loaded.data, loaded.lines, loaded.display)
    spec = resolve_definitions(spec, library(env, loaded.path.parent), loaded.lines)
    name = resolve_project_name(project, env.environ, spec.name, loaded.path)
    return Loaded(spec, name, loaded.path, loaded.dotenv)


def library(env: Env, project_dir: Path | None) -> Library:
    """The agent definitions: `project_dir`/agents, then the user's, then rnix's own."""
    from rnix.store.definitions import Library, search_path

    return Library(search_path(project_dir, env.config_home), env.cwd)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@file_option
@project_option
@click.pass_context
def compose(ctx: click.Context, file: str | None, project: str | None) -> None:
    """Define and run a team of agents from compose.yaml.

    -f and -p may be given here or after the subcommand.
    """
    ctx.meta["rnix.compose.file"] = file
    ctx.meta["rnix.compose.project"] = project


@compose.command("config")
@file_option
@project_option
@json_option
@click.option("-q", "--quiet", is_flag=True, help="Only validate: print nothing, set the exit status.")
@click.pass_obj
def config_cmd(env: Env, file: str | None, project: str | None, as_json: bool, quiet: bool) -> ExitCode:
    """Print the normalised compose file (interpolated, defaults filled in).

    Values of secret-looking variables are shown as ***.
    """
    from rnix.core.plan import spec_as_dict

    loaded = load(env, file, project)
    if quiet and not as_json:
        return ExitCode.OK
    data = mask(spec_as_dict(loaded.spec), loaded.secrets(env.environ))
    if as_json:
        payload: dict[str, Any] = {"project": loaded.project, "file": loaded.spec.file}
        payload.update({"valid": True} if quiet else {"config": data})
        jsonout.write_ok(env.stdout, payload)
        return ExitCode.OK
    import yaml

    env.stdout.write(yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100))
    return ExitCode.OK


@compose.command("plan")
@file_option
@project_option
@json_option
@seed_option
@click.pass_obj
def plan_cmd(env: Env, file: str | None, project: str | None, as_json: bool, seed: int | None) -> ExitCode:
    """Show what `up` will do, without running anything.

    Layers, the critical path, each agent's model, budget, priority, timeout and retries.
    """
    from rnix.cli.reputation import plan_with_ledger
    from rnix.core.plan import plan_as_dict

    loaded = load(env, file, project)
    plan = plan_with_ledger(env, loaded.spec, loaded.project, seed)
    if plan.allocation.unfunded:
        env.warn(
            f"the budget pool ({plan.allocation.total:,} tokens) cannot fund "
            f"{', '.join(plan.allocation.unfunded)}: they would not start"
        )
    if as_json:
        jsonout.write_ok(env.stdout, mask(plan_as_dict(plan), loaded.secrets(env.environ)))
        return ExitCode.OK
    from rnix.ui.render import render_plan

    render_plan(env, plan, loaded.secrets(env.environ))
    return ExitCode.OK


@compose.command("schema")
@json_option
@click.pass_obj
def schema_cmd(env: Env, as_json: bool) -> ExitCode:
    """Print the JSON Schema of compose.yaml (for editors and linters)."""
    from rnix.core.fields import json_schema

    if as_json:
        jsonout.write_ok(env.stdout, json_schema())
    else:
        env.stdout.write(json.dumps(json_schema(), indent=2) + "\n")
    return ExitCode.OK
