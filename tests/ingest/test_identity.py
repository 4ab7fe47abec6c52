"""Anonymous visitors and the identity merge (CONTRACT 9): an anonymous profile has events, a
summary and a stage and is never mailed; signing up merges it into the known customer, whose
journeys then see what the visitor did; any interleaving of the same calls gives the same result
as the sorted replay."""

from __future__ import annotations

import email
import json
import random
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, select

from engine.cli import main
from engine.db import make_engine
from engine.db.schema import customer_aliases, customers, event_summary
from engine.evaluate.tick import run_tick
from engine.ingest.writer import ingest_events
from engine.rules.loader import load_ruleset
from tests.support.services import ROOT

T0 = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)
M = timedelta(minutes=1)


def iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


Env = tuple[pytest.MonkeyPatch, pytest.CaptureFixture[str], Path]


@pytest.fixture
def cli(
    db_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> Iterator[Env]:
    monkeypatch.setenv("JOURNEY_DATABASE_URL", db_url)
    monkeypatch.setenv("JOURNEY_EMAIL_URL", f"file://{tmp_path / 'outbox'}")
    monkeypatch.setenv("JOURNEY_RULES_DIR", str(ROOT / "rules"))
    monkeypatch.setenv("JOURNEY_TEMPLATES_DIR", str(ROOT / "message_templates"))
    monkeypatch.setenv("JOURNEY_SECRET_KEY", "test-secret")
    monkeypatch.delenv("JOURNEY_BROKER_URL", raising=False)
    yield monkeypatch, capsys, tmp_path


def run(env: Env, *argv: str) -> tuple[int, str, str]:
    _, capsys, _ = env
    capsys.readouterr()
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def ingest(env: Env, name: str, *items: dict[str, Any]) -> None:
    path = env[2] / name
    path.write_text("".join(json.dumps(i) + "\n" for i in items))
    status, _, err = run(env, "ingest", str(path))
    assert status == 0, err


def outbox(env: Env) -> list[Message]:
    folder = env[2] / "outbox"
    files = sorted(folder.glob("*.eml")) if folder.is_dir() else []
    return [email.message_from_bytes(p.read_bytes()) for p in files]


def text_of(msg: Message) -> str:
    parts = [p for p in msg.walk() if p.get_content_type() in ("text/plain", "text/html")]
    return "\n".join(str(p.get_payload(decode=True), "utf-8") for p in parts)  # type: ignore[arg-type]


VIEW = {
    "type": "track",
    "anonymousId": "visitor-9",
    "event": "Product Viewed",
    "messageId": "v-1",
    "timestamp": iso(T0),
    "properties": {"name": "Red Trail Shoes", "url": "https://example.com/p/red", "price": 89},
}
CART = {
    "type": "track",
    "anonymousId": "visitor-9",
    "event": "Product Added",
    "messageId": "v-2",
    "timestamp": iso(T0 + 5 * M),
    "properties": {"items": [{"name": "Red Trail Shoes", "qty": 1, "price": 89}], "cart_value": 89},
}
SIGNUP = (
    {
        "type": "identify",
        "userId": "ada",
        "anonymousId": "visitor-9",
        "messageId": "s-1",
        "timestamp": iso(T0 + 20 * M),
        "traits": {"email": "ada@example.com", "first_name": "Ada"},
    },
    {
        "type": "track",
        "userId": "ada",
        "anonymousId": "visitor-9",
        "event": "Signed Up",
        "messageId": "s-2",
        "timestamp": iso(T0 + 20 * M),
    },
)


def test_an_anonymous_visitors_browse_and_cart_reach_them_once_they_sign_up(cli: Env) -> None:
    ingest(cli, "visit.jsonl", VIEW, CART)
    assert run(cli, "tick", "--now", iso(T0 + 10 * M))[0] == 0
    # an anonymous profile has a stage like anyone, and gets no email: it has no address
    status, out, _ = run(cli, "explain", "visitor-9", "--now", iso(T0 + 10 * M))
    assert status == 0 and "stage decision" in out
    assert outbox(cli) == []
    ingest(cli, "signup.jsonl", *SIGNUP)
    for minutes in (30, 70, 24 * 60 + 90):
        assert run(cli, "tick", "--now", iso(T0 + minutes * M))[0] == 0
    # the same signup again (an SDK retry, a replayed export): nothing new
    ingest(cli, "again.jsonl", *SIGNUP, VIEW)
    assert run(cli, "tick", "--now", iso(T0 + 24 * 60 * M + 100 * M))[0] == 0
    mails = outbox(cli)
    assert {m["To"] for m in mails} == {"Ada <ada@example.com>"}
    subjects = [str(m["X-Journey-Send-Key"]).split(":")[0] for m in mails]
    assert subjects.count("welcome_series") == 1
    carts = [m for m in mails if str(m["X-Journey-Send-Key"]).startswith("cart_abandonment")]
    assert len(carts) == 2  # the reminder, and the last chance a day later
    assert all("Red Trail Shoes" in text_of(m) for m in carts)
    status, out, _ = run(cli, "explain", "ada", "--now", iso(T0 + 26 * 60 * M))
    assert status == 0
    assert f"merged id visitor-9 at {(T0 + 20 * M).isoformat()}" in out
    status, out, _ = run(cli, "explain", "visitor-9", "--now", iso(T0 + 26 * 60 * M))
    assert status == 0 and out.startswith("visitor-9 was merged into customer ada")


def test_a_known_customer_takes_the_stage_of_the_visitor_merged_into_them(cli: Env) -> None:
    """A merge is the only news about the customer (an alias call, no event of a stage's): the next
    tick still recomputes their stage, from the events the visitor brought."""
    known = {"type": "identify", "userId": "bo", "messageId": "i-1", "timestamp": iso(T0 - 60 * M)}
    ingest(cli, "known.jsonl", {**known, "traits": {"email": "bo@example.com"}})
    assert run(cli, "tick", "--now", iso(T0 - 50 * M))[0] == 0
    ingest(cli, "visit.jsonl", VIEW, CART)
    assert run(cli, "tick", "--now", iso(T0 + 10 * M))[0] == 0
    status, out, _ = run(cli, "explain", "bo", "--now", iso(T0 + 10 * M))
    assert status == 0 and "stage awareness" in out
    alias = {"type": "alias", "userId": "bo", "previousId": "visitor-9", "messageId": "a-1"}
    ingest(cli, "alias.jsonl", {**alias, "timestamp": iso(T0 + 20 * M)})
    assert run(cli, "tick", "--now", iso(T0 + 25 * M))[0] == 0
    status, out, _ = run(cli, "explain", "bo", "--now", iso(T0 + 25 * M))
    assert status == 0 and "stage decision" in out


# -- order independence -------------------------------------------------------------------------

USERS = ("u1", "u2")
ANONS = {"a1": "u1", "a2": "u2", "a3": "u1"}


def calls(seed: int) -> list[dict[str, Any]]:
    """A small shop's calls: anonymous and known tracks, merges at signup, and an alias of u2
    into u1, each at its own time."""
    rng = random.Random(seed)
    out: list[dict[str, Any]] = []
    t = T0
    for i in range(rng.randint(6, 18)):
        t += timedelta(minutes=rng.randint(1, 30))
        kind = rng.random()
        who = rng.choice([*USERS, *ANONS])
        key = "userId" if who in USERS else "anonymousId"
        if kind < 0.6:
            out.append(
                {
                    "type": "track",
                    key: who,
                    "event": rng.choice(["Product Viewed", "Product Added", "Order Completed"]),
                    "messageId": f"m-{i}",
                    "timestamp": iso(t),
                    "properties": {"n": i},
                }
            )
        elif kind < 0.9:
            anon = rng.choice(list(ANONS))
            user = ANONS[anon]
            # traits that do not conflict: which of two customers' different names survives a merge
            # depends on when each was given, not only on the merge
            traits = (
                {"email": "u1@example.com"} if user == "u1" and rng.random() < 0.5 else {"first_name": "Ada"}
            )
            out.append(
                {
                    "type": "identify",
                    "userId": user,
                    "anonymousId": anon,
                    "timestamp": iso(t),
                    "traits": traits,
                }
            )
        else:
            out.append({"type": "alias", "previousId": "u2", "userId": "u1", "timestamp": iso(t)})
    return out


def state(eng: Engine) -> dict[str, Any]:
    with eng.connect() as conn:
        people = {
            r.external_id: (r.email, r.first_name, r.stage)
            for r in conn.execute(
                select(customers.c.external_id, customers.c.email, customers.c.first_name, customers.c.stage)
            )
        }
        summary = sorted(
            (
                r.external_id,
                r.name,
                r.count,
                r.first_at,
                r.last_at,
                json.dumps(r.last_properties, sort_keys=True),
            )
            for r in conn.execute(
                select(customers.c.external_id, event_summary).join(
                    customers, customers.c.id == event_summary.c.customer_id
                )
            )
        )
        aliases = sorted(
            (r.alias, r.external_id, r.merged_at)
            for r in conn.execute(
                select(customer_aliases.c.alias, customers.c.external_id, customer_aliases.c.merged_at).join(
                    customers, customers.c.id == customer_aliases.c.customer_id
                )
            )
        )
    return {"customers": people, "summary": summary, "aliases": aliases}


def replay(template: Path, work: Path, batches: list[list[dict[str, Any]]]) -> dict[str, Any]:
    path = work / "replay.db"
    shutil.copyfile(template, path)
    eng = make_engine(f"sqlite:///{path}")
    try:
        for batch in batches:
            result = ingest_events(eng, batch, received_at=T0 + timedelta(days=3))
            assert not result.rejected, result.rejected
        run_tick(eng, load_ruleset(ROOT / "rules"), now=T0 + timedelta(days=2))
        return state(eng)
    finally:
        eng.dispose()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10_000), order=st.integers(0, 10_000), cuts=st.integers(1, 6))
