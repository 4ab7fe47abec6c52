"""The sends ledger as a worker's batch reads and writes it: the claim (queued → sending), the
look right before a group leaves, and each send's end, every change a compare-and-set from
'sending' so that two workers holding the same id never both send it.

PostgreSQL: one autocommit connection per batch, plain SQL with arrays for the statements run for
every group; SQLite: short write transactions, and reads that never keep an old snapshot.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, select

from engine.db.schema import customers, sends, suppressions, unsubscribes
from engine.db.types import among
from engine.delivery.policies import Looked, look_verdicts
from engine.delivery.status import SendRow, SendStatus

#: a send claimed by a worker that died is taken back after this long (the default of
#: JOURNEY_SEND_LEASE)
LEASE = timedelta(minutes=5)


def claim_batch(engine: Engine, ids: Sequence[int], now: datetime, lease: timedelta = LEASE) -> list[SendRow]:
    """queued → sending for a whole batch in one statement, each claim counting an attempt
    (compare-and-set: rows another worker has are left), in the order of `ids`."""
    with engine.begin() as conn:
        claimed = conn.execute(
            sends.update()
            .where(among(engine.dialect, sends.c.id, ids), sends.c.status == SendStatus.QUEUED)
            .values(status=SendStatus.SENDING, lease_until=now + lease, attempts=sends.c.attempts + 1)
            .returning(*(sends.c[f.name] for f in fields(SendRow)))
        ).all()
    order = {int(i): n for n, i in enumerate(ids)}
    # RETURNING lists SendRow's fields in their order: each row is the dataclass's arguments
    return sorted((SendRow(*r) for r in claimed), key=lambda r: order.get(r.id, 0))


class Ledger:
    """A batch's reads and writes of the sends ledger, each change a compare-and-set from 'sending'.

    A 'sent' mark is written (committed) as soon as the channel accepted the message, before the
    next message leaves: a worker killed mid-batch leaves at most the one message it was handing
    over unmarked ('sending'), which goes again, with the same Message-ID, after its lease.
    `Ledger.open(engine)` gives the form for the engine's database: `_PostgresLedger` or
    `_SqliteLedger`, side by side below.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._marks: list[dict[str, Any]] = []
        self._conn: Connection | None = None

    @staticmethod
    def open(engine: Engine) -> Ledger:
        return _PostgresLedger(engine) if engine.dialect.name == "postgresql" else _SqliteLedger(engine)

    @property
    def conn(self) -> Connection:
        """The batch's connection, for its reads (facts, template context)."""
        assert self._conn is not None, "use the ledger in a with block"
        return self._conn

    def __enter__(self) -> Ledger:
        self._conn = self._connect()
        return self

    def __exit__(self, *exc: object) -> None:
        conn = self._conn
        assert conn is not None
        try:
            self.flush()
            self._release(self.conn)  # `conn` settles what is pending first (PostgreSQL)
        finally:
            self._conn = None
            conn.close()

    def _connect(self) -> Connection:
        return self.engine.connect()

    def _release(self, conn: Connection) -> None:
        """Undo what `_connect` set on the connection before it goes back to the pool."""

    def end_read(self) -> None:
        """End the read transaction, so the next read sees what others wrote since (SQLite)."""

    def write(self, statement: Any) -> int:
        self.flush()
        return self._execute(statement)

    def _execute(self, statement: Any, params: Any = None) -> int:
        raise NotImplementedError

    def finish(self, send_id: int, status: SendStatus, **values: Any) -> bool:
        """sending → status, only if still ours."""
        return bool(self.write(_cas(send_id, status, values)))

    def sent(self, send_id: int, *, sent_at: datetime, subject: str, response: str, message_id: str) -> None:
        """sending → sent, committed before this returns (so before the next message leaves)."""
        self._marks.append(
            {
                "mark_id": send_id,
                "mark_sent_at": sent_at,
                "mark_subject": subject,
                "mark_response": response,
                "mark_message_id": message_id,
            }
        )
        self.flush()

    def flush(self) -> None:
        """Write the waiting 'sent' marks now."""
        raise NotImplementedError

    def look(self, items: Sequence[Looked]) -> dict[int, str | None]:
        """Right before a group leaves: per send, 'lease_lost' when it is no longer this claim's (not
        'sending', or claimed again: each claim counts an attempt), else the customer's opt-out
        reason ('customer_deleted', 'unsubscribed', 'bounced') or its address's suppression
        ('hard_bounce', 'complaint', 'manual', 'erased'), or None."""
        raise NotImplementedError


