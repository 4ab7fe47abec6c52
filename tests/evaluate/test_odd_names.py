"""Attribute and property names holding a quote or a backslash match on SQLite as on PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from tests.support.kit import H, Kit
from tests.support.services import utc

T0 = utc("2026-11-01T10:00:00")

RULE = """
id: odd
trigger: {event: order_placed, where: {'gift "wrap"': {eq: yes}, 'a\\b': {gte: 2}}}
conditions:
  - {attribute: 'say "hi"', eq: gold}
  - {event: order_placed, where: {'tags "x"': {contains: red}}}
steps:
  - send: odd_thanks
"""


@pytest.mark.parametrize("quoted", [True, False])
def test_names_with_a_quote_match_on_both_databases(db: Engine, tmp_path: Path, quoted: bool) -> None:
    kit = Kit(db, tmp_path)
    kit.rules(RULE)
    kit.tick(T0 - H)
    kit.identify("ada", T0 - H, **{'say "hi"': "gold" if quoted else "silver"})
    props: dict[str, Any] = {'gift "wrap"': "yes", "a\\b": 3, 'tags "x"': ["red", "blue"]}
    kit.track("ada", "order_placed", T0, **props)
    kit.tick(T0 + H)
    assert [s[1] for s in kit.sends()] == (["odd_thanks"] if quoted else [])
