"""Events in: identify and track, idempotent, order-independent, bad lines reported and skipped."""

from __future__ import annotations

import io
import json
import random
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from engine.cli import main
from engine.db.schema import customers, event_summary, events
from engine.events import InternalEvent, record_events
from engine.ingest.writer import ingest_events, ingest_file

NOW = datetime(2026, 11, 2, tzinfo=UTC)


def ident(cid: str, ts: str, **traits: Any) -> dict[str, Any]:
    return {"type": "identify", "customer_id": cid, "timestamp": ts, "traits": traits}


def track(cid: str, name: str, ts: str, mid: str | None = None, **props: Any) -> dict[str, Any]:
    item: dict[str, Any] = {
        "type": "track",
        "customer_id": cid,
        "event": name,
        "timestamp": ts,
        "properties": props,
    }
    if mid:
        item["message_id"] = mid
    return item


def customer(db: Engine, cid: str) -> Any:
    with db.connect() as conn:
        return conn.execute(select(customers).where(customers.c.external_id == cid)).first()


def summary(db: Engine) -> list[tuple[Any, ...]]:
    with db.connect() as conn:
        rows = conn.execute(
            select(
                customers.c.external_id,
                event_summary.c.name,
                event_summary.c.first_at,
                event_summary.c.last_at,
                event_summary.c.count,
                event_summary.c.last_properties,
            )
            .join(customers, customers.c.id == event_summary.c.customer_id)
            .order_by(customers.c.external_id, event_summary.c.name)
        )
        return [tuple(r) for r in rows]


def test_identify_creates_and_merges_traits(db: Engine) -> None:
    ingest_events(
        db,
        [
            ident(
                "c-1",
                "2026-11-01T10:00:00Z",
                email="ada@example.com",
                first_name="Ada",
                plan="free",
                timezone="Europe/Berlin",
            )
        ],
        received_at=NOW,
    )
    ingest_events(db, [ident("c-1", "2026-11-01T11:00:00Z", plan="gold", city="Berlin")], received_at=NOW)
    c = customer(db, "c-1")
    assert (c.email, c.first_name, c.timezone) == ("ada@example.com", "Ada", "Europe/Berlin")
    assert c.attributes == {"plan": "gold", "city": "Berlin"}
    assert c.referral_code and len(c.referral_code) == 10


def test_an_older_identify_only_fills_what_is_missing(db: Engine) -> None:
    ingest_events(
        db, [ident("c-1", "2026-11-01T12:00:00Z", email="new@example.com", plan="gold")], received_at=NOW
    )
    ingest_events(
        db,
        [ident("c-1", "2026-11-01T09:00:00Z", email="old@example.com", plan="free", first_name="Ada")],
        received_at=NOW,
    )
    c = customer(db, "c-1")
    assert (c.email, c.first_name, c.attributes["plan"]) == ("new@example.com", "Ada", "gold")


def test_track_for_an_unknown_customer_creates_it(db: Engine) -> None:
    result = ingest_events(
        db, [track("anon-7", "product_viewed", "2026-11-01T10:00:00Z", product_id="p1")], received_at=NOW
    )
    assert result.stored == 1
    assert customer(db, "anon-7").first_seen_at == datetime(2026, 11, 1, 10, tzinfo=UTC)


def test_message_id_makes_ingest_idempotent(
    db: Engine,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    db_url: str,
) -> None:
    path = tmp_path / "events.jsonl"
    lines = [track("c-1", "order_placed", "2026-11-01T10:00:00Z", mid=f"m-{i}", value=i) for i in range(5)]
    lines.append(
        track("c-1", "order_placed", "2026-11-01T10:00:00Z", mid="m-0", value=0)
    )  # duplicate in-file
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    monkeypatch.setenv("JOURNEY_DATABASE_URL", db_url)
    assert main(["ingest", str(path)]) == 0
    assert main(["ingest", str(path)]) == 0
    err = capsys.readouterr().err
    assert "ingested 5 events (1 duplicates)" in err and "ingested 0 events (6 duplicates)" in err
    with db.connect() as conn:
        assert conn.execute(select(func.count()).select_from(events)).scalar() == 5
        assert conn.execute(select(event_summary.c.count)).scalar() == 5


