"""Referral links, the open pixel and click redirects."""

from __future__ import annotations

import pytest

from engine.delivery.tokens import Signer
from engine.http.links import PIXEL
from tests.support.http import AUTH, NOW, SECRET, Shop, expired_token


def test_a_referral_click_is_credited_and_lands_with_ref(shop: Shop) -> None:
    r = shop.client.get("/r/ADA12345", follow_redirects=False)
    assert r.status_code == 302
    assert r.headers["location"] == "https://shop.example.com/welcome?src=mail&ref=ADA12345"
    [event] = shop.events("referral_clicked")
    assert (event.customer_id, event.properties, event.ts) == (shop.customer_id(), {"code": "ADA12345"}, NOW)
    for _ in range(50):  # the same visitor again and again: one click within the day
        shop.client.get("/r/ADA12345", follow_redirects=False)
    assert shop.count("referral_clicked") == 1
    shop.client.get("/r/ADA12345", follow_redirects=False, headers={"user-agent": "another browser"})
    assert shop.count("referral_clicked") == 2  # another visitor counts


def test_an_unknown_referral_code_lands_without_crediting_anyone(shop: Shop) -> None:
    r = shop.client.get("/r/NOPE", follow_redirects=False)
    assert (r.status_code, r.headers["location"]) == (302, "https://shop.example.com/welcome?src=mail")
    assert shop.count("referral_clicked") == 0


def test_a_referred_signup_credits_the_referrer_once(shop: Shop) -> None:
    signup = {
        "type": "identify",
        "customer_id": "friend",
        "timestamp": "2026-11-01T11:00:00Z",
        "traits": {"email": "f@example.com", "referred_by": "ADA12345"},
    }
    for _ in range(2):
        assert shop.client.post("/v1/events", json=signup, headers=AUTH).status_code == 202
    assert shop.count("referral_converted") == 1


def test_the_open_pixel_is_a_gif_and_records_one_open_per_send(shop: Shop) -> None:
    link = shop.links()
    for _ in range(2):
        r = shop.client.get(link.open_pixel)
        assert r.status_code == 200 and r.content == PIXEL
        assert r.headers["content-type"] == "image/gif" and r.headers["cache-control"] == "no-store"
    [event] = shop.events("email_opened")
    assert (event.properties, event.message_id) == ({"send_id": 7}, "email_opened:7")


def test_a_bad_open_pixel_token_still_gets_the_gif_but_records_nothing(shop: Shop) -> None:
    wrong_purpose = Signer(SECRET).sign("click", {"s": 7, "c": shop.customer_id(), "u": "https://x.example"})
    expired = expired_token("open", {"s": 7, "c": shop.customer_id()}, age_s=400 * 24 * 3600)
    for token in ("forged", wrong_purpose, expired):
        r = shop.client.get(f"/o/{token}.gif")
        assert (r.status_code, r.content) == (200, PIXEL)
    assert shop.count("email_opened") == 0


def test_a_click_redirects_to_the_signed_url_and_is_recorded_once(shop: Shop) -> None:
    link = shop.links()
    url = link.track("https://shop.example.com/cart?item=42")
    for _ in range(2):
        r = shop.client.get(url, follow_redirects=False)
        assert (r.status_code, r.headers["location"]) == (302, "https://shop.example.com/cart?item=42")
    [event] = shop.events("email_clicked")
    assert event.properties == {"url": "https://shop.example.com/cart?item=42", "send_id": 7}
    assert (
        event.message_id.startswith("email_clicked:7:")
        and len(event.message_id) == len("email_clicked:7:") + 12
    )
    shop.client.get(link.track("https://shop.example.com/other"), follow_redirects=False)
    assert shop.count("email_clicked") == 2


