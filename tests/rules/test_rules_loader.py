"""Rule files as marketers write them, and the errors they get back: FILE:LINE:COLUMN, all at once."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from engine.cli import main
from engine.errors import RuleError
from engine.rules.loader import load_ruleset
from engine.rules.triggers import InactivityTrigger
from tests.support.kit import STAGES
from tests.support.services import ROOT


def write(base: Path, files: dict[str, str], templates: tuple[str, ...] = ("hello",)) -> tuple[Path, Path]:
    rules = base / "rules"
    tdir = base / "templates"
    rules.mkdir(exist_ok=True)
    tdir.mkdir(exist_ok=True)
    files = {"stages.yaml": STAGES, **files}
    for name, text in files.items():
        (rules / name).parent.mkdir(parents=True, exist_ok=True)
        (rules / name).write_text(textwrap.dedent(text).lstrip("\n"))
    for t in templates:
        (tdir / f"{t}.subject.j2").write_text("Hello")
        (tdir / f"{t}.txt.j2").write_text("Hello {{ customer.first_name }}")
    return rules, tdir


def problems(base: Path, files: dict[str, str], templates: tuple[str, ...] = ("hello",)) -> list[str]:
    rules, tdir = write(base, files, templates)
    with pytest.raises(RuleError) as info:
        load_ruleset(rules, tdir)
    return [
        f"{Path(p.file).name}:{p.line}:{p.column}: {p.message}"
        + (f" [{p.suggestion}]" if p.suggestion else "")
        for p in info.value.problems
    ]


GOOD = """
id: cart
trigger:
  inactivity: {event: cart_updated, until: [order_placed], for: 1h}
steps:
  - send: hello
