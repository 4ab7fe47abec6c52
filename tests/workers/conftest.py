"""The worker tests' fixtures: a real Redis broker, a real SMTP server, `celery -A workers worker`
subprocesses and a shop whose due sends they deliver (tests/support/workers.py)."""

from tests.support.workers import broker, shop, smtp, start_worker

__all__ = ["broker", "shop", "smtp", "start_worker"]
