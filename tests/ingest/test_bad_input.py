"""Lines and items that once stopped `journey ingest` or `POST /v1/events`: each is rejected alone
with its line or index and a reason, the same way on both databases, and every good one is stored."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

from engine.cli import main
from engine.db.schema import customers, events
from engine.ingest.writer import ingest_events

NOW = datetime(2026, 11, 2, tzinfo=UTC)
TS = "2026-11-01T10:00:00Z"


def good(n: int) -> str:
    return json.dumps({"type": "track", "customer_id": f"g{n}", "event": "viewed", "timestamp": TS})


def track(**fields: object) -> str:
    return json.dumps({"type": "track", "customer_id": "x", "event": "viewed", "timestamp": TS, **fields})


def ident(**traits: object) -> str:
    return json.dumps({"type": "identify", "customer_id": "x", "timestamp": TS, "traits": traits})


#: each bad line (as text) and the words its reason must hold
BAD: dict[str, tuple[str, str]] = {
    "surrogate id": (track(customer_id="x\udc00"), "'customer_id' holds a lone surrogate"),
    "surrogate property": (track(properties={"p": "a\ud800b"}), "'properties.p' holds a lone surrogate"),
    "deep nesting": (
        '{"type":"track","customer_id":"x","event":"e","timestamp":"'
        + TS
        + '","properties":{"p":'
        + "[" * 1024
        + "]" * 1024
        + "}}",
        "nest",
    ),
    "year 1 with offset": (track(timestamp="0001-01-01T00:00:00+01:00"), "out of range"),
    "year 9999 with offset": (track(timestamp="9999-12-31T23:00:00-05:00"), "out of range"),
    "NUL in customer_id": (track(customer_id="x\x00y"), "'customer_id' holds a NUL"),
    "NUL in event": (track(event="e\x00"), "'event' holds a NUL"),
    "NUL in message_id": (track(message_id="m\x00"), "'message_id' holds a NUL"),
    "NUL in a property": (track(properties={"p": "\x00"}), "holds a NUL"),
    "1e400": (track().replace('"timestamp"', '"properties": {"v": 1e400}, "timestamp"'), "too large"),
    "long email": (ident(email="a" * 310 + "@example.com"), "trait 'email' is longer than 320"),
    "long first name": (ident(first_name="A" * 256), "trait 'first_name' is longer than 255"),
    "long phone": (ident(phone="1" * 65), "trait 'phone' is longer than 64"),
    "long locale": (ident(locale="e" * 33), "trait 'locale' is longer than 32"),
    "long referral code": (ident(referral_code="R" * 33), "trait 'referral_code' is longer than 32"),
    "bad address": (ident(email="not an address"), "not a valid email address"),
}


def stored(db: Engine) -> tuple[list[str], int]:
    with db.connect() as conn:
        ids = sorted(r[0] for r in conn.execute(select(customers.c.external_id)))
        return ids, conn.execute(select(func.count()).select_from(events)).scalar_one()


@pytest.mark.parametrize("kind", list(BAD))
def test_a_bad_line_is_reported_alone_and_every_good_line_is_stored(
    db_url: str,
    db: Engine,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    kind: str,
) -> None:
    line, words = BAD[kind]
    path = tmp_path / "mixed.jsonl"
    path.write_bytes("\n".join([good(1), line, good(2)]).encode("utf-8", "surrogatepass") + b"\n")
    monkeypatch.setenv("JOURNEY_DATABASE_URL", db_url)
    assert main(["ingest", str(path), "--chunk-size", "1"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    first = err.splitlines()[0]
    assert first.startswith(f"{path}:2: ") and words in first, first
    assert stored(db) == (["g1", "g2"], 2)


def test_a_byte_that_is_not_utf8_fails_its_line_alone(
    db_url: str,
    db: Engine,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / "latin1.jsonl"
    latin1 = track(properties={"city": "Köln"}).replace("\\u00f6", "ö").encode("latin-1")
    path.write_bytes(b"\n".join([good(1).encode(), latin1, good(2).encode()]) + b"\n")
    monkeypatch.setenv("JOURNEY_DATABASE_URL", db_url)
    assert main(["ingest", str(path)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith(f"{path}:2: not UTF-8: byte 0xf6 at column ")
    assert stored(db) == (["g1", "g2"], 2)


@pytest.mark.parametrize("kind", [k for k in BAD if k != "deep nesting"])
def test_a_bad_item_of_a_batch_is_rejected_with_its_index(db: Engine, kind: str) -> None:
    bad = json.loads(track(properties={"v": float("inf")})) if kind == "1e400" else json.loads(BAD[kind][0])
    result = ingest_events(db, [json.loads(good(1)), bad, json.loads(good(2))], received_at=NOW)
    ((index, reason),) = result.rejected
    assert index == 1 and (
        BAD[kind][1] in reason or kind == "1e400" and "not a number JSON can carry" in reason
    )
    assert stored(db) == (["g1", "g2"], 2)
