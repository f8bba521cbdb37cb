"""`rnix top`: the full-screen live view of agent processes (textual).

Contract:
- Every `interval` seconds (and after each action) `refresh_now()` takes a snapshot with the
  `Collector` and hands the rows to the `ProcTable`, which keeps the selection and scroll position;
  the header shows counts by state, tokens, elapsed time and any note (a busy state database).
- Keys: arrows / j k move; Enter or d details; l follows the selected agent's log; K asks, then sends
  SIGTERM to the agent's process group, 9 SIGKILL; s pauses (SIGSTOP) or resumes (SIGCONT) it;
  / filters; Esc clears the filter; a shows or hides finished agents and runs; q quits.
- Signals go through `rnix.supervisor.control.signal_agent`, the same path as `rnix kill`: the PID's
  start time is checked first (not for an agent on another node, which only its supervisor can
  reach), the run's supervisor signals the group and records the signal (and a pause or resume).
  On a child process row they act on the agent that owns it; on a run row they do nothing.
- `paused_here` (rnix.tui.pauses) remembers the agents this view paused and has not resumed; the
  command resumes those still paused once the view has closed (`q`, Ctrl-C, or with
  `exit_on_signals`, SIGHUP or SIGTERM to `top`), so quitting never leaves an agent silently stopped.
- Agent text is drawn as plain text everywhere (see `ProcTable`, `rnix.tui.screens`); notifications
  are shown without markup.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import ClassVar

from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import Footer, Input, Static

from rnix.errors import RnixError
from rnix.tui.collect import Collector
from rnix.tui.details import details_lines
from rnix.tui.pauses import PausedHere
from rnix.tui.rows import Cell, Memo, TableRow, header_text, table_rows
from rnix.tui.screens import ConfirmScreen, DetailsScreen, LogScreen, as_text
from rnix.tui.snapshot import AgentView, RunView, Snapshot
from rnix.tui.table import ProcTable
from rnix.ui.logtail import LogTail, last_lines
from rnix.ui.text import inert

DETAIL_LOG_LINES = 20
_TABLE_ONLY = frozenset({"filter", "toggle_all", "clear_filter", "details"})
_EXIT_SIGNALS = (signal.SIGHUP, signal.SIGTERM)


class TopApp(App[int]):
    CSS_PATH = "top.tcss"
    TITLE = "rnix top"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "quit", "Quit"),
        Binding("ctrl+c", "quit", show=False, priority=True),  # as in top; textual only hints at ^q
        Binding("enter,d", "details", "Details"),
        Binding("l", "follow_log", "Log"),
        Binding("K", "signal('SIGTERM')", "Term"),
        Binding("9", "signal('SIGKILL')", "Kill"),
        Binding("s", "pause", "Pause/resume"),
        Binding("A", "decide('approve')", "Approve"),
        Binding("R", "decide('reject')", "Reject"),
        Binding("slash", "filter", "Filter"),
        Binding("a", "toggle_all", "Finished"),
        Binding("escape", "clear_filter", "Clear filter", show=False),
        Binding("question_mark", "toggle_keys", "Keys"),
    ]

    def __init__(
        self,
        collector: Collector,
        *,
        interval: float = 1.0,
        show_all: bool = False,
        secrets: Sequence[str] = (),
        environ: Mapping[str, str] | None = None,
        exit_on_signals: bool = False,
    ) -> None:
        super().__init__()
        self.collector = collector
        self.interval = interval
        self.show_all = show_all
        self.secrets = tuple(secrets)
        self.environ: Mapping[str, str] = os.environ if environ is None else environ
        self.exit_on_signals = exit_on_signals  # the real command: a hangup closes the view, not rnix
        self.paused_here = PausedHere()
        self.text_filter = ""
        self.snapshot: Snapshot | None = None
        self._memo: Memo = {}  # formatted cells that did not change, from one refresh to the next

    @property
    def home(self) -> Path:
        return self.collector.home

    def action_toggle_keys(self) -> None:
        """`?`: every key and what it does (textual's help panel), and `?` again hides it."""
        if self.screen.query("HelpPanel"):
            self.action_hide_help_panel()
        else:
            self.action_show_help_panel()

    def compose(self) -> ComposeResult:
        yield Static(id="header")
        yield ProcTable(id="procs")
        yield Input(id="filter", placeholder="filter: part of a name, project, state, intent or PID")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#filter", Input).display = False
        self.query_one(ProcTable).focus()
        self.refresh_now()
        self.set_interval(self.interval, self.refresh_now)
        if self.exit_on_signals:
            # Without this, a closed terminal or a SIGTERM would end the process at once, leaving the
            # agents this view paused stopped. This way the view closes and the command resumes them.
            loop = asyncio.get_running_loop()
            for signum in _EXIT_SIGNALS:
                loop.add_signal_handler(signum, self.exit)

    def on_unmount(self) -> None:
        if self.exit_on_signals:
            loop = asyncio.get_running_loop()
            for signum in _EXIT_SIGNALS:
                loop.remove_signal_handler(signum)
        self.collector.close()

    # -- refreshing ---------------------------------------------------------------------------------

    def refresh_now(self) -> None:
        self.snapshot = self.collector.collect(self.show_all)
        self.show_snapshot()

    def show_snapshot(self) -> None:
        """Draw the last snapshot with the current filter (no new reading)."""
        snap = self.snapshot
        if snap is None:
            return
        table = self.query_one(ProcTable)
        rows = table_rows(
            snap, snap.taken_at, show_all=self.show_all, text_filter=self.text_filter, memo=self._memo
        )
        table.empty_text = self._empty_text(snap)
        table.set_rows(rows)
        lines = [header_text(snap, snap.taken_at)]
        notes = [Cell(snap.note, "bold yellow")] if snap.note else []
        if self.text_filter:
            notes.append(Cell(f"{' · ' if notes else ''}filter: {inert(self.text_filter)} (Esc clears)"))
        if self.show_all:
            notes.append(Cell(f"{' · ' if notes else ''}finished shown (a hides them)", "dim"))
        self.query_one("#header", Static).update(as_text([*lines, notes] if notes else lines))

    def _empty_text(self, snap: Snapshot) -> list[str]:
        if self.text_filter:
            return [f"Nothing matches the filter {inert(self.text_filter)!r}. Esc clears it."]
        where = f" in project {inert(snap.project)}" if snap.project else ""
        if self.show_all:
            return [
                f"No runs recorded yet{where} (state database: {self.home}).",
                'Start a team with `rnix compose up -d`, or one agent with `rnix run "INTENT"`.',
            ]
        return [
            f"No rnix agents are running{where}.",
            'Start a team with `rnix compose up -d`, or one agent with `rnix run "INTENT"`,'
            " in another terminal: they appear here.",
            "a shows finished runs, q quits.",
        ]

    # -- actions ------------------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # A question waits for its answer; the filter and `a` only make sense on the table itself.
        if isinstance(self.screen, ConfirmScreen):
            return action == "quit"
        if action in _TABLE_ONLY:
            return len(self.screen_stack) == 1
        return True

    def _selected_agent(self, verb: str) -> TableRow | None:
        row = self.query_one(ProcTable).selected
        if row is None or row.agent is None:
            self.notify(f"Select an agent to {verb}.", severity="warning", markup=False)
            return None
        return row

    def _views(self, row: TableRow) -> tuple[RunView, AgentView] | None:
        for run in self.snapshot.runs if self.snapshot else ():
            if run.run.id == row.run_id:
                for agent in run.agents:
                    if agent.row.agent == row.agent:
                        return run, agent
        return None

    def action_details(self) -> None:
        row = self._selected_agent("see its details")
        if row is not None:
            self.push_screen(DetailsScreen(lambda: self._details_text(row), self.interval))

    def _details_text(self, row: TableRow) -> Text | None:
        found = self._views(row)
        if found is None or self.snapshot is None:
            return None
        run, agent = found
        log = last_lines(agent.row.log_path, DETAIL_LOG_LINES, self.secrets)
        return as_text(details_lines(run, agent, log, self.snapshot.taken_at))

    def action_follow_log(self) -> None:
        row = self._selected_agent("follow its log")
        found = self._views(row) if row is not None else None
        if row is None or found is None:
            return
        agent = found[1]
        paths = [agent.row.log_path, agent.row.out_path]
        if not any(paths):
            self.notify(f"Agent {inert(str(row.agent))} has not started yet.", markup=False)
            return
        title = f"log of {inert(str(row.agent))} (PID {row.pid}) — Esc to go back"
        self.push_screen(LogScreen(title, LogTail(paths, self.secrets)))

    def action_signal(self, name: str) -> None:
        row = self._selected_agent("signal it")
        if row is None:
            return
        if row.pid is None:
            self.notify(f"Agent {inert(str(row.agent))} has no process.", markup=False)
            return
        signum = int(signal.Signals[name])
        pid = row.pid
        question = f"Send {name} to agent {inert(str(row.agent))} (PID {pid}) and its process group?"

        def answered(yes: bool | None) -> None:
            if yes:
                self._send(pid, signum)

        self.push_screen(ConfirmScreen(question), answered)

    def action_pause(self) -> None:
        row = self._selected_agent("pause or resume it")
        found = self._views(row) if row is not None else None
        if row is None or row.pid is None or found is None:
            return
        paused = found[1].row.state == "paused"
        self._send(row.pid, signal.SIGCONT if paused else signal.SIGSTOP)

    def _send(self, pid: int, signum: int) -> None:
        from rnix.store.db import Store
        from rnix.supervisor.control import signal_agent

        name = signal.Signals(signum).name
        try:
            with Store.open(self.home) as store:
                agent = signal_agent(store, pid, signum, reason="top", environ=self.environ)
        except RnixError as exc:
            self.notify(exc.message, severity="error", markup=False)
        else:
            self.paused_here.sent(pid, agent.agent, signum)
            self.notify(f"{name} sent to agent {inert(agent.agent)} (PID {pid}).", markup=False)
        self.refresh_now()

    def action_decide(self, decision: str) -> None:
        """Approve or reject the selected agent at its approval gate, as $USER."""
        row = self._selected_agent(f"{decision} it")
        found = self._views(row) if row is not None else None
        if row is None or found is None:
            return
        run, agent = found
        if agent.row.state != "waiting_approval":
            self.notify(f"Agent {inert(str(row.agent))} is not waiting for approval.", markup=False)
            return
        who = self.environ.get("USER") or "unknown"
        question = f"{decision.capitalize()} agent {inert(str(row.agent))} as {inert(who)}?"

        def answered(yes: bool | None) -> None:
            if yes:
                self._decide(run.run.project, str(row.agent), decision, who)

        self.push_screen(ConfirmScreen(question), answered)

    def _decide(self, project: str, agent: str, decision: str, who: str) -> None:
        from rnix.store.db import Store
        from rnix.supervisor.control import decide

        try:
            with Store.open(self.home) as store:
                data = decide(store, project, agent, decision, who, "from rnix top", environ=self.environ)
        except RnixError as exc:
            self.notify(exc.message, severity="error", markup=False)
        else:
            self.notify(f"{inert(agent)}: {inert(str(data['detail']))}", markup=False)
        self.refresh_now()

    def action_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.display = True
        box.focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        self.text_filter = event.value
        self.show_snapshot()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.input.display = False
        self.query_one(ProcTable).focus()

    def action_clear_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.value = ""
        box.display = False
        self.text_filter = ""
        self.query_one(ProcTable).focus()
        self.show_snapshot()

    def action_toggle_all(self) -> None:
        self.show_all = not self.show_all
        self.refresh_now()
