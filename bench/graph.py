"""Benchmark: the live counts of every journey (`journey graph`, the report's flows and A/B tables)
against a naive per-enrollment baseline.

    python bench/graph.py                              # 200,000 enrollments on SQLite
    python bench/graph.py --enrollments 1000000 --db-url postgresql://postgres@127.0.0.1:5432/bench

Writes a synthetic ledger for the shipped rules (enrollments at every position and status, a send
per send step reached with its outcome, opens and clicks, goal events), then times the counts of
all rules together (a few grouped statements, plus one per rule with a goal), and the same figures
the naive way: each enrollment's sends (by the customer's index), opens and goal events read one enrollment at a
time (timed on a
sample and extrapolated), with the ratio.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine, insert, select, text

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.db import make_engine, upgrade  # noqa: E402
from engine.db.schema import enrollments, events, sends  # noqa: E402
from engine.reporting.counts import rule_counts  # noqa: E402
from engine.rules.loader import load_ruleset  # noqa: E402
from engine.rules.model import Rule, SendStep, SplitStep  # noqa: E402
from engine.rules.walk import walk_steps  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
NOW = datetime(2026, 11, 1, tzinfo=UTC)
STATUSES = ["sent"] * 8 + ["suppressed", "failed", "cancelled", "due"]


def fill(engine: Engine, rules: list[Rule], n: int, seed: int) -> dict[str, int]:
    rng = random.Random(seed)
    rows_e, rows_s, rows_ev = [], [], []
    send_id = 0
    for i in range(n):
        rule = rules[i % len(rules)]
        paths = [p for p, s in walk_steps(rule.steps) if isinstance(s, SendStep)]
        split = next((s for _, s in walk_steps(rule.steps) if isinstance(s, SplitStep)), None)
        variant = rng.choice(list(split.split)) if split else None
        reached = [p for p in paths if variant is None or f".{variant}." in p or "." not in p]
        reached = reached[: rng.randint(0, len(reached))] if variant != "holdout" else []
        entered = NOW - timedelta(days=rng.uniform(0, 60))
        status = "holdout" if variant == "holdout" else rng.choice(["done", "done", "active", "exited"])
        rows_e.append(
            dict(
                id=i + 1,
                rule_id=rule.id,
                customer_id=i + 1,
                occurrence=i,
                entered_at=entered,
                tick_at=entered,
                position=reached[-1] if status == "active" and reached else None,
                due_at=entered + timedelta(days=rng.choice([0, 3])),
                status=status,
                variant=variant,
                bucket=0,
            )
        )
        for path in reached:
            send_id += 1
            outcome = rng.choice(STATUSES)
            rows_s.append(
                dict(
                    id=send_id,
                    rule_id=rule.id,
                    step=path,
                    customer_id=i + 1,
                    occurrence=i,
                    enrollment_id=i + 1,
                    template="t",
                    channel="email",
                    due_at=entered,
                    created_at=entered,
                    status=outcome,
                    sent_at=entered if outcome == "sent" else None,
                    reason=None if outcome == "sent" else "frequency_cap",
                )
            )
            if outcome == "sent" and rng.random() < 0.35:
                name = "email_clicked" if rng.random() < 0.3 else "email_opened"
                rows_ev.append(
                    dict(
                        customer_id=i + 1,
                        name=name,
                        ts=entered + timedelta(hours=2),
                        properties={"send_id": send_id},
                    )
                )
        if rule.goal is not None and rng.random() < 0.15:
            ts = entered + timedelta(days=rng.uniform(0, 10))
            rows_ev.append(dict(customer_id=i + 1, name=rule.goal.event, ts=ts, properties={}))
    with engine.begin() as conn:
        for table, rows in ((enrollments, rows_e), (sends, rows_s)):
            for start in range(0, len(rows), 20_000):
                conn.execute(insert(table), rows[start : start + 20_000])
        for start in range(0, len(rows_ev), 20_000):
            conn.execute(insert(events), [dict(r, received_at=NOW) for r in rows_ev[start : start + 20_000]])
    return {"enrollments": len(rows_e), "sends": len(rows_s), "events": len(rows_ev)}


def naive(engine: Engine, rules: list[Rule], sample: int) -> float:
    """Seconds for the figures of `sample` enrollments, read one enrollment at a time."""
    by_id = {rule.id: rule for rule in rules}
    counts: Counter[tuple[str, ...]] = Counter()
    with engine.connect() as conn:
        rows = conn.execute(select(enrollments).order_by(enrollments.c.id).limit(sample)).all()
        started = time.perf_counter()
        for en in rows:
            counts[(en.rule_id, en.variant or "", en.status)] += 1
            for s in conn.execute(
                select(sends.c.id, sends.c.step, sends.c.status).where(
                    sends.c.customer_id == en.customer_id, sends.c.enrollment_id == en.id
                )
            ):
                counts[(en.rule_id, s.step, s.status)] += 1
                opened = conn.execute(
                    text(
                        "SELECT count(*) FROM events WHERE customer_id = :c AND name IN ('email_opened', 'email_clicked')"
                    ),
                    {"c": en.customer_id},
                ).scalar()
                counts[(en.rule_id, s.step, "opened")] += int(opened or 0)
            goal = by_id[en.rule_id].goal
            if goal is not None:
                hit = conn.execute(
                    select(events.c.id)
                    .where(
                        events.c.customer_id == en.customer_id,
                        events.c.name == goal.event,
                        events.c.ts > en.entered_at,
                        events.c.ts <= en.entered_at + goal.within,
                    )
                    .limit(1)
                ).first()
                counts[(en.rule_id, "converted")] += hit is not None
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--enrollments", type=int, default=200_000)
    parser.add_argument("--sample", type=int, default=2_000, help="enrollments counted the naive way")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--db-url", help="an empty database (default: SQLite in a temporary directory)")
    args = parser.parse_args()
    rules = load_ruleset(ROOT / "rules").rules
    with tempfile.TemporaryDirectory() as tmp:
        engine = make_engine(args.db_url or f"sqlite:///{Path(tmp) / 'graph.db'}")
        upgrade(engine)
        print(f"writing {args.enrollments:,} enrollments and their sends …", file=sys.stderr, flush=True)
        sizes = fill(engine, rules, args.enrollments, args.seed)
        print("counting …", file=sys.stderr, flush=True)
        times = []
        for _ in range(3):
            started = time.perf_counter()
            with engine.connect() as conn:
                rule_counts(conn, rules, start=None, end=NOW)
            times.append(time.perf_counter() - started)
        sample = min(args.sample, sizes["enrollments"])
        print(f"counting {sample:,} enrollments the naive way …", file=sys.stderr, flush=True)
        naive_s = naive(engine, rules, sample) * sizes["enrollments"] / sample
        engine.dispose()
    print(
        f"== {engine.dialect.name}: {len(rules)} rules, " + ", ".join(f"{v:,} {k}" for k, v in sizes.items())
    )
    print(f"counts, all rules  {min(times):>10.2f} s   (best of 3; {', '.join(f'{t:.2f}' for t in times)})")
    print(
        f"naive baseline     {naive_s:>10.2f} s   (one enrollment at a time; sample {sample:,}, extrapolated)"
    )
    print(f"ratio              {naive_s / min(times):>10.1f} x faster than naive")


if __name__ == "__main__":
    main()
