"""`journey health` and /metrics count the sends retried again and again on every call: through
the partial index of the retried rows (migration 0017), not by reading every due send."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, Select, func, select, text

from engine.db.schema import sends
from engine.delivery.troubles import _where, troubles
from tests.delivery.test_dispatch import NOW, add_customer, add_send


def test_the_failing_count_reads_the_retried_sends_index_not_every_due_send(db: Engine) -> None:
    customer = add_customer(db, 1)
    with db.begin() as conn:  # a broadcast's backlog: many due sends, none of them in trouble
        conn.execute(
            sends.insert(),
            [
                {
                    "rule_id": "broadcast:news",
                    "step": "0",
                    "customer_id": customer,
                    "occurrence": n,
                    "template": "cart_reminder",
                    "channel": "email",
                    "due_at": NOW,
                    "created_at": NOW,
                    "status": "due",
                }
                for n in range(2000)
            ],
        )
    for step, attempts in (("1", 3), ("2", 4), ("3", 1)):
        add_send(db, customer, step=step, reason="retry", attempts=attempts)
    assert troubles(db, NOW).failing == 2  # retried twice or more; the once-retried one is not yet

    query = select(func.count()).select_from(sends).where(_where("failing", NOW))
    explain = "EXPLAIN " if db.dialect.name == "postgresql" else "EXPLAIN QUERY PLAN "
    with db.connect() as conn:
        conn.execute(text("ANALYZE sends"))  # the sizes both planners choose by
        sql, params = _statement(db, query)
        plan = [" ".join(map(str, row)) for row in conn.exec_driver_sql(explain + sql, params)]
    assert any("ix_sends_retrying" in line for line in plan), plan


def _statement(db: Engine, query: Select[Any]) -> tuple[str, Any]:
    """The statement and its parameters as the database receives them."""
    compiled = query.compile(db)
    if compiled.positiontup is not None:
        return str(compiled), tuple(compiled.params[name] for name in compiled.positiontup)
    return str(compiled), compiled.params