def test_the_click_redirect_refuses_a_url_it_did_not_sign(shop: Shop) -> None:
    signed = shop.links().track("https://shop.example.com/cart")
    r = shop.client.get(signed + "?url=https://evil.example", follow_redirects=False)
    assert r.headers["location"] == "https://shop.example.com/cart"
    forged = Signer("another-secret").sign(
        "click", {"s": 7, "c": shop.customer_id(), "u": "https://evil.example"}
    )
    javascript = Signer(SECRET).sign("click", {"s": 7, "c": shop.customer_id(), "u": "javascript:alert(1)"})
    for token in ("not-a-token", forged, javascript):
        r = shop.client.get(f"/c/{token}?url=https://evil.example", follow_redirects=False)
        assert r.status_code == 404 and "location" not in r.headers
    assert [e.properties["url"] for e in shop.events("email_clicked")] == ["https://shop.example.com/cart"]


def test_a_click_for_a_deleted_customer_still_redirects_but_records_nothing(shop: Shop) -> None:
    token = Signer(SECRET).sign("click", {"s": 7, "c": 999999, "u": "https://shop.example.com/"})
    r = shop.client.get(f"/c/{token}", follow_redirects=False)
    assert (r.status_code, r.headers["location"]) == (302, "https://shop.example.com/")
    assert shop.count("email_clicked") == 0


def test_links_from_a_preview_work_and_record_nothing(shop: Shop) -> None:
    """`journey preview` signs its links with send 0: a marketer may click them safely."""
    preview = shop.links(send_id=0)
    assert shop.client.get(preview.open_pixel).content == PIXEL
    r = shop.client.get(preview.track("https://shop.example.com/"), follow_redirects=False)
    assert (r.status_code, r.headers["location"]) == (302, "https://shop.example.com/")
    for r in (
        shop.client.get(preview.survey(9)),
        shop.client.post(preview.unsubscribe, content="List-Unsubscribe=One-Click"),
    ):
        assert r.status_code == 200 and "This is a preview" in r.text
    assert [shop.count(n) for n in ("email_opened", "email_clicked", "survey_answered", "unsubscribed")] == [
        0
    ] * 4
    assert shop.opt_outs() == []


@pytest.mark.parametrize("path", ["/r/%00", "/r/A%00B", "/r/%01%7f", "/r/" + "A" * 500])
def test_a_malformed_referral_path_lands_without_crediting_anyone(shop: Shop, path: str) -> None:
    r = shop.client.get(path, follow_redirects=False)
    assert (r.status_code, r.headers["location"]) == (302, "https://shop.example.com/welcome?src=mail")
    assert shop.count("referral_clicked") == 0


@pytest.mark.parametrize("route", ["/u/{t}", "/preferences/{t}", "/s/{t}", "/c/{t}", "/o/{t}.gif"])
def test_a_signed_token_whose_customer_id_is_not_a_database_id_is_an_invalid_link(
    shop: Shop, route: str
) -> None:
    signer = Signer(SECRET)
    purpose = {"/u/": "unsubscribe", "/pr": "preferences", "/s/": "survey", "/c/": "click", "/o/": "open"}[
        route[:3]
    ]
    payload = {"c": 2**70, "s": 2**70, "r": "cart", "u": "https://shop.example.com/", "q": "nps"}
    r = shop.client.get(route.format(t=signer.sign(purpose, payload)), follow_redirects=False)
    assert r.status_code in (200, 404), r.text  # the pixel answers its GIF; the others, an invalid link


def test_the_referral_visitor_is_an_hmac_of_address_and_browser_under_the_secret(shop: Shop) -> None:
    import hashlib

    from engine.ingest.links import CLICK_WINDOW

    shop.client.get("/r/ADA12345", follow_redirects=False, headers={"user-agent": "Firefox"})
    [event] = shop.events("referral_clicked")
    window = int(NOW.timestamp() // CLICK_WINDOW.total_seconds())

    def message_id(visitor: str) -> str:
        return "referral_clicked:" + hashlib.sha1(f"ADA12345:{visitor}:{window}".encode()).hexdigest()[:24]

    keyed = Signer.from_setting(SECRET).digest("referral_visitor", "testclient|Firefox")
    assert event.message_id == message_id(keyed)
    # nobody without the secret can tell who clicked by hashing addresses and browsers
    assert event.message_id != message_id(hashlib.sha256(b"testclient|Firefox").hexdigest())
    assert Signer.from_setting("another secret").digest("referral_visitor", "testclient|Firefox") != keyed
