"""A split is stable per customer and rule, across databases too: replaying the same events into a
fresh database (a demo with the same seed, a staging copy) puts everyone in the same variant."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, select

from engine.db import make_engine, upgrade
from engine.db.schema import customers, enrollments
from tests.support.kit import H, Kit
from tests.support.services import utc

T = utc("2026-11-01T10:00:00")
SPLIT = """
id: winback
trigger: {event: came_back}
steps:
  - split: {a: 45, b: 45, holdout: 10}
    variants:
      a: [{send: hello}]
      b: [{send: hello}]
"""


def variants(db: Engine, tmp_path: Path) -> dict[str, str]:
    tmp_path.mkdir()
    kit = Kit(db, tmp_path)
    kit.rules(SPLIT)
    kit.tick(T - H)
    kit.ingest(
        *[
            {"type": "track", "customer_id": f"c{i}", "event": "came_back", "timestamp": T.isoformat()}
            for i in range(200)
        ]
    )
    kit.tick(T + H)
    with db.connect() as conn:
        rows = conn.execute(
            select(customers.c.external_id, enrollments.c.variant).join(
                enrollments, enrollments.c.customer_id == customers.c.id
            )
        )
        return {r.external_id: r.variant for r in rows}


def test_the_same_customers_land_in_the_same_variants_in_another_database(db: Engine, tmp_path: Path) -> None:
    first = variants(db, tmp_path / "one")
    other = make_engine(f"sqlite:///{tmp_path / 'other.db'}")
    upgrade(other)
    second = variants(other, tmp_path / "two")
    other.dispose()
    assert len(first) == 200 and first == second
    assert {"a", "b", "holdout"} == set(first.values())
    assert 5 <= sum(v == "holdout" for v in first.values()) <= 40
