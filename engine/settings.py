"""One typed settings object, read from the environment once and passed in explicitly."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path

from engine.errors import ConfigError

DEFAULT_DATABASE_URL = "sqlite:///journey.db"
DEFAULT_EMAIL_URL = "file://./outbox"
DEFAULT_BASE_URL = "http://localhost:8000"
DEFAULT_FROM = "Journey <hello@example.com>"
DEFAULT_POSTAL_ADDRESS = "Journey Demo Shop, 1 Example Street, 10000 Sample City"
DEFAULT_BRAND = "Journey Shop"


def _port(env: Mapping[str, str], name: str) -> int | None:
    raw = env.get(name)
    if raw is None or raw == "":
        return None
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise ConfigError(f"{name}={raw!r} is not a port number (1-65535)")
    return int(raw)


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number of seconds") from None


_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smh])")
_SECONDS = {"s": 1, "m": 60, "h": 3600}


def _duration(env: Mapping[str, str], name: str, default: timedelta) -> timedelta:
    """A duration like `5m`, `90s` or `1h30m`."""
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    text = raw.strip().lower()
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ConfigError(f"{name}={raw!r} is not a duration: write it like 5m, 90s or 1h30m")
    value = timedelta(seconds=sum(float(n) * _SECONDS[u] for n, u in parts))
    if value <= timedelta(0):
        raise ConfigError(f"{name}={raw!r} must be longer than zero")
    return value


def _user_password(env: Mapping[str, str], name: str) -> str | None:
    raw = env.get(name) or None
    if raw is not None and ":" not in raw:
        raise ConfigError(f"{name} must be user:password (the Basic auth set on the provider's webhook)")
    return raw


@dataclass(frozen=True)
class Settings:
    """Every setting of the product, with a working default for each (CONTRACT section 1)."""

    database_url: str = DEFAULT_DATABASE_URL
    broker_url: str | None = None
    email_url: str = DEFAULT_EMAIL_URL
    #: seconds the webhook channel waits for an answer
    webhook_timeout: float = 10.0
    #: JOURNEY_SEND_LEASE: a send claimed by a worker that died (or queued on a broker that lost the
    #: task) is taken back after this long
    send_lease: timedelta = timedelta(minutes=5)
    rules_dir: Path = Path("rules")
    templates_dir: Path = Path("message_templates")
    #: None means: generated on first run and stored in the database
    secret_key: str | None = None
    base_url: str = DEFAULT_BASE_URL
    mail_from: str = DEFAULT_FROM
    postal_address: str = DEFAULT_POSTAL_ADDRESS
    #: None means: generated on first run and stored in the database
    api_key: str | None = None
    #: write keys of the tracking API (JOURNEY_WRITE_KEYS, comma-separated); the API key counts too
    write_keys: tuple[str, ...] = ()
    #: the shop's name, in emails and on the pages customers see
    brand: str = DEFAULT_BRAND
    #: an address that also takes unsubscribes: a `mailto:` target beside the link in List-Unsubscribe
    unsubscribe_mailto: str | None = None
    #: a worker's main process serves its pool's metrics on this port (needs prometheus_multiproc_dir)
    worker_metrics_port: int | None = None
    #: PROMETHEUS_MULTIPROC_DIR: where processes of a fleet write their series to be merged
    prometheus_multiproc_dir: str | None = None
    #: delivery feedback (CONTRACT 10): SendGrid's Event Webhook public key (base64 DER, as shown)
    sendgrid_verification_key: str | None = None
    #: `user:password` that Postmark's webhooks send as Basic auth
    postmark_webhook_auth: str | None = None
    #: Mailgun's HTTP webhook signing key
    mailgun_signing_key: str | None = None
    #: the SNS topics whose SES reports are taken (empty: any topic whose signature checks out)
    ses_topic_arns: tuple[str, ...] = ()

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, *, dotenv: bool = True) -> Settings:
        """Build settings from environment variables (a `.env` file in the working directory may set them)."""
        if env is None:
            if dotenv and Path(".env").is_file():
                from dotenv import dotenv_values

                merged = {k: v for k, v in dotenv_values(".env").items() if v is not None}
                merged.update(os.environ)
                env = merged
            else:
                env = os.environ
        return cls(
            database_url=env.get("JOURNEY_DATABASE_URL") or DEFAULT_DATABASE_URL,
            broker_url=env.get("JOURNEY_BROKER_URL") or None,
            email_url=env.get("JOURNEY_EMAIL_URL") or DEFAULT_EMAIL_URL,
            webhook_timeout=_float(env, "JOURNEY_WEBHOOK_TIMEOUT", 10.0),
            send_lease=_duration(env, "JOURNEY_SEND_LEASE", timedelta(minutes=5)),
            rules_dir=Path(env.get("JOURNEY_RULES_DIR") or "rules"),
            templates_dir=Path(env.get("JOURNEY_TEMPLATES_DIR") or "message_templates"),
            secret_key=env.get("JOURNEY_SECRET_KEY") or None,
            base_url=(env.get("JOURNEY_BASE_URL") or DEFAULT_BASE_URL).rstrip("/"),
            mail_from=env.get("JOURNEY_FROM") or DEFAULT_FROM,
            postal_address=env.get("JOURNEY_POSTAL_ADDRESS") or DEFAULT_POSTAL_ADDRESS,
            api_key=env.get("JOURNEY_API_KEY") or None,
            write_keys=tuple(k.strip() for k in env.get("JOURNEY_WRITE_KEYS", "").split(",") if k.strip()),
            brand=env.get("JOURNEY_BRAND") or DEFAULT_BRAND,
            unsubscribe_mailto=env.get("JOURNEY_UNSUBSCRIBE_MAILTO") or None,
            worker_metrics_port=_port(env, "JOURNEY_WORKER_METRICS_PORT"),
            prometheus_multiproc_dir=env.get("PROMETHEUS_MULTIPROC_DIR") or None,
            sendgrid_verification_key=env.get("JOURNEY_SENDGRID_VERIFICATION_KEY") or None,
            postmark_webhook_auth=_user_password(env, "JOURNEY_POSTMARK_WEBHOOK_AUTH"),
            mailgun_signing_key=env.get("JOURNEY_MAILGUN_SIGNING_KEY") or None,
            ses_topic_arns=tuple(
                arn.strip() for arn in (env.get("JOURNEY_SES_TOPIC_ARNS") or "").split(",") if arn.strip()
            ),
        )

    def with_(self, **changes: object) -> Settings:
        """A copy with some settings changed (tests and the demo use this)."""
        return replace(self, **changes)  # type: ignore[arg-type]
