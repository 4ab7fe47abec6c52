"""A small world with a split (A, B and a holdout) whose flow counts are computed by hand in
tests/reporting/test_graph.py (the `ab_shop` fixture).

Who lands in which variant is fixed by the customer's id (stable per customer and rule), so the
world picks its customers by the variant they fall in: `a1`…`a4` in A, `b1`…`b3` in B, `h1`, `h2`
held out.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from engine.delivery.channels.stub import StubEmailChannel, StubWebhookChannel
from engine.delivery.deliverer import Deliverer
from engine.delivery.dispatch import dispatch_due
from engine.evaluate.triggers import rule_hash
from engine.ingest.batch import stable_salt
from engine.reporting.graph import rule_graph
from engine.settings import Settings
from tests.support.kit import D, H, Kit
from tests.support.report_shop import send_id
from tests.support.services import utc

T0 = utc("2026-11-02T10:00:00")
#: while everyone who was not held out or did not leave waits out the two days
MIDWAY = T0 + D
END = T0 + 3 * D

RULE = """
id: ab
description: A subject test with a holdout.
trigger: {event: signed_up}
steps:
  - split: {A: 40, B: 40, holdout: 20}
    variants:
      A:
        - send: a_mail
        - wait: 2d
        - branch:
            if: {event: product_viewed}
            then:
              - send: a_followup
      B:
        - send: {template: a_mail, subject: "B's subject"}
        - wait: 2d
        - send: b_followup
exit_on: [order_placed]
goal: {event: order_placed, within: 7d}
"""
WEIGHTS = (("A", 40), ("B", 40), ("holdout", 20))


def variant_of(external_id: str, rule_id: str = "ab") -> str:
    """The variant the engine gives this customer (bucket by cumulative weight)."""
    bucket = (stable_salt(external_id) + rule_hash(rule_id)) % 10000
    total = sum(w for _, w in WEIGHTS)
    upper = 0
    for name, weight in WEIGHTS:
        upper += weight
        if bucket * total < upper * 10000:
            return name
    return WEIGHTS[-1][0]


def pick(variant: str, n: int) -> list[str]:
    """The first `n` ids of the form `c-NNN` that fall in `variant`."""
    found = [cid for cid in (f"c-{i:03d}" for i in range(500)) if variant_of(cid) == variant]
    return found[:n]


@dataclass
class AbShop:
    kit: Kit
    #: the world's names (a1 … h2) -> customer ids
    ids: dict[str, str]
    #: `journey graph ab --json` as it was at MIDWAY
    midway: dict[str, Any]


@pytest.fixture
def ab_shop(db: Engine, settings: Settings, tmp_path: Path) -> AbShop:
    kit = Kit(db, tmp_path)
    kit.rules(RULE)
    a, b, h = pick("A", 4), pick("B", 3), pick("holdout", 2)
    ids = {f"a{i + 1}": c for i, c in enumerate(a)}
    ids |= {f"b{i + 1}": c for i, c in enumerate(b)}
    ids |= {f"h{i + 1}": c for i, c in enumerate(h)}
    settings = dataclasses.replace(settings, templates_dir=tmp_path / "templates")
    outbox = StubEmailChannel()
    outbox.refuse[f"{ids['b3']}@example.com"] = (550, True)  # b3's address is refused for good
    deliverer = Deliverer.create(
        db, settings, kit.ruleset, channels={"email": outbox, "webhook": StubWebhookChannel()}
    )

    def tick_and_send(at: datetime) -> None:
        kit.tick(at)
        dispatch_due(db, settings, now=at, deliverer=deliverer)

    tick_and_send(T0 - H)
    for name, cid in ids.items():
        kit.identify(cid, T0 - H, first_name=name)
    kit.track(ids["a4"], "unsubscribed", T0 - H / 2, channel="email")  # a4 opted out before
    for cid in ids.values():
        kit.track(cid, "signed_up", T0)
    # a1…a4 enter A, b1…b3 enter B, h1 and h2 are held out; a1-a3, b1, b2 get their first email,
    # a4's is suppressed (unsubscribed), b3's fails (refused)
    tick_and_send(T0 + H)
    a1, a2 = send_id(kit, ids["a1"], "a_mail"), send_id(kit, ids["a2"], "a_mail")
    b1, b2 = send_id(kit, ids["b1"], "a_mail"), send_id(kit, ids["b2"], "a_mail")
    kit.track(ids["a1"], "email_opened", T0 + 2 * H, "open-a1", send_id=a1)
    kit.track(ids["a2"], "email_clicked", T0 + 2 * H, "click-a2", send_id=a2, url="https://x/1")
    kit.track(ids["b1"], "email_opened", T0 + 2 * H, "open-b1", send_id=b1)
    kit.track(ids["b2"], "email_clicked", T0 + 2 * H, "click-b2-1", send_id=b2, url="https://x/1")
    kit.track(ids["b2"], "email_clicked", T0 + 3 * H, "click-b2-2", send_id=b2, url="https://x/2")
    # a2 buys (the goal, and exit_on: a2 leaves the rule); h1 buys too, held out
    kit.track(ids["a2"], "order_placed", T0 + 5 * H, value=40.0)
    kit.track(ids["h1"], "order_placed", T0 + 6 * H, value=25.0)
    kit.track(ids["a1"], "product_viewed", T0 + 20 * H)  # so the branch sends a1 the follow-up
    tick_and_send(MIDWAY)
    midway = rule_graph(db, kit.ruleset, "ab", start=None, end=MIDWAY, now=MIDWAY).as_dict()
    # two days on: a1's follow-up; a3 and a4 took the branch's empty 'no'; b1, b2 get b_followup,
    # b3's is suppressed (its address bounced hard)
    tick_and_send(T0 + 2 * D + H)
    tick_and_send(END)
    return AbShop(kit, ids, midway)
