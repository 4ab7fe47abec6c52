"""How `journey simulate` reads an event file: in sorted runs on disk (engine.sim.sorting), against
the baseline of reading the whole file into a list and sorting it, as it did before. Each way runs
in a process of its own, so that its peak memory is its own; it prints time and peak memory of
both, and their ratios.

    .venv/bin/python bench/simulate_read.py --customers 20000 --days 60
    .venv/bin/python bench/simulate_read.py --events history.jsonl
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = """
import json, resource, sys, time
from engine.ingest.parse import ParsedEvent, read_lines
from engine.sim.sorting import SortedEvents

mode, path, run_size = sys.argv[1], sys.argv[2], int(sys.argv[3])
started = time.perf_counter()
with open(path, encoding="utf-8") as f:
    if mode == "list":
        events = [e for _, e in read_lines(f) if isinstance(e, ParsedEvent)]
        events.sort(key=lambda e: e.timestamp)
        n = sum(1 for _ in events)
        runs = 1
    else:
        with SortedEvents(f, path, lambda _line: None, run_size=run_size) as events:
            n = sum(1 for _ in events)
            runs = events.runs
seconds = time.perf_counter() - started
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"events": n, "seconds": seconds, "peak_mb": peak, "runs": runs}))
"""


def measure(mode: str, path: Path, run_size: int) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, mode, str(path), str(run_size)],
        check=True,
        capture_output=True,
        text=True,
    )
    figures: dict[str, float] = json.loads(out.stdout)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--customers", type=int, default=20000)
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--events", type=Path, help="read this file instead of a generated one")
    parser.add_argument("--run-size", type=int, default=50_000, help="events per sorted run")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="journey-bench-") as tmp:
        path = args.events
        if path is None:
            from engine.sim.generate import ShopConfig, write_events

            path = Path(tmp) / "events.jsonl"
            with path.open("w", encoding="utf-8") as f:
                write_events(ShopConfig(customers=args.customers, days=args.days, seed=3), f)
        size = path.stat().st_size / 1e6
        baseline = measure("list", path, args.run_size)
        runs = measure("runs", path, args.run_size)
    print(f"{int(baseline['events']):,} events, {size:.0f} MB of JSON lines")
    print(
        f"sorted runs on disk ({int(runs['runs'])} runs of up to {args.run_size:,}): "
        f"{runs['seconds']:.1f} s, peak {runs['peak_mb']:.0f} MB"
    )
    print(
        f"baseline, the whole file in a list: {baseline['seconds']:.1f} s, peak {baseline['peak_mb']:.0f} MB"
    )
    print(
        f"memory {baseline['peak_mb'] / runs['peak_mb']:.1f}x smaller; "
        f"time {runs['seconds'] / baseline['seconds']:.1f}x the baseline's"
    )


if __name__ == "__main__":
    main()