def test_bad_lines_are_reported_and_the_good_ones_stored(
    db_url: str,
    db: Engine,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / "mixed.jsonl"
    path.write_text(
        "\n".join(
            [
                json.dumps(track("a", "cart_updated", "2026-11-01T10:00:00Z")),
                "{not json",
                json.dumps(track("b", "cart_updated", "2026-11-01T10:00:00")),
                json.dumps({"type": "track", "customer_id": "c", "timestamp": "2026-11-01T10:00:00Z"}),
                json.dumps({"type": "page", "customer_id": "c", "timestamp": "2026-11-01T10:00:00Z"}),
                json.dumps(ident("d", "2026-11-01T10:00:00Z", timezone="Mars/Olympus")),
                json.dumps(track("e", "cart_updated", "2026-11-01T10:00:00+01:00")),
            ]
        )
        + "\n"
    )
    monkeypatch.setenv("JOURNEY_DATABASE_URL", db_url)
    assert main(["ingest", str(path)]) == 1
    err = capsys.readouterr().err.splitlines()
    name = str(path)
    assert err[:5] == [
        f"{name}:2: not valid JSON: Expecting property name enclosed in double quotes at column 2",
        f"{name}:3: 'timestamp' '2026-11-01T10:00:00' has no time zone: add Z or +01:00",
        f"{name}:4: a track event needs 'event': the event name, like 'order_placed'",
        f"{name}:5: 'type' must be 'identify' or 'track', not 'page'",
        f"{name}:6: trait 'timezone' 'Mars/Olympus' is not a known time zone (like 'Europe/Berlin')",
    ]
    assert err[5].startswith("ingested 2 events (5 bad lines)")
    with db.connect() as conn:
        assert sorted(r[0] for r in conn.execute(select(customers.c.external_id))) == ["a", "e"]


def test_out_of_order_events_give_the_same_summary_as_sorted(db: Engine) -> None:
    rng = random.Random(3)
    stream = [
        track(
            f"c{i % 7}",
            rng.choice(["product_viewed", "cart_updated", "order_placed"]),
            f"2026-11-01T{rng.randrange(0, 24):02d}:{rng.randrange(60):02d}:00Z",
            mid=f"m{i}",
            n=i,
        )
        for i in range(300)
    ]
    ordered = sorted(stream, key=lambda e: (e["timestamp"], e["message_id"]))
    ingest_events(db, ordered, received_at=NOW, chunk_size=50)
    in_order = summary(db)
    from tests.support.services import truncate as _truncate

    _truncate(db)
    shuffled = stream[:]
    rng.shuffle(shuffled)
    ingest_events(db, shuffled, received_at=NOW, chunk_size=37)
    # the latest properties on a tie of timestamps may differ (the later-stored event wins); compare the rest
    assert [r[:5] for r in summary(db)] == [r[:5] for r in in_order]


def test_summary_keeps_counts_first_last_and_latest_properties(db: Engine) -> None:
    ingest_events(
        db,
        [
            track("c", "order_placed", "2026-11-01T10:00:00Z", value=1),
            track("c", "order_placed", "2026-11-03T10:00:00Z", value=3),
            track("c", "order_placed", "2026-11-02T10:00:00Z", value=2),
        ],
        received_at=NOW,
    )
    (row,) = summary(db)
    assert row[1:] == (
        "order_placed",
        datetime(2026, 11, 1, 10, tzinfo=UTC),
        datetime(2026, 11, 3, 10, tzinfo=UTC),
        3,
        {"value": 3},
    )


def test_a_referral_is_credited_once_and_never_to_oneself(db: Engine) -> None:
    ingest_events(
        db,
        [ident("ref", "2026-11-01T10:00:00Z", email="r@example.com", referral_code="FRIEND01")],
        received_at=NOW,
    )
    assert customer(db, "ref").referral_code == "FRIEND01"
    ingest_events(
        db,
        [
            ident("new", "2026-11-01T11:00:00Z", referred_by="FRIEND01"),
            ident("new", "2026-11-01T12:00:00Z", referred_by="FRIEND01"),
            ident("ref", "2026-11-01T12:00:00Z", referred_by="FRIEND01"),
            ident("other", "2026-11-01T12:00:00Z", referred_by="NOSUCHCODE"),
        ],
        received_at=NOW,
    )
    ingest_events(
        db, [track("new", "order_placed", "2026-11-02T10:00:00Z", referred_by="FRIEND01")], received_at=NOW
    )
    with db.connect() as conn:
        credited = conn.execute(
            select(customers.c.external_id, events.c.properties)
            .join(customers, customers.c.id == events.c.customer_id)
            .where(events.c.name == "referral_converted")
        ).all()
    assert credited == [("ref", {"referred_customer": "new", "code": "FRIEND01"})]
    assert customer(db, "new").referred_by == customer(db, "ref").id
    assert customer(db, "ref").referred_by is None


def test_record_events_updates_the_summary(db: Engine) -> None:
    ingest_events(db, [ident("c", "2026-11-01T10:00:00Z")], received_at=NOW)
    cid = customer(db, "c").id
    with db.begin() as conn:
        n = record_events(
            conn, [InternalEvent(cid, "email_opened", NOW, {"send_id": 1}, "email_opened:1")] * 2
        )
    assert n == 1
    assert summary(db)[0][1] == "email_opened"


def test_recorded_events_fold_like_ingested_ones_keyed_or_not(db: Engine) -> None:
    """A worker's sent events (all keyed: PostgreSQL records them in one statement) and the same
    events without keys (the general path) leave the same summary: first and last time, count,
    the latest properties; a key seen before, or twice in a batch, is recorded once."""
    ingest_events(
        db, [ident("k", "2026-11-01T10:00:00Z"), ident("p", "2026-11-01T10:00:00Z")], received_at=NOW
    )
    k, p = customer(db, "k").id, customer(db, "p").id
    at = [NOW - timedelta(hours=h) for h in (3, 1, 2)]
    with db.begin() as conn:
        first = [InternalEvent(k, "email_sent", at[0], {"send_id": 1}, "email_sent:k1")]
        assert record_events(conn, first) == 1
    with db.begin() as conn:
        batch = [
            InternalEvent(k, "email_sent", at[0], {"send_id": 1}, "email_sent:k1"),  # seen before
            InternalEvent(k, "email_sent", at[1], {"send_id": 2, "subject": "Zoé"}, "email_sent:k2"),
            InternalEvent(k, "email_sent", at[2], {"send_id": 3}, "email_sent:k3"),
            InternalEvent(k, "email_sent", at[2], {"send_id": 9}, "email_sent:k3"),  # twice: the first
            InternalEvent(k, "webhook_sent", at[2], {"send_id": 4}, "webhook_sent:k4"),
        ]
        assert record_events(conn, batch) == 3
    with db.begin() as conn:
        plain = [InternalEvent(p, e.name, e.ts, e.properties) for e in first + batch[1:3] + batch[4:]]
        assert record_events(conn, plain) == 4
    rows = {(r[0], r[1]): r[2:] for r in summary(db)}
    for cid in ("k", "p"):
        first_at, last_at, count, props = rows[(cid, "email_sent")]
        assert (first_at, last_at, count) == (at[0], at[1], 3)
        assert props == {"send_id": 2, "subject": "Zoé"}
        assert rows[(cid, "webhook_sent")][2:] == (1, {"send_id": 4})
    with db.connect() as conn:
        assert (
            conn.execute(
                select(func.count()).select_from(events).where(events.c.customer_id == k)
            ).scalar_one()
            == 4
        )


def test_ingest_reads_stdin(db: Engine) -> None:
    stream = io.StringIO(json.dumps(track("s", "cart_updated", "2026-11-01T10:00:00Z")) + "\n\n")
    errors: list[str] = []
    result = ingest_file(db, stream, name="-", received_at=NOW, on_error=errors.append)
    assert (result.stored, errors) == (1, [])


def test_batches_stored_on_the_writer_thread_give_the_same_result_as_one_batch(db: Engine) -> None:
    rng = random.Random(5)
    lines: list[str] = []
    for i in range(120):
        cid = f"c{rng.randrange(9)}"
        ts = f"2026-11-0{rng.randrange(1, 4)}T{rng.randrange(24):02d}:00:00Z"
        if i % 10 == 0:
            lines.append(json.dumps(ident(cid, ts, email=f"{cid}-{i}@example.com", plan=f"p{i}")))
        else:
            mid = f"m{rng.randrange(90)}"  # duplicates, inside a batch and across batches
            lines.append(
                json.dumps(track(cid, rng.choice(["cart_updated", "order_placed"]), ts, mid=mid, n=i))
            )
        if i % 37 == 0:
            lines.append("{broken")
    text = "\n".join(lines) + "\n"

    def run(chunk_size: int) -> tuple[Any, ...]:
        errors: list[str] = []
        result = ingest_file(
            db, io.StringIO(text), name="f", received_at=NOW, on_error=errors.append, chunk_size=chunk_size
        )
        with db.connect() as conn:
            people = conn.execute(
                select(
                    customers.c.external_id,
                    customers.c.email,
                    customers.c.attributes,
                    customers.c.first_seen_at,
                ).order_by(customers.c.external_id)
            ).all()
        return (
            result.stored,
            result.duplicates,
            result.identified,
            errors,
            people,
            [r[:5] for r in summary(db)],
        )

    one_batch = run(10_000)
    from tests.support.services import truncate as _truncate

    _truncate(db)
    assert run(4) == one_batch
    assert one_batch[0] + one_batch[1] == 108 and len(one_batch[3]) == 4


def test_a_failing_batch_on_the_writer_thread_fails_the_ingest(
    db: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    import engine.ingest.store as ingest_mod

    calls: list[int] = []
    real = ingest_mod._store_batch_once

    def flaky(engine: Engine, batch: Any, received_at: datetime, **kw: Any) -> Any:
        calls.append(len(batch))
        if len(calls) == 2:
            raise RuntimeError("the database went away")
        return real(engine, batch, received_at, **kw)

    monkeypatch.setattr(ingest_mod, "_store_batch_once", flaky)
    items = [track(f"c{i}", "cart_updated", "2026-11-01T10:00:00Z", mid=f"m{i}") for i in range(20)]
    before = sys.getswitchinterval()
    with pytest.raises(RuntimeError, match="went away"):
        ingest_events(db, items, received_at=NOW, chunk_size=3)
    # the writer hands the interpreter over more often while it runs, and puts it back even when
    # it fails: a service that ingests must not be left switching threads 50 times as often
    assert sys.getswitchinterval() == before
    again = ingest_events(db, items, received_at=NOW, chunk_size=3)
    assert again.stored + again.duplicates == 20 and again.stored > 0
    assert sys.getswitchinterval() == before


def test_a_referral_code_someone_else_owns_is_not_taken(db: Engine) -> None:
    ingest_events(db, [ident("a", "2026-11-01T10:00:00Z", referral_code="SHARED01")], received_at=NOW)
    ingest_events(
        db,
        [
            ident("b", "2026-11-01T11:00:00Z", referral_code="SHARED01"),  # new customer, code taken
            ident("c", "2026-11-01T11:00:00Z", referral_code="FRESH001"),  # two new customers want
            ident("d", "2026-11-01T11:00:00Z", referral_code="FRESH001"),  # one free code: first wins
            ident("a", "2026-11-01T12:00:00Z", referral_code="FRESH001"),  # known customer, code taken
        ],
        received_at=NOW,
    )
    codes = {cid: customer(db, cid).referral_code for cid in "abcd"}
    assert codes["a"] == "SHARED01" and codes["c"] == "FRESH001"
    assert len(codes["b"]) == len(codes["d"]) == 10 and len(set(codes.values())) == 4


def test_tabs_newlines_backslashes_and_unicode_are_stored_as_sent(db: Engine) -> None:
    odd = "tab\there, new\nline, back\\slash, cr\r, é, \\N"
    ingest_events(
        db,
        [
            ident(odd, "2026-11-01T10:00:00Z", first_name=odd, note=odd),
            track(odd, "cart\\updated\t", "2026-11-01T10:00:00Z", mid=odd, text=odd),
        ],
        received_at=NOW,
    )
    person = customer(db, odd)
    assert (person.first_name, person.attributes) == (odd, {"note": odd})
    with db.connect() as conn:
        assert conn.execute(select(events.c.name, events.c.message_id, events.c.properties)).one() == (
            "cart\\updated\t",
            odd,
            {"text": odd},
        )


def test_numbers_are_stored_exactly_and_nan_is_refused_with_its_line(db: Engine) -> None:
    def line(name: str, props: str) -> str:
        head = {"type": "track", "customer_id": "n", "event": name, "timestamp": "2026-11-01T10:00:00Z"}
        return json.dumps(head)[:-1] + f',"message_id":"{name}","properties":{props}}}'

    text = "\n".join(
        [
            line(
                "order_placed",
                '{"big":123456789012345678901234567890,"neg":-9223372036854775809,'
                '"f":0.1,"e":1e-7,"u":"\\u00e9\\ud83d\\ude00"}',
            ),
            line("cart_updated", '{"x":NaN}'),
            line("cart_cleared", '{"x":-Infinity}'),
            line("product_viewed", '{"sku":"A1"}'),
            '{"type":"identify","customer_id":123456789012345678901,"timestamp":"2026-11-01T10:00:00Z"}',
        ]
    )
    errors: list[str] = []
    result = ingest_file(db, io.StringIO(text + "\n"), name="f", received_at=NOW, on_error=errors.append)
    assert errors == [
        "f:2: not valid JSON: NaN is not a JSON number",
        "f:3: not valid JSON: -Infinity is not a JSON number",
    ]
    assert result.stored == 2
    with db.connect() as conn:
        stored = dict(conn.execute(select(events.c.name, events.c.properties)).all())
    assert stored == {
        "order_placed": {
            "big": 123456789012345678901234567890,
            "neg": -9223372036854775809,
            "f": 0.1,
            "e": 1e-7,
            "u": "é\U0001f600",
        },
        "product_viewed": {"sku": "A1"},
    }
    assert customer(db, "123456789012345678901") is not None  # a number as id, to the last digit


def test_a_batch_that_hits_a_deadlock_is_stored_again(db: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    import psycopg
    from sqlalchemy.exc import DBAPIError

    import engine.ingest.store as ingest_mod

    calls: list[int] = []
    real = ingest_mod._store_batch_once

    def deadlock_once(engine: Engine, batch: Any, received_at: datetime, **kw: Any) -> Any:
        calls.append(len(batch))
        if len(calls) == 2:  # a batch on a writer thread: PostgreSQL chose it as the victim
            error = psycopg.errors.DeadlockDetected("deadlock detected")
            raise DBAPIError.instance(None, None, error, psycopg.Error)
        return real(engine, batch, received_at, **kw)

    monkeypatch.setattr(ingest_mod, "_store_batch_once", deadlock_once)
    items = [track(f"c{i % 4}", "cart_updated", f"2026-11-01T10:{i:02d}:00Z", mid=f"m{i}") for i in range(20)]
    result = ingest_events(db, items, received_at=NOW, chunk_size=3)
    assert (result.stored, result.duplicates, len(calls)) == (20, 0, 8)
    assert [(r[0], r[4]) for r in summary(db)] == [(f"c{i}", 5) for i in range(4)]
