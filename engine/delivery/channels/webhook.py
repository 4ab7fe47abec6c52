"""The webhook channel: a signed JSON POST with an idempotency key."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from engine.errors import DeliveryError


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """`sha256=` HMAC of `timestamp.body`: receivers recompute it to trust the call."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


class WebhookChannel:
    name = "webhook"

    def __init__(self, secret: str, timeout: float) -> None:
        self.secret = secret
        self.timeout = timeout
        self._client: httpx.Client | None = None

    def open(self) -> None:
        if self._client is None:
            self._client = httpx.Client(timeout=self.timeout, follow_redirects=False)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def post(self, url: str, payload: Any, *, key: str, now: datetime) -> str:
        self.open()
        assert self._client is not None
        body = json.dumps(payload, separators=(",", ":"), default=str).encode()
        stamp = str(int(now.timestamp()))
        headers = {
            "Content-Type": "application/json",
            "Idempotency-Key": key,
            "X-Journey-Timestamp": stamp,
            "X-Journey-Signature": signature(self.secret, stamp, body),
            "User-Agent": "journey-webhook/1",
        }
        try:
            response = self._client.post(url, content=body, headers=headers)
        except httpx.TimeoutException:
            raise DeliveryError(f"webhook {url} timed out after {self.timeout} s") from None
        except httpx.HTTPError as exc:
            raise DeliveryError(f"webhook {url}: {exc}") from None
        if response.status_code >= 500 or response.status_code in (408, 429):
            raise DeliveryError(f"webhook {url} answered {response.status_code}")
        if response.status_code >= 400:
            raise DeliveryError(
                f"webhook {url} answered {response.status_code}: {response.text[:200]}", permanent=True
            )
        return f"{response.status_code} {response.text[:200]}".strip()


class FileWebhookChannel:
    """Webhook calls written as JSON files instead of posted (the demo, and offline runs)."""

    name = "webhook"

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)

    def open(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)

    def close(self) -> None:
        pass

    def post(self, url: str, payload: Any, *, key: str, now: datetime) -> str:
        self.open()
        name = hashlib.sha256(key.encode()).hexdigest()[:24]
        body = {"url": url, "idempotency_key": key, "sent_at": now.isoformat(), "payload": payload}
        target = self.directory / f"{name}.json"
        tmp = target.with_suffix(".tmp")
        # owner-only, as the email outbox's files are: payloads carry customers and signed links
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(json.dumps(body, indent=2, default=str))
        tmp.replace(target)
        return f"written {name}.json"
