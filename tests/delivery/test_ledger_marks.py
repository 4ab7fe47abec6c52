"""Each 'sent' mark is committed before the next message leaves; on PostgreSQL it is pipelined
(sent at once, its answer read before the connection's next use), and a mark the server refuses
is an error there, not lost in silence."""

from __future__ import annotations

from contextlib import nullcontext

import pytest
from sqlalchemy import Engine

from engine.delivery.dispatch import claim
from engine.delivery.ledger import Ledger, claim_batch
from tests.delivery.test_dispatch import NOW, add_customer, add_send, status_of


def test_a_mark_is_committed_before_sent_returns(db: Engine) -> None:
    ids = [add_send(db, add_customer(db, n)) for n in range(2)]
    claim(db, now=NOW, limit=10)
    claim_batch(db, ids, NOW)
    with Ledger.open(db) as ledger:
        ledger.sent(ids[0], sent_at=NOW, subject="Hi", response="250 ok", message_id="<a@x>")
        ledger.conn  # noqa: B018 - the connection's next use: the pipelined answer is read
        # another connection sees it, while the batch is still running
        assert status_of(db, ids[0])[0] == "sent"
        assert status_of(db, ids[1])[0] == "sending"


@pytest.mark.postgres
def test_a_mark_the_server_refuses_is_an_error(db: Engine) -> None:
    if db.dialect.name != "postgresql":
        pytest.skip("the pipelined mark is PostgreSQL's")
    send_id = add_send(db, add_customer(db, 1))
    claim(db, now=NOW, limit=10)
    claim_batch(db, [send_id], NOW)
    too_long = "<" + "x" * 300 + "@x>"  # message_id is VARCHAR(255): the server refuses the UPDATE
    with pytest.raises(OSError, match="'sent' mark was not written"), Ledger.open(db) as ledger:
        ledger.sent(send_id, sent_at=NOW, subject="Hi", response="250", message_id=too_long)
        ledger.conn  # noqa: B018
    assert status_of(db, send_id)[0] == "sending"  # taken back after the lease, sent again


def test_marks_in_a_row_are_all_committed_and_a_refused_later_one_is_still_an_error(db: Engine) -> None:
    ids = [add_send(db, add_customer(db, n)) for n in range(4)]
    claim(db, now=NOW, limit=10)
    claim_batch(db, ids, NOW)
    bad = "<" + "x" * 300 + "@x>" if db.dialect.name == "postgresql" else None
    refused = pytest.raises(OSError, match="'sent' mark was not written") if bad else nullcontext()
    with refused, Ledger.open(db) as ledger:
        for n, send_id in enumerate(ids[:3]):
            ledger.sent(send_id, sent_at=NOW, subject="Hi", response="250", message_id=f"<{n}@x>")
        ledger.conn  # noqa: B018 - every mark's answer is read
        assert [status_of(db, i)[0] for i in ids] == ["sent", "sent", "sent", "sending"]
        # the fourth mark goes on the other connection than the third (PostgreSQL)
        ledger.sent(ids[3], sent_at=NOW, subject="Hi", response="250", message_id=bad or "<3@x>")
    assert status_of(db, ids[3])[0] == ("sending" if bad else "sent")


@pytest.mark.postgres
def test_the_mark_is_prepared_once_per_session_and_kept_across_batches(db: Engine) -> None:
    if db.dialect.name != "postgresql":
        pytest.skip("the prepared mark is PostgreSQL's")
    ids = [add_send(db, add_customer(db, n)) for n in range(6)]
    claim(db, now=NOW, limit=10)
    claim_batch(db, ids, NOW)
    for batch in (ids[:3], ids[3:]):  # the second batch takes the same pooled connections again
        with Ledger.open(db) as ledger:
            for send_id in batch:
                ledger.sent(send_id, sent_at=NOW, subject="Hi", response="250", message_id=f"<{send_id}@x>")
            prepared = ledger.conn.exec_driver_sql(
                "SELECT count(*) FROM pg_prepared_statements WHERE name = 'journey_mark_sent'"
            ).scalar_one()
            assert prepared == 1
    assert [status_of(db, i)[0] for i in ids] == ["sent"] * 6
    # a session that lost its statement behind the ledger's back prepares it again
    more = [add_send(db, add_customer(db, n)) for n in range(10, 12)]
    claim(db, now=NOW, limit=10)
    claim_batch(db, more, NOW)
    with Ledger.open(db) as ledger:
        ledger.conn.exec_driver_sql("DEALLOCATE ALL")
        for send_id in more:
            ledger.sent(send_id, sent_at=NOW, subject="Hi", response="250", message_id=f"<{send_id}@x>")
    assert [status_of(db, i)[0] for i in more] == ["sent", "sent"]
