"""The pages in a real browser (headless Chromium): what a customer sees and clicks."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.browser import Page, browser
from tests.support.http import Shop

#: a headless browser
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def page() -> Iterator[Page]:
    with browser() as tab:
        yield tab


def test_confirming_on_the_unsubscribe_page_unsubscribes(shop: Shop, live: str, page: Page) -> None:
    page.open(live + shop.links().unsubscribe)
    assert "Unsubscribe?" in page.text()
    assert shop.opt_outs() == []  # opening the page changed nothing
    page.click("#confirm")
    assert "You are unsubscribed" in page.text()
    assert shop.opt_outs() == [("email", "*", "page")]
    assert shop.count("unsubscribed") == 1
    # the page's own link leads to the preference centre, where email shows as off
    page.click("a")
    assert "Email preferences" in page.text()
    assert page.evaluate("document.querySelector('input[name=email]').checked") is False


def test_the_survey_comment_form_saves_the_comment(shop: Shop, live: str, page: Page) -> None:
    page.open(live + shop.links().survey(3))
    assert "You answered 3 out of 10" in page.text()
    page.type_into("#comment", "Delivery took two weeks.")
    page.click("#send")
    assert "Thanks for your comment" in page.text()
    [event] = shop.events("survey_answered")
    assert event.properties["comment"] == "Delivery took two weeks."
    assert event.properties["score"] == 3
    # changing one's mind on the thank-you page updates the same answer
    page.click("ul.scores li:nth-child(10) a")
    assert "You answered 9 out of 10" in page.text()
    [event] = shop.events("survey_answered")
    assert (event.properties["score"], event.properties["comment"]) == (9, "Delivery took two weeks.")


def test_preferences_are_saved_from_the_form(shop: Shop, live: str, page: Page) -> None:
    page.open(live + shop.links().preferences)
    page.evaluate("document.querySelector('input[value=newsletter]').click()")
    page.click("#save")
    assert "Saved." in page.text()
    assert shop.opt_outs() == [("email", "newsletter", "preferences")]
