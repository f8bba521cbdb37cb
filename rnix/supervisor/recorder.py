"""The supervisor's event recorder: SQLite writes on a background thread, never on the event loop.

Contract:
- `record(event)` only queues the event (thread-safe, never blocks on the database, never raises
  except after `close()`).
- A worker thread opens its own `Store` through `store_factory` and appends queued events in order,
  in batches: whenever `batch_size` events are waiting, or `interval` seconds after the first waiting
  event was seen, or at once when someone flushes or closes.
- No event is dropped. A batch that fails (the lock still held after SQLite's busy timeout, or any
  other error) is kept and retried with exponential backoff, before anything recorded after it; the
  failure is kept in `last_error` (never cleared, so a supervisor can report it). After an error other
  than a lock the store is reopened.
- `flush(timeout)` blocks until every event recorded before the call is committed (TimeoutError
  otherwise); `aflush()` does the same from a coroutine without blocking the loop.
- `close()` flushes and stops the thread; calling it again does nothing. If the database stays
  locked, close raises TimeoutError after `timeout` and the daemon thread keeps retrying until the
  process exits.
- A batch the filesystem refuses (`StoreUnwritable`: full, read-only, I/O error) breaks the recorder:
  `broken` keeps the error and `on_broken(error)` is called once, from the worker thread, so that the
  supervisor stops the run at once. From then on `flush` returns without waiting (the events stay
  queued: nothing is durable any more, and the run is being stopped), the worker keeps retrying (space
  may come back), and `close` tries one last time for at most `broken_grace` seconds, then returns
  without raising: the events it could not write are lost, what was committed before stays whole.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable

from rnix.core.events import Record
from rnix.store.db import Store, StoreUnwritable, is_locked


class Recorder:
    def __init__(
        self,
        store_factory: Callable[[], Store],
        *,
        interval: float = 0.05,
        batch_size: int = 500,
        max_backoff: float = 1.0,
        on_broken: Callable[[StoreUnwritable], None] = lambda error: None,
        broken_grace: float = 1.0,
    ) -> None:
        self._store_factory = store_factory
        self._on_broken = on_broken
        self._broken_grace = broken_grace
        self._interval = interval
        self._batch_size = batch_size
        self._max_backoff = max_backoff
        lock = threading.Lock()
        self._wake = threading.Condition(lock)  # the worker waits on it
        self._done = threading.Condition(lock)  # flushers wait on it
        self._queue: deque[Record] = deque()
        self._recorded = 0  # events accepted by record()
        self._committed = 0  # events committed to the database
        self._flush_target = 0  # flushers wait for _committed to reach this
        self._stopping = False
        self._closed = False
        self._thread: threading.Thread | None = None
        self.last_error: BaseException | None = None
        self.broken: StoreUnwritable | None = None

    @property
    def closed(self) -> bool:
        """Whether `close()` was called (record() raises from then on)."""
        return self._closed

    @property
    def pending(self) -> int:
        """Events recorded but not committed yet."""
        with self._wake:
            return self._recorded - self._committed

    def start(self) -> None:
        with self._wake:
            if self._closed:
                raise RuntimeError("the recorder is closed")
            if self._thread is not None:
                return
            self._thread = threading.Thread(target=self._work, name="rnix-recorder", daemon=True)
        self._thread.start()

    def record(self, event: Record) -> None:
        with self._wake:
            if self._closed:
                raise RuntimeError("the recorder is closed")
            self._queue.append(event)
            self._recorded += 1
            if len(self._queue) in (1, self._batch_size):  # the first event starts the interval
                self._wake.notify()

    def flush(self, timeout: float = 10) -> None:
        """Block until every event recorded so far is committed; TimeoutError after `timeout` s."""
        deadline = time.monotonic() + timeout
        with self._wake:
            target = self._recorded
            if self._committed >= target:
                return
            if self._thread is None:
                raise RuntimeError("the recorder was not started")
            self._flush_target = max(self._flush_target, target)
            self._wake.notify()
            while self._committed < target and self.broken is None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(self._timeout_message(target, timeout))
                self._done.wait(remaining)

    async def aflush(self, timeout: float = 10) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self.flush, timeout)

    def close(self, timeout: float = 10) -> None:
        """Flush, then stop the thread. Idempotent; further record() calls raise RuntimeError."""
        with self._wake:
            if self._closed:
                return
            self._closed = True
            if self._thread is None and not self._queue:
                return
        if self._thread is None:  # events recorded but never started: still write them
            self._thread = threading.Thread(target=self._work, name="rnix-recorder", daemon=True)
            self._thread.start()
        with self._wake:
            self._stopping = True
            self._wake.notify()
            target = self._recorded
            if self.broken is not None:
                timeout = min(timeout, self._broken_grace)
        self._thread.join(timeout)
        if self._thread.is_alive() and self.broken is None:
            with self._wake:
                raise TimeoutError(self._timeout_message(target, timeout))

    # -- the worker thread ----------------------------------------------------------------------

    def _work(self) -> None:
        store: Store | None = None
        batch: list[Record] = []
        backoff = self._interval
        try:
            while True:
                batch = batch or self._next_batch()
                if not batch:
                    return  # stopping, and everything is committed
                try:
                    store = store or self._store_factory()
                    store.append(batch)
                except Exception as exc:  # keep the batch, whatever went wrong
                    self.last_error = exc
                    if not is_locked(exc) and store is not None:
                        _close_quietly(store)  # reopen: the connection may be what is broken
                        store = None
                    if isinstance(exc, StoreUnwritable):
                        self._break(exc)
                        if self._stopping:
                            return  # that was close's last try
                    self._pause(backoff)
                    backoff = min(backoff * 2, self._max_backoff)
                    continue
                with self._wake:
                    self._committed += len(batch)
                    self._done.notify_all()
                batch = []
                backoff = self._interval
        finally:
            if store is not None:
                _close_quietly(store)

    def _break(self, error: StoreUnwritable) -> None:
        with self._wake:
            first = self.broken is None
            self.broken = self.broken or error
            self._done.notify_all()  # flushers stop waiting
        if first:
            self._on_broken(error)

    def _pause(self, seconds: float) -> None:
        """Wait before a retry; a close cuts the wait short (its one last try comes at once)."""
        with self._wake:
            if not self._stopping:
                self._wake.wait(seconds)

    def _next_batch(self) -> list[Record]:
        """Wait for events, then for more (up to `interval`) unless a flush or close is waiting."""
        with self._wake:
            while not self._queue and not self._stopping:
                self._wake.wait()
            end = time.monotonic() + self._interval
            while len(self._queue) < self._batch_size and not self._hurry():
                remaining = end - time.monotonic()
                if remaining <= 0:
                    break
                self._wake.wait(remaining)
            count = min(len(self._queue), self._batch_size)
            return [self._queue.popleft() for _ in range(count)]

    def _hurry(self) -> bool:
        return self._stopping or self._flush_target > self._committed

    def _timeout_message(self, target: int, timeout: float) -> str:
        missing = target - self._committed
        cause = f": {self.last_error}" if self.last_error is not None else ""
        return f"{missing} events not recorded after {timeout:g} s{cause}"


def _close_quietly(store: Store) -> None:
    with contextlib.suppress(Exception):  # the connection is being discarded after a failure anyway
        store.close()
