"""The HTML report in a real browser: it renders offline, with its charts, every journey's flow
with its counts, and the split (A/B) table."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from engine.cli import main
from engine.reporting.html import render_html
from engine.reporting.report import build
from engine.rules.loader import load_ruleset
from tests.support.browser import Page, browser
from tests.support.kit import H, Kit
from tests.support.report_shop import T0
from tests.support.services import ROOT

#: a headless browser
pytestmark = pytest.mark.slow


def screenshot(page: Page, path: Path, *, full: bool = False) -> bytes:
    params: dict[str, object] = {"format": "png"}
    if full:
        size = page.evaluate("[document.documentElement.scrollWidth, document.documentElement.scrollHeight]")
        params |= {
            "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": size[0], "height": size[1], "scale": 1},
        }
    png = base64.b64decode(page.call("Page.captureScreenshot", **params)["data"])
    path.write_bytes(png)
    return png


def test_the_html_report_renders_its_charts_offline(shop: Kit, tmp_path: Path) -> None:
    page_file = tmp_path / "report.html"
    page_file.write_text(render_html(build(shop.engine, shop.ruleset, now=T0 + 40 * H)))
    with browser() as page:
        page.open(page_file.as_uri())
        assert "Journey report" in page.text()
        charts = page.evaluate("Array.from(document.querySelectorAll('svg.chart')).map(s => s.id)")
        assert charts == ["funnel", "stages", "sends", "conversions"]
        bars = page.evaluate("document.querySelectorAll('#funnel rect.bar').length")
        assert bars == 6
        width = page.evaluate("document.querySelector('#funnel').getBoundingClientRect().width")
        assert width > 300
        png = screenshot(page, tmp_path / "report.png")
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000


def test_the_demo_report_draws_every_shipped_journey_with_its_counts_and_the_ab_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("JOURNEY_DATABASE_URL", raising=False)
    monkeypatch.delenv("JOURNEY_EMAIL_URL", raising=False)
    monkeypatch.setenv("JOURNEY_RULES_DIR", str(ROOT / "rules"))
    monkeypatch.setenv("JOURNEY_TEMPLATES_DIR", str(ROOT / "message_templates"))
    assert main(["demo", "--customers", "600", "--days", "45", "--seed", "3"]) == 0
    capsys.readouterr()
    end = "2026-10-31T15:00:00Z"  # the demo's last day, 15 hours in
    assert main(["report", "--now", end, "--html", "report.html", "--json"]) == 0
    figures = json.loads(capsys.readouterr().out)
    flows = {f["rule"]: f for f in figures["flows"]}
    shipped = [rule.id for rule in load_ruleset(ROOT / "rules").rules]

    with browser() as page:
        page.open((tmp_path / "report.html").as_uri())
        text = page.text()
        assert "Period: " in text and "→ 2026-10-31 15:00 UTC · generated 2026-10-31 15:00 UTC" in text
        assert "The last day, 2026-10-31 (15 h), is not over" in text
        assert page.evaluate("document.querySelectorAll('#sends circle.partial').length") == 1
        drawn = page.evaluate(
            "Array.from(document.querySelectorAll('svg.flow')).map(s => [s.dataset.rule,"
            " s.getBoundingClientRect().width, Array.from(s.querySelectorAll('text')).map(t => t.textContent)])"
        )
        assert [rule for rule, _, _ in drawn] == shipped
        for rule, width, texts in drawn:
            entered = flows[rule]["totals"]["entered"]
            assert width > 200 and f"entered {entered:,}" in texts, rule
            sends = [n for n in flows[rule]["nodes"] if n["kind"] == "send"]
            for node in sends:
                assert f"send {node['counts']['template']}" in " ".join(texts), (rule, node["id"])
                assert any(t.startswith(f"sent {node['counts']['sent']:,}") for t in texts), (
                    rule,
                    node["id"],
                )
        # the shipped winback split: each variant and the holdout, compared with each other
        rows = page.evaluate(
            "Array.from(document.querySelectorAll('#ab-table-winback tbody tr'))"
            ".map(tr => Array.from(tr.cells).map(td => td.textContent))"
        )
        assert [row[0] for row in rows] == ["miss_you", "free_repairs", "holdout"]
        (split,) = figures["splits"]
        assert [row[2] for row in rows] == [f"{v['entered']:,}" for v in split["variants"]]
        assert sum(v["entered"] for v in split["variants"]) == flows["winback"]["totals"]["entered"] > 0
        assert "free_repairs vs miss_you: " in text and "miss_you vs holdout: " in text
        assert "free_repairs vs holdout: " in text
        # rules without a goal have no conversion bar
        bars = page.evaluate(
            "Array.from(document.querySelectorAll('#conversions text')).map(t => t.textContent)"
        )
        assert "order_thanks" not in bars and "winback" in bars
        assert "No goal, so no conversions: detractor_recovery, loyalty_milestone, order_thanks." in text
        assert "lapsed" in page.evaluate("document.querySelector('#stages').textContent")
        assert "€" in page.evaluate("document.querySelector('.cards').textContent")
        png = screenshot(page, tmp_path / "demo-report.png", full=True)
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 100_000