"""


def test_a_good_rule_loads(tmp_path: Path) -> None:
    rules, tdir = write(tmp_path, {"cart.yaml": GOOD})
    rs = load_ruleset(rules, tdir)
    assert [r.id for r in rs.rules] == ["cart"]
    trigger = rs.rules[0].trigger
    assert isinstance(trigger, InactivityTrigger)
    assert trigger.inactivity.for_.total_seconds() == 3600
    assert [s.name for s in rs.stages][0] == "advocacy"


def test_an_unknown_key_points_at_it_and_suggests_the_known_one(tmp_path: Path) -> None:
    text = GOOD.replace("for: 1h}", "fro: 1h}")
    found = problems(tmp_path, {"cart.yaml": text})
    assert found == [
        "cart.yaml:3:15: missing key 'for' (how long to wait: 30m, 1h, 7d); is 'fro' meant to be 'for'?",
        "cart.yaml:3:60: unknown key 'fro' [for]",
    ]


def test_a_misspelt_step_points_at_it_and_suggests_the_step(tmp_path: Path) -> None:
    text = GOOD + "  - wiat: 23h\n  - pause: 1h\n  - send: hello\n"
    assert problems(tmp_path, {"cart.yaml": text}) == [
        "cart.yaml:6:5: unknown step 'wiat' [wait]",
        "cart.yaml:7:5: a step needs one of: send, wait, wait_for, branch, split, update; this one has: pause",
    ]


def test_a_bad_duration_and_a_bad_cron_are_reported_with_their_place(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        {
            "a.yaml": GOOD.replace("for: 1h", "for: 7x"),
            "b.yaml": """
                id: weekly
                trigger:
                  schedule: "0 9 * *"
                steps:
                  - send: hello
                quiet_hours: "9pm-8am"
            """,
        },
    )
    assert found[0].startswith("a.yaml:3:65: '7x' is not a duration")
    assert found[1].startswith("b.yaml:3:3: schedule '0 9 * *' needs 5 cron fields")
    assert found[2].startswith("b.yaml:6:14: quiet_hours '9pm-8am' must look like")


def test_every_problem_of_every_file_at_once_and_nothing_loaded(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        {
            "good.yaml": GOOD,
            "bad.yaml": """
                id: welcome
                trigger: {stage_entered: awarenes}
                steps:
                  - sned: hello
                  - send: helo
            """,
        },
    )
    assert found == ["bad.yaml:4:5: unknown step 'sned' [send]"]
    # once the step is fixed, the cross-checks speak: unknown stage, unknown template
    fixed = problems(
        tmp_path,
        {
            "good.yaml": GOOD,
            "bad.yaml": """
                id: welcome
                trigger: {stage_entered: awarenes}
                steps:
                  - send: hello
                  - send: helo
            """,
        },
    )
    assert fixed[0].startswith("bad.yaml:2:26: unknown stage 'awarenes'") and fixed[0].endswith("[awareness]")
    assert fixed[1].startswith("bad.yaml:5:11: template 'helo' not found") and fixed[1].endswith("[hello]")


def test_a_duplicate_rule_id_names_both_files(tmp_path: Path) -> None:
    found = problems(tmp_path, {"one.yaml": GOOD, "two.yaml": GOOD})
    assert found == ["two.yaml:1:5: duplicate rule id 'cart': also defined at " + found[0].split("at ")[1]]
    assert "one.yaml:1" in found[0]


def test_yaml_syntax_errors_and_duplicate_keys(tmp_path: Path) -> None:
    found = problems(tmp_path, {"x.yaml": "id: a\ntrigger: {event: x\nsteps: []\n"})
    assert found[0].startswith("x.yaml:3:") and "YAML" in found[0]
    found = problems(tmp_path, {"x.yaml": "id: a\nid: b\ntrigger: {event: x}\nsteps: [{send: hello}]\n"})
    assert found[0].startswith("x.yaml:2:1: YAML: duplicate key")


def test_a_list_of_rules_under_rules(tmp_path: Path) -> None:
    text = "rules:\n" + textwrap.indent(
        textwrap.dedent(GOOD).lstrip("\n"), "  - ", lambda line: line.startswith("id")
    )
    text = text.replace("\ntrigger", "\n    trigger").replace("\n  inactivity", "\n      inactivity")
    text = text.replace("\nsteps", "\n    steps").replace("\n  - send", "\n      - send")
    rules, tdir = write(tmp_path, {"many.yaml": text})
    assert [r.id for r in load_ruleset(rules, tdir).rules] == ["cart"]


def test_stage_files_need_a_default_last_stage(tmp_path: Path) -> None:
    found = problems(tmp_path, {"stages.yaml": "stages:\n  - name: a\n  - name: b\n    when: {event: x}\n"})
    assert found == [
        "stages.yaml:1:1: stage 'a' has no when: and is not last; only the last stage is the default"
    ]


def test_the_shipped_rules_check_clean(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["rules", "check", str(ROOT / "rules"), "--templates", str(ROOT / "message_templates")])
    out = capsys.readouterr().out
    assert code == 0, out
    assert out.startswith("ok: 7 stages")


def test_rules_check_prints_problems_and_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rules, tdir = write(tmp_path, {"cart.yaml": GOOD.replace("for: 1h", "for: soon")})
    code = main(["rules", "check", str(rules), "--templates", str(tdir)])
    captured = capsys.readouterr()
    assert code == 1
    assert "cart.yaml:3:65: 'soon' is not a duration" in captured.out
    assert "nothing was loaded" in captured.err


def test_a_duration_without_a_unit_is_refused_and_the_units_suggested(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        {"cart.yaml": GOOD.replace("for: 1h", "for: 10") + "  - wait: '90'\n  - send: hello\nreentry: 1.5\n"},
    )
    assert found == [
        "cart.yaml:3:65: a duration needs a unit: '10' alone could be seconds, minutes or days "
        "(did you mean '10m' or '10s'?)",
        "cart.yaml:6:11: a duration needs a unit: '90' alone could be seconds, minutes or days "
        "(did you mean '90m' or '90s'?)",
        "cart.yaml:8:10: a duration needs a unit: '1.5' alone could be seconds, minutes or days "
        "(did you mean '1.5m' or '1.5s'?)",
    ]


def test_counts_and_ordering_comparisons_must_be_numbers(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        {
            "cart.yaml": GOOD
            + "conditions:\n"
            + "  - {event: order_placed, count: {gte: two}}\n"
            + "  - {event: order_placed, count: 2.5}\n"
            + "  - {attribute: age, gt: eighteen}\n"
            + "  - {attribute: signed_up_on, gte: '2026-01-31'}\n"  # a date orders fine
            + "  - {event: order_placed, where: {value: {lt: lots}}}\n"
        },
    )
    assert found == [
        "cart.yaml:7:34: count is a whole number of times: 'two' is not one (like count: {gte: 2})",
        "cart.yaml:8:34: count is a whole number of times: 2.5 is not one (like count: {eq: 2})",
        "cart.yaml:9:5: 'gt' compares numbers or dates: 'eighteen' is neither "
        "(write a number like gt: 2, or a date like gt: 2026-01-31)",
        "cart.yaml:11:42: 'lt' compares numbers or dates: 'lots' is neither "
        "(write a number like lt: 2, or a date like lt: 2026-01-31)",
    ]


def _split(weights: str) -> str:
    return GOOD.replace(
        "  - send: hello",
        f"  - split: {weights}\n    variants:\n      A: [{{send: hello}}]\n      B: [{{send: hello}}]",
    )


def test_split_weights_must_add_up_to_100(tmp_path: Path) -> None:
    found = problems(tmp_path, {"cart.yaml": _split("{A: 50, B: 60, holdout: 10}")})
    assert found == [
        "cart.yaml:5:5: split weights add up to 120: make them add up to 100 (the variants alone, "
        "with a holdout on top, or all of them with the holdout)"
    ]


def test_split_weights_may_put_the_holdout_on_top_of_100_as_the_contract_writes_it(tmp_path: Path) -> None:
    for n, weights in enumerate(("{A: 50, B: 50, holdout: 10}", "{A: 45, B: 45, holdout: 10}")):
        (tmp_path / str(n)).mkdir()
        rules, tdir = write(tmp_path / str(n), {"cart.yaml": _split(weights)}, ("hello",))
        assert [r.id for r in load_ruleset(rules, tdir).rules] == ["cart"]


def test_a_rules_topic_is_one_of_the_settings_topics(tmp_path: Path) -> None:
    settings = "topics:\n  news: News and offers\n  surveys: Surveys and reviews\n"
    found = problems(tmp_path, {"settings.yaml": settings, "cart.yaml": GOOD + "topic: newz\n"})
    assert found == ["cart.yaml:6:8: unknown topic 'newz' (topics in settings.yaml: news, surveys) [news]"]
    found = problems(tmp_path, {"settings.yaml": "topics: {News: '', ok: ' '}\n", "cart.yaml": GOOD})
    assert found == [
        "settings.yaml:1:9: topic 'News' must be a short name in lower case, digits and _ (like news_and_offers)"
    ]
    rules, tdir = write(tmp_path, {"settings.yaml": settings, "cart.yaml": GOOD + "topic: news\n"})
    assert load_ruleset(rules, tdir).rules[0].opt_out_topics() == ("news", "cart")
