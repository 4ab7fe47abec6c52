"""The HTML report in a real browser: it renders offline, with its charts."""

from __future__ import annotations

import base64
from pathlib import Path

from engine.report import build
from engine.report_html import render_html
from tests.engine.evalkit import Kit
from tests.engine.http.cdp import browser
from tests.engine.test_report import T0, H, shop  # noqa: F401 - the fixture


def test_the_html_report_renders_its_charts_offline(shop: Kit, tmp_path: Path) -> None:  # noqa: F811
    page_file = tmp_path / "report.html"
    page_file.write_text(render_html(build(shop.engine, shop.ruleset, now=T0 + 40 * H)))
    with browser() as page:
        page.open(page_file.as_uri())
        assert "Journey report" in page.text()
        charts = page.evaluate("Array.from(document.querySelectorAll('svg.chart')).map(s => s.id)")
        assert charts == ["funnel", "sends", "conversions"]
        bars = page.evaluate("document.querySelectorAll('#funnel rect.bar').length")
        assert bars == 6
        width = page.evaluate("document.querySelector('#funnel').getBoundingClientRect().width")
        assert width > 300
        shot = page.call("Page.captureScreenshot", format="png")["data"]
        png = base64.b64decode(shot)
        (tmp_path / "report.png").write_bytes(png)
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000
