"""`rnix compose ls`: every project this RNIX_HOME has run, with its last run (as `docker compose ls`).

Reads the state database only (no compose file is needed): one line per project, newest run first,
with the run's status, id, start time, number of agents and tokens used. A run whose supervisor
died is marked lost on the way, as `ps` does.
"""

from __future__ import annotations

import time
from typing import Any

import click

from rnix.cli.compose import compose, json_option
from rnix.env import Env
from rnix.errors import ExitCode
from rnix.ui import jsonout


@compose.command("ls")
@json_option
@click.option("-q", "--quiet", is_flag=True, help="Only the project names, one a line.")
@click.pass_obj
def ls_cmd(env: Env, as_json: bool, quiet: bool) -> int:
    """List the projects that have run here, each with its last run.

    Columns: PROJECT, STATUS and RUN of the last run, when it STARTED, its AGENTS, the TOKENS it
    used and its compose FILE. Unlike docker, finished projects are listed too: a run is short-lived.
    """
    from rnix.cli.procs import listing_store, warn_unrecorded
    from rnix.supervisor.control import find_lost

    db_exists = (env.home / "rnix.db").exists()
    projects: list[dict[str, Any]] = []
    with listing_store(env, db_exists) as store:
        if db_exists:
            warn_unrecorded(env, store, find_lost(store, store.runs(active_only=True)))
        seen: set[str] = set()
        for run in store.runs():
            if run.project in seen:
                continue
            seen.add(run.project)
            projects.append(
                {
                    "project": run.project,
                    "status": run.status,
                    "run_id": run.id,
                    "started_at": run.started_at,
                    "ended_at": run.ended_at,
                    "agents": len(store.processes(run_id=run.id)),
                    "tokens_used": run.tokens_used,
                    "compose_file": run.compose_file,
                }
            )
    if as_json:
        jsonout.write_ok(env.stdout, {"projects": projects})
    elif quiet:
        env.stdout.writelines(f"{p['project']}\n" for p in projects)
    elif not projects:
        env.stderr.write("rnix: no project has run yet; start one with `rnix compose up`\n")
    else:
        env.stdout.writelines(f"{line}\n" for line in _table(projects))
    return ExitCode.OK


def _table(projects: list[dict[str, Any]]) -> list[str]:
    from rnix.ui.text import align, inert, tokens

    lines = [["PROJECT", "STATUS", "RUN", "STARTED", "AGENTS", "TOKENS", "FILE"]]
    for p in projects:
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(p["started_at"]))
        lines.append(
            [
                inert(p["project"]),
                p["status"],
                p["run_id"],
                started,
                str(p["agents"]),
                tokens(p["tokens_used"]),
                inert(p["compose_file"] or "-"),
            ]
        )
    return align(lines)
