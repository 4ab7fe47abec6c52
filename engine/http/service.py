"""What every endpoint of the HTTP service shares: settings, the database, the clock, the link
signer, the API key and the rule set (the last three resolved on first use, then kept)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Engine

from engine.delivery.tokens import Signer, TokenError
from engine.http.observe import Observer
from engine.rules.loader import RuleSet
from engine.settings import Settings

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
    _api_key: str | None = field(default=None, repr=False)
    _ruleset: RuleSet | None = field(default=None, repr=False)
    _aliases: dict[str, str] | None = field(default=None, repr=False)

    def signer(self) -> Signer:
        if self._signer is None:
            from engine.delivery.context import signer_for

            with self._lock:
                if self._signer is None:
                    self._signer = signer_for(self.settings, self.engine)
        return self._signer

    def api_key(self) -> str:
        """JOURNEY_API_KEY, or the key generated and stored in the database on first run."""
        if self._api_key is None:
            from engine.db import get_or_create_secret

            with self._lock:
                if self._api_key is None:
                    self._api_key = self.settings.api_key or get_or_create_secret(self.engine, "api_key")
        return self._api_key

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
