"""`top`'s secondary screens: an agent's details, its log as it grows, and the kill confirmation.

Each shows agent-controlled text through `rich.text.Text` built from plain strings (`as_text`) or a
`Log` widget fed inert lines, so no markup or escape sequence from an agent reaches the terminal.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Footer, Log, Static

from rnix.tui.rows import Cell
from rnix.ui.logtail import LogTail

LOG_POLL = 0.25  # seconds between looks at a followed log
LOG_MAX_LINES = 10_000


def as_text(lines: Sequence[Sequence[Cell]]) -> Text:
    """Styled cells as a `Text`; the strings are appended as they are (never parsed as markup)."""
    text = Text(no_wrap=False, end="")
    for i, line in enumerate(lines):
        if i:
            text.append("\n")
        for cell in line:
            text.append(cell.text, style=cell.style or None)
    return text


class DetailsScreen(Screen[None]):
    """One agent's details, reloaded every `interval` seconds while shown."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q,d,enter", "app.pop_screen", "Back"),
        Binding("l", "app.follow_log", "Follow log"),
    ]

    def __init__(self, load: Callable[[], Text | None], interval: float) -> None:
        super().__init__()
        self.load = load
        self.interval = interval
        self.shown: Text | None = None  # what the screen shows now

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="details"):
            yield Static(id="details-body")
        yield Footer()

    def on_mount(self) -> None:
        self.reload()
        self.set_interval(self.interval, self.reload)

    def reload(self) -> None:
        text = self.load()
        if text is not None:  # None: the agent left the snapshot; keep what was last shown
            self.shown = text
            self.query_one("#details-body", Static).update(text)


class LogScreen(Screen[None]):
    """Follows an agent's log (stderr) and output (stdout), like `rnix log -f PID`."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,q,l", "app.pop_screen", "Back")]

    def __init__(self, title: str, tail: LogTail) -> None:
        super().__init__()
        self.title_text = title
        self.tail = tail

    def compose(self) -> ComposeResult:
        yield Static(Text(self.title_text, style="bold"), id="log-title")
        yield Log(id="log", max_lines=LOG_MAX_LINES, auto_scroll=True)
        yield Footer()

    def on_mount(self) -> None:
        self.poll()
        self.set_interval(LOG_POLL, self.poll)

    def poll(self) -> None:
        lines = self.tail.read()
        if lines:
            self.query_one(Log).write_lines(lines)


class ConfirmScreen(ModalScreen[bool]):
    """Asks a yes/no question; dismisses with True only for `y`."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "answer(True)", "Yes"),
        Binding("n,escape", "answer(False)", "No"),
    ]

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm"):
            yield Static(Text(self.question))
            yield Static(Text("y: yes    n / Esc: no", style="dim"))

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)
