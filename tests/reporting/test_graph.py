"""`journey graph`: per-step and per-variant counts of a small world, computed by hand, on both
databases; the SVG names every step; the layout keeps boxes apart."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path
from typing import Any

import pytest

from engine.cli import main
from engine.reporting.abtest import comparison_text, split_results
from engine.reporting.graph import rule_graph
from engine.reporting.layout import wrap
from engine.rules.loader import load_ruleset
from tests.support.ab_shop import END, T0, AbShop
from tests.support.kit import D
from tests.support.services import ROOT


def graph_json(
    shop: AbShop, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str
) -> Any:
    monkeypatch.setenv("JOURNEY_DATABASE_URL", str(shop.kit.engine.url.render_as_string(hide_password=False)))
    monkeypatch.setenv("JOURNEY_RULES_DIR", str(shop.kit.dir / "rules"))
    monkeypatch.setenv("JOURNEY_TEMPLATES_DIR", str(shop.kit.dir / "templates"))
    capsys.readouterr()
    assert main(["graph", "ab", "--json", *args]) == 0
    return json.loads(capsys.readouterr().out)


def test_graph_json_counts_every_step_and_variant_as_computed_by_hand(
    ab_shop: AbShop, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    g = graph_json(ab_shop, monkeypatch, capsys, "--now", END.isoformat())
    # entered 9: a1-a4 in A, b1-b3 in B, h1 and h2 held out. a2 bought and left (exit_on);
    # a1 (follow-up sent), a3, a4 (the branch's empty 'no'), b1, b2, b3 went through every step.
    # Converted within 7 days of entering: a2 and h1 (held out)
    t = g["totals"]
    assert (t["entered"], t["active"], t["finished"], t["exited"], t["held_out"]) == (9, 0, 6, 1, 2)
    assert (t["converted"], t["held_out_converted"]) == (2, 1)
    # emails sent: A a_mail to a1-a3 and a1's follow-up; B a_mail to b1, b2 and b_followup to b1, b2
    # opened: a1's and a2's first (a2 clicked: an open too), b1's and b2's first; clicked: a2's, b2's
    # (b2 clicked twice: one email)
    assert (t["sent"], t["opened"], t["clicked"], t["openers"], t["clickers"]) == (8, 4, 2, 4, 2)
    v = g["variants"]
    assert {name: (x["entered"], x["finished"], x["exited"]) for name, x in v.items()} == {
        "A": (4, 3, 1),
        "B": (3, 3, 0),
        "holdout": (2, 0, 0),
    }
    assert {
        name: (x["sent"], x["opened"], x["clicked"], x["clickers"], x["converted"]) for name, x in v.items()
    } == {
        "A": (4, 2, 1, 1, 1),
        "B": (4, 2, 1, 1, 0),
        "holdout": (0, 0, 0, 0, 1),
    }
    nodes = {n["id"]: n for n in g["nodes"]}
    assert [n["id"] for n in g["nodes"]] == [
        "trigger",
        "0",
        "0.A.0",
        "0.A.1",
        "0.A.2",
        "0.A.2.then.0",
        "0.B.0",
        "0.B.1",
        "0.B.2",
        "0.holdout",
        "end",
    ]
    assert nodes["0"]["counts"]["entered"] == {"A": 4, "B": 3, "holdout": 2}

    def send(path: str) -> tuple[Any, ...]:
        c = nodes[path]["counts"]
        return (
            c["reached"],
            c["sent"],
            c["suppressed"],
            c["failed"],
            c["opened"],
            c["clicked"],
            c["scheduled"],
        )

    assert send("0.A.0") == (4, 3, {"unsubscribed": 1}, {}, 2, 1, 0)  # a4 had unsubscribed
    assert send("0.A.2.then.0") == (1, 1, {}, {}, 0, 0, 0)  # only a1 viewed a product
    assert send("0.B.0") == (3, 2, {}, {"refused": 1}, 2, 1, 0)  # b3's address is refused
    # the refusal was a hard bounce: b3's address takes no more email
    assert send("0.B.2") == (3, 2, {"bounced": 1}, {}, 0, 0, 0)
    assert (
        nodes["0.B.0"]["counts"]["subject"] == "B's subject"
        and nodes["0.B.0"]["counts"]["template"] == "a_mail"
    )
    assert {(link["from"], link["to"], link["way"]) for link in g["links"]} >= {
        ("trigger", "0", None),
        ("0", "0.A.0", "A · 4 in"),
        ("0", "0.B.0", "B · 3 in"),
        ("0", "0.holdout", "holdout · 2 in"),
        ("0.A.2", "0.A.2.then.0", "yes"),
        ("0.A.2", "end", "no"),
        ("0.A.2.then.0", "end", None),
        ("0.B.2", "end", None),
    }
    assert g["period"] == {
        "from": None,
        "to": "2026-11-05T10:00:00Z",
        "generated_at": "2026-11-05T10:00:00Z",
        "first_data": "2026-11-02T09:30:00Z",  # a4 unsubscribed: the first event
    }


def test_waiting_now_is_counted_on_the_wait(ab_shop: AbShop) -> None:
    g = ab_shop.midway
    nodes = {n["id"]: n["counts"] for n in g["nodes"]}
    # a day in: a1, a3, a4 wait out A's two days (a2 left), b1-b3 B's; the holdout waits nowhere
    assert (nodes["0.A.1"]["waiting"], nodes["0.B.1"]["waiting"]) == (3, 3)
    assert g["totals"]["active"] == 6 and g["totals"]["exited"] == 1
    assert nodes["0.A.2.then.0"]["reached"] == 0 and nodes["0.B.2"]["reached"] == 0


def test_a_period_counts_only_the_customers_who_entered_in_it(
    ab_shop: AbShop, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    later = graph_json(ab_shop, monkeypatch, capsys, "--from", (T0 + D).isoformat(), "--now", END.isoformat())
    assert later["totals"]["entered"] == 0 and later["period"]["from"] == "2026-11-03T10:00:00Z"
    before = graph_json(ab_shop, monkeypatch, capsys, "--to", (T0 + D).isoformat(), "--now", END.isoformat())
    # up to a day in: the first emails only; the second ones were not made yet
    nodes = {n["id"]: n["counts"] for n in before["nodes"]}
    assert before["totals"]["entered"] == 9 and nodes["0.B.2"]["reached"] == 0
    assert nodes["0.A.0"]["sent"] == 3 and before["period"]["generated_at"] == "2026-11-05T10:00:00Z"


def test_the_svg_names_each_step_with_its_counts(ab_shop: AbShop, tmp_path: Path) -> None:
    g = rule_graph(ab_shop.kit.engine, ab_shop.kit.ruleset, "ab", start=None, end=END, now=END)
    svg = g.svg()
    assert svg.startswith("<svg xmlns=") and "<script" not in svg
    texts = [html.unescape(t) for t in re.findall(r"<text[^>]*>([^<]*)</text>", svg)]
    for words in (
        "when event: signed_up",
        "send a_mail",
        "wait 2d",
        "send a_followup",
        "send b_followup",
        "holdout: no messages",
        "sent 3 · opened 2 · clicked 1",
        "suppressed 1 (unsubscribed 1)",
        "failed 1 (refused 1)",
        "A · 4 in",
        "B · 3 in",
        "goal: order_placed within 7d",
    ):
        assert any(words in t for t in texts), words
    assert any('subject: "B\'s subject"' in t for t in texts)
    # no two boxes overlap
    boxes = [
        tuple(float(v) for v in m)
        for m in re.findall(r'<rect x="([\d.]+)" y="([\d.]+)" width="(\d+)" height="(\d+)"', svg)
    ]
    for i, (x, y, w, h) in enumerate(boxes):
        for x2, y2, w2, h2 in boxes[i + 1 :]:
            assert x + w <= x2 or x2 + w2 <= x or y + h <= y2 or y2 + h2 <= y, "boxes overlap"


def test_the_cli_writes_the_svg_and_names_an_unknown_rule(
    ab_shop: AbShop, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    graph_json(ab_shop, monkeypatch, capsys)
    out = tmp_path / "ab.svg"
    assert main(["graph", "ab", "--svg", str(out), "--now", END.isoformat()]) == 0
    assert out.read_text().count('class="node ') == 11
    assert main(["graph", "ab", "--now", END.isoformat()]) == 0
    text = capsys.readouterr().out
    assert (
        "    A · 4 in:\n      send a_mail: sent 3 · opened 2 · clicked 1; suppressed 1 (unsubscribed 1)"
        in text
    )
    assert main(["graph", "abb"]) == 1
    assert "no rule 'abb' (did you mean 'ab'?)" in capsys.readouterr().err
    assert main(["graph", "ab", "--from", END.isoformat(), "--to", T0.isoformat()]) == 2


def test_a_b_results_compare_variants_and_the_holdout(ab_shop: AbShop) -> None:
    g = rule_graph(ab_shop.kit.engine, ab_shop.kit.ruleset, "ab", start=None, end=END, now=END)
    (result,) = split_results(g.rule, g.counts)
    assert result.measure == "goal conversion" and result.goal == "order_placed within 7d"
    assert [(v.name, v.weight, v.entered, v.sent, v.converted, v.rate) for v in result.variants] == [
        ("A", 40.0, 4, 4, 1, 0.25),
        ("B", 40.0, 3, 4, 0, 0.0),
        ("holdout", 20.0, 2, 0, 1, 0.5),
    ]
    assert [(c.variant, c.against, c.difference, c.verdict) for c in result.comparisons] == [
        ("B", "A", -0.25, "too few to tell"),
        ("A", "holdout", -0.25, "too few to tell"),
        ("B", "holdout", -0.5, "too few to tell"),
    ]
    assert comparison_text(result.comparisons[0]) == "B vs A: too few to tell (3 vs 4; 30 each needed)"


@pytest.mark.parametrize("rule_id", ["welcome_series", "order_followup", "winback", "detractor_recovery"])
def test_every_shipped_rule_is_drawn_with_readable_lines(rule_id: str) -> None:
    from engine.reporting.counts import RuleCounts
    from engine.reporting.flow import build_flow
    from engine.reporting.svg import render_svg

    rule = load_ruleset(ROOT / "rules").rule(rule_id)
    flow = build_flow(rule, RuleCounts(rule_id))
    svg = render_svg(flow)
    texts = [html.unescape(t) for t in re.findall(r"<text[^>]*>([^<]*)</text>", svg)]
    assert all(len(t) <= 36 for t in texts), [t for t in texts if len(t) > 36]
    assert flow.width <= 3 * 232 + 2 * 22 + 32


def test_long_words_are_cut_and_a_long_text_ends_with_an_ellipsis() -> None:
    assert wrap("a " + "x" * 40, width=10) == ["a", "xxxxxxxxx-", "xxxxxxxxx…"]
    assert wrap("one two three", width=7) == ["one two", "three"]


def test_a_split_without_a_goal_compares_clicks_and_says_which_variant_is_better() -> None:
    from engine.reporting.counts import GroupCounts, RuleCounts
    from engine.rules.model import Rule

    rule = Rule.model_validate(
        {
            "id": "news",
            "trigger": {"event": "signed_up"},
            "steps": [
                {
                    "split": {"A": 45, "B": 45, "holdout": 10},
                    "variants": {"A": [{"send": "a"}], "B": [{"send": "b"}]},
                }
            ],
        }
    )
    counts = RuleCounts("news")
    counts.variants = {
        "A": GroupCounts(entered=400, sent=400, clicked=40, clickers=40),
        "B": GroupCounts(entered=400, sent=400, clicked=80, clickers=80),
        "holdout": GroupCounts(entered=90, held_out=90),
    }
    (result,) = split_results(rule, counts)
    assert result.measure == "click" and result.goal is None
    assert [(v.name, v.rate, v.converted) for v in result.variants] == [
        ("A", 0.1, None),
        ("B", 0.2, None),
        ("holdout", 0.0, None),
    ]
    # the holdout gets no email: nothing to compare clicks with
    (b_vs_a,) = result.comparisons
    assert (b_vs_a.variant, b_vs_a.against, b_vs_a.verdict) == ("B", "A", "better")
    assert comparison_text(b_vs_a).startswith("B vs A: +10.0 pts [+5.")
    assert comparison_text(b_vs_a).endswith("(400 vs 400): better")
    counts.variants["B"] = GroupCounts(entered=400, sent=400, clicked=10, clickers=10)
    assert split_results(rule, counts)[0].comparisons[0].verdict == "worse"
    counts.variants["B"] = GroupCounts(entered=400, sent=400, clicked=42, clickers=42)
    assert split_results(rule, counts)[0].comparisons[0].verdict == "no clear difference"


def test_a_database_without_a_schema_is_named_not_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("JOURNEY_DATABASE_URL", f"sqlite:///{tmp_path / 'new.db'}")
    monkeypatch.setenv("JOURNEY_RULES_DIR", str(ROOT / "rules"))
    monkeypatch.setenv("JOURNEY_TEMPLATES_DIR", str(ROOT / "message_templates"))
    for command in (["graph", "winback"], ["report"]):
        assert main(command) == 1
        assert "the database has no schema yet: run `journey db upgrade` first" in capsys.readouterr().err