def test_any_interleaving_of_calls_and_merges_gives_the_sorted_replays_result(
    sqlite_template: Path, tmp_path: Path, seed: int, order: int, cuts: int
) -> None:
    items = calls(seed)
    sorted_state = replay(sqlite_template, tmp_path, [[item] for item in items])
    shuffled = items[:]
    random.Random(order).shuffle(shuffled)
    size = max(1, len(shuffled) // cuts)
    batches = [shuffled[i : i + size] for i in range(0, len(shuffled), size)]
    assert replay(sqlite_template, tmp_path, batches) == sorted_state


def test_simulate_replays_segment_lines_with_the_merge_as_ingest_would(cli: Env) -> None:
    path = cli[2] / "export.jsonl"
    path.write_text("".join(json.dumps(i) + "\n" for i in (SIGNUP[1], VIEW, SIGNUP[0], CART)))
    status, out, err = run(
        cli, "simulate", str(path), "--from", iso(T0), "--to", iso(T0 + timedelta(days=2)), "--step", "1h"
    )
    assert status == 0, err
    sent = {line.split()[1]: int(line.split()[2]) for line in out.splitlines() if line[:4] == "2026"}
    assert sent.get("welcome_series") == 1 and sent.get("cart_abandonment") == 1


def test_erasing_a_customer_forgets_the_ids_merged_into_it(cli: Env) -> None:
    ingest(cli, "visit.jsonl", VIEW, *SIGNUP)
    assert run(cli, "explain", "visitor-9", "--now", iso(T0 + 30 * M))[0] == 0
    assert run(cli, "customers", "erase", "ada", "--yes")[0] == 0
    status, _, err = run(cli, "explain", "visitor-9", "--now", iso(T0 + 30 * M))
    assert status == 1 and "no customer 'visitor-9'" in err
