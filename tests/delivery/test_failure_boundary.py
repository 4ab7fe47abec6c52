"""A send's failure boundary: any exception while one send is rendered, composed or handed over
fails that send alone, with its reason; the rest of the batch is sent, and nothing is re-leased
forever."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select, update

from engine.cli import main
from engine.db.schema import sends
from engine.delivery.boundary import MAX_ERROR_ATTEMPTS
from engine.delivery.context import context_for as real_context_for
from engine.delivery.deliverer import Deliverer
from engine.delivery.dispatch import dispatch_due
from engine.delivery.policies import MAX_ATTEMPTS
from engine.settings import Settings
from tests.support.kit import CART_RULE, H, Kit
from tests.support.services import utc
from tests.support.smtp import Recorder, smtp_server

T0 = utc("2026-11-01T10:00:00")

#: template bodies that fail for one customer (Ivy) while the others' render; each escaped the
#: render before, and stopped the whole batch
BROKEN = {
    "IndexError": "{{ '{0}'.format() }}",
    "KeyError": "{{ '%(a)s' % {} }}",
    "LookupError": "{{ 'a'.encode('nope') }}",
    "RecursionError": "{% macro m() %}{{ m() }}{% endmacro %}{{ m() }}",
    "self-include": "{% include 'cart_reminder.txt.j2' %}",
    "huge number": "{{ (10**100000)|string }}",
    "huge string": "{{ 'a' * 10**9 }}",
    "huge list": "{{ [1] * 10**8 }}",
    "wide format": "{{ '{:>999999999}'.format(1) }}",
    "silent loop": "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
}


@pytest.fixture
def smtp() -> Iterator[tuple[Recorder, int]]:
    with smtp_server() as server:
        yield server


@pytest.fixture
def shop(db: Engine, tmp_path: Path, smtp: tuple[Recorder, int]) -> tuple[Kit, Settings, Recorder]:
    kit = Kit(db, tmp_path)
    kit.rules(CART_RULE)
    recorder, port = smtp
    settings = Settings(
        database_url=str(db.url),
        email_url=f"smtp://127.0.0.1:{port}",
        rules_dir=tmp_path / "rules",
        templates_dir=tmp_path / "templates",
        secret_key="test-secret",
    )
    kit.tick(T0 - H)
    for cid in ("ada", "ivy", "zoe"):
        kit.identify(cid, T0 - H, first_name=cid.title(), email=f"{cid}@example.com")
        kit.track(cid, "cart_updated", T0)
    kit.tick(T0 + 2 * H)
    return kit, settings, recorder


def dispatch(kit: Kit, settings: Settings, at: Any, *, max_seconds: float = 2.0) -> dict[str, Any]:
    deliverer = Deliverer.create(kit.engine, settings, kit.ruleset)
    deliverer.templates.max_seconds = max_seconds
    return dispatch_due(kit.engine, settings, now=at, deliverer=deliverer).as_dict()


def by_customer(kit: Kit) -> dict[str, tuple[str, str | None, str | None, int]]:
    names = {1: "ada", 2: "ivy", 3: "zoe"}
    with kit.engine.connect() as conn:
        rows = conn.execute(select(sends).where(sends.c.template == "cart_reminder")).all()
    return {
        names.get(r.customer_id, str(r.customer_id)): (r.status, r.reason, r.error, r.attempts) for r in rows
    }


@pytest.mark.parametrize("kind", list(BROKEN))
def test_a_template_that_fails_for_one_customer_fails_that_send_alone(
    shop: tuple[Kit, Settings, Recorder], kind: str
) -> None:
    kit, settings, smtp = shop
    (settings.templates_dir / "cart_reminder.txt.j2").write_text(
        "Hello {{ customer.first_name }}\n{% if customer.first_name == 'Ivy' %}"
        + BROKEN[kind]
        + "{% endif %}"
    )
    figures = dispatch(kit, settings, T0 + 2 * H, max_seconds=0.3)
    assert (figures["sent"], figures["failed"]) == (2, 1)
    rows = by_customer(kit)
    assert {c: r[0] for c, r in rows.items()} == {"ada": "sent", "ivy": "failed", "zoe": "sent"}
    status, reason, error, _ = rows["ivy"]
    assert reason == "template" and error is not None and "cart_reminder.txt.j2" in error
    assert sorted(m["To"] for m in smtp.messages) == ["Ada <ada@example.com>", "Zoe <zoe@example.com>"]
    assert dispatch(kit, settings, T0 + 3 * H)["queued"] == 0  # nothing left sending or re-leased


def test_an_unexpected_exception_retries_a_few_times_then_fails_with_its_reason(
    shop: tuple[Kit, Settings, Recorder], monkeypatch: pytest.MonkeyPatch
) -> None:
    kit, settings, smtp = shop

    def context_for(*args: Any, **kw: Any) -> Any:  # the fault: a bug that hits one customer
        if kw["customer"].email == "ivy@example.com":
            raise RuntimeError("a bug of ours")
        return real_context_for(*args, **kw)

    monkeypatch.setattr("engine.delivery.deliverer.context_for", context_for)
    at = T0 + 2 * H
    figures = dispatch(kit, settings, at)
    assert figures["sent"] == 2
    for attempt in range(1, MAX_ERROR_ATTEMPTS):
        status, reason, error, attempts = by_customer(kit)["ivy"]
        assert (status, reason, attempts) == ("due", "retry", attempt)
        assert error == "RuntimeError: a bug of ours"
        with kit.engine.connect() as conn:
            at = conn.execute(select(sends.c.due_at).where(sends.c.customer_id == 2)).scalar_one()
        at = at if at.tzinfo else at.replace(tzinfo=T0.tzinfo)
        dispatch(kit, settings, at)
    assert by_customer(kit)["ivy"] == ("failed", "error", "RuntimeError: a bug of ours", MAX_ERROR_ATTEMPTS)
    assert len(smtp.messages) == 2


def test_a_send_claimed_again_and_again_without_finishing_is_given_up(
    shop: tuple[Kit, Settings, Recorder],
) -> None:
    kit, settings, smtp = shop
    with kit.engine.begin() as conn:  # a worker died on it each time, after each lease
        conn.execute(update(sends).where(sends.c.customer_id == 2).values(attempts=MAX_ATTEMPTS))
    figures = dispatch(kit, settings, T0 + 2 * H)
    assert (figures["sent"], figures["failed"]) == (2, 1)
    status, reason, error, _ = by_customer(kit)["ivy"]
    assert (status, reason) == ("failed", "gave_up") and error is not None and "claimed" in error


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[str], str]:
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out.splitlines(), out.err


def test_health_and_the_sends_commands_show_failed_and_stuck_sends_and_act_on_them(
    shop: tuple[Kit, Settings, Recorder], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    kit, settings, smtp = shop
    (settings.templates_dir / "cart_reminder.txt.j2").write_text(
        "{% if customer.first_name == 'Ivy' %}{{ '{0}'.format() }}{% endif %}"
    )
    at = T0 + 2 * H
    dispatch(kit, settings, at)
    with kit.engine.begin() as conn:  # zoe's send: claimed by a worker that died on it
        conn.execute(
            update(sends).where(sends.c.customer_id == 3).values(status="sending", lease_until=at - H)
        )
    monkeypatch.setenv("JOURNEY_DATABASE_URL", str(kit.engine.url.render_as_string(hide_password=False)))
    now = (at + 30 * (H / 60)).isoformat()
    code, out, _ = run(capsys, "health", "--now", now, "--allow-no-tick", "--max-tick-age", "1d")
    [line] = [x for x in out if x.startswith("sends: ")]
    assert line == (
        "sends: FAILED: 1 past their lease (stuck); failed in the last hour: 1 template "
        "(journey sends list --status failed|stuck|failing)"
    )
    assert code == 1
    code, out, err = run(capsys, "sends", "list", "--status", "failed", "--now", now)
    [failed] = out
    fields = failed.split("\t")
    assert fields[1:7] == ["cart_abandonment", fields[2], "ivy", "failed", "template", "1"]
    assert "cart_reminder.txt.j2:1: IndexError" in fields[8]
    code, out, _ = run(
        capsys, "sends", "list", "--status", "stuck", "--rule", "cart_abandonment", "--now", now
    )
    assert [x.split("\t")[3] for x in out] == ["zoe"]
    assert run(capsys, "sends", "retry", "--reason", "template", "--now", now)[2] == "1 sends due again now\n"
    assert by_customer(kit)["ivy"][:2] == ("due", None)
    assert run(capsys, "sends", "cancel", fields[0], "--now", now)[2] == "1 sends cancelled\n"
    assert by_customer(kit)["ivy"][:2] == ("cancelled", "manual")
    code, out, _ = run(capsys, "sends", "retry", "--rule", "cart_abandonment", "--now", now)
    assert by_customer(kit)["zoe"][:2] == ("due", None)


def test_an_undefined_variable_at_send_time_fails_the_send_with_a_did_you_mean(
    shop: tuple[Kit, Settings, Recorder],
) -> None:
    kit, settings, _ = shop
    (settings.templates_dir / "cart_reminder.txt.j2").write_text(
        "Hello {{ customer.first_name }}\n"
        "{% if customer.first_name == 'Ivy' %}{{ customer.frist_name }}{% endif %}\n"
        "{% if customer.first_name == 'Zoe' %}{{ evnet.name }}{% endif %}\n"
        "{% for c in [customer] %}{{ c.emial }}{% endfor %}\n"
    )
    dispatch(kit, settings, T0 + 2 * H)
    rows = by_customer(kit)
    assert {c: r[:2] for c, r in rows.items()} == {c: ("failed", "template") for c in ("ada", "ivy", "zoe")}
    assert {c: r[2] for c, r in rows.items()} == {
        "ivy": "cart_reminder.txt.j2:2: undefined variable: 'dict object' has no attribute 'frist_name' "
        "(did you mean 'first_name'?)",
        "zoe": "cart_reminder.txt.j2:3: undefined variable: 'evnet' is undefined (did you mean 'event'?)",
        "ada": "cart_reminder.txt.j2:4: undefined variable: 'dict object' has no attribute 'emial' "
        "(did you mean 'email'?)",
    }
