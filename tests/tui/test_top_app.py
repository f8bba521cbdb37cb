"""`top`'s full-screen view, driven with textual's pilot against real agent processes.

The runs are real (`rnix compose up -d` on fixture agents); the app runs in this process with a long
refresh interval, and each test refreshes it explicitly (`refresh_now`), so what it sees is exactly
what one refresh of `rnix top` would show.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from textual.pilot import Pilot

from rnix.core import events as ev
from rnix.core.events import Record
from rnix.store.db import DB_NAME, Store
from rnix.supervisor import procinfo
from rnix.tui.collect import Collector
from rnix.tui.screens import ConfirmScreen, DetailsScreen, LogScreen
from rnix.tui.table import ProcTable
from rnix.tui.top import TopApp
from tests.conftest import RunRnix
from tests.procs import alive, wait_gone
from tests.teams import agent, ps, wait_for
from tests.tui.conftest import Team, run_app

SIZE = (200, 40)


def stat_field(pid: int, index: int) -> str:
    """A field of /proc/PID/stat after the command name (0: state, 1: ppid)."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        stat = f.read()
    return stat[stat.rindex(b")") + 2 :].split()[index].decode()


def new_app(home: Path, **options: object) -> TopApp:
    return TopApp(Collector(home), interval=60, **options)  # type: ignore[arg-type]


async def until(pilot: Pilot[int], app: TopApp, condition: Callable[[], object], timeout: float = 10) -> None:
    """Refresh until `condition()` holds."""
    deadline = time.monotonic() + timeout
    while True:
        app.refresh_now()
        await pilot.pause()
        if condition():
            return
        assert time.monotonic() < deadline, "the view never showed what was expected"
        await asyncio.sleep(0.1)


def cells(table: ProcTable, key: str) -> dict[str, str]:
    from rnix.tui.rows import COLUMNS

    row = next(r for r in table.rows if r.key == key)
    return {name: cell.text for (name, _, _), cell in zip(COLUMNS, row.cells, strict=True)}


def header(app: TopApp) -> str:
    return str(app.query_one("#header").render())


TEAM = f"""agents:
  talk: {{intent: chat away, command: {agent("talker.py", "60", "--spawn")}}}
  idle: {{intent: wait for it, command: {agent("sleeper.py", "60")}}}
  later: {{intent: after idle, depends_on: [idle]}}
"""


def test_rows_are_the_real_processes_as_a_tree(team: Team, rnix_home: Path) -> None:
    rows = team(TEAM, running=("talk", "idle"))
    run_id, talk_pid = rows["talk"]["run_id"], rows["talk"]["pid"]

    async def scenario() -> None:
        app = new_app(rnix_home)
        async with app.run_test(size=SIZE) as pilot:
            table = app.query_one(ProcTable)
            under_talk = lambda: [r for r in table.rows if r.kind == "process" and r.agent == "talk"]  # noqa: E731
            await until(pilot, app, lambda: len(under_talk()) >= 2)  # the command and its `sleep`
            run = cells(table, f"run:{run_id}")
            supervisor = int(run["PID"])
            assert run["AGENT"] == f"run {run_id}" and run["STATE"] == "running" and alive(supervisor)
            assert [r.key for r in table.rows if r.kind == "agent"] == [
                f"agent:{run_id}:{name}" for name in ("idle", "talk", "later")
            ]
            for name in ("idle", "talk"):
                row = cells(table, f"agent:{run_id}:{name}")
                assert (int(row["PID"]), int(row["PPID"])) == (rows[name]["pid"], supervisor)
                assert row["STATE"] == "running" and row["RSS"] != "-"
            assert cells(table, f"agent:{run_id}:idle")["AGENT"] == "├─ idle"
            assert cells(table, f"agent:{run_id}:later")["AGENT"] == "└─ later"
            assert cells(table, f"agent:{run_id}:later")["PID"] == "-"
            children = [cells(table, r.key) for r in under_talk()]
            assert int(children[0]["PPID"]) == talk_pid  # the command, started by the agent's leader
            for child in children:  # each row's PPID is the real parent
                assert stat_field(int(child["PID"]), 1) == child["PPID"]
            assert children[-1]["AGENT"].endswith("└─ sleep") and "sleep 60" in children[-1]["INTENT"]
            assert "3 agents: 2 running, 1 pending" in header(app)
            drawn = table.render_line(1 + [r.key for r in table.rows].index(f"agent:{run_id}:talk")).text
            assert str(talk_pid) in drawn and "chat away" in drawn

    run_app(scenario)


