"""The suppression list: addresses that get no email, whoever the customer (CONTRACT 10, 14).

One row per address, keyed by the hash of its normalised form (engine.addresses), with its
strongest reason: `erased` > `hard_bounce` > `complaint` > `manual`. A hard bounce and an erasure
block every message; a complaint and a manual entry block marketing, not transactional mail. An
erased address is kept as its hash only. The worker checks the list right before each group of
messages leaves, in the same statement as unsubscribes (engine.delivery.ledger).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

from sqlalchemy import Connection, Engine, case, delete, select

from engine.addresses import HASH_PREFIX, InvalidAddress, hash_normalised, normalise
from engine.db import upsert, write_tx
from engine.db.schema import suppressions
from engine.db.types import among


class SuppressionReason(StrEnum):
    """Why an address is suppressed (`suppressions.reason`), weakest first."""

    MANUAL = "manual"
    COMPLAINT = "complaint"
    HARD_BOUNCE = "hard_bounce"
    ERASED = "erased"


#: a reason replaces a weaker one, never a stronger one
STRENGTH = {reason: n for n, reason in enumerate(SuppressionReason)}
#: reasons that block transactional messages too
BLOCK_EVERYTHING = frozenset({SuppressionReason.HARD_BOUNCE, SuppressionReason.ERASED})


def blocks(reason: str | None, *, transactional: bool) -> bool:
    """Whether a suppression for `reason` stops a message (transactional or marketing)."""
    if reason is None:
        return False
    return reason in BLOCK_EVERYTHING or not transactional


@dataclass(frozen=True)
class Entry:
    """One address to suppress: its hash, the normalised address (None: keep only the hash)."""

    address_hash: str
    address: str | None
    reason: SuppressionReason
    source: str
    created_at: datetime
    detail: str | None = None

    @classmethod
    def of(
        cls, address: str, reason: SuppressionReason, source: str, at: datetime, detail: str | None = None
    ) -> Entry:
        """An entry for an address as given (InvalidAddress when it is not one)."""
        normalised = normalise(address)
        stored = None if reason is SuppressionReason.ERASED else normalised
        return cls(hash_normalised(normalised), stored, reason, source[:64], at, _detail(detail))

    def row(self) -> dict[str, Any]:
        return {
            "address_hash": self.address_hash,
            "address": self.address,
            "reason": self.reason.value,
            "source": self.source,
            "detail": self.detail,
            "created_at": self.created_at,
        }


def _detail(text: str | None) -> str | None:
    return " ".join(text.split())[:500] if text else None


def _rank(column: Any) -> Any:
    return case({r.value: n for r, n in STRENGTH.items()}, value=column, else_=-1)


def suppress_statement(conn: Connection | Engine, entry: Entry | None = None) -> Any:
    """An upsert of `entry` (or of rows given at execution): a new address is added; an existing
    one takes the entry's reason only when it is stronger (an erased address also loses its stored
    form)."""
    stmt = upsert(conn, suppressions)
    if entry is not None:
        stmt = stmt.values(**entry.row())
    x = stmt.excluded
    return stmt.on_conflict_do_update(
        index_elements=["address_hash"],
        set_={
            "address": x.address,
            "reason": x.reason,
            "source": x.source,
            "detail": x.detail,
            "created_at": x.created_at,
        },
        where=_rank(x.reason) > _rank(suppressions.c.reason),
    )


class _Addressed(Protocol):
    @property
    def recipient(self) -> str: ...


def hard_bounce(msg: _Addressed | None, detail: str, at: datetime) -> Entry | None:
    """The entry for a message's recipient that a mail server refused for good (SMTP 5xx)."""
    if msg is None:
        return None
    try:
        return Entry.of(msg.recipient, SuppressionReason.HARD_BOUNCE, "smtp", at, detail)
    except InvalidAddress:
        return None


def suppress(conn: Connection, entries: Sequence[Entry]) -> None:
    """Add entries in the caller's transaction (a stronger reason replaces a weaker one)."""
    rows: dict[str, dict[str, Any]] = {}
    for entry in entries:  # one row per address in one statement: the strongest entry wins
        old = rows.get(entry.address_hash)
        if old is None or STRENGTH[entry.reason] > STRENGTH[SuppressionReason(old["reason"])]:
            rows[entry.address_hash] = entry.row()
    for start in range(0, len(rows), 1000):
        chunk = sorted(rows.values(), key=lambda r: str(r["address_hash"]))[start : start + 1000]
        conn.execute(suppress_statement(conn), chunk)


def reasons_of(conn: Connection, hashes: Iterable[str]) -> dict[str, str]:
    """address hash -> reason, for those of `hashes` on the list."""
    wanted = sorted(set(hashes))
    found: dict[str, str] = {}
    for start in range(0, len(wanted), 1000):
        chunk = wanted[start : start + 1000]
        for h, reason in conn.execute(
            select(suppressions.c.address_hash, suppressions.c.reason).where(
                among(conn.dialect, suppressions.c.address_hash, chunk)
            )
        ):
            found[h] = reason
    return found


def add(engine: Engine, entries: Sequence[Entry]) -> None:
    with write_tx(engine) as conn:
        suppress(conn, entries)


def remove(engine: Engine, address_hash: str) -> bool:
    """Take an address off the list (whatever its reason); False when it was not on it."""
    with write_tx(engine) as conn:
        result = conn.execute(delete(suppressions).where(suppressions.c.address_hash == address_hash))
        return bool(result.rowcount)


@dataclass(frozen=True)
class Listed:
    """A row of the list as people see it: an erased address shows as `sha256:HASH`."""

    email: str
    reason: str
    source: str
    created_at: datetime
    detail: str | None


def listing(engine: Engine, reason: str | None = None) -> Iterator[Listed]:
    """The list, oldest first (optionally one reason), read in chunks."""
    query = select(suppressions).order_by(suppressions.c.created_at, suppressions.c.address_hash)
    if reason is not None:
        query = query.where(suppressions.c.reason == reason)
    with engine.connect() as conn:
        result = conn.execution_options(yield_per=1000).execute(query)
        for row in result:
            yield Listed(
                row.address if row.address is not None else HASH_PREFIX + row.address_hash,
                row.reason,
                row.source,
                row.created_at,
                row.detail,
            )
