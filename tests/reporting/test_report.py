"""Report figures checked against values computed by hand on a small fixed data set."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from engine.db.schema import customers, enrollments
from engine.reporting.html import render_html
from engine.reporting.report import RuleFigures, build
from engine.reporting.stats import MIN_GROUP, uplift_ci, wilson
from engine.reporting.text import render_text, uplift_text
from engine.settings import Settings
from tests.support.kit import D, H, Kit
from tests.support.report_shop import END, T0


def test_report_figures_match_hand_computed_values(shop: Kit) -> None:
    r = build(shop.engine, shop.ruleset, now=END)
    assert r.customers == 5
    # carts: a, b, c, e; c's order came within the hour; a's only 3 h later
    assert (r.carts, r.carts_bought, r.abandoned, r.abandonment_rate) == (4, 1, 3, 0.75)
    # reminders went out to a and b; e's was held back (opted out); a bought after hers
    assert (r.reminded, r.recovered) == (2, 1)
    assert (r.recovery_rate, r.reminded_recovery_rate) == (0.3333, 0.5)
    assert (r.buyers, r.repeat_buyers, r.repeat_purchase_rate) == (2, 1, 0.5)
    assert r.revenue == 100.0 and r.revenue_per_customer == 20.0
    assert (r.promoters, r.passives, r.detractors, r.nps) == (2, 1, 1, 25.0)
    funnel = {f["stage"]: f["reached"] for f in r.funnel}
    assert funnel["awareness"] == 5 and funnel["advocacy"] == 2  # a and b are promoters
    text = render_text(r)
    assert "NPS: +25.0 (promoters 2, passives 1, detractors 1)" in text
    assert "Carts: 4; bought 1, abandoned 3 (75.0% abandonment)" in text
    assert "reminded 2; recovered 1 (33.3% of abandoned carts, 50.0% of reminded ones)" in text
    assert "abandoned: a cart with no order within 1 h of its last change" in text
    assert "recovered: reminded carts followed by an order within 3 d of the reminder" in text


def test_per_rule_emails_webhooks_opens_clicks_and_unsubscribes(shop: Kit) -> None:
    rules = {f.rule: f for f in build(shop.engine, shop.ruleset, now=END).rules}
    cart, detractor = rules["cart_abandonment"], rules["detractor_recovery"]
    # entered: a, b, e; emails: a's reminder, b's reminder and last chance (e's was suppressed)
    assert (cart.entered, cart.sent, cart.webhooks) == (3, 3, 0)
    # opened: a's reminder (twice: once), b's reminder (clicked: an open too); clicked: b's reminder
    assert (cart.opened, cart.clicked, cart.unsubscribed) == (2, 1, 1)
    # converted: a ordered 2 h after entering, within the 3-day goal window
    assert (cart.conversions, cart.conversion_rate) == (1, 0.3333)
    # d: one email and one post to the team; opened, no click, unsubscribed by rule name
    assert (detractor.entered, detractor.sent, detractor.webhooks) == (1, 1, 1)
    assert (detractor.opened, detractor.clicked, detractor.unsubscribed) == (1, 0, 1)
    row = next(
        line
        for line in render_text(build(shop.engine, shop.ruleset, now=END)).splitlines()
        if "detractor_recovery" in line
    )
    assert row.split()[1:7] == ["1", "1", "1", "0", "1", "1"]  # entered emails opened clicked unsub hooks


def test_uplift_interval_is_newcombes_hybrid_score_interval() -> None:
    # Newcombe (1998), Statistics in Medicine 17:873, table II example: 56/70 vs 48/80 -> 0.0524 to 0.3339
    lift = uplift_ci(56, 70, 48, 80)
    assert lift is not None
    diff, (low, high) = lift
    assert diff == 0.2 and low == pytest.approx(0.0524, abs=1e-4) and high == pytest.approx(0.3339, abs=1e-4)
    # 30/100 treated vs 10/100 held out. Wilson 95%: 30/100 -> [0.2189, 0.3958], 10/100 -> [0.0552, 0.1744]
    assert wilson(30, 100) == pytest.approx((0.2189, 0.3958), abs=1e-4)
    assert wilson(10, 100) == pytest.approx((0.0552, 0.1744), abs=1e-4)
    # low = 0.2 - sqrt((0.30-0.2189)^2 + (0.1744-0.10)^2) = 0.0900; high = 0.2 + sqrt(0.0958^2 + 0.0448^2) = 0.3058
    diff, (low, high) = uplift_ci(30, 100, 10, 100) or (0.0, (0.0, 0.0))
    assert diff == 0.2 and low == pytest.approx(0.0900, abs=1e-3) and high == pytest.approx(0.3058, abs=1e-3)
    assert uplift_ci(1, 10, 0, 0) is None


def test_a_small_holdout_is_too_few_to_tell_not_a_tight_interval() -> None:
    # 0 of 47 treated and 0 of 6 held out converted: the normal interval was [+0.0, +0.0].
    # Wilson upper bound of 0/n is z^2/(n+z^2): 3.8416/50.8416 = 0.0756 and 3.8416/9.8416 = 0.3903
    diff, (low, high) = uplift_ci(0, 47, 0, 6) or (1.0, (0.0, 0.0))
    assert diff == 0.0 and low == pytest.approx(-0.3903, abs=1e-4) and high == pytest.approx(0.0756, abs=1e-4)
    small = RuleFigures("winback", entered=53, holdout=6, uplift=diff, uplift_ci=(low, high))
    small.uplift_verdict = "too few to tell"
    assert uplift_text(small) == f"too few to tell (47 treated, 6 held out; {MIN_GROUP} each needed)"
    big = RuleFigures("winback", entered=200, holdout=100, uplift=0.2, uplift_ci=(0.09, 0.3058))
    big.uplift_verdict = "better than holdout"
    assert uplift_text(big) == "+20.0 pts [+9.0, +30.6] (100 vs 100 held out): better than holdout"


def test_holdout_enrollments_are_measured_apart(shop: Kit) -> None:
    with shop.engine.begin() as conn:
        b = conn.execute(select(customers.c.id).where(customers.c.external_id == "b")).scalar_one()
        assert conn.execute(
            enrollments.update().where(enrollments.c.customer_id == b).values(status="holdout")
        ).rowcount
    r = build(shop.engine, shop.ruleset, now=END)
    cart = next(f for f in r.rules if f.rule == "cart_abandonment")
    assert (cart.holdout, cart.holdout_conversions) == (1, 0)
    # 1 of 2 treated (a, e) converted, 0 of 1 held out: +50 points, and far too few to tell
    assert cart.uplift == 0.5 and cart.uplift_verdict == "too few to tell"
    assert "too few to tell (2 treated, 1 held out" in render_text(r)


def test_the_html_report_is_one_self_contained_page(shop: Kit) -> None:
    page = render_html(build(shop.engine, shop.ruleset, now=END))
    assert page.startswith("<!doctype html>")
    for chart in ('id="funnel"', 'id="sends"', 'id="conversions"'):
        assert chart in page
    assert "<th>emails sent</th>" in page and "<th>webhooks</th>" in page
    assert "How these are counted" in page
    assert "<script" not in page and "http://" not in page.split("<body>")[0]


def test_a_period_counts_only_what_happened_in_it(shop: Kit) -> None:
    # from T0 + 3 h on: a's two orders (30 at T0+3h and 20 at T0+30h) and the four answers are in;
    # c's order (T0+30min), the carts (T0) and the first reminders (T0+2h) are not
    r = build(shop.engine, shop.ruleset, now=END, start=T0 + 3 * H)
    assert (r.buyers, r.revenue, r.repeat_buyers) == (1, 50.0, 1)
    assert (r.carts, r.promoters + r.passives + r.detractors) == (0, 4)
    cart = next(f for f in r.rules if f.rule == "cart_abandonment")
    assert (cart.entered, cart.sent) == (0, 1)  # b's last chance went out at END, inside the period
    assert r.period is not None and r.period.start == T0 + 3 * H
    assert render_text(r).startswith("Period: 2026-11-01 13:00 → 2026-11-03 02:00 UTC · generated")


def test_the_sends_per_day_name_every_day_and_the_partial_last_one(shop: Kit) -> None:
    # emails went out at T0+2h (a's and b's reminders) and at END = T0+40h (b's last chance, d's
    # email); END is 02:00 on 3 November: that day is covered 2 hours
    r = build(shop.engine, shop.ruleset, now=END)
    assert r.sends_per_day == {"2026-11-01": 2, "2026-11-02": 0, "2026-11-03": 2}
    assert r.partial_days == {"2026-11-03": 2.0}
    page = render_html(r)
    assert 'class="point partial"' in page and "2026-11-03 covers 2 h" in page
    assert "The last day, 2026-11-03 (2 h), is not over: its count is partial." in page
    # a period that starts in the middle of a day cuts the first day too
    later = build(shop.engine, shop.ruleset, now=END, start=T0 + 12 * H)
    assert later.partial_days == {"2026-11-01": 2.0, "2026-11-03": 2.0}


def test_rules_without_a_goal_have_no_conversions_and_no_bar(shop: Kit) -> None:
    r = build(shop.engine, shop.ruleset, now=END)
    detractor = next(f for f in r.rules if f.rule == "detractor_recovery")
    assert detractor.goal is None and detractor.conversion_rate is None
    page = render_html(r)
    bars = page.split('id="conversions"')[1].split("</svg>")[0]
    assert "cart_abandonment" in bars and "detractor_recovery" not in bars
    assert "No goal, so no conversions: detractor_recovery." in page
    row = next(line for line in render_text(r).splitlines() if line.strip().startswith("detractor_recovery"))
    assert row.split()[7:9] == ["—", "—"]


def test_the_stages_now_include_lapsed_and_revenue_has_the_currency(
    db: Engine, settings: Settings, tmp_path: Path
) -> None:
    kit = Kit(db, tmp_path)
    kit.rules(settings="currency: EUR\n")
    kit.tick(T0 - H)
    kit.identify("old", T0 - 200 * D)
    kit.track("old", "order_placed", T0 - 200 * D, value=1234.5)
    kit.identify("new", T0)
    kit.tick(T0 + H)
    r = build(db, kit.ruleset, now=T0 + H)
    assert r.stages == {"awareness": 1, "lapsed": 1} and r.lapsed == 1
    assert r.currency == "EUR" and "revenue €1,234.50, per customer €617.25" in render_text(r)
    page = render_html(r)
    stages = page.split('id="stages"')[1].split("</svg>")[0]
    assert ">lapsed<" in stages and "1  (50.0%)" in stages
    assert "Lapsed now<b>1</b>" in page and "Revenue<b>€1,234.50</b>" in page


def test_csv_writes_each_table(shop: Kit, tmp_path: Path) -> None:
    import csv

    from engine.reporting.tables import write_csv

    written = write_csv(build(shop.engine, shop.ruleset, now=END), tmp_path / "out")
    names = [p.name for p in written]
    assert names == [
        "summary.csv",
        "funnel.csv",
        "stages_now.csv",
        "rules.csv",
        "sends_per_day.csv",
        "splits.csv",
        "split_comparisons.csv",
        "steps.csv",
    ]
    with (tmp_path / "out" / "rules.csv").open() as f:
        rules = {row["rule"]: row for row in csv.DictReader(f)}
    assert rules["cart_abandonment"]["entered"] == "3" and rules["cart_abandonment"]["conversions"] == "1"
    assert rules["cart_abandonment"]["goal"] == "order_placed within 3d"
    assert rules["detractor_recovery"]["conversions"] == "" and rules["detractor_recovery"]["webhooks"] == "1"
    with (tmp_path / "out" / "sends_per_day.csv").open() as f:
        assert list(csv.reader(f))[-1] == ["2026-11-03", "2", "2.0"]
    with (tmp_path / "out" / "steps.csv").open() as f:
        steps = {(row["rule"], row["step"]): row for row in csv.DictReader(f)}
    reminder = steps[("cart_abandonment", "0")]
    assert (reminder["title"], reminder["sent"], reminder["suppressed"]) == (
        "send cart_reminder",
        "2",
        "unsubscribed=1",
    )
    with (tmp_path / "out" / "summary.csv").open() as f:
        summary = dict(csv.reader(f))
    assert summary["period_to"] == "2026-11-03T02:00:00Z" and summary["revenue"] == "100.0"


def test_the_report_command_writes_json_csv_and_html_for_a_period(
    shop: Kit, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from engine.cli import main

    monkeypatch.setenv("JOURNEY_DATABASE_URL", shop.engine.url.render_as_string(hide_password=False))
    monkeypatch.setenv("JOURNEY_RULES_DIR", str(shop.dir / "rules"))
    monkeypatch.setenv("JOURNEY_TEMPLATES_DIR", str(shop.dir / "templates"))
    capsys.readouterr()
    args = ["report", "--from", T0.isoformat(), "--to", END.isoformat(), "--now", (END + 5 * H).isoformat()]
    assert main([*args, "--json", "--csv", str(tmp_path / "tables"), "--html", str(tmp_path / "r.html")]) == 0
    out = capsys.readouterr()
    figures = json.loads(out.out)
    assert figures["period"] == {
        "from": "2026-11-01T10:00:00Z",
        "to": "2026-11-03T02:00:00Z",
        "generated_at": "2026-11-03T07:00:00Z",
        "first_data": None,
    }
    assert [f["rule"] for f in figures["flows"]] == ["cart_abandonment", "detractor_recovery"]
    assert figures["splits"] == [] and "wrote 8 tables to" in out.err
    assert "generated 2026-11-03 07:00 UTC" in (tmp_path / "r.html").read_text()
    assert main(["report", "--from", END.isoformat(), "--to", T0.isoformat()]) == 2