def test_details_show_the_selected_agent(team: Team, rnix_home: Path) -> None:
    rows = team(TEAM, running=("talk", "idle"))
    run_id = rows["talk"]["run_id"]

    async def scenario() -> None:
        app = new_app(rnix_home)
        async with app.run_test(size=SIZE) as pilot:
            table = app.query_one(ProcTable)
            app.refresh_now()
            assert table.select(f"agent:{run_id}:later")
            await pilot.press("enter")
            screen = app.screen
            assert isinstance(screen, DetailsScreen) and screen.shown is not None
            text = screen.shown.plain
            assert "after idle" in text and "mock" in text and "50,000" in text
            assert "depends on idle (running)" in text and "upstream   idle" in text
            await pilot.press("escape")
            assert table.select(f"agent:{run_id}:talk")
            await pilot.press("d")
            await until(pilot, app, lambda: "tick 2" in screen_text(app))
            text = screen_text(app)
            assert f"PID {rows['talk']['pid']}" in text and "chat away" in text and "tick 0" in text
            assert "sleep 60.0 (sleeping)" in text  # its processes
            await pilot.press("q")
            assert isinstance(app.screen, type(app.get_default_screen()))

    def screen_text(app: TopApp) -> str:
        screen = app.screen
        assert isinstance(screen, DetailsScreen)
        screen.reload()
        return screen.shown.plain if screen.shown else ""

    run_app(scenario)


def test_l_follows_the_agents_log(team: Team, rnix_home: Path) -> None:
    rows = team(TEAM, running=("talk",))
    run_id = rows["talk"]["run_id"]

    async def scenario() -> None:
        app = new_app(rnix_home)
        async with app.run_test(size=SIZE) as pilot:
            app.refresh_now()
            app.query_one(ProcTable).select(f"agent:{run_id}:talk")
            await pilot.press("l")
            screen = app.screen
            assert isinstance(screen, LogScreen)
            from textual.widgets import Log

            log = screen.query_one(Log)
            wait = time.monotonic() + 10
            while not any(line.startswith("tick 5") for line in log.lines) and time.monotonic() < wait:
                await pilot.pause(0.1)
            assert log.lines[0] == "chat away" and "tick 5" in log.lines  # new lines keep coming
            await pilot.press("escape")
            assert not isinstance(app.screen, LogScreen)

    run_app(scenario)


def test_kill_asks_first_and_signals_the_selected_agents_group(
    team: Team, rnix: RunRnix, rnix_home: Path
) -> None:
    rows = team(
        TEAM + f"  stubborn: {{intent: ignores TERM, command: {agent('ignore_term.py')}}}\n",
        running=("talk", "idle", "stubborn"),
    )
    run_id = rows["talk"]["run_id"]
    talk, idle, stubborn = (rows[n]["pid"] for n in ("talk", "idle", "stubborn"))

    async def scenario() -> None:
        app = new_app(rnix_home)
        async with app.run_test(size=SIZE) as pilot:
            table = app.query_one(ProcTable)
            await until(
                pilot, app, lambda: any(r.kind == "process" and r.agent == "talk" for r in table.rows)
            )
            child = next(r for r in table.rows if r.kind == "process" and r.agent == "talk")
            child_pid = int(child.cells[0].text)
            table.select(child.key)  # a process row: K acts on the agent that owns it
            await pilot.press("K")
            assert isinstance(app.screen, ConfirmScreen)
            await pilot.press("n")
            assert not isinstance(app.screen, ConfirmScreen)
            time.sleep(0.3)
            assert alive(talk) and alive(child_pid)
            await pilot.press("K", "y")
            assert wait_gone([talk, child_pid], 5) == []
            assert alive(idle) and alive(stubborn)

            table.select(f"agent:{run_id}:stubborn")
            await pilot.press("9", "y")
            assert wait_gone([stubborn], 3) == []  # SIGKILL: its SIGTERM handler does not matter
            assert alive(idle)
            await until(pilot, app, lambda: f"agent:{run_id}:stubborn" not in [r.key for r in table.rows])

    run_app(scenario)
    with Store.open(rnix_home, readonly=True) as store:
        sent = [
            (e.agent, e.data["signal"], e.data["reason"])
            for e in store.events(run_id, kinds=[ev.InstanceSignalled.KIND])
        ]
    assert ("talk", "SIGTERM", "top") in sent and ("stubborn", "SIGKILL", "top") in sent
    finished = {p["agent"]: p["state"] for p in ps(rnix, "-a")}
    assert finished["talk"] == finished["stubborn"] == "failed" and finished["idle"] == "running"


