"""Send-rate limits (CONTRACT sections 11 and 14): held across dispatchers, nothing dropped, the
budget shown in the metrics; on SQLite and PostgreSQL, through a real SMTP server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from engine.db.schema import sends
from engine.delivery.deliverer import Deliverer
from engine.delivery.dispatch import dispatch_due
from engine.errors import RuleError
from engine.evaluate.broadcast import broadcast
from engine.metrics import render_latest
from engine.rules.loader import load_ruleset
from engine.settings import Settings
from tests.support.kit import H, Kit, iso
from tests.support.services import utc
from tests.support.smtp import smtp_server

T0 = utc("2026-11-02T10:00:00")
MINUTE = H / 60


def test_100_a_minute_spreads_1000_due_sends_over_ten_minutes_of_two_dispatchers(
    db: Engine, tmp_path: Path
) -> None:
    kit = Kit(db, tmp_path)
    kit.rules(
        "id: noop\ntrigger: {event: signed_up}\nsteps:\n  - send: hello\n",
        segments="segments:\n  - name: buyers\n    when: {event: order_placed}\n",
        settings="rate_limit: {email: 100/m, webhook: 10/s}\n",
    )
    (tmp_path / "templates" / "news.subject.j2").write_text("News")
    (tmp_path / "templates" / "news.txt.j2").write_text("Hello {{ customer.first_name }}")
    kit.tick(T0 - 2 * H)
    items: list[dict[str, Any]] = []
    for i in range(1000):
        cid = f"c{i:04d}"
        at = iso(T0 - H)
        items.append(
            {
                "type": "identify",
                "customer_id": cid,
                "timestamp": at,
                "traits": {"email": f"{cid}@example.com"},
            }
        )
        items.append(
            {"type": "track", "customer_id": cid, "event": "order_placed", "timestamp": at, "properties": {}}
        )
    kit.ingest(*items)
    kit.tick(T0 - MINUTE)
    result = broadcast(kit.engine, kit.ruleset, "news", "buyers", at=T0, now=T0)
    assert result.scheduled == 1000
    with smtp_server() as (recorder, port):
        settings = Settings(
            database_url=str(db.url),
            email_url=f"smtp://127.0.0.1:{port}",
            rules_dir=tmp_path / "rules",
            templates_dir=tmp_path / "templates",
            secret_key="test-secret",
            base_url="https://shop.example.com",
        )
        # two schedulers, each dispatching twice a minute
        dispatchers = [Deliverer.create(kit.engine, settings, kit.ruleset) for _ in range(2)]
        per_minute = []
        for minute in range(12):
            before = len(recorder.messages)
            for second in (5, 35):
                for deliverer in dispatchers:
                    now = T0 + minute * MINUTE + second * (MINUTE / 60)
                    dispatch_due(kit.engine, settings, now=now, deliverer=deliverer, ruleset=kit.ruleset)
            per_minute.append(len(recorder.messages) - before)
        assert per_minute == [100] * 10 + [0, 0]
        assert len({m["To"] for m in recorder.messages}) == 1000
    with kit.engine.connect() as conn:
        statuses: dict[str, int] = dict(
            conn.execute(select(sends.c.status, func.count()).group_by(sends.c.status)).all()
        )
    assert statuses == {"sent": 1000}
    metrics = render_latest().decode()
    assert 'journey_rate_limit_budget{channel="email"} 100.0' in metrics
    assert 'journey_rate_limit_used{channel="email"}' in metrics


def test_a_rate_limit_that_is_not_a_rate_is_located(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "stages.yaml").write_text("stages:\n  - name: awareness\n")
    (rules / "settings.yaml").write_text("rate_limit: {email: 50000/week, sms: 1/s}\n")
    with pytest.raises(RuleError) as info:
        load_ruleset(rules, None)
    text = str(info.value)
    assert "settings.yaml:1:" in text
    assert "rate limit '50000/week' is not like 50000/h (a number per s, m, h or d)" in text
