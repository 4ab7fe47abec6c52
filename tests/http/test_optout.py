"""Unsubscribe links (RFC 8058 one-click and the confirm page) and the preference centre."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import httpx
from fastapi.testclient import TestClient

from engine.delivery.context import Links
from engine.delivery.deliverer import Deliverer
from engine.delivery.dispatch import dispatch_due
from engine.delivery.tokens import Signer
from engine.http.app import create_app
from engine.settings import Settings
from tests.support.http import NOW, SECRET, Shop, tampered
from tests.support.kit import H
from tests.support.services import ROOT


def test_one_click_post_without_cookies_unsubscribes_and_stops_the_next_send(
    shop: Shop, live: str, tmp_path: Path
) -> None:
    link = shop.links()
    # RFC 8058: what a mailbox provider sends; a fresh client has no cookies and no login
    r = httpx.post(
        live + link.unsubscribe,
        content="List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 200 and "You are unsubscribed" in r.text
    assert "set-cookie" not in r.headers
    assert shop.opt_outs() == [("email", "*", "one-click")]
    [event] = shop.events("unsubscribed")
    assert event.properties == {"channel": "email", "topic": "*", "rule": "cart_abandonment", "send_id": 7}
    assert event.ts == NOW

    kit = shop.kit
    kit.tick(NOW - 2 * H)
    kit.track("ada", "cart_updated", NOW - H)
    kit.tick(NOW + H)
    settings = Settings(
        database_url=str(kit.engine.url),
        rules_dir=kit.dir / "rules",
        templates_dir=ROOT / "message_templates",
        secret_key=SECRET,
        email_url=f"file://{tmp_path / 'out'}",
    )
    out: Any = dispatch_due(
        kit.engine, settings, now=NOW + H, deliverer=Deliverer.create(kit.engine, settings, kit.ruleset)
    )
    assert out.delivered == {"suppressed": 1}
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_a_multipart_one_click_post_unsubscribes_too(shop: Shop) -> None:
    r = shop.client.post(shop.links().unsubscribe, files={"List-Unsubscribe": (None, "One-Click")})
    assert r.status_code == 200
    assert shop.opt_outs() == [("email", "*", "one-click")]


def test_get_shows_a_confirm_page_and_never_unsubscribes(shop: Shop) -> None:
    url = shop.links().unsubscribe
    for _ in range(2):
        r = shop.client.get(url)
        assert r.status_code == 200 and 'id="confirm"' in r.text and 'method="post"' in r.text
        assert r.headers["cache-control"] == "no-store"
        assert r.headers["referrer-policy"] == "no-referrer"
    assert shop.opt_outs() == [] and shop.count("unsubscribed") == 0
    r = shop.client.post(url, data={"confirm": "1"})
    assert r.status_code == 200 and "You are unsubscribed" in r.text
    assert shop.opt_outs() == [("email", "*", "page")]
    assert 'id="done"' in shop.client.get(url).text


def test_repeated_clicks_record_one_unsubscribe(shop: Shop) -> None:
    url = shop.links().unsubscribe
    for _ in range(3):
        assert shop.client.post(url, content="List-Unsubscribe=One-Click").status_code == 200
    assert shop.count("unsubscribed") == 1 and len(shop.opt_outs()) == 1


def test_a_tampered_or_misrouted_token_gets_404_and_changes_nothing(shop: Shop) -> None:
    url = shop.links().unsubscribe
    token = url.rsplit("/", 1)[1]
    altered = tampered(token)
    other_key = Signer("another-secret").sign("unsubscribe", {"c": shop.customer_id(), "s": 7, "r": "x"})
    wrong_purpose = Signer(SECRET).sign("preferences", {"c": shop.customer_id()})
    no_such_customer = Signer(SECRET).sign("unsubscribe", {"c": 999999, "s": 7, "r": "x"})
    bad_shape = Signer(SECRET).sign("unsubscribe", {"c": "1", "s": 7, "r": "x"})
    for bad in (altered, other_key, wrong_purpose, no_such_customer, bad_shape, "nonsense"):
        for r in (
            shop.client.post(f"/u/{bad}", content="List-Unsubscribe=One-Click"),
            shop.client.get(f"/u/{bad}"),
        ):
            assert r.status_code == 404 and "This link is not valid" in r.text
    assert shop.opt_outs() == [] and shop.count("unsubscribed") == 0


def test_preferences_list_topics_by_the_names_customers_read_never_rule_ids(shop: Shop) -> None:
    r = shop.client.get(shop.links().preferences)
    assert r.status_code == 200
    assert 'value="carts" checked> Reminders about your cart' in r.text
    assert 'value="newsletter" checked> News and offers' in r.text
    # rule ids and descriptions are written for the team, not for customers
    for internal in ("cart_abandonment", "weekly_news", "New arrivals and offers, every Monday."):
        assert internal not in r.text
    assert "order_receipt" not in r.text and "The receipt" not in r.text  # transactional
    assert "Never named by a rule" not in r.text  # a topic no rule uses has nothing to opt out of
    assert 'name="email" value="1" checked' in r.text


def test_leaving_again_after_coming_back_is_a_second_unsubscribe(shop: Shop) -> None:
    shop.client.post(shop.links().unsubscribe, content="List-Unsubscribe=One-Click")
    later = TestClient(create_app(shop.settings, engine=shop.engine, now=lambda: NOW + 24 * H))
    later.post(shop.links().preferences, data={"email": "1", "topic": ["carts", "newsletter"]})
    assert shop.opt_outs() == []
    even_later = TestClient(create_app(shop.settings, engine=shop.engine, now=lambda: NOW + 48 * H))
    assert even_later.post(shop.links().unsubscribe, content="List-Unsubscribe=One-Click").status_code == 200
    assert [e.ts for e in shop.events("unsubscribed")] == [NOW, NOW + 48 * H]


def test_unticking_a_topic_opts_out_of_it_alone(shop: Shop) -> None:
    url = shop.links().preferences
    r = shop.client.post(url, data={"email": "1", "topic": ["carts"]})
    assert 'id="saved"' in r.text
    assert 'value="newsletter" checked' not in r.text and 'value="carts" checked' in r.text
    assert shop.opt_outs() == [("email", "newsletter", "preferences")]
    [event] = shop.events("unsubscribed")
    assert event.properties == {"channel": "email", "topic": "newsletter"}
    # ticking it again resubscribes
    shop.client.post(url, data={"email": "1", "topic": ["carts", "newsletter"]})
    assert shop.opt_outs() == []


def test_unticking_email_unsubscribes_and_ticking_it_again_resubscribes(shop: Shop) -> None:
    shop.client.post(shop.links().unsubscribe, content="List-Unsubscribe=One-Click")
    url = shop.links().preferences
    page = shop.client.get(url).text
    assert 'name="email" value="1" checked' not in page
    r = shop.client.post(url, data={"email": "1", "topic": ["carts", "newsletter"]})
    assert 'name="email" value="1" checked' in r.text
    assert shop.opt_outs() == []
    shop.client.post(url, data={"save": "1"})
    assert shop.opt_outs() == [("email", "*", "preferences")]


def test_a_forged_preferences_token_gets_404_and_changes_nothing(shop: Shop) -> None:
    forged = Signer("another-secret").sign("preferences", {"c": shop.customer_id()})
    assert shop.client.get(f"/preferences/{forged}").status_code == 404
    assert shop.client.post(f"/preferences/{forged}", data={"save": "1"}).status_code == 404
    assert shop.opt_outs() == []


def test_pages_escape_what_they_show_and_need_no_javascript(shop: Shop) -> None:
    shop.kit.rules(
        "id: promo\ntopic: deals\ntrigger: {event: x}\nsteps: [{send: promo}]\n",
        settings="topics: {deals: '<script>alert(1)</script> deals'}\n",
    )
    from fastapi.testclient import TestClient

    from engine.http.app import create_app

    client = TestClient(create_app(shop.settings, engine=shop.engine))
    page = client.get(shop.links().preferences).text
    assert "<script" not in page and "&lt;script&gt;alert(1)&lt;/script&gt; deals" in page
    assert "script-src" not in client.get(shop.links().preferences).headers["content-security-policy"]


def test_links_in_old_emails_keep_working_after_the_key_is_rotated(shop: Shop) -> None:
    old_link = shop.links().unsubscribe  # signed with SECRET, as in an email sent last month
    rotated = dataclasses.replace(shop.settings, secret_key=f"brand-new-key,{SECRET}")
    client = TestClient(create_app(rotated, engine=shop.engine, now=lambda: NOW))
    new_link = Links("", Signer.from_setting(rotated.secret_key or ""), shop.customer_id(), 8, "x", None)
    # the newest key signs: a link made now is not one the old key alone would accept
    assert shop.client.get(new_link.unsubscribe).status_code == 404
    assert client.get(new_link.unsubscribe).status_code == 200
    assert client.post(old_link, content="List-Unsubscribe=One-Click").status_code == 200
    assert shop.opt_outs() == [("email", "*", "one-click")]
