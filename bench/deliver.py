"""Benchmark: end-to-end delivery through real Celery workers, against Celery's own per-task cost.

    python bench/deliver.py [--sends 20000] [--workers 2]

N due sends (the shipped cart reminder: layout, inlined CSS, unsubscribe links) are delivered to a
local SMTP server by worker processes on Redis, with batches of send ids per task; in the same
run, N no-op tasks are enqueued one per message and drained by the same workers. Prints both
rates, their ratio, the workers' CPU time per message, and what the SMTP server takes alone.

The SMTP server is postfix's `smtp-sink` (a C server: `make smtp-sink` installs it), so that the
figures measure Journey, not the server; without it the bench falls back to aiosmtpd, a pure-Python
server that saturates well below the workers, and says so.
"""

from __future__ import annotations

import argparse
import os
import pty
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
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


SMTP_SINK = shutil.which("smtp-sink") or (
    "/usr/sbin/smtp-sink" if os.access("/usr/sbin/smtp-sink", os.X_OK) else None
)


class Counting(Recorder):
    """aiosmtpd, the fallback: counts messages and keeps nothing."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.count += 1
        return "250 OK"


class Sink:
    """The SMTP server of the bench and its count of accepted messages."""

    name = ""
    port = 0

    def count(self) -> int:
        raise NotImplementedError


class PostfixSink(Sink):
    """postfix's smtp-sink, counting (`-c`: it prints `mesg=N` as messages arrive)."""

    def __init__(self, path: str) -> None:
        self.name = "postfix smtp-sink"
        self.port = free_port()
        user = ["-u", "nobody"] if os.getuid() == 0 else []
        # a terminal for its counter: into a pipe, smtp-sink buffers it until it exits
        self.tty, terminal = pty.openpty()
        self.proc = subprocess.Popen(
            [path, "-c", *user, f"127.0.0.1:{self.port}", "1024"], stdout=terminal, stderr=terminal
        )
        os.close(terminal)
        self._count = 0
        threading.Thread(target=self._read, daemon=True).start()
        deadline = time.monotonic() + 10
        while not port_open(self.port):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise SystemExit("smtp-sink did not start")
            time.sleep(0.05)

    def _read(self) -> None:
        buf = b""
        while True:
            try:
                chunk = os.read(self.tty, 4096)
            except OSError:  # the sink exited
                return
            if not chunk:
                return
            buf = (buf + chunk)[-256:]
            found = COUNT.findall(buf)
            if found:
                self._count = int(found[-1])

    def count(self) -> int:
        return self._count

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


