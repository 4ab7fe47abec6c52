"""`journey simulate`: what the rules would send, per rule and day, on a throwaway database."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from engine.cli import main
from engine.sim.generate import ShopConfig, write_events
from tests.support.services import ROOT

#: replays of generated shops
pytestmark = pytest.mark.slow


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("JOURNEY_DATABASE_URL", f"sqlite:///{tmp_path / 'real.db'}")
    monkeypatch.setenv("JOURNEY_EMAIL_URL", f"file://{tmp_path / 'outbox'}")
    monkeypatch.setenv("JOURNEY_RULES_DIR", str(ROOT / "rules"))
    monkeypatch.setenv("JOURNEY_TEMPLATES_DIR", str(ROOT / "message_templates"))
    return tmp_path


def table(out: str) -> dict[tuple[str, str], list[int]]:
    """(day, rule) -> [would send, freq. cap, quiet hrs, other]"""
    lines = out.splitlines()
    assert lines[0].split() == ["day", "rule", "would", "send", "freq.", "cap", "quiet", "hrs", "other"]
    return {
        (r[0], r[1]): [int(x) for x in r[2:]]
        for r in (line.split() for line in lines[1:] if line[:4] == "2026")
    }


def test_simulate_reports_per_rule_and_day_and_sends_nothing(
    env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    events = env / "events.jsonl"
    buf = io.StringIO()
    write_events(ShopConfig(customers=150, days=10, seed=5), buf)
    events.write_text(buf.getvalue())
    code = main(
        [
            "simulate",
            str(events),
            "--from",
            "2026-10-22T00:00:00Z",
            "--to",
            "2026-11-01T00:00:00Z",
            "--step",
            "6h",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    rows = table(out)
    assert {rule for _, rule in rows} >= {"welcome_series", "browse_abandonment"}
    last = out.splitlines()[-1]
    assert int(last.split()[0].replace(",", "")) == sum(r[0] for r in rows.values()) > 0
    assert "nothing was sent" in last
    assert not (env / "outbox").exists() and not (env / "real.db").exists()


def _line(**item: Any) -> str:
    return json.dumps(item) + "\n"


def test_quiet_hours_and_the_frequency_cap_show_as_collisions(
    env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Quiet hours are 21:00-08:00 and the cap 3 marketing emails a week (rules/settings.yaml)."""
    ev = env / "events.jsonl"

    def person(cid: str, at: str) -> str:
        return _line(
            type="identify", customer_id=cid, timestamp=at, traits={"email": f"{cid}@example.com"}
        ) + _line(type="track", customer_id=cid, event="signed_up", timestamp=at)

    def track(cid: str, event: str, at: str, **props: Any) -> str:
        return _line(type="track", customer_id=cid, event=event, timestamp=at, properties=props)

    item = {"product_id": "p-1", "name": "Trail runner", "price": 90.0, "qty": 1}
    ev.write_text(
        # night owl: signs up at 23:00 UTC; the welcome email waits for 08:00 the next morning
        person("night", "2026-10-01T23:00:00Z")
        # busy: a welcome, a cart reminder and its last chance in two days; then the second welcome
        # email (day 3) would be the 4th marketing email in 7 days
        + person("busy", "2026-10-01T10:00:00Z")
        + track("busy", "cart_updated", "2026-10-01T10:30:00Z", cart_value=90.0, items=[item])
    )
    code = main(["simulate", str(ev), "--from", "2026-10-01T09:00:00Z", "--to", "2026-10-05T00:00:00Z"])
    out = capsys.readouterr().out
    assert code == 0, out
    rows = table(out)  # (the file is not in time order: simulate puts it in order)
    assert rows[("2026-10-01", "cart_abandonment")][0] == rows[("2026-10-02", "cart_abandonment")][0] == 1
    assert rows[("2026-10-02", "welcome_series")][2] == 1  # night's welcome: sent at 08:00, after quiet hours
    assert rows[("2026-10-03", "welcome_series")][1] == 1  # busy's second welcome: held by the cap
    assert "held back by the frequency cap" in out.splitlines()[-1]


