"""`rnix compose ...`: reading, checking and planning a compose file (running comes with `up`)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from rnix.cli.habits import COMPOSE_HABITS, HabitGroup
from rnix.core.model import ComposeSpec
from rnix.core.problems import Problem
from rnix.core.secrets import mask, secret_values
from rnix.core.types import Path as KeyPath
from rnix.env import Env
from rnix.errors import ExitCode, InvalidCompose, UsageError
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


def load(env: Env, file: str | None, project: str | None) -> Loaded:
    """Find, read, interpolate and validate the compose file; print its warnings on stderr."""
    from rnix.store.compose_file import (
        compose_file_from_env,
        find_compose_file,
        load_compose,
        resolve_project_name,
    )

    ctx = click.get_current_context()
    file = file or ctx.meta.get("rnix.compose.file") or compose_file_from_env(env.environ)
    project = project or ctx.meta.get("rnix.compose.project")
    path, display, warnings = find_compose_file(env.cwd, file)
    env_files = env_files_of(env, ctx)
    loaded = load_compose(path, display, env.environ, env_files, collect=True)
    for warning in (*warnings, *loaded.warnings):
        env.warn(warning)
    spec = check_document(env, loaded.data, loaded.lines, display, loaded.path.parent, loaded.problems)
    from rnix.core.pipeline_checks import warnings_of

    for warning in warnings_of(spec, loaded.lines):  # again: `$ref` schemas are read by now
        env.warn(warning)
    return Loaded(spec, resolve_project_name(project, env.environ, spec.name, loaded.path), loaded.path)


def check_document(
    env: Env,
    data: object,
    lines: Mapping[KeyPath, int],
    display: str,
    base_dir: Path,
    first: tuple[Problem, ...] = (),
) -> ComposeSpec:
    """Validate a compose document (read from a file, or proposed by `rnix apply`'s planner) the way
    `compose config -q` does: the file's own keys, its definitions, its models and output schemas.
    Raises `InvalidCompose` with every problem (`first`: those found while reading it)."""
    from rnix.core.spec import parse_compose
    from rnix.store.definitions import DEFINITIONS_HINT, find_definitions, named_in, resolve_definitions
    from rnix.store.output_schemas import resolve_output_schemas

    # Every problem at once: the variables', the file's, its definitions' and its models'.
    problems = list(first)
    definitions = library(env, base_dir)
    spec = collecting(problems, parse_compose, data, lines, display)
    checked = len(problems)
    if spec is None:  # the file did not validate: its definitions are still worth checking now
        problems += find_definitions(named_in(data), definitions, lines, display)[1]
    else:
        spec = collecting(problems, resolve_definitions, spec, definitions, lines)
    hint = DEFINITIONS_HINT if len(problems) > checked else None
    if spec is not None:
        spec = collecting(problems, resolve_models, env, spec)
    if spec is not None:
        spec = collecting(problems, resolve_output_schemas, spec, base_dir, lines)
    if spec is None or problems:
        raise InvalidCompose(display, once(problems, first, display), hint)
    return spec


T = TypeVar("T")


def collecting(problems: list[Problem], step: Callable[..., T], *args: Any) -> T | None:
    """`step(*args)`, or None with its problems added to `problems` when it raises `InvalidCompose`."""
    try:
        return step(*args)
    except InvalidCompose as exc:
        problems.extend(exc.problems)
        return None


def once(problems: list[Problem], first: tuple[Problem, ...], display: str) -> list[Problem]:
    """`problems` without repeats, and without a later complaint about a value whose variable could not
    be interpolated (`budget: ${B:?}` is one problem, not also "must be a number"); the compose
    file's own in line order, then the definitions' files' as found."""
    interpolated = {(p.file, p.key) for p in first}
    out: list[Problem] = []
    for problem in problems:
        repeat = problem in out or (problem not in first and (problem.file, problem.key) in interpolated)
        if not repeat:
            out.append(problem)
    own = sorted((p for p in out if p.file == display), key=lambda p: (p.line or 0, p.key))
    return own + [p for p in out if p.file != display]


def resolve_models(env: Env, spec: ComposeSpec) -> ComposeSpec:
    """Aliases replaced by their models; an unknown alias or provider is an error at its line."""
    from rnix.core import models
    from rnix.store.models_file import user_aliases

    aliases = models.aliases_by_name(user_aliases(env.config_home), spec.models)
    spec = models.resolve(spec, aliases)
    problems = models.check(spec, aliases, env.environ, credentials=False)
    if problems:
        raise InvalidCompose(spec.file, problems)
    return spec


def check_credentials(env: Env, loaded: Loaded) -> None:
    """Before anything runs (`config -q`, `plan`, `up`): every provider's key is set, in the
    environment or in the `.env` beside the compose file; else exit 2 naming the variable."""
    from rnix.core import models
    from rnix.store.compose_file import dotenv_values

    set_here = {k: v for k, v in env.environ.items() if v}  # an empty variable is not a key
    files = env_files_of(env, click.get_current_context())
    environ = {**dotenv_values(loaded.path.parent, files), **set_here}
    problems = models.check(loaded.spec, {}, environ)
    if problems:
        where = "; ".join(f"{p.file}:{p.line}: {p.message}" if p.line else p.message for p in problems)
        raise MissingCredentials(where, "nothing was started; `rnix models` lists the models and their keys")


class MissingCredentials(UsageError):
    """A provider's key is not set: the run would fail at its first call, so it does not start."""

    code = "MISSING_CREDENTIALS"


def env_files_of(env: Env, ctx: click.Context) -> tuple[Path, ...] | None:
    """The `--env-file`s given to `compose` (absolute), or None for the `.env` beside the file."""
    given = ctx.meta.get("rnix.compose.env_files") or ()
    return tuple(Path(os.path.abspath(env.cwd / f)) for f in given) or None


def library(env: Env, project_dir: Path | None) -> Library:
    """The agent definitions: `project_dir`/agents, then the user's, then rnix's own."""
    from rnix.store.definitions import Library, search_path

    return Library(search_path(project_dir, env.config_home), env.cwd)


class ComposeGroup(HabitGroup):
    habits = COMPOSE_HABITS


@click.group(cls=ComposeGroup, context_settings={"help_option_names": ["-h", "--help"]})
@file_option
@project_option
@click.option(
    "--env-file",
    "env_files",
    metavar="FILE",
    multiple=True,
    help="Read variables from FILE instead of the .env beside the compose file (repeatable; later wins).",
)
@click.pass_context
def compose(ctx: click.Context, file: str | None, project: str | None, env_files: tuple[str, ...]) -> None:
    """Define and run a team of agents from compose.yaml.

    -f and -p may be given here or after the subcommand. Without -f, $RNIX_COMPOSE_FILE or docker's
    $COMPOSE_FILE names the file; without -p, $RNIX_PROJECT_NAME or $COMPOSE_PROJECT_NAME the project.
    """
    ctx.meta["rnix.compose.file"] = file
    ctx.meta["rnix.compose.project"] = project
    ctx.meta["rnix.compose.env_files"] = env_files


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
    if quiet:
        check_credentials(env, loaded)  # -q answers "will `up` start?"
    if quiet and not as_json:
        return ExitCode.OK
    data = mask(spec_as_dict(loaded.spec), secret_values(env.environ))
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

    Layers, the critical path, each agent's model, budget, priority, timeout and retries; its
    `when` condition, `for_each` fan-out (as `name[*]`) and output_schema, and the loops.
    """
    from rnix.cli.reputation import plan_with_ledger
    from rnix.core.plan import plan_as_dict

    loaded = load(env, file, project)
    check_credentials(env, loaded)
    plan = plan_with_ledger(env, loaded.spec, loaded.project, seed)
    if plan.allocation.unfunded:
        env.warn(
            f"the budget pool ({plan.allocation.total:,} tokens) cannot fund "
            f"{', '.join(plan.allocation.unfunded)}: they would not start"
        )
    if as_json:
        jsonout.write_ok(env.stdout, mask(plan_as_dict(plan), secret_values(env.environ)))
        return ExitCode.OK
    from rnix.ui.render import render_plan

    render_plan(env, plan)
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
