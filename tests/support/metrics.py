"""Scraping a process's Prometheus endpoint, as Prometheus does."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from tests.support.waiting import wait_for


def scrape(url: str) -> str:
    """The metrics page at `url`, or '' when nothing answers yet."""
    try:
        return httpx.get(url, timeout=2).text
    except httpx.HTTPError:
        return ""


def scrape_until(url: str, ready: Callable[[str], bool], timeout: float = 30.0) -> str:
    """Scrape `url` until `ready(page)` holds; the page."""
    page = ""

    def scraped() -> bool:
        nonlocal page
        page = scrape(url)
        return bool(page) and ready(page)

    wait_for(scraped, timeout=timeout, what=f"metrics at {url}")
    return page