def test_bad_lines_are_reported_with_their_line_and_the_good_ones_replayed(
    env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ev = env / "events.jsonl"
    good = _line(
        type="identify",
        customer_id="c-1",
        timestamp="2026-10-01T10:00:00Z",
        traits={"email": "a@example.com"},
    )
    signup = _line(type="track", customer_id="c-1", event="signed_up", timestamp="2026-10-01T10:00:05Z")
    ev.write_text(
        good
        + '{"type": "track", "customer_id": "c-2", \n'  # line 2: cut short
        + "\n"
        + _line(type="track", customer_id="c-3", timestamp="2026-10-01T11:00:00Z")  # line 4: no event name
        + signup
        + "[1, 2]\n"  # line 6: JSON, not an event
        + _line(type="track", customer_id="c-1", event="product_viewed", timestamp="2026-12-01T10:00:00Z")
    )
    code = main(["simulate", str(ev), "--from", "2026-10-01T09:00:00Z", "--to", "2026-10-03T00:00:00Z"])
    captured = capsys.readouterr()
    assert code == 1
    errors = [line for line in captured.err.splitlines() if line.startswith(str(ev))]
    assert [e.split(":")[1] for e in errors] == ["2", "4", "6"]
    assert errors[0].startswith(f"{ev}:2: not valid JSON")
    assert "event" in errors[1]
    assert "1 event and 1 identify replayed; 1 after --to not replayed; 3 bad lines skipped." in captured.err
    assert table(captured.out)[("2026-10-01", "welcome_series")][0] == 1  # the good lines were replayed


def test_a_file_is_sorted_in_runs_on_disk_and_merged_in_time_order(tmp_path: Path) -> None:
    from engine.sim.sorting import SortedEvents

    stamps = [f"2026-10-01T10:00:0{n}Z" for n in (5, 3, 9, 1, 7, 2, 8, 0, 6, 4)]
    text = "".join(
        _line(type="track", customer_id=f"c-{i}", event="x", timestamp=ts) for i, ts in enumerate(stamps)
    )
    text += "not json\n" + _line(type="track", customer_id="c-z", event="y", timestamp=stamps[0])
    errors: list[str] = []
    with SortedEvents(io.StringIO(text), "f.jsonl", errors.append, run_size=3) as events:
        assert events.runs == 4 and events.count == 11 and events.bad == 1
        order = [(e.timestamp.second, e.customer_id) for e in events]
        folder = events._dir
        assert folder is not None and len(list(folder.iterdir())) == 4
    assert [s for s, _ in order] == sorted(s for s, _ in order)
    assert order[5:7] == [(5, "c-0"), (5, "c-z")]  # the same second: the file's order
    assert errors == ["f.jsonl:11: not valid JSON: Expecting value at column 1"]
    assert not folder.exists()  # the runs are removed


def test_simulate_limits_to_rules_and_totals_them_per_step_and_variant(
    env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    events = env / "events.jsonl"
    buf = io.StringIO()
    write_events(ShopConfig(customers=200, days=60, seed=4), buf)
    events.write_text(buf.getvalue())
    args = ["simulate", str(events), "--from", "2026-09-01T00:00:00Z", "--to", "2026-11-01T00:00:00Z"]
    code = main([*args, "--step", "12h", "--rule", "winback", "--rule", "cart_abandonment"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert {rule for _, rule in table(out)} <= {"winback", "cart_abandonment"}
    block = out.split("\n\n")[1].splitlines()
    assert block[0].split()[:5] == ["per", "rule", "and", "step", "(--rule)"]
    rules = {line.split()[0]: line.split()[1:] for line in block[1:] if not line.startswith(" ")}
    assert set(rules) == {"cart_abandonment", "winback"}
    steps = [line.split() for line in block if line.startswith("  ") and "variant" not in line]
    assert [s[:2] for s in steps if s[1].startswith("cart")] == [
        ["0", "cart_reminder"],
        ["2", "cart_last_chance"],
    ]
    cart_sent = int(rules["cart_abandonment"][1])
    assert cart_sent == sum(int(s[2]) for s in steps if s[1].startswith("cart")) > 0
    variants = {line.split()[1]: [int(x) for x in line.split()[3:]] for line in block if "variant" in line}
    assert set(variants) == {"miss_you", "free_repairs", "holdout"}
    assert variants["holdout"][1] == 0  # the holdout is sent nothing
    entered = variants["miss_you"][0] + variants["free_repairs"][0] + variants["holdout"][0]
    assert entered == int(rules["winback"][0]) > 0
    assert main([*args, "--rule", "winbak"]) == 1
    assert "no rule 'winbak' (did you mean 'winback'?)" in capsys.readouterr().err


def test_simulate_from_the_database_replays_its_history_as_its_export_does(
    env: Path, db_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("JOURNEY_DATABASE_URL", db_url)  # on SQLite and on PostgreSQL
    events = env / "events.jsonl"
    buf = io.StringIO()
    write_events(ShopConfig(customers=120, days=20, seed=9), buf)
    events.write_text(buf.getvalue())
    assert main(["db", "upgrade"]) == 0
    assert main(["ingest", str(events)]) == 0
    exported = env / "export.jsonl"
    assert main(["events", "export", "-o", str(exported)]) == 0
    window = ["--from", "2026-10-20T00:00:00Z", "--to", "2026-10-27T00:00:00Z", "--step", "6h"]
    capsys.readouterr()
    assert main(["simulate", "--from-db", *window]) == 0
    from_db = capsys.readouterr().out
    assert main(["simulate", str(exported), *window]) == 0
    from_file = capsys.readouterr().out
    assert from_db == from_file and table(from_db)
    assert main(["simulate", str(exported), "--from-db", *window]) == 2  # one or the other
