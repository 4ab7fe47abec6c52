"""Rule, stage and settings files that once ran out of memory or gave tracebacks: an alias bomb,
deep nesting, a NUL byte, a 5,000-digit number. Each is a located problem, found quickly."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.rules.test_rules_loader import GOOD, problems

LAUGHS = "lol0: &l0 [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"lol{i + 1}: &l{i + 1} [{', '.join([f'*l{i}'] * 9)}]\n" for i in range(9)
)

FILES = {
    "alias bomb": (GOOD + LAUGHS, "once aliases are expanded"),
    "5,000-deep nesting": (
        GOOD.replace("- send: hello", "- send: hello\n" + "x: " + "[" * 5000 + "]" * 5000),
        "nested deeper",
    ),
    "3,000 nested not": (
        GOOD.replace(
            "steps:", "conditions:\n  - " + "{not: " * 3000 + "{event: x}" + "}" * 3000 + "\nsteps:"
        ),
        "nested deeper",
    ),
    "NUL byte": (GOOD.replace("cart_updated", "cart\x00updated"), "U+0000 is not allowed"),
    "5,000-digit number": (
        GOOD.replace("steps:", "priority: " + "9" * 5000 + "\nsteps:"),
        "longer than 100 digits",
    ),
    "200-digit number": (
        GOOD.replace("steps:", "priority: " + "9" * 200 + "\nsteps:"),
        "longer than 100 digits",
    ),
}


@pytest.mark.parametrize("kind", list(FILES))
def test_a_file_past_a_yaml_limit_is_a_located_problem(tmp_path: Path, kind: str) -> None:
    text, words = FILES[kind]
    found = problems(tmp_path, {"cart.yaml": text})
    assert len(found) == 1 and found[0].startswith("cart.yaml:") and words in found[0], found


def test_an_alias_bomb_in_the_settings_file_is_a_located_problem(tmp_path: Path) -> None:
    found = problems(tmp_path, {"cart.yaml": GOOD, "settings.yaml": LAUGHS})
    assert len(found) == 1
    assert found[0].startswith("settings.yaml:") and "more than 100,000 values once aliases" in found[0]
