"""`ProcTable`: the process table of `top`, a Line-API widget built for a refresh every second.

Contract:
- `set_rows(rows)` replaces the content with `TableRow`s (rnix.tui.rows). The selection stays on
  the row with the same key; when that row went away it moves to the row it hung from (an agent's
  run), else stays at the same position. The scroll offset is kept; the view scrolls only to keep
  the selection visible. Nothing is cleared and rebuilt, so a refresh never flickers.
- Only visible lines are drawn, each from a per-row cache: a refresh redraws the rows whose cells
  changed. Cell text is drawn as plain segments: it is never parsed as markup.
- An `OPTIONAL` column (NODE) is drawn only while some row has text in it.
- Line 0 is the column header; the rows scroll below it. With no rows the widget shows
  `empty_text` instead.
- Keys: up/down or k/j, page up/down, home/end; a click selects a row.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar

from rich.cells import cell_len, set_cell_size
from rich.segment import Segment
from rich.style import Style
from textual.binding import Binding, BindingType
from textual.geometry import Size
from textual.scroll_view import ScrollView
from textual.strip import Strip

from rnix.tui.rows import COLUMNS, OPTIONAL, Cell, TableRow

if TYPE_CHECKING:
    from textual import events

AUTO_WIDTH_CAP = {"PROJECT": 24, "AGENT": 48, "NODE": 16}
MIN_LAST_WIDTH = 12
GAP = 1


class ProcTable(ScrollView, can_focus=True):
    COMPONENT_CLASSES: ClassVar[set[str]] = {"proctable--header", "proctable--cursor"}
    DEFAULT_CSS = """
    ProcTable { overflow-x: hidden; overflow-y: auto; }
    ProcTable > .proctable--header { text-style: bold; background: $panel; }
    ProcTable > .proctable--cursor { background: $accent 60%; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up,k", "move(-1)", "Up", show=False),
        Binding("down,j", "move(1)", "Down", show=False),
        Binding("pageup", "page(-1)", show=False),
        Binding("pagedown", "page(1)", show=False),
        Binding("home", "move(-1000000000)", show=False),
        Binding("end", "move(1000000000)", show=False),
    ]

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.rows: list[TableRow] = []
        self.cursor = 0
        self.empty_text: list[str] = []
        self._index: dict[str, int] = {}
        self._auto: dict[str, int] = {}
        self._strips: dict[str, tuple[TableRow, bool, tuple[int, ...], Strip]] = {}
        self._styles: dict[str, Style] = {}
        self._base: tuple[Style, Style, Style] | None = None  # row, header, cursor: once per refresh
        self._strips_base: Style | None = None  # the row style the cached strips were drawn with

    # -- model -------------------------------------------------------------------------------------

    @property
    def selected(self) -> TableRow | None:
        return self.rows[self.cursor] if 0 <= self.cursor < len(self.rows) else None

    def set_rows(self, rows: Sequence[TableRow]) -> None:
        previous = self.selected
        self.rows = list(rows)
        self._index = {row.key: i for i, row in enumerate(self.rows)}
        if previous is not None:
            for key in (previous.key, previous.parent):
                if key is not None and key in self._index:
                    self.cursor = self._index[key]
                    break
        self.cursor = max(0, min(self.cursor, len(self.rows) - 1))
        self._auto = {
            name: min(AUTO_WIDTH_CAP[name], max((cell_len(r.cells[i].text) for r in self.rows), default=0))
            for i, (name, width, _) in enumerate(COLUMNS)
            if width is None and name in AUTO_WIDTH_CAP
        }
        live = set(self._index)
        if len(self._strips) > 2 * len(live) + 100:
            self._strips = {k: v for k, v in self._strips.items() if k in live}
        self.virtual_size = Size(self.size.width, len(self.rows) + 1)
        self._keep_cursor_visible()
        self._base = None
        self.refresh()

    def select(self, key: str) -> bool:
        """Move the selection to the row with `key`; False when there is none."""
        if key not in self._index:
            return False
        self._move_to(self._index[key])
        return True

    # -- keys and mouse ----------------------------------------------------------------------------

    def action_move(self, delta: int) -> None:
        self._move_to(self.cursor + delta)

    def action_page(self, direction: int) -> None:
        self._move_to(self.cursor + direction * max(1, self._body_height() - 1))

    def on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)
        if offset is not None and offset.y > 0:
            self._move_to(int(self.scroll_y) + offset.y - 1)

    def _move_to(self, index: int) -> None:
        if not self.rows:
            return
        self.cursor = max(0, min(index, len(self.rows) - 1))
        self._keep_cursor_visible()
        self.refresh()

    def _body_height(self) -> int:
        return max(1, self.scrollable_content_region.height - 1)

    def _keep_cursor_visible(self) -> None:
        top, height = int(self.scroll_y), self._body_height()
        if self.cursor < top:
            self.scroll_to(y=self.cursor, animate=False, immediate=True)
        elif self.cursor >= top + height:
            self.scroll_to(y=self.cursor - height + 1, animate=False, immediate=True)

    # -- drawing -----------------------------------------------------------------------------------

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width
        widths = self._widths(width)
        base, header_style, cursor_style = self._base_styles()
        if y == 0:
            return self._strip(_HEADER, widths, header_style, width)
        if not self.rows:
            text = self.empty_text[y - 2] if 2 <= y < len(self.empty_text) + 2 else ""
            return Strip([Segment(set_cell_size(f"  {text}", width), base)], width)
        index = int(self.scroll_y) + y - 1
        if index >= len(self.rows):
            return Strip.blank(width, base)
        row = self.rows[index]
        chosen = index == self.cursor
        cached = self._strips.get(row.key)
        fresh = cached is not None and (cached[0] is row or cached[0].cells == row.cells)
        if cached is not None and fresh and (cached[1], cached[2]) == (chosen, widths):
            return cached[3]
        strip = self._strip(row.cells, widths, cursor_style if chosen else base, width)
        self._strips[row.key] = (row, chosen, widths, strip)
        return strip

    def _base_styles(self) -> tuple[Style, Style, Style]:
        # Computing rich_style walks the DOM: once per refresh, not once per line. A theme change
        # (rare) shows from the next refresh on.
        if self._base is None:
            base = self.rich_style
            header = base + self.get_component_rich_style("proctable--header")
            cursor = base + self.get_component_rich_style("proctable--cursor")
            if self._strips and self._strips_base != base:
                self._strips.clear()
            self._strips_base = base
            self._base = (base, header, cursor)
        return self._base

    def _widths(self, total: int) -> tuple[int, ...]:
        """Per column; 0 for an `OPTIONAL` column no row has text in (it is not drawn at all)."""
        widths = [
            0
            if name in OPTIONAL and not self._auto.get(name)
            else width
            if width is not None
            else max(cell_len(name), self._auto.get(name, 0))
            for name, width, _ in COLUMNS
        ]
        rest = total - sum(widths[:-1]) - GAP * sum(1 for w in widths if w)
        widths[-1] = max(MIN_LAST_WIDTH, rest)
        return tuple(widths)

    def _strip(self, cells: Sequence[Cell], widths: Sequence[int], row_style: Style, total: int) -> Strip:
        segments = []
        gap = Segment(" " * GAP, row_style)
        for cell, width, (name, _, right) in zip(cells, widths, COLUMNS, strict=True):
            if width == 0 and name in OPTIONAL:
                continue
            segments.append(Segment(_fit(cell.text, width, right), row_style + self._style(cell.style)))
            segments.append(gap)
        length = sum(widths) + GAP * sum(1 for w in widths if w)
        if length == total:  # the usual case: INTENT takes exactly the rest of the line
            return Strip(segments, total)
        return Strip(segments, length).crop_extend(0, total, row_style)

    def _style(self, spec: str) -> Style:
        style = self._styles.get(spec)
        if style is None:
            style = self._styles[spec] = Style.parse(spec) if spec else Style()
        return style


_HEADER = tuple(Cell(name) for name, _, _ in COLUMNS)


def _fit(text: str, width: int, right: bool) -> str:
    length = cell_len(text)
    if length > width:
        return set_cell_size(text, max(0, width - 1)) + "…" if width > 0 else ""
    padding = " " * (width - length)
    return padding + text if right else text + padding
