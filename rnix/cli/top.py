"""`rnix top`: the live process view, or with --once one snapshot for scripts and bug reports.

The full-screen view (textual) is imported only here, when it runs: `rnix --help` never loads it.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import click

from rnix.env import Env
from rnix.errors import ExitCode, RnixError
from rnix.ui import jsonout

if TYPE_CHECKING:
    from rnix.tui.snapshot import Snapshot
    from rnix.tui.top import TopApp

CPU_WINDOW = 0.2  # seconds between the two looks at /proc that --once takes to measure CPU %


@click.command("top")
@click.option("-p", "--project-name", "project", help="Only this project.")
@click.option(
    "--interval",
    type=click.FloatRange(0.1, 3600),
    default=1.0,
    show_default=True,
    metavar="SECONDS",
    help="Seconds between refreshes.",
)
@click.option("--once", is_flag=True, help="Print one snapshot and exit (like `top -b -n 1`).")
@click.option(
    "--json", "as_json", is_flag=True, help="Print the snapshot as one JSON document (implies --once)."
)
@click.option(
    "-a", "--all", "show_all", is_flag=True, help="Include finished agents and recent finished runs."
)
@click.pass_obj
def top_cmd(env: Env, project: str | None, interval: float, once: bool, as_json: bool, show_all: bool) -> int:
    """Watch agent processes live: a tree of runs, their agents and the processes those started.

    Shows PID, PPID, project, agent, state, tokens used of the budget (highlighted from 90 %), CPU %,
    RSS, elapsed time (paused time excluded) and intent, refreshed every second. Keys: arrows or j/k
    move; Enter or d shows details; l follows the agent's log; K sends SIGTERM (after asking), 9
    SIGKILL; s pauses or resumes the agent (SIGSTOP/SIGCONT); / filters; a shows finished ones; ?
    lists the keys; q quits, resuming the agents top paused. The newest run is at the top. Signals
    reach the agent's whole process group through its run's supervisor, checked and recorded as
    with `rnix kill`.
    """
    from rnix.core.secrets import secret_values
    from rnix.supervisor.procinfo import raise_nofile_limit
    from rnix.tui.collect import Collector

    raise_nofile_limit()  # top keeps the /proc files of hundreds of agents open between refreshes
    if once or as_json:
        return _once(env, project, show_all, as_json)
    if not (env.stdout_isatty and env.stdin_isatty):
        raise RnixError(
            "rnix top needs a terminal (stdin and stdout)",
            "use `rnix top --once` for one snapshot, `rnix top --json` for it as JSON",
        )
    from rnix.tui.top import TopApp

    app = TopApp(
        Collector(env.home, project=project),
        interval=interval,
        show_all=show_all,
        secrets=secret_values(env.environ),
        environ=env.environ,
        exit_on_signals=True,
    )
    try:
        result = app.run()
    finally:
        _resume_paused_here(env, app)
    return int(result) if isinstance(result, int) else ExitCode.OK


def _resume_paused_here(env: Env, app: TopApp) -> None:
    """Quitting top never leaves an agent silently stopped: resume the ones it paused, and say so."""
    from rnix.ui.text import inert

    lines = []
    for done in app.paused_here.resume_all(env.home, env.environ):
        what = f"agent {inert(done.agent)} (PID {done.pid})"
        if done.error is None:
            lines.append(f"rnix: resumed {what}: top paused it, and quitting top leaves no agent stopped\n")
        else:
            lines.append(
                f"rnix: warning: could not resume {what}, which top paused: {inert(done.error.message)}\n"
                f"hint: `rnix kill -s CONT {done.pid}` resumes it; `rnix ps` shows it paused\n"
            )
    try:
        env.stderr.write("".join(lines))
        env.stderr.flush()
    except OSError:
        pass  # the terminal is gone (SIGHUP); the resumes themselves are recorded in the store


def _once(env: Env, project: str | None, show_all: bool, as_json: bool) -> int:
    from rnix.store.db import BUSY_TIMEOUT_MS
    from rnix.tui.collect import Collector
    from rnix.tui.snapshot import document

    collector = Collector(env.home, project=project, busy_timeout_ms=BUSY_TIMEOUT_MS)
    try:
        collector.collect(show_all)  # CPU % is a difference: look twice
        time.sleep(CPU_WINDOW)
        snap = collector.collect(show_all)
    finally:
        collector.close()
    if collector.error is not None:
        raise collector.error
    if as_json:
        jsonout.write_ok(env.stdout, document(snap, snap.taken_at, int(CPU_WINDOW * 1000)))
    else:
        _print(env, snap, show_all)
    return ExitCode.OK


def _print(env: Env, snap: Snapshot, show_all: bool) -> None:
    from rich.cells import cell_len
    from rich.table import Table
    from rich.text import Text

    from rnix.tui.rows import COLUMNS, header_text, shown_columns, table_rows
    from rnix.tui.table import AUTO_WIDTH_CAP
    from rnix.ui.render import console

    out = console(env)
    head = Text()
    for cell in header_text(snap, snap.taken_at):
        head.append(cell.text, style=cell.style or None)
    out.print(head)
    rows = table_rows(snap, snap.taken_at, show_all=show_all)
    if not rows:
        where = f" of project {snap.project}" if snap.project else ""
        finished = "" if show_all else " (-a includes finished ones)"
        env.stderr.write(
            f"rnix: no agents{where}{finished}; start a team with `rnix compose up -d`, "
            'or one agent with `rnix run "INTENT"`\n'
        )
        return
    table = Table(box=None, pad_edge=False, header_style="bold")
    shown = shown_columns(rows)  # NODE only when an agent runs on another node
    for i, (name, width, right) in enumerate(COLUMNS):
        if not shown[i]:
            continue
        # Only INTENT gives way on a narrow terminal; every other column keeps its content.
        fitted = max(len(name), *(cell_len(row.cells[i].text) for row in rows))
        table.add_column(
            name,
            justify="right" if right else "left",
            no_wrap=True,
            overflow="ellipsis",
            min_width=None if name == "INTENT" else min(fitted, width or AUTO_WIDTH_CAP.get(name, 48)),
            max_width=60 if name == "INTENT" else None,
        )
    for row in rows:
        table.add_row(
            *(
                Text(cell.text, style=cell.style or "")
                for cell, show in zip(row.cells, shown, strict=True)
                if show
            )
        )
    out.print(table)
