"""Fuzzing with hypothesis: a fixed seed (the same examples on every run, in CI too), the number of
examples each fuzz test ran printed, and strategies for the bad input the engine meets."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

SEED = 20261124
#: (name, examples run) of each fuzz run of this session
RAN: list[tuple[str, int]] = []

#: text as a careless system writes it: control characters, NUL, lone surrogates, very long
nasty_text = st.one_of(
    st.text(max_size=20),
    st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x10FFFF), max_size=20),
    st.sampled_from(["\x00", "x\udc00", "\ud800", "é" * 400, "a" * 400, "", " ", "null", "1e400"]),
)
#: JSON values, nested a little or very deep, with numbers JSON cannot carry
nasty_json: st.SearchStrategy[Any] = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**70), max_value=2**70),
        st.floats(allow_nan=True, allow_infinity=True),
        nasty_text,
    ),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(nasty_text, inner, max_size=3)),
    max_leaves=8,
)
timestamps = st.one_of(
    st.sampled_from(
        [
            "2026-11-01T10:00:00Z",
            "0001-01-01T00:00:00+01:00",
            "9999-12-31T23:59:59-05:00",
            "2026-11-01T10:00:00",
            "2026-13-01T10:00:00Z",
            "",
        ]
    ),
    nasty_text,
)
FIELDS = ("type", "customer_id", "event", "timestamp", "message_id", "traits", "properties")


@st.composite
def mutated_event(draw: st.DrawFn, base: dict[str, Any]) -> dict[str, Any] | Any:
    """`base` with one to three fields replaced, removed or added; now and then no object at all."""
    if draw(st.integers(0, 9)) == 0:
        return draw(nasty_json)
    item = dict(base)
    for _ in range(draw(st.integers(1, 3))):
        field = draw(st.sampled_from(FIELDS))
        action = draw(st.sampled_from(["replace", "remove", "deep", "timestamp", "trait"]))
        if action == "remove":
            item.pop(field, None)
        elif action == "deep":
            nested: list[Any] = []
            for _ in range(draw(st.integers(20, 800))):
                nested = [nested]
            item["properties"] = {"p": nested}
        elif action == "timestamp":
            item["timestamp"] = draw(timestamps)
        elif action == "trait":
            key = draw(
                st.sampled_from(["email", "phone", "locale", "first_name", "referral_code", "timezone"])
            )
            item["type"] = "identify"
            item["traits"] = {key: draw(st.one_of(nasty_text, nasty_json))}
        else:
            item[field] = draw(nasty_json)
    return item


def fuzz(
    name: str, strategy: st.SearchStrategy[Any], examples: int
) -> Callable[[Callable[[Any], None]], int]:
    """Run `check` on `examples` examples of `strategy`, always the same ones; returns (and prints
    to the terminal) how many ran."""

    def run(check: Callable[[Any], None]) -> int:
        ran = 0

        @seed(SEED)
        @settings(
            max_examples=examples,
            deadline=None,
            database=None,
            derandomize=False,
            suppress_health_check=list(HealthCheck),
        )
        @given(strategy)
        def each(value: Any) -> None:
            nonlocal ran
            ran += 1
            check(value)

        each()
        RAN.append((name, ran))  # printed in pytest's summary (tests/conftest.py)
        return ran

    return run
