"""Ingest in batches: parsed events are stored a batch at a time, on PostgreSQL by writer threads
while the next batch is parsed, and the last batch durably (`ingest_file`, `ingest_events`)."""

from __future__ import annotations

import queue
import sys
import threading
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any, TextIO

from sqlalchemy import Engine

from engine.errors import IngestError
from engine.ingest import _postgres
from engine.ingest.parse import ParsedEvent, parse_item, read_lines
from engine.ingest.store import IngestResult, store_batch

#: seconds between the interpreter's thread switches while writer threads run (default 0.005)
WRITER_SWITCH_INTERVAL = 0.0001

#: writer threads on PostgreSQL, each with a connection (SQLite has one writer: one thread).
#: On two cores, 400,000 lines took 20-26 s with one, 14-16 s with two, 13-15 s with three or four:
#: while one server process folds a batch, another waits for its commit or for the parser.
PG_WRITERS = 3


def writers_for(engine: Engine) -> int:
    """How many batches are stored at once: on PostgreSQL, while one server process folds a
    batch, another folds the next one; SQLite takes one writer at a time."""
    return PG_WRITERS if engine.dialect.name == "postgresql" else 1


class _Writer:
    """Stores batches on threads of their own, so that parsing the next batch overlaps with the
    database's work on the previous ones (a failure is raised to the caller).

    Batches may commit in any order: what a batch does is order-independent by design (the
    summary keeps the latest time, not the latest arrival; an identify merges by its time). One
    thing is not: which copy of a message id is stored. So an event whose message id is in a
    batch still being stored is left out of the next batch as a duplicate, and the first copy
    in the file wins, as in one batch. Two batches of the same customers may deadlock on
    PostgreSQL: the one rolled back is stored again. When a batch fails, those already handed
    to other threads may still be stored, as if they had come first; ingesting the file again
    stores what is missing (message ids make it idempotent)."""

    def __init__(self, engine: Engine, received_at: datetime, threads: int = 1) -> None:
        self.engine = engine
        self.received_at = received_at
        self.total = IngestResult()
        self.lock = threading.Lock()
        self.error: BaseException | None = None
        self.queue: queue.Queue[tuple[int, list[ParsedEvent], frozenset[int], Any] | None] = queue.Queue(
            maxsize=threads
        )
        #: message id -> the number of the batch being stored that holds it (several threads only)
        self.in_flight: dict[str, int] | None = {} if threads > 1 else None
        self.batches = 0
        # The parsing thread holds the interpreter almost all the time; each time the database
        # answers, a writer waits for it, by default up to 5 ms. A batch makes a dozen round trips,
        # so a writer spent a third of its time waiting: hand over more often while they run.
        self.switch_interval = sys.getswitchinterval()
        sys.setswitchinterval(WRITER_SWITCH_INTERVAL)
        self.threads = [
            threading.Thread(target=self._run, name=f"journey-ingest-writer-{i + 1}", daemon=True)
            for i in range(threads)
        ]
        for thread in self.threads:
            thread.start()

    def _run(self) -> None:
        while (item := self.queue.get()) is not None:
            number, batch, skip, payload = item
            try:
                if self.error is None:  # else drain: the caller sees the error at its next put
                    result = store_batch(
                        self.engine, batch, self.received_at, durable=False, payload=payload, skip=skip
                    )
                    with self.lock:
                        self.total.add(result)
            except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
                self.error = exc
            finally:
                self._landed(number, batch)

    def _in_flight_copies(self, number: int, batch: list[ParsedEvent]) -> frozenset[int]:
        """Positions of the track events whose message id a batch still being stored holds."""
        in_flight = self.in_flight
        if in_flight is None:
            return frozenset()
        skip: list[int] = []
        with self.lock:
            for pos, ev in enumerate(batch):
                mid = ev.message_id
                if mid is not None and ev.type == "track" and in_flight.setdefault(mid, number) != number:
                    skip.append(pos)
        return frozenset(skip)

    def _landed(self, number: int, batch: list[ParsedEvent]) -> None:
        in_flight = self.in_flight
        if in_flight is None:
            return
        with self.lock:
            for ev in batch:
                if ev.message_id is not None and in_flight.get(ev.message_id) == number:
                    del in_flight[ev.message_id]

    def put(self, batch: list[ParsedEvent]) -> None:
        """Hand a batch over; its COPY text is built here, on the caller's thread, so that the
        writers hold the interpreter only briefly while the database works."""
        self._raise()
        self.batches += 1
        skip = self._in_flight_copies(self.batches, batch)
        self.queue.put((self.batches, batch, skip, _postgres.payload(self.engine, batch, skip)))

    def close(self) -> IngestResult:
        for _ in self.threads:
            self.queue.put(None)
        for thread in self.threads:
            thread.join()
        sys.setswitchinterval(self.switch_interval)
        self._raise()
        return self.total

    def _raise(self) -> None:
        if self.error is not None:
            raise self.error


def _ingest(
    engine: Engine,
    parsed: Iterable[tuple[int, ParsedEvent | IngestError]],
    *,
    received_at: datetime,
    chunk_size: int,
    on_error: Callable[[int, IngestError], None] | None = None,
) -> IngestResult:
    """Store parsed events in batches; each IngestError is counted (and reported) with its index.

    Full batches go to a writer thread as soon as the next one is full; the last batch is stored
    here, durably, once the writer is done, so that when this returns everything is on disk.
    """
    rejected: list[tuple[int, str]] = []
    writer: _Writer | None = None
    held: list[ParsedEvent] | None = None  # a full batch, kept until we know whether it is the last
    batch: list[ParsedEvent] = []
    try:
        for index, item in parsed:
            if isinstance(item, IngestError):
                rejected.append((index, str(item)))
                if on_error is not None:
                    on_error(index, item)
                continue
            batch.append(item)
            if len(batch) >= chunk_size:
                if held is not None:
                    if writer is None:
                        writer = _Writer(engine, received_at, writers_for(engine))
                    writer.put(held)
                held, batch = batch, []
    finally:
        total = writer.close() if writer is not None else IngestResult()
    if held is not None:
        total.add(store_batch(engine, held, received_at, durable=not batch))
    if batch:
        total.add(store_batch(engine, batch, received_at))
    total.rejected = rejected + total.rejected
    return total


def ingest_events(
    engine: Engine,
    items: Iterable[object],
    *,
    received_at: datetime,
    start_index: int = 0,
    chunk_size: int = 2000,
) -> IngestResult:
    """Ingest decoded events; each bad item is rejected with its index and reason."""
    parsed = ((index, parse_item(item)) for index, item in enumerate(items, start=start_index))
    return _ingest(engine, parsed, received_at=received_at, chunk_size=chunk_size)


def ingest_file(
    engine: Engine,
    stream: TextIO,
    *,
    name: str,
    received_at: datetime,
    on_error: Callable[[str], None],
    progress: Callable[[int], None] | None = None,
    chunk_size: int = 2000,
    aliases: Mapping[str, str] | None = None,
) -> IngestResult:
    """Ingest JSON lines, in section 2's shape or Segment's; a bad line is reported as
    `NAME:LINE: reason`, skipped and counted. `aliases` maps event names to catalogue names."""
    return _ingest(
        engine,
        read_lines(stream, progress, received_at=received_at, aliases=aliases),
        received_at=received_at,
        chunk_size=chunk_size,
        on_error=lambda number, exc: on_error(f"{name}:{number}: {exc}"),
    )
