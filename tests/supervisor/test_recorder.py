"""The recorder: fast non-blocking record(), batched background writes, flush/close, no lost events."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from rnix.core.events import Record, Unknown
from rnix.store import db
from rnix.store.db import DB_NAME, Store, StoreLocked
from rnix.supervisor.recorder import Recorder

RUN = "0123456789ab"


def tick(i: int, source: str = "main") -> Record:
    return Record(RUN, 1.0 + i, Unknown("tick", {"i": i}, source))


def recorded(home: Path, agent: str | None = None) -> list[int]:
    with Store.open(home, readonly=True) as store:
        return [e.data["i"] for e in store.events(RUN, agent=agent)]


@pytest.fixture
def recorder(rnix_home: Path) -> Iterator[Recorder]:
    rec = Recorder(lambda: Store.open(rnix_home))
    rec.start()
    yield rec
    rec.close()


def test_ten_thousand_events_are_all_written_after_flush(rnix_home: Path, recorder: Recorder) -> None:
    events = [tick(i) for i in range(10_000)]
    started = time.perf_counter()
    for e in events:
        recorder.record(e)
    assert time.perf_counter() - started < 1.0  # record() only queues
    recorder.flush()
    assert recorder.pending == 0
    assert recorded(rnix_home) == list(range(10_000))
    assert recorder.last_error is None


def test_events_from_several_threads_all_arrive_in_order(rnix_home: Path, recorder: Recorder) -> None:
    def produce(source: str) -> None:
        for i in range(2_000):
            recorder.record(tick(i, source))

    threads = [threading.Thread(target=produce, args=(f"t{n}",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    recorder.flush()
    for n in range(4):
        assert recorded(rnix_home, f"t{n}") == list(range(2_000))


def test_events_are_written_without_a_flush_within_the_interval(rnix_home: Path, recorder: Recorder) -> None:
    recorder.record(tick(1))
    deadline = time.monotonic() + 5
    while recorder.pending and time.monotonic() < deadline:
        time.sleep(0.01)
    assert recorded(rnix_home) == [1]


def test_close_writes_everything_and_is_idempotent(rnix_home: Path) -> None:
    rec = Recorder(lambda: Store.open(rnix_home))
    rec.start()
    for i in range(1_234):
        rec.record(tick(i))
    rec.close()
    rec.close()
    assert recorded(rnix_home) == list(range(1_234))
    with pytest.raises(RuntimeError, match="closed"):
        rec.record(tick(0))


def test_close_without_start_still_writes_what_was_recorded(rnix_home: Path) -> None:
    rec = Recorder(lambda: Store.open(rnix_home))
    rec.record(tick(7))
    rec.close()
    assert recorded(rnix_home) == [7]
    Recorder(lambda: Store.open(rnix_home)).close()  # nothing recorded, never started: fine


def test_a_held_lock_delays_events_but_never_drops_them(
    rnix_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(db, "BUSY_TIMEOUT_MS", 20)
    Store.open(rnix_home).close()
    holder = sqlite3.connect(rnix_home / DB_NAME, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    rec = Recorder(lambda: Store.open(rnix_home), interval=0.01, max_backoff=0.05)
    rec.start()
    try:
        for i in range(100):
            rec.record(tick(i))
        with pytest.raises(TimeoutError, match="100 events not recorded"):
            rec.flush(timeout=0.3)
        assert isinstance(rec.last_error, StoreLocked)
        assert rec.pending == 100
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    rec.flush()
    rec.close()
    assert recorded(rnix_home) == list(range(100))


class FlakyStore(Store):
    """Fails its first appends with an error that is not a lock."""

    failures = 0

    def append(self, events: Sequence[Record]) -> None:
        if FlakyStore.failures:
            FlakyStore.failures -= 1
            raise ValueError("disk hiccup")
        super().append(events)


def test_other_errors_are_kept_retried_and_exposed(rnix_home: Path) -> None:
    FlakyStore.failures = 3
    opened: list[Store] = []

    def factory() -> Store:
        opened.append(FlakyStore.open(rnix_home))
        return opened[-1]

    rec = Recorder(factory, interval=0.01, max_backoff=0.02)
    rec.start()
    for i in range(10):
        rec.record(tick(i))
    rec.flush()
    rec.close()
    assert recorded(rnix_home) == list(range(10))
    assert isinstance(rec.last_error, ValueError) and str(rec.last_error) == "disk hiccup"
    assert len(opened) == 4  # reopened after each failure


def test_a_failing_store_factory_is_retried(rnix_home: Path) -> None:
    attempts: list[int] = []

    def factory() -> Store:
        attempts.append(1)
        if len(attempts) < 3:
            raise OSError("not yet")
        return Store.open(rnix_home)

    rec = Recorder(factory, interval=0.01, max_backoff=0.02)
    rec.start()
    rec.record(tick(1))
    rec.close()
    assert recorded(rnix_home) == [1]
    assert isinstance(rec.last_error, OSError)


def test_aflush_waits_without_blocking_the_loop(rnix_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The lock is released by a loop callback: aflush can only finish if the loop keeps running.
    monkeypatch.setattr(db, "BUSY_TIMEOUT_MS", 20)
    Store.open(rnix_home).close()
    holder = sqlite3.connect(rnix_home / DB_NAME, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    rec = Recorder(lambda: Store.open(rnix_home), interval=0.01, max_backoff=0.02)
    rec.start()

    async def main() -> None:
        for i in range(2_000):
            rec.record(tick(i))
        asyncio.get_running_loop().call_later(0.1, holder.execute, "ROLLBACK")
        await rec.aflush(timeout=5)

    try:
        asyncio.run(main())
    finally:
        holder.close()
    rec.close()
    assert recorded(rnix_home) == list(range(2_000))


def test_flush_before_start_with_pending_events_is_an_error(rnix_home: Path) -> None:
    rec = Recorder(lambda: Store.open(rnix_home))
    rec.flush()  # nothing recorded: nothing to wait for
    rec.record(tick(1))
    with pytest.raises(RuntimeError, match="not started"):
        rec.flush()
    rec.close()
    assert recorded(rnix_home) == [1]


class FullStore(Store):
    """A store whose filesystem is full until `space` is set."""

    space = threading.Event()

    def append(self, events: Sequence[Record]) -> None:
        if not FullStore.space.is_set():
            raise db.StoreUnwritable("full", path=self.path, cause="its filesystem is full")
        super().append(events)


def test_a_full_disk_breaks_the_recorder_at_once_and_flush_stops_waiting(rnix_home: Path) -> None:
    FullStore.space.clear()
    Store.open(rnix_home).close()
    broken: list[db.StoreUnwritable] = []
    rec = Recorder(lambda: FullStore.open(rnix_home), on_broken=broken.append, broken_grace=0.2)
    rec.start()
    rec.record(tick(1))
    started = time.monotonic()
    rec.flush(timeout=10)  # returns as soon as the store broke: no 10 s wait, no TimeoutError
    assert time.monotonic() - started < 1
    assert rec.broken is not None and rec.broken.cause == "its filesystem is full"
    rec.record(tick(2))
    rec.flush(timeout=10)
    assert len(broken) == 1  # told once
    started = time.monotonic()
    rec.close(timeout=10)  # one last try, then it gives up without raising
    assert time.monotonic() - started < 1
    assert recorded(rnix_home) == []


def test_a_broken_recorder_still_writes_once_space_comes_back(rnix_home: Path) -> None:
    FullStore.space.clear()
    Store.open(rnix_home).close()
    rec = Recorder(lambda: FullStore.open(rnix_home), interval=0.01, max_backoff=0.02)
    rec.start()
    rec.record(tick(1))
    rec.flush()
    assert rec.broken is not None
    FullStore.space.set()
    rec.record(tick(2))
    rec.close()
    assert recorded(rnix_home) == [1, 2]  # in order, nothing dropped
