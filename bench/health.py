"""Benchmark: what `journey health` and every /metrics scrape ask of the sends ledger, with a big
backlog due (a broadcast of N sends, and 2N sent before it), against the same figures read without
the retried sends' own index (migration 0017), in the same run.

    python bench/health.py                       # 1,000,000 due sends on the shared PostgreSQL
    python bench/health.py --due 200000 --db sqlite

Prints the time of one call (the stuck, failing and failed-last-hour figures), the median of
--calls calls, with the index and with it dropped, and the ratio.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine, text

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.db import make_engine, upgrade  # noqa: E402
from engine.delivery.troubles import troubles  # noqa: E402

PG_ADMIN = os.environ.get("JOURNEY_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
NOW = datetime(2026, 11, 1, tzinfo=UTC)


def seed(engine: Engine, due: int) -> None:
    """`due` sends due now (one in 50,000 retried three times), 2 x `due` sent ones."""
    rows = """INSERT INTO sends (rule_id, step, customer_id, occurrence, template, channel,
        transactional, priority, due_at, created_at, status, attempts, reason)
        SELECT :rule, '0', g, 0, 't', 'email', false, 0, :now, :now, CAST(:status AS VARCHAR(16)),
               CASE WHEN CAST(:status AS VARCHAR(16)) = 'due' AND g % 50000 = 0 THEN 3 ELSE 1 END,
               CASE WHEN CAST(:status AS VARCHAR(16)) = 'due' AND g % 50000 = 0 THEN 'retry' END
        FROM series"""
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            series = "WITH series (g) AS (SELECT generate_series(1, :n)) "
        else:
            series = (
                "WITH RECURSIVE series (g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM series WHERE g < :n) "
            )
        for rule, status, n in (("broadcast:news", "due", due), ("welcome", "sent", 2 * due)):
            conn.execute(text(series + rows), {"n": n, "rule": rule, "now": NOW, "status": status})
        conn.execute(text("ANALYZE sends" if engine.dialect.name == "postgresql" else "ANALYZE"))


def median_call(engine: Engine, calls: int) -> tuple[float, int]:
    times = []
    failing = 0
    for _ in range(calls):
        t = time.perf_counter()
        failing = troubles(engine, NOW).failing
        times.append(time.perf_counter() - t)
    return statistics.median(times), failing


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--due", type=int, default=1_000_000)
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--db", choices=["postgres", "sqlite"], default="postgres")
    args = parser.parse_args()
    admin = None
    if args.db == "postgres":
        name = f"journey_bench_{uuid.uuid4().hex[:8]}"
        admin = make_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        url = PG_ADMIN.rsplit("/", 1)[0] + "/" + name
    else:
        url = f"sqlite:///{Path(tempfile.mkdtemp()) / 'health.db'}"
    engine = make_engine(url)
    try:
        upgrade(engine)
        seed(engine, args.due)
        indexed, failing = median_call(engine, args.calls)
        with engine.begin() as conn:
            conn.execute(text("DROP INDEX ix_sends_retrying"))
        plain, failing_plain = median_call(engine, args.calls)
        assert failing == failing_plain, (failing, failing_plain)
        print(f"== {engine.dialect.name}: {args.due:,} sends due, {2 * args.due:,} sent; {failing} failing")
        print(
            f"health figures, with the retried sends' index : {1000 * indexed:>9.2f} ms per call (median of {args.calls})"
        )
        print(f"the same without it (every due send read)     : {1000 * plain:>9.2f} ms per call")
        print(f"ratio                                         : {plain / indexed:>9.1f} x")
    finally:
        engine.dispose()
        if admin is not None:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


if __name__ == "__main__":
    main()