class _PostgresLedger(Ledger):
    """One autocommit connection for the batch whose commits do not wait for the disk flush
    (synchronous_commit off for this session, reset at the end: a database crash may forget the
    last few hundred milliseconds of marks, whose sends then go again with the same Message-ID).
    The statements run for every group or message are plain SQL: nothing to build each time."""

    def _connect(self) -> Connection:
        conn = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        conn.exec_driver_sql("SET synchronous_commit TO OFF")
        return conn

    def _release(self, conn: Connection) -> None:
        conn.exec_driver_sql("RESET synchronous_commit")
        second, self._second = self._second, None
        if second is not None:
            try:
                second.exec_driver_sql("RESET synchronous_commit")
            finally:
                second.close()

    def __exit__(self, *exc: object) -> None:
        try:
            super().__exit__(*exc)
        finally:
            second, self._second = self._second, None
            if second is not None:  # not released (an error): not back to the pool as it is
                second.invalidate()
                second.close()

    def _execute(self, statement: Any, params: Any = None) -> int:
        return int(self.conn.execute(statement, params).rowcount or 0)

    #: per mark connection (the batch's, then a second one): a 'sent' mark sent to the server
    #: whose answer is not read yet (see `sent`)
    _pending: tuple[Any, Any] = (None, None)
    #: the second connection the marks alternate on, opened at the second mark
    _second: Connection | None = None
    _turn = 0

    @property
    def conn(self) -> Connection:
        self._settle(0)
        self._settle(1)
        return super().conn

    def sent(self, send_id: int, *, sent_at: datetime, subject: str, response: str, message_id: str) -> None:
        """Pipelined: the UPDATE (autocommit) is in the server's hands before this returns. Marks
        alternate between two connections, and a connection's answer is read before its next
        mark (or the batch connection's next use): the worker does not wait for the server, whose
        answer to a mark comes while the next message is handed over. A worker killed right after
        still has its mark committed: the server runs what it received."""
        turn, self._turn = self._turn, 1 - self._turn
        self._settle(turn)
        if turn == 0:
            conn = super().conn
        else:
            if self._second is None:
                self._second = self._connect()
            conn = self._second
        pgconn = _prepared(conn)
        values = [v.encode() for v in (sent_at.isoformat(), subject, response, message_id, str(send_id))]
        pgconn.send_query_prepared(PG_MARK_NAME, values)
        pending = list(self._pending)
        pending[turn] = (pgconn, values)
        self._pending = (pending[0], pending[1])

    def _settle(self, turn: int) -> None:
        """Read the answer of a pipelined mark; a mark the server refused is an error here."""
        pending = self._pending[turn]
        if pending is None:
            return
        self._pending = (None, self._pending[1]) if turn == 0 else (self._pending[0], None)
        from psycopg import pq

        pgconn, values = pending
        results = []
        while (result := pgconn.get_result()) is not None:
            results.append(result)
        if [r.error_field(pq.DiagnosticField.SQLSTATE) for r in results] == [b"26000"]:
            # the session lost the prepared mark (a DISCARD behind the pool's back): again, at once
            pgconn.prepare(PG_MARK_NAME, PG_MARK_ONE)
            results = [pgconn.exec_prepared(PG_MARK_NAME, values)]
        failed = next(
            (
                (r.error_message or b"").decode(errors="replace")
                for r in results
                if r.status != pq.ExecStatus.COMMAND_OK
            ),
            None,
        )
        if failed is not None or pgconn.status != pq.ConnStatus.OK:
            raise OSError(
                f"a 'sent' mark was not written: {failed or 'the connection to the database dropped'}"
            )

    def flush(self) -> None:
        if self._marks:
            marks, self._marks = self._marks, []
            self.conn.exec_driver_sql(PG_MARK_SENT, _columns(marks))

    def look(self, items: Sequence[Looked]) -> dict[int, str | None]:
        """One round trip: the four reads of PG_LOOK as one statement."""
        self.flush()
        params: dict[str, Any] = {
            "look_send": [item.send_id for item in items],
            "look_customer": sorted({item.customer_id for item in items}),
            "look_address": _addresses(items),
        }
        # straight to the driver: a small read made for every group, whose rows need nothing of
        # SQLAlchemy's result handling
        with _cursor(self.conn) as cursor:
            return look_verdicts(items, cursor.execute(PG_LOOK, params).fetchall())


class _SqliteLedger(Ledger):
    """Short write transactions (SQLite has one writer at a time), reads that never keep an old
    snapshot, and the look as three small queries (in-process: no round trips to save)."""

    def end_read(self) -> None:
        self.conn.rollback()

    def _execute(self, statement: Any, params: Any = None) -> int:
        self.end_read()
        with self.engine.begin() as conn:
            return int(conn.execute(statement, params).rowcount or 0)

    def flush(self) -> None:
        if self._marks:
            marks, self._marks = self._marks, []
            self._execute(MARK_SENT, marks)

    def look(self, items: Sequence[Looked]) -> dict[int, str | None]:
        self.flush()
        rows = _look_sqlite(
            self.conn,
            [item.send_id for item in items],
            sorted({i.customer_id for i in items}),
            _addresses(items),
        )
        self.end_read()
        return look_verdicts(items, rows)


