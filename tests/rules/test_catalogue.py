"""The event catalogue, rules/events.yaml (CONTRACT 9, 14): rules and stages may use only its
names and the reserved ones; an alias is stored under its catalogue name."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from sqlalchemy import select

from engine.cli import main
from engine.db import make_engine
from engine.db.schema import events
from tests.support.services import ROOT


def shipped(tmp_path: Path) -> Path:
    rules = tmp_path / "rules"
    shutil.copytree(ROOT / "rules", rules)
    return rules


def check(rules: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["rules", "check", str(rules), "--templates", str(ROOT / "message_templates")])
    return code, capsys.readouterr().out


def test_the_shipped_rules_pass_their_catalogue(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = check(ROOT / "rules", capsys)
    assert code == 0, out
    assert "no rules/events.yaml" not in out


def test_a_misspelt_event_is_refused_where_it_stands_with_the_nearest_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rules = shipped(tmp_path)
    path = rules / "cart_abandonment.yaml"
    text = path.read_text()
    path.write_text(text.replace("until: [order_placed, cart_cleared]", "until: [order_placd, cart_cleared]"))
    thanks = rules / "order_thanks.yaml"
    thanks.write_text(thanks.read_text().replace("event: order_placed", "event: Order Completed", 1))
    code, out = check(rules, capsys)
    assert code == 1
    line = next(i for i, t in enumerate(path.read_text().splitlines(), 1) if "order_placd" in t)
    column = path.read_text().splitlines()[line - 1].index("order_placd") + 1
    assert f"cart_abandonment.yaml:{line}:{column}: unknown event 'order_placd'" in out
    assert "did you mean 'order_placed'?" in out
    assert "event 'Order Completed' is stored as 'order_placed'" in out


def test_a_stage_with_an_unknown_event_is_refused_and_reserved_names_are_allowed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rules = shipped(tmp_path)
    stages = rules / "stages.yaml"
    stages.write_text(
        stages.read_text()
        .replace("event: product_viewed", "event: product_veiwed", 1)
        .replace("event: referral_converted", "event: email_clicked", 1)
    )
    code, out = check(rules, capsys)
    assert code == 1
    assert "stages.yaml:" in out and "unknown event 'product_veiwed'" in out
    assert "did you mean 'product_viewed'?" in out
    assert "email_clicked" not in out


def test_a_segment_or_a_wait_for_with_an_unknown_event_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rules = shipped(tmp_path)
    segments = rules / "segments.yaml"
    segments.write_text(segments.read_text().replace("event: order_placed", "event: order_placd", 1))
    followup = rules / "order_followup.yaml"
    followup.write_text(followup.read_text().replace("event: survey_answered", "event: survey_answred"))
    code, out = check(rules, capsys)
    assert code == 1
    assert "segments.yaml:" in out and "unknown event 'order_placd'" in out
    assert "order_followup.yaml:" in out and "unknown event 'survey_answred'" in out
    assert "did you mean 'survey_answered'?" in out


def test_without_a_catalogue_names_are_not_checked_and_it_says_so_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rules = shipped(tmp_path)
    (rules / "events.yaml").unlink()
    path = rules / "order_thanks.yaml"
    path.write_text(path.read_text().replace("event: order_placed", "event: order_done", 1))
    code, out = check(rules, capsys)
    assert code == 0, out
    assert out.splitlines()[-1] == "no rules/events.yaml: event names are not checked and no alias applies"


def test_a_wrong_catalogue_is_located(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rules = shipped(tmp_path)
    (rules / "events.yaml").write_text("events:\n  order_placed:\n    alias: [Order Completed]\n")
    code, out = check(rules, capsys)
    assert code == 1
    assert "events.yaml:3:5: unknown key 'alias' (did you mean 'aliases'?)" in out


def test_ingest_stores_an_alias_under_its_catalogue_name_in_either_shape(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, db_url: str
) -> None:
    monkeypatch.setenv("JOURNEY_DATABASE_URL", db_url)
    monkeypatch.setenv("JOURNEY_RULES_DIR", str(ROOT / "rules"))
    lines = [
        {
            "type": "track",
            "customer_id": "c-1",
            "event": "Order Completed",
            "timestamp": "2026-11-01T10:00:00Z",
        },
        {"type": "track", "userId": "c-1", "event": "Product Viewed", "timestamp": "2026-11-01T10:01:00Z"},
        {"type": "track", "userId": "c-1", "event": "Something Else", "timestamp": "2026-11-01T10:02:00Z"},
    ]
    path = tmp_path / "events.jsonl"
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    assert main(["ingest", str(path)]) == 0
    eng = make_engine(db_url)
    with eng.connect() as conn:
        names = [r.name for r in conn.execute(select(events.c.name).order_by(events.c.ts))]
    eng.dispose()
    assert names == ["order_placed", "product_viewed", "Something Else"]
