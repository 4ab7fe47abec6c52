"""What every endpoint of the HTTP service shares: settings, the database, the clock, the link
signer, the API key and the rule set (the last three resolved on first use, then kept)."""

from __future__ import annotations

import hmac
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Engine

from engine.delivery.tokens import Signer, TokenError
from engine.http.observe import Observer
from engine.rules.loader import RuleSet
from engine.settings import Settings

#: seconds a read of the generated API key's stored hash is reused
API_KEY_RECHECK_SECONDS = 10.0
#: the send id of links in `journey preview` output (real sends start at 1)
PREVIEW_SEND = 0


@dataclass
class Service:
    settings: Settings
    engine: Engine
    #: the clock: every recorded event is stamped with it
    now: Callable[[], datetime]
    observer: Observer
    #: serialises this process's ingest transactions on SQLite (one writer at a time anyway)
    write_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _signer: Signer | None = field(default=None, repr=False)
    #: the stored hash of the generated API key, and when it was read (time.monotonic())
    _api_key_hash: tuple[str | None, float] | None = field(default=None, repr=False)
    _ruleset: RuleSet | None = field(default=None, repr=False)
    _aliases: dict[str, str] | None = field(default=None, repr=False)

    def signer(self) -> Signer:
        if self._signer is None:
            from engine.delivery.context import signer_for

            with self._lock:
                if self._signer is None:
                    self._signer = signer_for(self.settings, self.engine)
        return self._signer

    def accepts_api_key(self, given: str) -> bool:
        """Whether `given` is the API key: JOURNEY_API_KEY, else the generated one, of which only
        the hash is stored (read again every 10 s, so a new generated key is taken up)."""
        from engine.db import key_hash, stored_api_key_hash

        if self.settings.api_key:
            return hmac.compare_digest(given.encode("utf-8", "surrogatepass"), self.settings.api_key.encode())
        cached = self._api_key_hash
        if cached is None or time.monotonic() - cached[1] > API_KEY_RECHECK_SECONDS:
            with self._lock:
                cached = self._api_key_hash = (stored_api_key_hash(self.engine), time.monotonic())
        stored = cached[0]
        return stored is not None and hmac.compare_digest(key_hash(given).encode(), stored.encode())

    def ruleset(self) -> RuleSet:
        """The rules, loaded once (restart the service to read changed rule files)."""
        if self._ruleset is None:
            from engine.rules.loader import load_ruleset

            with self._lock:
                if self._ruleset is None:
                    self._ruleset = load_ruleset(self.settings.rules_dir, self.settings.templates_dir)
        return self._ruleset

    def event_aliases(self) -> dict[str, str]:
        """The event catalogue's aliases (alias -> catalogue name), read once; none without it."""
        if self._aliases is None:
            from engine.rules.catalogue import load_catalogue

            with self._lock:
                if self._aliases is None:
                    catalogue = load_catalogue(self.settings.rules_dir)
                    self._aliases = dict(catalogue.aliases) if catalogue is not None else {}
        return self._aliases

    @staticmethod
    def is_preview(payload: dict[str, Any]) -> bool:
        """`journey preview` signs its links with send 0: they work, and record nothing."""
        return payload.get("s") == PREVIEW_SEND

    def verify(self, purpose: str, token: str, keys: tuple[str, ...]) -> dict[str, Any] | None:
        """The token's payload when it is genuine, unexpired, for `purpose` and has `keys`; else None."""
        try:
            payload = self.signer().verify(purpose, token)
        except TokenError:
            return None
        if not isinstance(payload, dict) or any(k not in payload for k in keys):
            return None
        for key in ("c", "s"):
            if key in keys and (
                isinstance(payload[key], bool)
                or not isinstance(payload[key], int)
                or not 0 <= payload[key] < 2**63  # a database id (bigint)
            ):
                return None
        return payload
