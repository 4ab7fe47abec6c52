"""Fuzzing `journey ingest`: good lines mixed with mutated and random ones. Every good line is
stored, every line not stored is reported with its line number, and nothing prints a traceback."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import strategies as st
from sqlalchemy import Engine, select

from engine.cli import main
from engine.db.schema import events
from tests.support.fuzz import fuzz, mutated_event, nasty_text

TS = "2026-11-01T10:00:00Z"


def good_event(n: int) -> dict[str, Any]:
    return {
        "type": "track",
        "customer_id": f"c{n}",
        "event": "viewed",
        "message_id": f"good-{n}",
        "timestamp": TS,
        "properties": {"n": n},
    }


#: (is good, the line's text) for each line of a file: good events, mutated ones, random text
LINE = st.one_of(
    st.builds(lambda: (True, None)),
    st.tuples(st.just(False), mutated_event(good_event(0)).map(lambda item: json.dumps(item))),
    st.tuples(st.just(False), nasty_text),
)
FILE = st.lists(LINE, min_size=1, max_size=12)


def test_ingest_of_mutated_lines_stores_every_good_one_and_reports_every_other(
    db_url: str,
    db: Engine,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("JOURNEY_DATABASE_URL", db_url)
    serial = iter(range(1, 10**9))

    def check(lines: list[tuple[bool, str | None]]) -> None:
        texts, good = [], []
        for is_good, text in lines:
            if is_good:
                n = next(serial)
                good.append(f"good-{n}")
                text = json.dumps(good_event(n))
            texts.append((text or "").replace("\n", " ").replace("\r", " "))
        path = tmp_path / "fuzz.jsonl"
        path.write_bytes("\n".join(texts).encode("utf-8", "surrogatepass") + b"\n")
        code = main(["ingest", str(path)])
        err = capsys.readouterr().err
        assert "Traceback" not in err
        reported = {int(m.group(1)) for m in re.finditer(rf"^{re.escape(str(path))}:(\d+): ", err, re.M)}
        summary = err.strip().splitlines()[-1]
        assert summary.startswith("ingested "), err
        for number, (is_good, _) in enumerate(lines, start=1):
            if is_good:
                assert number not in reported, err
        assert code == (1 if reported else 0), err
        with db.connect() as conn:
            stored = set(
                conn.execute(select(events.c.message_id).where(events.c.message_id.in_(good))).scalars()
            )
        assert stored == set(good)

    assert fuzz("ingest lines", FILE, 40)(check) == 40