def _prepared(conn: Connection) -> Any:
    """The connection's libpq handle, with the 'sent' mark prepared on it (once per database
    session: the statement is parsed and planned once, not for every message)."""
    info = conn.connection.info
    pgconn = conn.connection.driver_connection.pgconn  # type: ignore[union-attr]
    if info.get(PG_MARK_NAME) is not pgconn:
        from psycopg import pq

        result = pgconn.prepare(PG_MARK_NAME, PG_MARK_ONE)
        duplicate = result.error_field(pq.DiagnosticField.SQLSTATE) == b"42P05"  # prepared already
        if result.status != pq.ExecStatus.COMMAND_OK and not duplicate:
            raise OSError(f"the 'sent' mark could not be prepared: {(result.error_message or b'').decode()}")
        info[PG_MARK_NAME] = pgconn
    return pgconn


def _cursor(conn: Connection) -> Any:
    """A cursor of the connection's driver (psycopg)."""
    return conn.connection.driver_connection.cursor()  # type: ignore[union-attr]


def _columns(marks: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """Marks as one array per column, for unnest()."""
    return {name: [m[name] for m in marks] for name in marks[0]}


def _addresses(items: Sequence[Looked]) -> list[str]:
    """The hashes of the addresses a group's emails go to."""
    return sorted({item.address for item in items if item.address is not None})


def _look_sqlite(
    conn: Connection, send_ids: list[int], customer_ids: list[int], addresses: list[str]
) -> list[Any]:
    """The rows of PG_LOOK, from four small queries (SQLite runs in-process: no round trips)."""
    rows: list[Any] = [
        (1, r.id, r.attempts, None, None)
        for r in conn.execute(
            select(sends.c.id, sends.c.attempts).where(
                sends.c.id.in_(send_ids), sends.c.status == SendStatus.SENDING
            )
        )
    ]
    rows += [
        (2, r.id, 0 if r.email_suppressed_at is None else 1, None, None)
        for r in conn.execute(
            select(customers.c.id, customers.c.email_suppressed_at).where(customers.c.id.in_(customer_ids))
        )
    ]
    rows += [
        (3, r.customer_id, None, r.channel, r.topic)
        for r in conn.execute(
            select(unsubscribes.c.customer_id, unsubscribes.c.channel, unsubscribes.c.topic).where(
                unsubscribes.c.customer_id.in_(customer_ids)
            )
        )
    ]
    if addresses:
        rows += [
            (4, None, None, r.address_hash, r.reason)
            for r in conn.execute(
                select(suppressions.c.address_hash, suppressions.c.reason).where(
                    suppressions.c.address_hash.in_(addresses)
                )
            )
        ]
    return rows


MARK_SENT = (
    sends.update()
    .where(sends.c.id == bindparam("mark_id"), sends.c.status == SendStatus.SENDING)
    .values(
        status=SendStatus.SENT,
        lease_until=None,
        error=None,
        sent_at=bindparam("mark_sent_at"),
        subject=bindparam("mark_subject"),
        response=bindparam("mark_response"),
        message_id=bindparam("mark_message_id"),
    )
)

PG_MARK_SENT = """UPDATE sends SET status = 'sent', lease_until = NULL, error = NULL, sent_at = m.sent_at,
    subject = m.subject, response = m.response, message_id = m.message_id
FROM unnest(%(mark_id)b::bigint[], %(mark_sent_at)b::timestamptz[], %(mark_subject)b::text[],
            %(mark_response)b::text[], %(mark_message_id)b::text[])
     AS m (id, sent_at, subject, response, message_id)
WHERE sends.id = m.id AND sends.status = 'sending'"""

#: the name of PG_MARK_ONE prepared on a connection (see `_prepared`)
PG_MARK_NAME = b"journey_mark_sent"
PG_MARK_ONE = b"""UPDATE sends SET status = 'sent', lease_until = NULL, error = NULL,
    sent_at = $1::timestamptz, subject = $2::text, response = $3::text, message_id = $4::text
WHERE id = $5::bigint AND status = 'sending'"""

#: (1, send id, attempts) for each send still 'sending'; (2, customer id, 1 when bounced) for each
#: customer that exists; (3, customer id, -, channel, topic) for each of their unsubscribes;
#: (4, -, -, address hash, reason) for each of the group's addresses on the suppression list.
#: Its arrays, and PG_MARK_SENT's, go in binary (`%(x)b`): as text, the driver quotes and escapes
#: every element
PG_LOOK = """SELECT 1, id, attempts, NULL, NULL FROM sends
WHERE id = ANY(%(look_send)b::bigint[]) AND status = 'sending'
UNION ALL
SELECT 2, id, CASE WHEN email_suppressed_at IS NULL THEN 0 ELSE 1 END, NULL, NULL FROM customers
WHERE id = ANY(%(look_customer)b::bigint[])
UNION ALL
SELECT 3, customer_id, NULL, channel, topic FROM unsubscribes
WHERE customer_id = ANY(%(look_customer)b::bigint[])
UNION ALL
SELECT 4, NULL, NULL, address_hash, reason FROM suppressions
WHERE address_hash = ANY(%(look_address)b::text[])"""


def _cas(send_id: int, status: SendStatus, values: dict[str, Any]) -> Any:
    return (
        sends.update()
        .where(sends.c.id == send_id, sends.c.status == SendStatus.SENDING)
        .values(status=status, lease_until=None, **values)
    )
