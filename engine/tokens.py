"""Signed link tokens (unsubscribe, preferences, survey, open, click, referral), one salt per purpose.

The newest key signs; every key in the list verifies, so keys can be rotated without breaking
links already in inboxes. Unsubscribe links never expire.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from itsdangerous import BadSignature, URLSafeTimedSerializer

#: how long a link of each purpose stays valid, in seconds (None: forever)
MAX_AGE: dict[str, int | None] = {
    "unsubscribe": None,
    "preferences": None,
    "survey": 90 * 86400,
    "open": 365 * 86400,
    "click": 365 * 86400,
}


class TokenError(Exception):
    """A token is forged, altered, expired or meant for another purpose."""


class Signer:
    def __init__(self, keys: str | Sequence[str]) -> None:
        key_list = [keys] if isinstance(keys, str) else list(keys)
        if not key_list or not all(key_list):
            raise ValueError("a signer needs at least one non-empty key")
        # itsdangerous signs with the LAST key of the list and verifies with all of them.
        self._keys = list(reversed(key_list))

    @classmethod
    def from_setting(cls, secret: str) -> Signer:
        """`JOURNEY_SECRET_KEY` may hold several keys separated by commas, newest first."""
        return cls([k.strip() for k in secret.split(",") if k.strip()])

    def _serializer(self, purpose: str) -> URLSafeTimedSerializer:
        if purpose not in MAX_AGE:
            raise ValueError(f"unknown token purpose {purpose!r}")
        return URLSafeTimedSerializer(self._keys, salt=f"journey.{purpose}")

    def sign(self, purpose: str, payload: Any) -> str:
        return str(self._serializer(purpose).dumps(payload))

    def verify(self, purpose: str, token: str) -> Any:
        try:
            return self._serializer(purpose).loads(token, max_age=MAX_AGE[purpose])
        except BadSignature as exc:  # SignatureExpired is a subclass
            raise TokenError(str(exc)) from None
