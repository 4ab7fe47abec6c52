"""Benchmark: end-to-end delivery through real Celery workers, against Celery's own per-task cost.

    python bench/deliver.py [--sends 20000] [--workers 2]

N due sends are delivered to a local SMTP server (aiosmtpd) by worker processes on Redis, with
batches of send ids per task; in the same run, N no-op tasks are enqueued one per message and
drained by the same workers. Prints both rates and their ratio.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from sqlalchemy import func, select, text

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.db import make_engine, upgrade  # noqa: E402
from engine.db.schema import customers, enrollments, sends  # noqa: E402
from engine.delivery.dispatch import dispatch_due  # noqa: E402
from engine.settings import Settings  # noqa: E402
from tests.support.services import free_port  # noqa: E402
from tests.support.smtp import Recorder
from workers.enqueue import celery_enqueuer  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN = os.environ.get("JOURNEY_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
BROKER = os.environ.get("JOURNEY_BENCH_BROKER", "redis://127.0.0.1:6379/12")


def seed(engine, n: int, now: datetime) -> None:  # type: ignore[no-untyped-def]
    with engine.begin() as conn:
        conn.execute(
            customers.insert(),
            [
                {
                    "external_id": f"b{i}",
                    "email": f"b{i}@example.com",
                    "first_name": f"B{i}",
                    "attributes": {},
                    "salt": i,
                    "referral_code": f"R{i:07d}",
                    "created_at": now,
                    "stage": "decision",
                }
                for i in range(n)
            ],
        )
        ids = [r[0] for r in conn.execute(select(customers.c.id).order_by(customers.c.id))]
        conn.execute(
            enrollments.insert(),
            [
                {
                    "rule_id": "cart_abandonment",
                    "customer_id": cid,
                    "occurrence": cid,
                    "entered_at": now,
                    "tick_at": now,
                    "position": None,
                    "due_at": now,
                    "status": "done",
                    "bucket": 0,
                }
                for cid in ids
            ],
        )
        eids = dict(conn.execute(select(enrollments.c.customer_id, enrollments.c.id)).all())
        conn.execute(
            sends.insert(),
            [
                {
                    "rule_id": "cart_abandonment",
                    "step": "0",
                    "customer_id": cid,
                    "occurrence": cid,
                    "enrollment_id": eids[cid],
                    "template": "cart_reminder",
                    "channel": "email",
                    "transactional": False,
                    "priority": 0,
                    "due_at": now,
                    "created_at": now,
                    "status": "due",
                    "attempts": 0,
                }
                for cid in ids
            ],
        )


class Sink(Recorder):
    """An SMTP server that keeps only each message's Message-ID: as cheap as a server can be, so
    that the figures measure Journey, not the test server."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: list[bytes] = []
        self.sample: bytes = b""  # the first message, whole: what the capacity clients send

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        found = MESSAGE_ID.search(envelope.content)
        self.ids.append(found.group(1) if found else b"")
        if not self.sample:
            self.sample = envelope.content
        return "250 OK"


MESSAGE_ID = re.compile(rb"^Message-ID: (<[^>]+>)", re.M | re.I)