def test_s_pauses_the_group_freezes_the_clock_and_resumes(team: Team, rnix: RunRnix, rnix_home: Path) -> None:
    rows = team(TEAM, running=("talk", "idle"))
    run_id, talk = rows["talk"]["run_id"], rows["talk"]["pid"]
    key = f"agent:{run_id}:talk"

    async def scenario() -> None:
        app = new_app(rnix_home)
        async with app.run_test(size=SIZE) as pilot:
            table = app.query_one(ProcTable)
            await until(
                pilot, app, lambda: sum(r.kind == "process" and r.agent == "talk" for r in table.rows) == 2
            )
            group = [
                talk,
                *(int(r.cells[0].text) for r in table.rows if r.kind == "process" and r.agent == "talk"),
            ]
            table.select(key)
            await pilot.press("s")
            assert wait_for(lambda: all(stat_field(pid, 0) == "T" for pid in group), 5, "the group to stop")
            assert alive(rows["idle"]["pid"]) and stat_field(rows["idle"]["pid"], 0) != "T"
            app.refresh_now()
            assert cells(table, key)["STATE"] == "paused" and "1 paused" in header(app)
            frozen = cells(table, key)["ELAPSED"]
            time.sleep(1.2)
            app.refresh_now()
            assert cells(table, key)["ELAPSED"] == frozen  # the clock stops while paused
            assert {p["agent"]: p["state"] for p in ps(rnix)}["talk"] == "paused"
            await pilot.press("s")
            assert wait_for(lambda: all(stat_field(pid, 0) != "T" for pid in group), 5, "the group to go on")
            app.refresh_now()
            assert cells(table, key)["STATE"] == "running"
            assert table.selected is not None and table.selected.key == key  # the selection stayed
            time.sleep(1.1)
            app.refresh_now()
            assert cells(table, key)["ELAPSED"] != frozen

    run_app(scenario)
    assert {p["agent"]: p["state"] for p in ps(rnix)}["talk"] == "running"


def test_filter_and_finished_agents(team: Team, rnix: RunRnix, rnix_home: Path) -> None:
    rows = team(
        f"agents:\n  quick: {{intent: done fast, command: {agent('succeed.py')}}}\n"
        f"  slow: {{intent: stays, command: {agent('sleeper.py', '60')}}}\n"
        f"  other: {{intent: also stays, command: {agent('sleeper.py', '60')}}}\n",
        running=("slow", "other"),
    )
    run_id = rows["slow"]["run_id"]
    wait_for(lambda: {p["agent"]: p["state"] for p in ps(rnix, "-a")}["quick"] == "completed", what="quick")
    agents = lambda table: [r.agent for r in table.rows if r.kind == "agent"]  # noqa: E731

    async def scenario() -> None:
        app = new_app(rnix_home)
        async with app.run_test(size=SIZE) as pilot:
            table = app.query_one(ProcTable)
            app.refresh_now()
            assert agents(table) == ["other", "slow"]  # the finished one is hidden
            await pilot.press("a")
            assert agents(table) == ["other", "quick", "slow"]
            assert cells(table, f"agent:{run_id}:quick")["STATE"] == "completed"
            await pilot.press("a")
            assert agents(table) == ["other", "slow"]
            table.select(f"agent:{run_id}:slow")
            await pilot.press("slash", "o", "t", "h")
            assert agents(table) == ["other"] and table.rows[0].kind == "run"
            assert table.selected is not None and table.selected.key == f"run:{run_id}"  # slow's run
            await pilot.press("enter")  # keeps the filter, back to the table
            app.refresh_now()
            assert agents(table) == ["other"] and "filter: oth" in header(app)
            await pilot.press("slash", "z", "z", "z")  # a new filter replaces the old one
            assert table.rows == [] and "Nothing matches the filter 'zzz'" in table.render_line(2).text
            await pilot.press("escape")
            assert agents(table) == ["other", "slow"]
            await pilot.press("slash", "q")  # typed into the filter: does not quit
            assert app.is_running and app.text_filter == "q"
            await pilot.press("escape")

    run_app(scenario)


