"""The suppression list as CSV: `journey suppressions export` writes `email,reason,source,created_at`;
`import` reads the same columns, and the ones the providers' exports use (SES `EmailAddress,Reason,
LastUpdateTime`, Postmark `EmailAddress,SuppressionReason,Origin,CreatedAt`, Mailgun `address,code,
error,created_at`, SendGrid `email,created,reason,status`). Only the address is required; a bad line
is reported as `FILE:LINE: reason` and skipped, the good ones are stored.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TextIO

from sqlalchemy import Engine

from engine.addresses import HASH_PREFIX, InvalidAddress, hashed_token
from engine.db import write_tx
from engine.suppressions import Entry, SuppressionReason, listing, suppress

HEADER = ("email", "reason", "source", "created_at")

#: column names as they appear in exports (compared lower-case, letters and digits only)
COLUMNS = {
    "email": ("email", "emailaddress", "address", "recipient", "mail"),
    "reason": ("reason", "suppressionreason", "type", "category"),
    "source": ("source", "origin"),
    "created_at": ("createdat", "created", "lastupdatetime", "timestamp", "date", "time", "suppressedat"),
    "detail": ("detail", "error", "description", "details"),
    "code": ("code", "status", "statuscode"),
}

#: reason words of Journey and of the providers' exports (lower-case, letters and digits only)
REASONS = {
    SuppressionReason.HARD_BOUNCE: (
        "hardbounce",
        "bounce",
        "bounced",
        "bounces",
        "hard",
        "permanent",
        "bademailaddress",
        "invalid",
    ),
    SuppressionReason.COMPLAINT: (
        "complaint",
        "complaints",
        "complained",
        "spamcomplaint",
        "spamreport",
        "spamreports",
        "spam",
        "abuse",
    ),
    SuppressionReason.MANUAL: (
        "manual",
        "manualsuppression",
        "manuallydeactivated",
        "unsubscribe",
        "unsubscribed",
        "unsubscribes",
        "suppressed",
        "blocked",
        "block",
    ),
    SuppressionReason.ERASED: ("erased",),
}
_WORDS = {word: reason for reason, words in REASONS.items() for word in words}
#: an SMTP answer or enhanced status code saying "permanent": a hard bounce
_PERMANENT = re.compile(r"^\s*5\d\d\b|^\s*5\.\d{1,3}\.\d{1,3}\b|\b5\.\d{1,3}\.\d{1,3}\b")
#: rows stored per transaction
CHUNK = 5000


def _key(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


@dataclass(frozen=True)
class Columns:
    """Which column of the file holds what (None: absent)."""

    email: int
    reason: int | None = None
    source: int | None = None
    created_at: int | None = None
    detail: int | None = None
    code: int | None = None

    @classmethod
    def of_header(cls, header: list[str]) -> Columns | None:
        """The columns named by a header row; None when it names no address column."""
        keys = [_key(h) for h in header]
        found: dict[str, int] = {}
        for field, names in COLUMNS.items():
            for i, key in enumerate(keys):
                if key in names and field not in found:
                    found[field] = i
        if "email" not in found:
            return None
        return cls(**found)


def _cell(row: list[str], index: int | None) -> str:
    if index is None or index >= len(row):
        return ""
    return row[index].strip()


def _reason(text: str, code: str) -> SuppressionReason:
    if text:
        word = _WORDS.get(_key(text))
        if word is not None:
            return word
        if _PERMANENT.search(text):
            return SuppressionReason.HARD_BOUNCE
        names = ", ".join(r.value for r in SuppressionReason)
        raise ValueError(f"unknown reason '{text[:60]}': use one of {names}")
    if code and _PERMANENT.search(code):
        return SuppressionReason.HARD_BOUNCE
    return SuppressionReason.MANUAL


def parse_time(text: str, default: datetime) -> datetime:
    """ISO 8601 (a time without a zone is UTC) or seconds since the epoch; empty: `default`."""
    if not text:
        return default
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        if seconds > 1e11:  # milliseconds
            seconds /= 1000
        return datetime.fromtimestamp(seconds, UTC)
    try:
        value = datetime.fromisoformat(text.replace("z", "Z").replace(" UTC", "+00:00"))
    except ValueError:
        raise ValueError(f"'{text[:40]}' is not a time: use ISO 8601 like 2026-11-01T10:00:00Z") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _entry(row: list[str], cols: Columns, now: datetime) -> Entry:
    email = _cell(row, cols.email)
    if not email:
        raise ValueError("no address")
    text = _cell(row, cols.reason)
    detail = _cell(row, cols.detail) or None
    reason = _reason(text, _cell(row, cols.code))
    if text and _key(text) not in _WORDS:
        detail = detail or text  # an SMTP answer in the reason column
    source = _cell(row, cols.source) or "import"
    at = parse_time(_cell(row, cols.created_at), now)
    digest = hashed_token(email)
    if digest is not None:
        return Entry(digest, None, reason, source[:64], at, detail[:500] if detail else None)
    if email.lower().startswith(HASH_PREFIX):
        raise ValueError(f"'{email[:80]}' is not sha256: followed by 64 hexadecimal digits")
    try:
        return Entry.of(email, reason, source, at, detail)
    except InvalidAddress as exc:
        raise ValueError(f"'{email[:80]}' is not a valid address: it {exc}") from None


def read_entries(stream: TextIO, now: datetime) -> Iterator[tuple[int, Entry | str]]:
    """(line number, entry or why the line is bad) for each data row of a CSV stream. A first row
    without an address column name is data when it holds an address (a plain list of addresses)."""
    reader = csv.reader(stream)
    cols: Columns | None = None
    for row in reader:
        line = reader.line_num
        if not any(cell.strip() for cell in row):
            continue
        if cols is None:
            cols = Columns.of_header(row)
            if cols is not None:
                continue
            if "@" not in row[0] and not row[0].strip().lower().startswith(HASH_PREFIX):
                yield (
                    line,
                    (
                        "no address column: the header needs one of "
                        + ", ".join(COLUMNS["email"])
                        + " (or list one address per line)"
                    ),
                )
                return
            cols = Columns(email=0, reason=1, source=2, created_at=3)
        try:
            yield line, _entry(row, cols, now)
        except ValueError as exc:
            yield line, str(exc)


@dataclass
class ImportResult:
    stored: int = 0
    bad: int = 0


def import_file(
    engine: Engine, stream: TextIO, *, name: str, now: datetime, on_error: Callable[[str], None]
) -> ImportResult:
    """Store the good lines of a CSV file, a few thousand per transaction; report each bad one as
    `NAME:LINE: reason`."""
    result = ImportResult()
    chunk: list[Entry] = []

    def flush() -> None:
        if chunk:
            with write_tx(engine) as conn:
                suppress(conn, chunk)
            result.stored += len(chunk)
            chunk.clear()

    for line, item in read_entries(stream, now):
        if isinstance(item, str):
            result.bad += 1
            on_error(f"{name}:{line}: {item}")
            continue
        chunk.append(item)
        if len(chunk) >= CHUNK:
            flush()
    flush()
    return result


def export_file(engine: Engine, out: TextIO, reason: str | None = None) -> int:
    """Write the list as CSV (`email,reason,source,created_at`); an erased address as `sha256:HASH`."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(HEADER)
    n = 0
    for row in listing(engine, reason):
        at = row.created_at.astimezone(UTC).isoformat().replace("+00:00", "Z")
        writer.writerow((row.email, row.reason, row.source, at))
        n += 1
    return n