@contextmanager
def sink() -> Iterator[tuple[Sink, int]]:
    server = Sink()
    port = free_port()
    controller = Controller(server, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield server, port
    finally:
        controller.stop()


#: a client as cheap as a client can be: the messages are built before the clock starts, then sent
#: over one connection (MAIL, RCPT, DATA per message, as the worker does)
CLIENT = """
import smtplib, sys
port, n, tag, path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
with open(path, "rb") as fh:
    sample = fh.read()
head, sep, rest = sample.partition(b"\\r\\nMessage-ID: ")
rest = rest.partition(b"\\r\\n")[2]
msgs = [head + sep + f"<cap-{tag}-{i}@bench>".encode() + b"\\r\\n" + rest for i in range(n)]
smtp = smtplib.SMTP("127.0.0.1", port)
smtp.ehlo()
print("ready", flush=True)
sys.stdin.read()  # go: the bench closes our stdin
for m in msgs:
    smtp.sendmail("bench@example.com", ["cap@example.com"], m)
smtp.quit()
"""


def sink_capacity(recorder: Sink, port: int, n: int, clients: int, log: Path) -> float:
    """Messages/s the SMTP sink accepts from `clients` processes sending the sample message: an
    upper bound on end-to-end delivery into this sink on this machine, whatever the sender."""
    sample = recorder.sample.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    if b"\r\nMessage-ID: " not in sample:
        raise SystemExit("the sample message has no Message-ID header")
    path = log.parent / "sample.eml"
    path.write_bytes(sample)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CLIENT, str(port), str(n // clients), str(c), str(path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        for c in range(clients)
    ]
    for p in procs:
        assert p.stdout is not None
        if p.stdout.readline().strip() != b"ready":
            raise SystemExit("a capacity client failed to start")
    before = len(recorder.ids)
    t = time.perf_counter()
    for p in procs:
        assert p.stdin is not None
        p.stdin.close()  # go
    total = n // clients * clients
    wait("sink capacity", lambda: before + total - len(recorder.ids), log)
    rate = total / (time.perf_counter() - t)
    for p in procs:
        p.wait(30)
    return rate


def wait(what: str, done: Any, log: Path, stall: float = 120.0) -> None:
    """Poll `done()` (which returns how much is left) until nothing is; give up on no progress."""
    left, since = done(), time.monotonic()
    while left:
        time.sleep(0.05)
        now_left = done()
        if now_left != left:
            left, since = now_left, time.monotonic()
        elif time.monotonic() - since > stall:
            raise SystemExit(
                f"{what}: {left} left and no progress for {stall:.0f} s; see the worker log {log}"
            )


def workers(settings: Settings, count: int, rules_dir: Path, log: Path) -> list[subprocess.Popen[bytes]]:
    env = {
        **os.environ,
        "JOURNEY_DATABASE_URL": settings.database_url,
        "JOURNEY_BROKER_URL": BROKER,
        "JOURNEY_EMAIL_URL": settings.email_url,
        "JOURNEY_RULES_DIR": str(rules_dir),
        "JOURNEY_TEMPLATES_DIR": str(ROOT / "message_templates"),
        "JOURNEY_SECRET_KEY": "bench",
    }
    out = log.open("ab")  # one JSON line per send, and any error
    return [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "bench.noop_worker",
                "worker",
                "-Q",
                "email",
                "--concurrency",
                "1",
                "--loglevel",
                "ERROR",
                "-n",
                f"bench{i}@%h",
                "--without-heartbeat",
                "--without-mingle",
                "--without-gossip",
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=out,
        )
        for i in range(count)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sends", type=int, default=20_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch", type=int, default=200, help="send ids per task")
    args = parser.parse_args()
    import redis

    redis.Redis.from_url(BROKER).flushdb()
    name = f"journey_bench_{uuid.uuid4().hex[:8]}"
    admin = make_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = PG_ADMIN.rsplit("/", 1)[0] + "/" + name
    engine = make_engine(url)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        upgrade(engine)
        now = datetime.now(UTC) - timedelta(minutes=1)
        seed(engine, args.sends, now)
        rules_dir = Path(tempfile.mkdtemp())
        (rules_dir / "stages.yaml").write_text((ROOT / "rules" / "stages.yaml").read_text())
        (rules_dir / "cart.yaml").write_text((ROOT / "rules" / "cart_abandonment.yaml").read_text())
        with sink() as (recorder, port):
            settings = Settings(
                database_url=url,
                broker_url=BROKER,
                email_url=f"smtp://127.0.0.1:{port}",
                rules_dir=rules_dir,
                secret_key="bench",
            )
            log = rules_dir / "workers.log"
            procs = workers(settings, args.workers, rules_dir, log)
            from workers.app import make_app

            app = make_app(settings)
            r = redis.Redis.from_url(BROKER)
            for _ in range(4 * args.workers):  # warm up: every worker started and connected
                app.send_task("bench.noop", args=[[0]], queue="email")
            wait("warm-up", lambda: r.llen("email"), log)

            t = time.perf_counter()
            for i in range(args.sends):
                app.send_task("bench.noop", args=[[i]], queue="email")
            wait("no-op tasks", lambda: r.llen("email"), log)
            noop_rate = args.sends / (time.perf_counter() - t)

            t = time.perf_counter()
            dispatch_due(
                engine,
                settings,
                now=datetime.now(UTC),
                enqueue=celery_enqueuer(settings),
                batch_size=args.batch,
                limit=args.sends,
            )

            def unsent() -> int:
                with engine.connect() as conn:
                    return int(
                        conn.execute(
                            select(func.count()).select_from(sends).where(sends.c.status != "sent")
                        ).scalar_one()
                    )

            # watch the SMTP server's count while it grows (a count of the ledger is a query that
            # competes with the workers for the same cores), then the ledger: every send marked sent
            wait("delivery", lambda: args.sends - len(recorder.ids), log)
            wait("delivery", unsent, log)
            e2e_rate = args.sends / (time.perf_counter() - t)
            assert len(recorder.ids) == len(set(recorder.ids)) == args.sends, (len(recorder.ids), args.sends)
            for p in procs:  # the capacity clients get the cores the workers had
                p.terminate()
            for p in procs:
                p.wait(30)
            procs = []
            capacity = sink_capacity(recorder, port, args.sends, args.workers, log)
        print(
            f"end-to-end delivery : {e2e_rate:>10,.0f} sends/s ({args.sends:,} emails to a local SMTP server, "
            f"{args.workers} workers, {args.batch} ids per task)"
        )
        print(f"no-op Celery tasks  : {noop_rate:>10,.0f} tasks/s (one task per message, same workers)")
        print(f"ratio               : {e2e_rate / noop_rate:>10.1f} x")
        print(
            f"SMTP sink alone     : {capacity:>10,.0f} msgs/s ({args.workers} clients sending a pre-built copy "
            f"of one of these emails: the most any sender gets through this server here)"
        )
        print(f"  sink / no-op      : {capacity / noop_rate:>10.1f} x")
        shutil.rmtree(rules_dir, ignore_errors=True)  # kept, with the worker log, when a run fails
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(30)
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


if __name__ == "__main__":
    main()