def test_empty_state_then_runs_come_and_go(team: Team, rnix: RunRnix, rnix_home: Path) -> None:
    async def scenario() -> None:
        app = new_app(rnix_home)  # no state database yet
        async with app.run_test(size=SIZE) as pilot:
            table = app.query_one(ProcTable)
            app.refresh_now()
            await pilot.pause()
            assert table.rows == []
            assert "No rnix agents are running." in table.render_line(2).text
            assert "rnix compose up -d" in table.render_line(3).text
            rows = team(
                f"agents:\n  idle: {{intent: x, command: {agent('sleeper.py', '60')}}}\n", running=("idle",)
            )
            await until(pilot, app, lambda: any(r.pid == rows["idle"]["pid"] for r in table.rows))
            assert rnix("compose", "-p", "team", "down", "-t", "1").returncode == 0
            await until(pilot, app, lambda: table.rows == [])

    run_app(scenario)


def test_a_busy_database_keeps_the_last_rows_and_says_so(rnix_home: Path) -> None:
    """Rows written here for a real process. WAL readers are hardly ever blocked, so the database
    is switched to a rollback journal, where a writer's exclusive lock blocks readers."""
    sleeper = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        now = time.time()
        me = {
            "project": "p",
            "supervisor_pid": os.getpid(),
            "supervisor_start_time": procinfo.start_time(os.getpid()),
        }
        started = {"pid": sleeper.pid, "pid_start_time": procinfo.start_time(sleeper.pid), "attempt": 1}
        with Store.open(rnix_home) as store:
            store.append(
                [
                    Record("r1", now, ev.RunStarted(**me)),
                    Record(
                        "r1",
                        now,
                        ev.decode("agent_planned", {"layer": 1, "budget": 100, "intent": "nap"}, "sleepy"),
                    ),
                    Record("r1", now, ev.decode("agent_started", started, "sleepy")),
                ]
            )
        with sqlite3.connect(rnix_home / DB_NAME) as conn:
            conn.execute("PRAGMA journal_mode = DELETE")

        async def scenario() -> None:
            app = new_app(rnix_home)
            async with app.run_test(size=SIZE) as pilot:
                table = app.query_one(ProcTable)
                app.refresh_now()
                assert [r.pid for r in table.rows if r.kind == "agent"] == [sleeper.pid]
                holder = sqlite3.connect(rnix_home / DB_NAME, isolation_level=None)
                holder.execute("BEGIN EXCLUSIVE")
                holder.execute("UPDATE processes SET intent = 'changed'")
                app.refresh_now()
                await pilot.pause()
                assert [r.pid for r in table.rows if r.kind == "agent"] == [sleeper.pid]
                assert "state database busy; showing what was read at" in header(app)
                holder.execute("ROLLBACK")
                holder.close()
                app.refresh_now()
                assert "busy" not in header(app) and len(table.rows) == 2

        run_app(scenario)
    finally:
        sleeper.kill()
        sleeper.wait()


EVIL = "[bold red]X[/] \\e[7;31;42mEVIL \\e]0;PWNED\\a [link=http://x]y[/link] [@click=app.quit]q[/]"
EVIL_INERT = "[bold red]X[/] ?[7;31;42mEVIL ?]0;PWNED? [link=http://x]y[/link] [@click=app.quit]q[/]"


def test_agent_text_is_drawn_as_inert_text(team: Team, rnix_home: Path) -> None:
    """An intent (and log lines) with rich/textual markup, ANSI and OSC sequences: shown literally,
    with no style, link or action of its own, in the table, the details and the log view."""
    rows = team(
        f'agents:\n  evil: {{intent: "{EVIL}", command: {agent("talker.py", "60")}}}\n', running=("evil",)
    )
    key = f"agent:{rows['evil']['run_id']}:evil"

    async def scenario() -> None:
        app = new_app(rnix_home)
        async with app.run_test(size=SIZE) as pilot:
            table = app.query_one(ProcTable)
            app.refresh_now()
            assert cells(table, key)["INTENT"] == EVIL_INERT
            segments = list(table.render_line(1 + [r.key for r in table.rows].index(key)))
            plain = segments[0].style  # its PID cell: the row's own style, nothing added
            intent = next(s for s in segments if "EVIL" in s.text)
            assert intent.text.rstrip() == EVIL_INERT
            assert intent.style is not None and plain is not None
            assert (intent.style.color, intent.style.bold, intent.style.link, intent.style.meta) == (
                plain.color,
                plain.bold,
                None,
                plain.meta,
            )
            table.select(key)
            await pilot.press("d")
            screen = app.screen
            assert isinstance(screen, DetailsScreen)
            deadline = time.monotonic() + 10
            while (
                screen.shown is None or "tick 0" not in screen.shown.plain
            ) and time.monotonic() < deadline:
                app.refresh_now()
                screen.reload()
                await pilot.pause(0.1)
            assert screen.shown is not None
            shown = screen.shown
            assert shown.plain.count(EVIL_INERT) == 2  # the intent, and the log line that echoes it
            assert "\x1b" not in shown.plain and "\x07" not in shown.plain
            for at in (shown.plain.index(EVIL_INERT), shown.plain.rindex(EVIL_INERT)):
                styles = [s.style for s in shown.spans if s.start < at + len(EVIL_INERT) and s.end > at]
                assert styles == [], styles  # no span of its own: drawn in the screen's plain style
            await pilot.press("l")
            from textual.widgets import Log

            log = app.screen.query_one(Log)
            await pilot.pause(0.3)
            assert log.lines[0] == EVIL_INERT
            await pilot.press("escape", "escape")
            assert app.is_running  # the [@click=app.quit] in the text did nothing

    run_app(scenario)


