"""Signed link tokens (unsubscribe, preferences, survey, open, click, referral), one salt per purpose.

The newest key signs; every key in the list verifies, so keys can be rotated without breaking
links already in inboxes. Unsubscribe links never expire.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from base64 import urlsafe_b64encode
from collections.abc import Sequence
from functools import lru_cache
from json.encoder import encode_basestring as _quoted  # type: ignore[attr-defined]
from typing import Any

from itsdangerous import BadSignature, URLSafeTimedSerializer
from itsdangerous import Signer as ItsSigner
from itsdangerous.encoding import base64_encode, int_to_bytes, want_bytes

#: how long a link of each purpose stays valid, in seconds (None: forever)
MAX_AGE: dict[str, int | None] = {
    "unsubscribe": None,
    "preferences": None,
    "survey": 90 * 86400,
    "open": 365 * 86400,
    "click": 365 * 86400,
}


_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def _compact_json(payload: Any) -> str:
    """`_JSON.encode(payload)`, written directly for what links sign (a dict of whole numbers and
    strings): the encoder is set up again for every call, which costs more than the writing."""
    if type(payload) is not dict:
        return _JSON.encode(payload)
    parts = []
    for key, value in payload.items():
        if type(key) is not str:
            return _JSON.encode(payload)
        if type(value) is int:
            parts.append(f"{_quoted(key)}:{value}")
        elif type(value) is str:
            parts.append(f"{_quoted(key)}:{_quoted(value)}")
        else:
            return _JSON.encode(payload)
    return "{" + ",".join(parts) + "}"


def _b64(data: bytes) -> bytes:
    """itsdangerous' base64: URL-safe, without padding."""
    return urlsafe_b64encode(data).rstrip(b"=")


@lru_cache(maxsize=4)
def _stamp(seconds: int) -> bytes:
    """itsdangerous' timestamp of a token: the same for every link signed in the same second."""
    return _b64(int_to_bytes(seconds))


#: payloads of at least this many bytes of JSON are compressed when that makes them shorter
COMPRESS_FROM = 96


class TokenError(Exception):
    """A token is forged, altered, expired or meant for another purpose."""


class Signer:
    """Signs and verifies tokens. A worker signs thousands of links: the serializer and its signer
    are made once per purpose, not per token (the tokens are the same as itsdangerous' `dumps`)."""

    def __init__(self, keys: str | Sequence[str]) -> None:
        key_list = [keys] if isinstance(keys, str) else list(keys)
        if not key_list or not all(key_list):
            raise ValueError("a signer needs at least one non-empty key")
        # itsdangerous signs with the LAST key of the list and verifies with all of them.
        self._keys = list(reversed(key_list))
        self._serializers: dict[str, URLSafeTimedSerializer] = {}
        self._signers: dict[str, ItsSigner] = {}
        #: per purpose: the HMAC keyed with the signer's derived key, copied for each token, and
        #: the signer's separator (itsdangerous derives the key again for every signature)
        self._macs: dict[str, tuple[Any, bytes]] = {}

    @classmethod
    def from_setting(cls, secret: str) -> Signer:
        """`JOURNEY_SECRET_KEY` may hold several keys separated by commas, newest first."""
        return cls([k.strip() for k in secret.split(",") if k.strip()])

    def _serializer(self, purpose: str) -> URLSafeTimedSerializer:
        serializer = self._serializers.get(purpose)
        if serializer is None:
            if purpose not in MAX_AGE:
                raise ValueError(f"unknown token purpose {purpose!r}")
            serializer = URLSafeTimedSerializer(self._keys, salt=f"journey.{purpose}")
            self._serializers[purpose] = serializer
            signer = self._signers[purpose] = serializer.make_signer()
            mac = hmac.new(signer.derive_key(), digestmod=signer.digest_method)
            self._macs[purpose] = (mac, want_bytes(signer.sep))
        return serializer

    def sign(self, purpose: str, payload: Any) -> str:
        """A token `URLSafeTimedSerializer.loads` accepts, made without a new serializer and signer
        each time. A short payload is not offered to zlib: it would not come out shorter, and trying
        costs more than signing."""
        serializer = self._serializer(purpose)
        data = _compact_json(payload).encode("utf-8")
        body = base64_encode(data) if len(data) < COMPRESS_FROM else serializer.dump_payload(payload)
        # TimestampSigner.sign, with the key derived once
        template, sep = self._macs[purpose]
        value = body + sep + _stamp(int(time.time()))
        mac = template.copy()
        mac.update(value)
        return (value + sep + _b64(mac.digest())).decode("utf-8")

    def digest(self, purpose: str, data: str) -> str:
        """A keyed digest of `data` (HMAC-SHA256 with the newest key, per purpose): an opaque id
        that no one without the key can compute or reverse by trying inputs."""
        key = self._keys[-1].encode("utf-8", "surrogatepass")
        message = f"journey.{purpose}\0{data}".encode("utf-8", "surrogatepass")
        return hmac.new(key, message, hashlib.sha256).hexdigest()

    def verify(self, purpose: str, token: str) -> Any:
        try:
            return self._serializer(purpose).loads(token, max_age=MAX_AGE[purpose])
        except BadSignature as exc:  # SignatureExpired is a subclass
            raise TokenError(str(exc)) from None
