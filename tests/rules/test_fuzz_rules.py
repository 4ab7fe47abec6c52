"""Fuzzing rule files: a good rule, mutated character by character and with YAML snippets spliced
in. `journey rules check` either says ok, or prints only FILE:LINE:COL problems; never a traceback."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import strategies as st

from engine.cli import main
from tests.rules.test_rules_loader import write
from tests.support.fuzz import fuzz, nasty_text

RULE = """id: cart
trigger:
  inactivity: {event: cart_updated, until: [order_placed], for: 1h}
conditions:
  - {attribute: email, exists: true}
  - {event: order_placed, count: {gte: 2}, within: 30d}
  - {not: {stage: lapsed}}
steps:
  - send: hello
  - wait: 1d
  - branch:
      - when: {event: order_placed, where: {total: {gte: 50}}}
        steps: [{send: hello}]
exit_on: [order_placed]
"""

SNIPPETS = [
    "&a [1, 2]",
    "*a",
    "*nope",
    "{",
    "}",
    "[",
    "]",
    ": ",
    "- ",
    "\t",
    "\x00",
    "\ufeff",
    "!!python/object:os.system",
    "9" * 5000,
    "1e400",
    "'",
    '"',
    "\\",
    "#",
    "%YAML 1.1\n",
    "---\n",
    "? ",
    "|",
    ">",
    "~",
    "\udc00",
    "\n  - ",
    "\n",
    "{not: " * 60,
    "[" * 100,
    "send: ../x",
    "wait: 10",
    "count: {gte: two}",
    "for: -1h",
    "within: 99999999d",
]


@st.composite
def mutated_rule(draw: st.DrawFn) -> str:
    text = RULE
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(text)))
        kind = draw(st.sampled_from(["insert", "delete", "replace", "text"]))
        if kind == "insert":
            text = text[:at] + draw(st.sampled_from(SNIPPETS)) + text[at:]
        elif kind == "delete":
            text = text[:at] + text[at + draw(st.integers(1, 20)) :]
        elif kind == "replace":
            text = text[:at] + draw(st.sampled_from(SNIPPETS)) + text[at + draw(st.integers(1, 10)) :]
        else:
            text = text[:at] + draw(nasty_text) + text[at:]
    return text


LOCATED = re.compile(r"^\S.*:\d+:\d+: \S")


def test_mutated_rule_files_give_only_located_problems(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rules, tdir = write(tmp_path, {})

    def check(text: str) -> None:
        (rules / "cart.yaml").write_bytes(text.encode("utf-8", "surrogatepass"))
        code = main(["rules", "check", str(rules), "--templates", str(tdir)])
        out = capsys.readouterr()
        lines = (out.out + out.err).strip().splitlines()
        assert "Traceback" not in out.out + out.err
        if code == 0:
            assert lines[0].startswith("ok:"), lines
            return
        assert code == 1, (code, lines)
        problems, summary = lines[:-1], lines[-1]
        assert re.fullmatch(r"\d+ problems? found; nothing was loaded", summary), lines
        assert problems and all(LOCATED.match(p) for p in problems), lines

    assert fuzz("mutated rule files", mutated_rule(), 150)(check) == 150
