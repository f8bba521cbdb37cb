"""The supervisor's journal writer (run._Journal): every answer durable before it is sent, and the
answers that arrive during a commit committed together (group commit), not one transaction each."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from rnix.core.journal import LLM, JournalEntry
from rnix.store.db import Store
from rnix.store.journal import recorded_entries
from rnix.supervisor.run import _Journal


def entry(i: int) -> JournalEntry:
    response = {"content": f"answer {i}", "tool_calls": None, "finish_reason": "stop", "usage": {}}
    return JournalEntry(LLM, f"key-{i}", response, 1, 1, 2, seq=1)


def test_answers_arriving_together_are_committed_together_and_all_durable(tmp_path: Path) -> None:
    home = tmp_path / "home"
    Store.open(home).close()  # migrated
    journal = _Journal(home, "run1", ())
    batches: list[int] = []
    write = journal._write

    def counting(items: list[tuple[str, int, Any]]) -> None:
        batches.append(len(items))
        write(items)

    journal._write = counting  # type: ignore[method-assign]

    async def main() -> None:
        await asyncio.gather(*(journal.append(f"agent{i}", 1, entry(i)) for i in range(200)))
        await journal.close()

    asyncio.run(main())
    assert sum(batches) == 200 and len(batches) < 20, batches  # a few commits, not 200
    with Store.open(home, readonly=True) as store:
        found = [e.key for i in range(200) for e in recorded_entries(store, "run1", f"agent{i}")]
    assert found == [f"key-{i}" for i in range(200)]
