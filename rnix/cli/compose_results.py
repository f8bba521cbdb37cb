"""`rnix compose result` and `rnix compose wait`: getting a run's results and status out.

Contract:
- `result` reads the project's latest run (read-only) and prints the selected agents' results on
  stdout, secrets masked: by default the agents nothing in the run depends on (the sinks of the DAG).
  One agent: its result as is. Several: each preceded by a `==> AGENT <==` line, with a blank line
  between them (as `tail` and `head` do with several files). An agent reused from an earlier run has
  its result in its own row. Agents that did not complete are named on stderr.
- `wait` polls the store until the project's live run ends (`rnix.cli.runwait`) and exits with the
  run's status; with no live run it waits for nothing and exits with the latest run's status.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from rnix.cli.compose import compose, file_option, json_option, project_option
from rnix.cli.compose_run import _project_of
from rnix.env import Env
from rnix.errors import ExitCode, UsageError
from rnix.ui import jsonout

if TYPE_CHECKING:
    from rnix.store.db import ProcessRow, RunRow


def _latest(env: Env, project: str) -> tuple[RunRow, list[ProcessRow]]:
    from rnix.store.db import Store

    with Store.open(env.home, readonly=True) as store, store.reading():
        run = store.latest_run(project)
        rows = store.processes(run_id=run.id) if run is not None else []
    if run is None:
        raise UsageError(f"project {project} has no runs yet", "start one with `rnix compose up`")
    return run, rows


def sinks(rows: list[ProcessRow]) -> list[ProcessRow]:
    """The agents no other agent of the run depends on, in the run's order."""
    needed = {name for row in rows for name in row.depends_on}
    return [row for row in rows if row.agent not in needed]


def _select(rows: list[ProcessRow], agents: tuple[str, ...], project: str) -> list[ProcessRow]:
    if not agents:
        return sinks(rows)
    by_name = {row.agent: row for row in rows}
    for agent in agents:
        if agent not in by_name:
            from rnix.core.problems import did_you_mean

            raise UsageError(
                f"no agent '{agent}' in project {project}{did_you_mean(agent, by_name)}",
                f"agents: {', '.join(by_name)}",
            )
    return [by_name[agent] for agent in dict.fromkeys(agents)]


@compose.command("result")
@file_option
@project_option
@json_option
@click.argument("agents", nargs=-1)
@click.pass_obj
def result_cmd(
    env: Env, file: str | None, project: str | None, as_json: bool, agents: tuple[str, ...]
) -> int:
    """Print the results of the project's latest run on stdout (default: the final agents).

    With no AGENT, the agents nothing depends on (the last ones of the DAG). One agent's result is
    printed as is; several are each preceded by a `==> AGENT <==` line and separated by a blank
    line. Agents that did not complete are named on stderr. Save a report with
    `rnix compose result writer > report.md`; wait for a detached run first with `rnix compose wait`.

    \b
    Exit status: 0 when every selected agent completed; 1 when one did not (failed, skipped,
    still running...); 2 for an unknown AGENT or a project without runs.
    """
    from rnix.core.secrets import mask_text, secret_values

    name = _project_of(env, file, project)
    run, rows = _latest(env, name)
    selected = _select(rows, agents, name)
    secrets = secret_values(env.environ)
    incomplete = [row for row in selected if row.state != "completed"]
    if as_json:
        results = [
            {
                "agent": row.agent,
                "status": row.state,
                "result": mask_text(row.result or "", secrets),
                "error": mask_text(row.error, secrets) if row.error else None,
                "reused_from": row.reused_from,
            }
            for row in selected
        ]
        doc: dict[str, Any] = {
            "ok": not incomplete,
            "data": {"project": name, "run_id": run.id, "results": results},
        }
        if incomplete:
            doc["error"] = {"code": "NOT_COMPLETED", "message": _incomplete_message(incomplete)}
        jsonout.write_document(env.stdout, doc)
    else:
        for index, row in enumerate(selected):
            if len(selected) > 1:
                env.stdout.write(("\n" if index else "") + f"==> {row.agent} <==\n")
            text = mask_text(row.result or "", secrets)
            env.stdout.write(text if not text or text.endswith("\n") else text + "\n")
        env.stdout.flush()
    for row in incomplete:
        why = f": {mask_text(row.error, secrets)}" if row.error else ""
        env.stderr.write(f"rnix: {row.agent} did not complete ({row.state}){why}\n")
    return ExitCode.FAILURE if incomplete else ExitCode.OK


def _incomplete_message(rows: list[ProcessRow]) -> str:
    return "did not complete: " + ", ".join(f"{row.agent} ({row.state})" for row in rows)


@compose.command("wait")
@file_option
@project_option
@json_option
@click.pass_obj
def wait_cmd(env: Env, file: str | None, project: str | None, as_json: bool) -> int:
    """Block until the project's run ends; exit with its status (for scripts after `up -d`).

    `rnix compose up -d && rnix compose wait` exits as `rnix compose up` would have. With no run
    going on, it waits for nothing and exits with the status of the project's latest run, so a
    run that ended before `wait` started is still reported. A run whose supervisor died is
    marked lost and counts as failed. --json prints the run's summary once it ended.

    \b
    Exit status: 0 the run completed; 1 it failed (or was lost); 130/143 it was interrupted or
    terminated (`compose down`); 2 the project has no runs.
    """
    from rnix.cli.runwait import exit_status, lost_message, wait_for_end

    name = _project_of(env, file, project)
    run, _ = _latest(env, name)
    run = wait_for_end(env, run.id)
    _, rows = _latest(env, name)
    rows = [row for row in rows if row.run_id == run.id]
    code = exit_status(run)
    if run.status == "lost":
        env.stderr.write(f"rnix: {lost_message(run)}\n")
    if as_json:
        doc: dict[str, Any] = {"ok": code == ExitCode.OK, "data": summary(run, rows, code)}
        if code != ExitCode.OK:
            doc["error"] = {"code": "RUN_" + run.status.upper(), "message": f"the run {run.status}"}
        jsonout.write_document(env.stdout, doc)
    else:
        env.stderr.write(f"rnix: project {name} run {run.id} {run.status} (exit status {code})\n")
    return code


def summary(run: RunRow, rows: list[ProcessRow], code: int) -> dict[str, Any]:
    """`wait --json`: the run, its exit status and each agent's state."""
    counts: dict[str, int] = {}
    for row in rows:
        counts[row.state] = counts.get(row.state, 0) + 1
    return {
        "project": run.project,
        "run_id": run.id,
        "status": run.status,
        "exit_code": code,
        "started_at": run.started_at,
        "ended_at": run.ended_at,
        "tokens_used": run.tokens_used,
        "agents": [
            {"agent": r.agent, "status": r.state, "exit_code": r.exit_code, "reused_from": r.reused_from}
            for r in rows
        ],
        "counts": counts,
    }
