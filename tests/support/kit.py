"""A small harness for evaluation tests: write rules, ingest events, tick at chosen times."""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select

from engine.db.schema import customers, enrollments, sends
from engine.evaluate.tick import TickResult, run_tick
from engine.ingest.writer import ingest_events
from engine.rules.loader import RuleSet, load_ruleset

STAGES = """
stages:
  - name: advocacy
    when: {any: [{event: survey_answered, where: {score: {gte: 9}}}, {event: referral_converted}]}
  - name: lapsed
    when: {all: [{event: order_placed}, {not: {event: order_placed, within: 120d}}]}
  - name: retention
    when: {event: order_placed, count: {gte: 2}}
  - name: purchase
    when: {event: order_placed}
  - name: decision
    when: {event: cart_updated, within: 14d}
  - name: consideration
    when: {event: product_viewed, within: 30d}
  - name: awareness
"""

CART_RULE = """
id: cart_abandonment
trigger:
  inactivity: {event: cart_updated, until: [order_placed, cart_cleared], for: 1h}
conditions:
  - {attribute: email, exists: true}
steps:
  - send: cart_reminder
  - wait: 23h
  - send: cart_last_chance
exit_on: [order_placed]
"""


def iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


@dataclass
class Kit:
    engine: Engine
    dir: Path

    def rules(self, *rules: str, stages: str = STAGES, settings: str = "", segments: str = "") -> RuleSet:
        rdir = self.dir / "rules"
        tdir = self.dir / "templates"
        rdir.mkdir(exist_ok=True)
        tdir.mkdir(exist_ok=True)
        for old in rdir.glob("*.yaml"):
            old.unlink()
        (rdir / "stages.yaml").write_text(textwrap.dedent(stages))
        if settings:
            (rdir / "settings.yaml").write_text(textwrap.dedent(settings))
        if segments:
            (rdir / "segments.yaml").write_text(textwrap.dedent(segments))
        for i, rule in enumerate(rules):
            (rdir / f"rule{i}.yaml").write_text(textwrap.dedent(rule))
        loaded = load_ruleset(rdir, None)
        for rule_ in loaded.rules:
            from engine.rules.walk import iter_sends

            for send in iter_sends(list(rule_.steps)):
                (tdir / f"{send.template}.subject.j2").write_text("Hi")
                (tdir / f"{send.template}.txt.j2").write_text("Hello")
        self.ruleset = load_ruleset(rdir, tdir)
        return self.ruleset

    def identify(self, cid: str, at: datetime, **traits: Any) -> None:
        traits.setdefault("email", f"{cid}@example.com")
        self.ingest({"type": "identify", "customer_id": cid, "timestamp": iso(at), "traits": traits})

    def track(self, cid: str, event: str, at: datetime, mid: str | None = None, **props: Any) -> None:
        item: dict[str, Any] = {
            "type": "track",
            "customer_id": cid,
            "event": event,
            "timestamp": iso(at),
            "properties": props,
        }
        if mid:
            item["message_id"] = mid
        self.ingest(item)

    def ingest(self, *items: dict[str, Any]) -> None:
        result = ingest_events(self.engine, list(items), received_at=_now())
        assert not result.rejected, result.rejected

    def tick(self, at: datetime, **kw: Any) -> TickResult:
        return run_tick(self.engine, self.ruleset, now=at, **kw)

    def sends(self, rule: str | None = None) -> list[tuple[str, str, str]]:
        """(customer external id, template, status) of every ledger row, ordered."""
        q = select(customers.c.external_id, sends.c.template, sends.c.status, sends.c.due_at).join(
            customers, customers.c.id == sends.c.customer_id
        )
        if rule:
            q = q.where(sends.c.rule_id == rule)
        with self.engine.connect() as conn:
            return [
                (r[0], r[1], r[2]) for r in conn.execute(q.order_by(sends.c.due_at, customers.c.external_id))
            ]

    def send_rows(self) -> list[Any]:
        with self.engine.connect() as conn:
            return list(conn.execute(select(sends).order_by(sends.c.id)))

    def enrollments(self) -> list[Any]:
        with self.engine.connect() as conn:
            return list(conn.execute(select(enrollments).order_by(enrollments.c.id)))

    def stage(self, cid: str) -> str | None:
        with self.engine.connect() as conn:
            return conn.execute(select(customers.c.stage).where(customers.c.external_id == cid)).scalar()


def _now() -> datetime:
    from datetime import UTC

    return datetime.now(UTC)


H = timedelta(hours=1)
D = timedelta(days=1)
