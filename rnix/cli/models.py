"""`rnix models`: the model aliases in effect and whether each provider's key is set."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from rnix.env import Env
from rnix.errors import ExitCode
from rnix.ui import jsonout


@click.command("models")
@click.option(
    "-f",
    "--file",
    "file",
    metavar="FILE",
    help="Include the `models:` of this compose file (default: ./compose.yaml when there is one).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout.")
@click.pass_obj
def models_cmd(env: Env, file: str | None, as_json: bool) -> int:
    """List the model aliases (built-in, $RNIX_CONFIG_HOME/models.yaml, the compose file's `models:`)
    and whether the key each one needs is set (in the environment or the .env beside the file).

    A later source wins over an earlier one. CLIENT is the one that calls the model: `openai` (rnix's
    lean client, for providers that speak OpenAI's protocol), `litellm` (the others, or every model
    with RNIX_LLM_CLIENT=litellm) or `mock`. KEY is `set`, `missing VARIABLE`, or `-` when none is
    needed (a local server, an alias with an api_base, or the mock model).
    """
    from rnix.core import models
    from rnix.store.compose_file import dotenv_values
    from rnix.store.models_file import user_aliases

    compose_aliases: tuple[models.ModelAlias, ...] = ()
    directory = env.cwd
    path = (env.cwd / file) if file else env.cwd / "compose.yaml"
    if file or path.exists():
        from rnix.cli.compose import load

        loaded = load(env, str(path), None)
        compose_aliases, directory = loaded.spec.models, loaded.path.parent
    table = models.aliases_by_name(user_aliases(env.config_home), compose_aliases)
    environ = {**dotenv_values(Path(directory)), **env.environ}
    rows = [_row(alias, environ) for alias in sorted(table.values(), key=lambda a: a.name)]
    if as_json:
        jsonout.write_ok(env.stdout, {"models": rows})
        return ExitCode.OK
    _print(env, rows)
    return ExitCode.OK


def _row(alias: Any, environ: dict[str, str]) -> dict[str, Any]:
    from rnix.core.models import CREDENTIALS, provider_of
    from rnix.llm.routing import client_for

    provider = provider_of(alias.model)
    variable = CREDENTIALS.get(provider or "") if alias.api_base is None else None
    return {
        "alias": alias.name,
        "model": alias.model,
        "api_base": alias.api_base,
        "source": alias.source,
        "provider": provider,
        "client": client_for(alias.model, environ),
        "key": variable,
        "key_set": None if variable is None else bool(environ.get(variable)),
        "max_concurrency": alias.max_concurrency,
        "rpm": alias.rpm,
    }


def _print(env: Env, rows: list[dict[str, Any]]) -> None:
    def key(row: dict[str, Any]) -> str:
        if row["key"] is None:
            return "-"
        return "set" if row["key_set"] else f"missing {row['key']}"

    table = [("ALIAS", "MODEL", "SOURCE", "CLIENT", "KEY")] + [
        (
            r["alias"],
            r["model"] + (f" @ {r['api_base']}" if r["api_base"] else ""),
            r["source"],
            r["client"],
            key(r),
        )
        for r in rows
    ]
    widths = [max(len(line[i]) for line in table) for i in range(4)]
    for line in table:
        cells = [cell.ljust(width) for cell, width in zip(line[:4], widths, strict=True)]
        env.stdout.write("  ".join([*cells, line[4]]) + "\n")
