"""The NPS survey links of an email: a score click, a change of mind, a comment."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import select

from engine.db.schema import event_summary
from engine.http.app import create_app
from tests.support.http import (
    NEWSLETTER_RULE,
    NOW,
    RECEIPT_RULE,
    Shop,
    expired_token,
    tampered,
)
from tests.support.kit import CART_RULE, H


def summary_properties(shop: Shop) -> object:
    with shop.engine.connect() as conn:
        return conn.execute(
            select(event_summary.c.last_properties).where(event_summary.c.name == "survey_answered")
        ).scalar()


def test_a_survey_click_records_the_score(shop: Shop) -> None:
    r = shop.client.get(shop.links().survey(9))
    assert r.status_code == 200 and "You answered <b>9</b>" in r.text
    [event] = shop.events("survey_answered")
    assert event.properties == {"survey": "cart_abandonment", "score": 9, "send_id": 7}
    assert event.message_id == "survey_answered:7" and event.ts == NOW


def test_a_second_click_updates_the_score_instead_of_adding_an_answer(shop: Shop) -> None:
    link = shop.links()
    shop.client.get(link.survey(6))
    r = shop.client.get(link.survey(10))
    assert "You answered <b>10</b>" in r.text
    [event] = shop.events("survey_answered")
    assert event.properties["score"] == 10
    assert summary_properties(shop) == {"survey": "cart_abandonment", "score": 10, "send_id": 7}
    # another email's survey is another answer
    shop.client.get(shop.links(send_id=8).survey(3))
    assert [e.properties["score"] for e in shop.events("survey_answered")] == [10, 3]


def test_the_comment_is_saved_on_the_same_answer(shop: Shop) -> None:
    link = shop.links()
    page = shop.client.get(link.survey(10)).text
    assert 'name="comment"' in page and 'name="score" value="10"' in page
    r = shop.client.post(link.survey(10).split("?")[0], data={"comment": "  Great shoes <3 ", "score": "10"})
    assert r.status_code == 200 and "Thanks for your comment" in r.text
    [event] = shop.events("survey_answered")
    assert event.properties == {
        "survey": "cart_abandonment",
        "score": 10,
        "send_id": 7,
        "comment": "Great shoes <3",
    }
    assert summary_properties(shop) == event.properties
    # a later change of score keeps the comment
    shop.client.get(link.survey(8))
    assert shop.events("survey_answered")[0].properties["comment"] == "Great shoes <3"


def test_a_comment_without_any_score_asks_for_one(shop: Shop) -> None:
    url = shop.links().survey(5).split("?")[0]
    r = shop.client.post(url, data={"comment": "hello"})
    assert r.status_code == 400 and "score" in r.text
    assert shop.count("survey_answered") == 0


def test_a_score_outside_0_to_10_is_a_400_page_and_records_nothing(shop: Shop) -> None:
    url = shop.links().survey(5).split("?")[0]
    for query in ("?score=11", "?score=-1", "?score=abc", ""):
        r = shop.client.get(url + query)
        assert r.status_code == 400 and "from 0 to 10" in r.text
    assert shop.count("survey_answered") == 0


def test_an_overlong_comment_is_refused(shop: Shop) -> None:
    link = shop.links()
    shop.client.get(link.survey(7))
    r = shop.client.post(link.survey(7).split("?")[0], data={"comment": "x" * 2001})
    assert r.status_code == 400 and "2,000 characters" in r.text
    assert "comment" not in shop.events("survey_answered")[0].properties


def test_a_tampered_or_expired_survey_link_gets_404_and_records_nothing(shop: Shop) -> None:
    url = shop.links().survey(9)
    token = url.split("/s/")[1].split("?")[0]
    payload = {"c": shop.customer_id(), "s": 7, "v": "nps"}
    old = expired_token("survey", payload, age_s=91 * 24 * 3600)
    fresh = expired_token("survey", payload, age_s=3600)
    for bad in (tampered(token), old):
        assert shop.client.get(f"/s/{bad}?score=9").status_code == 404
        assert shop.client.post(f"/s/{bad}", data={"comment": "hi", "score": "9"}).status_code == 404
    assert shop.count("survey_answered") == 0
    assert shop.client.get(f"/s/{fresh}?score=9").status_code == 200


def test_a_promoter_answer_moves_the_customer_to_advocacy(shop: Shop) -> None:
    shop.kit.tick(NOW - 2 * H)
    shop.client.get(shop.links().survey(10))
    shop.kit.tick(NOW + H)
    assert shop.kit.stage("ada") == "advocacy"


def test_a_changed_score_moves_the_stage_at_the_next_tick_without_entering_a_rule_twice(shop: Shop) -> None:
    promoters = """
id: thank_promoters
trigger: {event: survey_answered, where: {score: {gte: 9}}}
steps:
  - send: thanks
"""
    shop.kit.rules(CART_RULE, NEWSLETTER_RULE, RECEIPT_RULE, promoters)
    shop.kit.tick(NOW - 2 * H)
    link = shop.links()
    shop.client.get(link.survey(5))
    shop.kit.tick(NOW + H)
    assert shop.kit.stage("ada") != "advocacy"
    later = TestClient(create_app(shop.settings, engine=shop.engine, now=lambda: NOW + 2 * H))
    assert "You answered <b>9</b>" in later.get(link.survey(9)).text
    shop.kit.tick(NOW + 3 * H)
    assert shop.kit.stage("ada") == "advocacy"
    [event] = shop.events("survey_answered")
    assert event.properties["score"] == 9 and event.ts == NOW + 2 * H
    # 9 -> 10 is still the same answer: the promoters' rule is not entered a second time
    even_later = TestClient(create_app(shop.settings, engine=shop.engine, now=lambda: NOW + 4 * H))
    even_later.get(link.survey(10))
    shop.kit.tick(NOW + 5 * H)
    entered = [e for e in shop.kit.enrollments() if e.rule_id == "thank_promoters"]
    assert len(entered) == 1 and shop.kit.sends("thank_promoters") == [("ada", "thanks", "due")]
