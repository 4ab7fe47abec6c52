"""`journey serve` as a subprocess, on a database of the test's, with write keys set."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.support.services import ROOT, free_port

WRITE_KEY = "wk-test-1"
API_KEY = "test-api-key"
JOURNEY = [sys.executable, "-c", "import sys; from engine.cli import main; sys.exit(main())"]


@contextmanager
def journey_serve(db_url: str, cwd: Path, rules_dir: Path | None = None) -> Iterator[str]:
    """Serve the database at `db_url` (migrated already) on a free port; yields the base URL.
    The server's stderr goes to `cwd/serve.log`."""
    port = free_port()
    env = {
        **os.environ,
        "JOURNEY_DATABASE_URL": db_url,
        "JOURNEY_RULES_DIR": str(rules_dir or ROOT / "rules"),
        "JOURNEY_TEMPLATES_DIR": str(ROOT / "message_templates"),
        "JOURNEY_WRITE_KEYS": f"{WRITE_KEY}, wk-test-2",
        "JOURNEY_API_KEY": API_KEY,
        "JOURNEY_SECRET_KEY": "test-secret",
        "PYTHONPATH": str(ROOT),
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    log = (cwd / "serve.log").open("w")
    server = subprocess.Popen(
        [*JOURNEY, "serve", "--port", str(port)], env=env, stderr=log, stdout=log, cwd=cwd
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{base}/metrics")
                break
            except httpx.TransportError:
                pass
            assert server.poll() is None and time.monotonic() < deadline, (cwd / "serve.log").read_text()
            time.sleep(0.05)
        yield base
    finally:
        server.terminate()
        server.wait(timeout=15)
        log.close()