class AiosmtpdSink(Sink):
    def __init__(self) -> None:
        self.name = "aiosmtpd (fallback: `make smtp-sink` installs postfix's smtp-sink)"
        self.recorder = Counting()
        self.port = free_port()
        self.controller = Controller(self.recorder, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def count(self) -> int:
        return self.recorder.count

    def close(self) -> None:
        self.controller.stop()


COUNT = re.compile(rb"mesg=(\d+)")


def port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@contextmanager
def sink(fallback: bool) -> Iterator[Sink]:
    server: PostfixSink | AiosmtpdSink = (
        PostfixSink(SMTP_SINK) if SMTP_SINK and not fallback else AiosmtpdSink()
    )
    try:
        yield server
    finally:
        server.close()


def sample_message(engine: Any, settings: Settings, send_id: int, now: datetime) -> bytes:
    """One of the bench's emails, whole (delivered in-process to a stub): what the capacity clients send."""
    from engine.delivery.channels.stub import StubEmailChannel
    from engine.delivery.deliverer import Deliverer

    stub = StubEmailChannel()
    deliverer = Deliverer.create(engine, settings, channels={"email": stub})
    with engine.begin() as conn:
        conn.execute(sends.update().where(sends.c.id == send_id).values(status="queued", queued_at=now))
    deliverer.deliver([send_id], now=now)
    if not stub.messages:
        raise SystemExit("the sample message was not made")
    return bytes(stub.messages[0].raw)


def postgres_pids() -> list[int]:
    """The machine's PostgreSQL server processes (the bench's database runs on a local server)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/comm"):
        try:
            if stat.read_text().strip() == "postgres":
                found.append(int(stat.parent.name))
        except OSError:
            continue
    return found


def cpu_seconds(pids: list[int], *, children: bool = True) -> float:
    """User + system CPU seconds of these processes, and of their children (the pool processes)
    unless `children` is False (the PostgreSQL processes, which are all listed already)."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for pid in pids:
        out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
        kids = [int(c) for c in out.stdout.split()] if children else []
        for p in [pid, *kids]:
            try:
                fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


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


def sink_capacity(server: Sink, sample: bytes, n: int, clients: int, log: Path) -> float:
    """Messages/s the SMTP sink accepts from `clients` processes sending the sample message: an
    upper bound on end-to-end delivery into this sink on this machine, whatever the sender."""
    sample = sample.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    if b"\r\nMessage-ID: " not in sample:
        raise SystemExit("the sample message has no Message-ID header")
    path = log.parent / "sample.eml"
    path.write_bytes(sample)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CLIENT, str(server.port), str(n // clients), str(c), str(path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        for c in range(clients)
    ]
    for p in procs:
        assert p.stdout is not None
        if p.stdout.readline().strip() != b"ready":
            raise SystemExit("a capacity client failed to start")
    before = server.count()
    t = time.perf_counter()
    for p in procs:
        assert p.stdin is not None
        p.stdin.close()  # go
    total = n // clients * clients
    wait("sink capacity", lambda: max(0, before + total - server.count()), log)
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


def workers(
    settings: Settings, count: int, rules_dir: Path, log: Path, concurrency: int = 1
) -> list[subprocess.Popen[bytes]]:
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
                str(concurrency),
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
    parser.add_argument(
        "--concurrency", type=int, default=1, help="pool processes per worker (celery worker -c)"
    )
    parser.add_argument("--aiosmtpd", action="store_true", help="use aiosmtpd even when smtp-sink is there")
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
        seed(engine, args.sends + 1, now)  # one more: the capacity clients' sample
        rules_dir = Path(tempfile.mkdtemp())
        (rules_dir / "stages.yaml").write_text((ROOT / "rules" / "stages.yaml").read_text())
        (rules_dir / "cart.yaml").write_text((ROOT / "rules" / "cart_abandonment.yaml").read_text())
        with sink(args.aiosmtpd) as server:
            settings = Settings(
                database_url=url,
                broker_url=BROKER,
                email_url=f"smtp://127.0.0.1:{server.port}",
                rules_dir=rules_dir,
                secret_key="bench",
            )
            with engine.connect() as conn:
                last = int(conn.execute(select(func.max(sends.c.id))).scalar_one())
            sample = sample_message(engine, settings, last, now)
            log = rules_dir / "workers.log"
            procs = workers(settings, args.workers, rules_dir, log, args.concurrency)
            from workers.app import make_app

            app = make_app(settings)
            r = redis.Redis.from_url(BROKER)
            for _ in range(4 * args.workers * args.concurrency):  # warm up: every process connected
                app.send_task("bench.noop", args=[[0]], queue="email")
            wait("warm-up", lambda: r.llen("email"), log)

            cpu = cpu_seconds([p.pid for p in procs])
            t = time.perf_counter()
            for i in range(args.sends):
                app.send_task("bench.noop", args=[[i]], queue="email")
            wait("no-op tasks", lambda: r.llen("email"), log)
            noop_rate = args.sends / (time.perf_counter() - t)
            noop_cpu = cpu_seconds([p.pid for p in procs]) - cpu

            def unsent() -> int:
                with engine.connect() as conn:
                    return int(
                        conn.execute(
                            select(func.count()).select_from(sends).where(sends.c.status != "sent")
                        ).scalar_one()
                    )

            before = server.count()
            cpu = cpu_seconds([p.pid for p in procs])
            pg_cpu = cpu_seconds(postgres_pids(), children=False)
            t = time.perf_counter()
            dispatch_due(
                engine,
                settings,
                now=datetime.now(UTC),
                enqueue=celery_enqueuer(settings),
                batch_size=args.batch,
                limit=args.sends,
            )
            # watch the SMTP server's count while it grows (a count of the ledger is a query that
            # competes with the workers for the same cores), then the ledger: every send marked sent
            wait("delivery", lambda: max(0, before + args.sends - server.count()), log)
            wait("delivery", unsent, log)
            e2e_rate = args.sends / (time.perf_counter() - t)
            e2e_cpu = cpu_seconds([p.pid for p in procs]) - cpu
            e2e_pg_cpu = cpu_seconds(postgres_pids(), children=False) - pg_cpu
            received = server.count() - before
            assert received == args.sends, (received, args.sends)  # none lost, none twice
            for p in procs:  # the capacity clients get the cores the workers had
                p.terminate()
            for p in procs:
                p.wait(30)
            procs = []
            capacity = sink_capacity(server, sample, args.sends, args.workers, log)
            sink_name = server.name
        print(f"SMTP server         : {sink_name}")
        print(
            f"end-to-end delivery : {e2e_rate:>10,.0f} sends/s ({args.sends:,} emails of {len(sample):,} bytes, "
            f"{args.workers} workers x {args.concurrency} processes, {args.batch} ids per task)"
        )
        print(f"no-op Celery tasks  : {noop_rate:>10,.0f} tasks/s (one task per message, same workers)")
        print(f"ratio               : {e2e_rate / noop_rate:>10.1f} x")
        print(
            f"worker CPU          : {1e6 * e2e_cpu / args.sends:>10,.0f} us per message delivered "
            f"({1e6 * noop_cpu / args.sends:,.0f} us per no-op task)"
        )
        print(
            f"PostgreSQL CPU      : {1e6 * e2e_pg_cpu / args.sends:>10,.0f} us per message delivered (its server processes)"
        )
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
