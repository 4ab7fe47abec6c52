"""What the tests share: the real services they talk to (PostgreSQL, Redis, an SMTP server, a
browser, Celery workers), the evaluation kit, and small helpers to wait and to scrape metrics."""
