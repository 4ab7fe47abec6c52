"""Rule files as marketers write them, and the errors they get back: FILE:LINE:COLUMN, all at once."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from engine.cli import main
from engine.errors import RuleError
from engine.rules.loader import load_ruleset
from tests.conftest import ROOT
from tests.engine.evalkit import STAGES


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
    assert rs.rules[0].trigger.inactivity is not None
    assert rs.rules[0].trigger.inactivity.for_.total_seconds() == 3600
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
        "cart.yaml:7:5: a step needs one of: send, wait, branch, split, update; this one has: pause",
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
