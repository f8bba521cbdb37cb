"""`top`: `?` lists the keys, and the newest run comes first."""

from __future__ import annotations

from pathlib import Path

from rnix.tui.collect import Collector
from rnix.tui.top import TopApp
from tests.conftest import RunRnix
from tests.tui.conftest import run_app


def test_question_mark_shows_and_hides_the_keys(rnix_home: Path) -> None:
    async def scenario() -> None:
        app = TopApp(Collector(rnix_home), interval=60)
        async with app.run_test(size=(160, 40)) as pilot:
            await pilot.press("question_mark")
            await pilot.pause()
            panel = app.screen.query("HelpPanel")
            assert panel, "? shows the keys"
            await pilot.press("question_mark")
            await pilot.pause()
            assert not app.screen.query("HelpPanel")

    run_app(scenario)


def test_newest_runs_first(rnix: RunRnix, tmp_path: Path, rnix_home: Path) -> None:
    (tmp_path / "compose.yaml").write_text("agents:\n  a: {intent: x, command: [echo]}\n")
    for project in ("first", "second", "third"):
        assert rnix("compose", "-p", project, "up").returncode == 0
    collector = Collector(rnix_home)
    try:
        runs = collector.collect(show_all=True).runs
    finally:
        collector.close()
    assert [view.run.project for view in runs] == ["third", "second", "first"]