def test_the_agents_this_view_left_paused_are_resumed_after_it(
    team: Team, rnix: RunRnix, rnix_home: Path
) -> None:
    rows = team(TEAM, running=("talk", "idle"))
    run_id, talk, idle = rows["talk"]["run_id"], rows["talk"]["pid"], rows["idle"]["pid"]
    apps: list[TopApp] = []

    async def scenario() -> None:
        app = new_app(rnix_home)
        apps.append(app)
        async with app.run_test(size=SIZE) as pilot:
            table = app.query_one(ProcTable)
            await until(pilot, app, lambda: f"agent:{run_id}:idle" in [r.key for r in table.rows])
            table.select(f"agent:{run_id}:idle")  # paused, then resumed here: nothing to do at the end
            await pilot.press("s")
            assert wait_for(lambda: stat_field(idle, 0) == "T", 5, "idle to stop")
            app.refresh_now()
            await pilot.press("s")
            assert wait_for(lambda: stat_field(idle, 0) != "T", 5, "idle to go on")
            table.select(f"agent:{run_id}:talk")  # left paused when the view closes
            await pilot.press("s")
            assert wait_for(lambda: stat_field(talk, 0) == "T", 5, "talk to stop")

    run_app(scenario)
    (app,) = apps
    assert stat_field(talk, 0) == "T"  # closing the view alone resumes nothing: the command does
    done = app.paused_here.resume_all(rnix_home, os.environ)
    assert [(d.agent, d.pid, d.error) for d in done] == [("talk", talk, None)]
    assert wait_for(lambda: stat_field(talk, 0) != "T", 5, "talk to go on")
    assert {p["agent"]: p["state"] for p in ps(rnix)}["talk"] == "running"
    assert app.paused_here.resume_all(rnix_home, os.environ) == []  # once


def test_an_agent_resumed_meanwhile_by_someone_else_is_left_alone(
    team: Team, rnix: RunRnix, rnix_home: Path
) -> None:
    rows = team(TEAM, running=("talk", "idle"))
    run_id, idle = rows["idle"]["run_id"], rows["idle"]["pid"]
    apps: list[TopApp] = []

    async def scenario() -> None:
        app = new_app(rnix_home)
        apps.append(app)
        async with app.run_test(size=SIZE) as pilot:
            table = app.query_one(ProcTable)
            await until(pilot, app, lambda: f"agent:{run_id}:idle" in [r.key for r in table.rows])
            table.select(f"agent:{run_id}:idle")
            await pilot.press("s")
            assert wait_for(lambda: stat_field(idle, 0) == "T", 5, "idle to stop")

    run_app(scenario)
    assert rnix("kill", "-s", "CONT", str(idle)).returncode == 0
    assert wait_for(lambda: stat_field(idle, 0) != "T", 5, "idle to go on")
    with Store.open(rnix_home, readonly=True) as store:
        resumed_before = len(store.events(run_id, kinds=[ev.InstanceSignalled.KIND]))
    assert apps[0].paused_here.resume_all(rnix_home, os.environ) == []
    with Store.open(rnix_home, readonly=True) as store:
        assert len(store.events(run_id, kinds=[ev.InstanceSignalled.KIND])) == resumed_before  # nothing sent
