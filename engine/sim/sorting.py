"""Reading an event file in time order without holding it in memory: `journey simulate` replays a
year of history, and an export from another tool is not always sorted.

The file is read once, in runs of at most `run_size` events: each run is sorted and, when there is
more than one, written to a temporary file; the runs are then merged as the replay asks for
events. Memory holds one run while reading, and a chunk of each run while merging. Events with the
same timestamp keep their order in the file (an identify before the signup of the same second).
An `journey events export` file, sorted already, is one run after another of the same order.
"""

from __future__ import annotations

import heapq
import marshal
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any, TextIO

from engine.ingest.parse import ParsedEvent, read_lines

#: events held in memory at once while reading
RUN_SIZE = 50_000
#: events per marshalled chunk of a run (what each run holds in memory while merging)
CHUNK = 1000
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)

Keyed = tuple[Any, int, ParsedEvent]


class SortedEvents:
    """The good events of a JSON-lines stream, in time order; bad lines are reported as
    `NAME:LINE: reason` through `on_error` and counted in `bad`. Use it in a `with` block: the
    temporary runs are removed at its end."""

    def __init__(
        self,
        stream: TextIO,
        name: str,
        on_error: Callable[[str], None],
        *,
        run_size: int = RUN_SIZE,
        aliases: Mapping[str, str] | None = None,
    ) -> None:
        self.bad = 0
        self.count = 0
        self.runs = 0
        self._dir: Path | None = None
        self._files: list[Path] = []
        self._memory: list[Keyed] = []
        run: list[Keyed] = []
        for number, item in read_lines(stream, aliases=aliases):
            if not isinstance(item, ParsedEvent):
                self.bad += 1
                on_error(f"{name}:{number}: {item}")
                continue
            run.append((item.timestamp, number, item))
            self.count += 1
            if len(run) >= run_size:
                self._spill(run)
                run = []
        if self._files:
            if run:
                self._spill(run)
        else:
            run.sort(key=lambda k: (k[0], k[1]))
            self._memory = run
            self.runs = 1 if run else 0

    def _spill(self, run: list[Keyed]) -> None:
        run.sort(key=lambda k: (k[0], k[1]))
        if self._dir is None:
            self._dir = Path(tempfile.mkdtemp(prefix="journey-sort-"))
        path = self._dir / f"run-{len(self._files):05d}.marshal"
        with path.open("wb") as f:
            # marshal, in length-prefixed chunks: JSON's types only, many times faster than
            # pickle or marshal.load on a file; the time as microseconds since the epoch, exact
            for start in range(0, len(run), CHUNK):
                chunk = [
                    (
                        (ts - EPOCH) // MICROSECOND,
                        n,
                        e.type,
                        e.customer_id,
                        e.event,
                        e.message_id,
                        e.traits,
                        e.properties,
                        e.anonymous_id,
                    )
                    for ts, n, e in run[start : start + CHUNK]
                ]
                data = marshal.dumps(chunk)
                f.write(len(data).to_bytes(8, "little") + data)
        self._files.append(path)
        self.runs = len(self._files)

    @staticmethod
    def _read(f: IO[bytes]) -> Iterator[Keyed]:
        while True:
            head = f.read(8)
            if len(head) < 8:
                return
            chunk = marshal.loads(f.read(int.from_bytes(head, "little")))
            for micros, number, kind, cid, name, mid, traits, props, anonymous in chunk:
                ts = EPOCH + timedelta(microseconds=micros)
                yield ts, number, ParsedEvent(kind, cid, ts, name, mid, traits, props, anonymous)

    def __iter__(self) -> Iterator[ParsedEvent]:
        if not self._files:
            for _, _, event in self._memory:
                yield event
            return
        handles = [path.open("rb") for path in self._files]
        try:
            for _, _, event in heapq.merge(*(self._read(h) for h in handles), key=lambda k: (k[0], k[1])):
                yield event
        finally:
            for h in handles:
                h.close()

    def close(self) -> None:
        self._memory = []
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None
            self._files = []

    def __enter__(self) -> SortedEvents:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
