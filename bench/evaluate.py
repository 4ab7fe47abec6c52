"""Benchmark: ingest, a full tick and an incremental tick, against a naive per-customer baseline.

    python bench/evaluate.py                       # 100,000 customers on SQLite and PostgreSQL
    python bench/evaluate.py --customers 1000000 --db postgres

PostgreSQL runs on a server of the bench's own (bench/pgserver.py: a free port, memory for the
working set, durable settings), or with `--pg-server shared` on the one at JOURNEY_BENCH_PG_URL
(needed by --keep-db and --from-db, whose database must outlive the run).

Prints, for each database: ingest events/s, the full tick (every customer's stage, segment and every
rule, the shipped rules with their wait_for, segments and cart_id match), the incremental tick
after 1% of customers changed (views, carts, some orders and survey answers), and the same work done the naive way (customers
loaded into Python and evaluated one by one, timed on a sample and extrapolated), with the ratio.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import event, func, select, text

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import naive  # noqa: E402
from bench.pgserver import own_server  # noqa: E402
from engine.db import make_engine, upgrade  # noqa: E402
from engine.db.schema import customers, events  # noqa: E402
from engine.evaluate.tick import run_tick  # noqa: E402
from engine.ingest.writer import ingest_file  # noqa: E402
from engine.rules.loader import load_ruleset  # noqa: E402
from engine.sim.generate import ShopConfig, write_events  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN = os.environ.get("JOURNEY_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


def fresh_database(kind: str, workdir: Path, *, template: str | None, pg_admin: str) -> tuple[str, object]:
    if kind == "sqlite":
        return f"sqlite:///{workdir / 'bench.db'}", None
    name = f"journey_bench_{uuid.uuid4().hex[:8]}"
    admin = make_engine(pg_admin, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else "")))

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

    return pg_admin.rsplit("/", 1)[0] + "/" + name, drop


def keep_copy(url: str, pg_admin: str) -> None:
    """Copy the just-ingested database aside, for `--from-db` (ticks again, without the ingest)."""
    name = url.rsplit("/", 1)[1]
    admin = make_engine(pg_admin, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}_ingested" TEMPLATE "{name}"'))
    admin.dispose()
    print(f"kept the ingested database as {name}_ingested (drop it when done)")


@contextmanager
def statement_times(engine: Any, top: int) -> Iterator[list[tuple[float, int, str]]]:
    """Time every statement run inside the block; the list holds the `top` slowest (seconds, times
    run, the statement's first line) once the block is done, slowest first (empty for top=0)."""
    found: list[tuple[float, int, str]] = []
    if top <= 0:
        yield found
        return
    spent: dict[str, list[float]] = {}
    started: list[float] = []

    def before(*_args: Any) -> None:
        started.append(time.perf_counter())

    def after(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        key = " ".join(statement.split())[:160]
        entry = spent.setdefault(key, [0.0, 0])
        entry[0] += time.perf_counter() - started.pop()
        entry[1] += 1

    event.listen(engine, "before_cursor_execute", before)
    event.listen(engine, "after_cursor_execute", after)
    try:
        yield found
    finally:
        event.remove(engine, "before_cursor_execute", before)
        event.remove(engine, "after_cursor_execute", after)
        ranked = sorted(((v[0], int(v[1]), k) for k, v in spent.items()), reverse=True)
        found.extend(ranked[:top])


def run(
    kind: str,
    customers_n: int,
    days: int,
    sample: int,
    events_file: Path,
    end: datetime,
    *,
    from_db: str | None = None,
    keep_db: bool = False,
    pg_admin: str = PG_ADMIN,
    statements: int = 0,
) -> dict[str, float]:
    workdir = Path(tempfile.mkdtemp(prefix="journey-bench-"))
    url, drop = fresh_database(kind, workdir, template=from_db, pg_admin=pg_admin)
    engine = make_engine(url)
    try:
        upgrade(engine)
        ruleset = load_ruleset(ROOT / "rules", ROOT / "message_templates")
        figures: dict[str, float] = {}

        if from_db is None:
            t = time.perf_counter()
            with events_file.open() as fh:
                result = ingest_file(
                    engine, fh, name=str(events_file), received_at=end, on_error=lambda _m: None
                )
            seconds = time.perf_counter() - t
            figures["events"] = result.stored
            figures["ingest_events_per_s"] = result.stored / seconds
        else:  # a copy of a database the bench ingested before (--keep-db): the ticks only
            with engine.connect() as conn:
                figures["events"] = conn.execute(select(func.count()).select_from(events)).scalar_one()
            figures["ingest_events_per_s"] = float("nan")
        if kind == "postgresql":
            with engine.begin() as conn:
                conn.execute(text("ANALYZE"))
            if keep_db and from_db is None:
                engine.dispose()
                keep_copy(url, pg_admin)

        t = time.perf_counter()
        first = run_tick(engine, ruleset, now=end, full=True)
        figures["full_tick_s"] = time.perf_counter() - t
        figures["full_tick_entered"] = sum(first.entered.values())

        # 1% of customers do something new in the next hour
        with engine.connect() as conn:
            ids = [
                r[0] for r in conn.execute(select(customers.c.external_id).order_by(customers.c.external_id))
            ]
        rng = random.Random(7)
        changed = rng.sample(ids, max(1, len(ids) // 100))
        buf = io.StringIO()
        for i, cid in enumerate(changed):
            at = end + timedelta(minutes=1 + (i % 50))
            # a view and a new cart; every fourth also checks it out (a cart_id match, an order
            # that can make a vip), every fourth other answers the survey (releases a wait_for)
            names = ["product_viewed", "cart_updated"]
            names += ["order_placed"] if i % 4 == 0 else ["survey_answered"] if i % 4 == 1 else []
            for name in names:
                props = {"cart_id": f"bench-{cid}", "cart_value": 10.0, "value": 10.0, "score": 9}
                buf.write(
                    json.dumps(
                        {
                            "type": "track",
                            "customer_id": cid,
                            "event": name,
                            "timestamp": at.isoformat(),
                            "message_id": f"bench-{name}-{cid}",
                            "properties": props,
                        }
                    )
                    + "\n"
                )
        buf.seek(0)
        ingest_file(engine, buf, name="changes", received_at=end, on_error=lambda _m: None)
        with statement_times(engine, statements) as slowest:
            t = time.perf_counter()
            inc = run_tick(engine, ruleset, now=end + timedelta(hours=1))
            figures["incremental_tick_s"] = time.perf_counter() - t
        if statements:
            parts = sorted(inc.timings.items(), key=lambda kv: -kv[1])
            print("incremental tick: " + ", ".join(f"{k} {v:.3f} s" for k, v in parts))
        for seconds, count, sql in slowest:
            print(f"  {seconds:8.3f} s  {count:3d}x  {sql}")
        figures["incremental_new_events"] = inc.new_events
        t = time.perf_counter()
        run_tick(engine, ruleset, now=end + timedelta(hours=2))
        figures["incremental_tick2_s"] = time.perf_counter() - t

        # the naive baseline: load a sample into Python, evaluate per customer, extrapolate
        with engine.connect() as conn:
            total = conn.execute(select(func.count()).select_from(customers)).scalar_one()
            pick = [
                r[0] for r in conn.execute(select(customers.c.id).order_by(customers.c.salt).limit(sample))
            ]
        t = time.perf_counter()
        people = naive.load(engine, pick)
        naive.evaluate(ruleset, people, end, end - timedelta(hours=24))
        per_customer = (time.perf_counter() - t) / max(1, len(pick))
        figures["naive_full_s"] = per_customer * total
        figures["customers"] = total
        return figures
    finally:
        engine.dispose()
        if drop:
            drop()  # type: ignore[operator]
        shutil.rmtree(workdir, ignore_errors=True)  # the SQLite database, if any


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--sample", type=int, default=2000, help="customers evaluated the naive way")
    parser.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument(
        "--events",
        type=Path,
        help="events file: reused when it exists (same --customers/--days/--seed), else generated and kept",
    )
    parser.add_argument(
        "--keep-db",
        action="store_true",
        help="keep a copy of the ingested PostgreSQL database, print its name",
    )
    parser.add_argument(
        "--from-db",
        metavar="NAME",
        help="skip ingest: run the ticks on a copy of a PostgreSQL database kept by --keep-db",
    )
    parser.add_argument(
        "--statements",
        type=int,
        default=0,
        metavar="N",
        help="print the N statements of the incremental tick that took longest, with their time",
    )
    parser.add_argument(
        "--pg-server",
        choices=["own", "shared"],
        default="own",
        help="own: start a PostgreSQL sized for the run (default); shared: JOURNEY_BENCH_PG_URL",
    )
    args = parser.parse_args()
    if args.pg_server == "own" and (args.keep_db or args.from_db):
        parser.error("--keep-db and --from-db need a server that outlives the run: add --pg-server shared")

    start = datetime(2026, 11, 1, tzinfo=UTC) - timedelta(days=args.days)
    end = start + timedelta(days=args.days)
    keep = args.events is not None
    events_file = args.events or Path(tempfile.mkdtemp(prefix="journey-bench-")) / "events.jsonl"
    if (keep and events_file.exists()) or args.from_db:
        print(f"ticks on a copy of {args.from_db}" if args.from_db else f"reusing {events_file}")
    else:
        t = time.perf_counter()
        with events_file.open("w") as out:
            lines = write_events(
                ShopConfig(customers=args.customers, days=args.days, seed=args.seed, start=start), out
            )
        elapsed = time.perf_counter() - t
        print(f"generated {lines:,} events for {args.customers:,} customers in {elapsed:.1f} s")

    kinds = (
        ["sqlite", "postgresql"]
        if args.db == "both"
        else ["postgresql" if args.db == "postgres" else "sqlite"]
    )
    with ExitStack() as stack:
        for kind in kinds:
            pg_admin, server = PG_ADMIN, "the shared server at JOURNEY_BENCH_PG_URL"
            if kind == "postgresql" and args.pg_server == "own":
                pg_admin, conf = stack.enter_context(own_server())
                server = "a server of its own: " + ", ".join(f"{k}={v}" for k, v in conf.items())
            f = run(
                kind,
                args.customers,
                args.days,
                args.sample,
                events_file,
                end,
                from_db=args.from_db,
                keep_db=args.keep_db,
                pg_admin=pg_admin,
                statements=args.statements,
            )
            report(kind, f, args.sample, server if kind == "postgresql" else None)
    if not keep:
        shutil.rmtree(events_file.parent, ignore_errors=True)  # the generated file's own directory


def report(kind: str, f: dict[str, float], sample: int, server: str | None) -> None:
    """Print one database's figures, and the server they were measured on."""
    print(f"\n== {kind}: {int(f['customers']):,} customers, {int(f['events']):,} events")
    if server:
        print(f"PostgreSQL on {server}")
    print(f"ingest            {f['ingest_events_per_s']:>12,.0f} events/s")
    print(f"full tick         {f['full_tick_s']:>12.2f} s   ({int(f['full_tick_entered']):,} entered)")
    print(
        f"incremental tick  {f['incremental_tick_s']:>12.3f} s   ({int(f['incremental_new_events']):,} new events, 1% of customers)"
    )
    print(f"  next tick       {f['incremental_tick2_s']:>12.3f} s   (inactivity thresholds crossing)")
    print(
        f"naive baseline    {f['naive_full_s']:>12.2f} s   per evaluation of everyone (sample {sample:,}, extrapolated)"
    )
    print(f"ratio full        {f['naive_full_s'] / f['full_tick_s']:>12.1f} x faster than naive")
    print(f"ratio incremental {f['naive_full_s'] / f['incremental_tick_s']:>12.1f} x faster than naive")


if __name__ == "__main__":
    main()
