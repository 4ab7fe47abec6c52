"""Chaos: N sends through 2 Celery workers and 2 `journey run` schedulers while seeded faults hit
them, then a drain; prints sends expected, delivered, extra copies (per fault), lost, and the
longest delay a fault caused.

    python bench/chaos.py [--sends 10000] [--faults 12] [--seed 1] [--lease 10s]

Everything runs on its own: a Redis server on a free port (killed and restarted by the faults), a
throwaway PostgreSQL database (or, with --own-pg, a PostgreSQL server of its own that the faults
restart too), an SMTP server recording every Message-ID and when it arrived. Faults, drawn from a
seeded generator: a pool process killed with -9 (mid-send), a whole worker killed with -9, the
leading scheduler killed with -9, Redis killed and restarted, a worker stopped with SIGTERM, and
(with --own-pg) a PostgreSQL restart. Each killed process is started again, as an orchestrator
would. tests/workers/test_chaos.py runs a small version.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from sqlalchemy import Engine, func, select, text

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.deliver import seed  # noqa: E402
from engine.db import make_engine, upgrade  # noqa: E402
from engine.db.schema import meta, sends  # noqa: E402
from tests.support.services import PG_ADMIN_URL, free_port, port_open  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
FAULTS = ("pool", "worker", "leader", "redis", "sigterm")
MESSAGE_ID = re.compile(rb"^Message-ID: (<[^>]+>)", re.M | re.I)


class Arrivals:
    """The SMTP server's handler: every Message-ID, with the monotonic time it arrived."""

    def __init__(self, delay: float) -> None:
        self.seen: list[tuple[bytes, float]] = []
        self.delay = delay

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.delay:
            import asyncio

            await asyncio.sleep(self.delay)
        found = MESSAGE_ID.search(envelope.content)
        self.seen.append((found.group(1) if found else b"", time.monotonic()))
        return "250 OK"


@contextmanager
def smtp(delay: float) -> Iterator[tuple[Arrivals, int]]:
    handler = Arrivals(delay)
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()


@dataclass
class Fault:
    kind: str
    at: float  # monotonic
    #: when the service it took away was back (Redis restarted, a process started again)
    back: float = 0.0
    #: processes killed while they may have been sending (each may repeat one message)
    killed_sending: int = 0


@dataclass
class Fleet:
    """The processes of the run, started again after each fault."""

    env: dict[str, str]
    work: Path
    redis_port: int
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    schedulers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    redis: subprocess.Popen[bytes] | None = None
    started: int = 0

    def _log(self, name: str) -> Any:
        self.started += 1
        return (self.work / f"{name}-{self.started}.log").open("wb")

    def start_redis(self) -> None:
        with self._log("redis") as log:
            self.redis = subprocess.Popen(
                [
                    "redis-server",
                    "--port",
                    str(self.redis_port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 10
        while not port_open("127.0.0.1", self.redis_port):
            if time.monotonic() > deadline:
                raise SystemExit("redis-server did not start")
            time.sleep(0.02)

    def start_worker(self) -> subprocess.Popen[bytes]:
        argv = [
            str(BIN / "celery"),
            "-A",
            "workers",
            "worker",
            "-Q",
            "email",
            "--concurrency",
            "1",
            "-n",
            f"chaos-{uuid.uuid4().hex[:8]}@%h",
            "--loglevel",
            "WARNING",
            "--without-heartbeat",
            "--without-mingle",
            "--without-gossip",
        ]
        with self._log("worker") as log:
            proc = subprocess.Popen(argv, cwd=ROOT, env=self.env, stdout=subprocess.DEVNULL, stderr=log)
        self.workers.append(proc)
        return proc

    def start_scheduler(self) -> subprocess.Popen[bytes]:
        argv = [str(BIN / "journey"), "run", "--every", "2s", "--dispatch-every", "1s"]
        with self._log("scheduler") as log:
            proc = subprocess.Popen(argv, cwd=self.work, env=self.env, stdout=subprocess.DEVNULL, stderr=log)
        self.schedulers.append(proc)
        return proc

    def alive(self, procs: list[subprocess.Popen[bytes]]) -> list[subprocess.Popen[bytes]]:
        return [p for p in procs if p.poll() is None]

    def stop(self) -> None:
        for proc in [*self.workers, *self.schedulers]:
            children = pool_children(proc.pid)
            if proc.poll() is None:
                proc.terminate()
            for child in children:
                kill(child, signal.SIGKILL)
        for proc in [*self.workers, *self.schedulers]:
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
        if self.redis is not None:
            self.redis.kill()
            self.redis.wait(10)


def pool_children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


def kill(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def leader_pid(engine: Engine) -> int | None:
    with engine.connect() as conn:
        owner = conn.execute(select(meta.c.value).where(meta.c.key == "scheduler.leader.owner")).scalar()
    return int(str(owner).rsplit(":", 1)[1]) if owner else None


def inject(kind: str, fleet: Fleet, engine: Engine, rng: random.Random, pg: PgControl | None) -> Fault:
    fault = Fault(kind, time.monotonic())
    if kind in ("pool", "worker", "sigterm"):
        worker = rng.choice(fleet.alive(fleet.workers))
        children = pool_children(worker.pid)
        if kind == "pool":
            for child in children:
                kill(child, signal.SIGKILL)  # Celery starts another pool process
            fault.killed_sending = len(children)
        elif kind == "worker":
            worker.kill()
            for child in children:
                kill(child, signal.SIGKILL)
            worker.wait(30)
            fault.killed_sending = len(children)
            fleet.start_worker()
        else:
            worker.terminate()  # warm shutdown: the running batch finishes
            worker.wait(120)
            fleet.start_worker()
    elif kind == "leader":
        pid = leader_pid(engine)
        victims = [p for p in fleet.alive(fleet.schedulers) if p.pid == pid] or fleet.alive(fleet.schedulers)[
            :1
        ]
        for proc in victims:
            proc.kill()
            proc.wait(30)
        fleet.start_scheduler()
    elif kind == "redis":
        assert fleet.redis is not None
        fleet.redis.kill()
        fleet.redis.wait(10)
        time.sleep(rng.uniform(1.0, 5.0))  # down for a while, as a restarting server is
        fleet.start_redis()
    elif kind == "postgres":
        assert pg is not None
        pg.restart()
    fault.back = time.monotonic()
    return fault


class PgControl:
    """A PostgreSQL server of the run's own (bench.pgserver), that a fault restarts."""

    def __init__(self, stack: ExitStack) -> None:
        from bench import pgserver

        self.pgserver = pgserver
        self.admin_url, _ = stack.enter_context(pgserver.own_server(memory_bytes=1 << 30))
        admin = make_engine(self.admin_url)
        with admin.connect() as conn:
            self.data = str(conn.execute(text("SHOW data_directory")).scalar_one())
        admin.dispose()

    def restart(self) -> None:
        """An immediate stop (a crash, for its clients) and a start."""
        bindir = self.pgserver.find_bindir()
        assert bindir is not None
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        subprocess.run(
            [*prefix, str(bindir / "pg_ctl"), "-D", self.data, "-m", "immediate", "-w", "restart"],
            stdout=subprocess.DEVNULL,
            check=True,
        )


@dataclass
class Outcome:
    expected: int
    delivered: int
    extra_copies: int
    lost: int
    killed_sending: int
    longest_gap: float
    drain_after_last_fault: float
    faults: list[Fault]
    extra_per_fault: dict[str, int]
    seconds: float

    def lines(self) -> list[str]:
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(self.extra_per_fault.items())) or "none"
        return [
            f"sends expected      : {self.expected:,}",
            f"delivered           : {self.delivered:,} distinct Message-IDs",
            f"lost                : {self.lost:,}",
            f"extra copies        : {self.extra_copies:,} (processes killed mid-send: {self.killed_sending}; "
            f"by the fault before each: {kinds})",
            f"faults              : {len(self.faults)} ({', '.join(f.kind for f in self.faults)})",
            f"longest delay       : {self.longest_gap:.1f} s without a new message while sends were pending",
            f"drained             : {self.drain_after_last_fault:.1f} s after the last fault was over "
            f"({self.seconds:.0f} s in all)",
        ]


def run(
    *,
    sends_n: int,
    faults_n: int,
    seed_: int,
    lease: str,
    smtp_delay: float,
    every: float,
    own_pg: bool = False,
    drain_timeout: float = 300.0,
) -> Outcome:
    rng = random.Random(seed_)
    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="journey-chaos-")))
        pg = PgControl(stack) if own_pg else None
        admin_url = pg.admin_url if pg else PG_ADMIN_URL
        name = f"journey_chaos_{uuid.uuid4().hex[:8]}"
        admin = make_engine(admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        url = admin_url.rsplit("/", 1)[0] + "/" + name
        engine = make_engine(url, pool_pre_ping=True)

        def drop() -> None:
            engine.dispose()
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()

        stack.callback(drop)
        upgrade(engine)
        (work / "rules").mkdir()
        (work / "rules" / "stages.yaml").write_text((ROOT / "rules" / "stages.yaml").read_text())
        (work / "rules" / "cart.yaml").write_text((ROOT / "rules" / "cart_abandonment.yaml").read_text())
        seed(engine, sends_n, datetime.now(UTC) - timedelta(minutes=1))
        arrivals, smtp_port = stack.enter_context(smtp(smtp_delay))
        redis_port = free_port()
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("JOURNEY_")},
            "JOURNEY_DATABASE_URL": url,
            "JOURNEY_BROKER_URL": f"redis://127.0.0.1:{redis_port}/0",
            "JOURNEY_EMAIL_URL": f"smtp://127.0.0.1:{smtp_port}",
            "JOURNEY_RULES_DIR": str(work / "rules"),
            "JOURNEY_TEMPLATES_DIR": str(ROOT / "message_templates"),
            "JOURNEY_SECRET_KEY": "chaos",
            "JOURNEY_SEND_LEASE": lease,
        }
        fleet = Fleet(env, work, redis_port)
        stack.callback(fleet.stop)
        fleet.start_redis()
        for _ in range(2):
            fleet.start_worker()
        for _ in range(2):
            fleet.start_scheduler()
        started = time.monotonic()
        kinds = [*FAULTS, *(["postgres"] if pg else [])]
        faults: list[Fault] = []
        # the faults, one every `every` seconds from the first arrival on, while sends are pending
        while not arrivals.seen and time.monotonic() - started < 120:
            time.sleep(0.05)
        for _ in range(faults_n):
            time.sleep(rng.uniform(0.5, 1.5) * every)
            if len({m for m, _ in arrivals.seen}) >= sends_n:
                break
            faults.append(
                inject(
                    kinds[len(faults) % len(kinds)] if len(faults) < len(kinds) else rng.choice(kinds),
                    fleet,
                    engine,
                    rng,
                    pg,
                )
            )
        last_fault = faults[-1].back if faults else started

        def sent() -> int:
            try:
                with engine.connect() as conn:
                    return int(
                        conn.execute(
                            select(func.count()).select_from(sends).where(sends.c.status == "sent")
                        ).scalar_one()
                    )
            except Exception:  # noqa: BLE001 - a restarting server: ask again
                return -1

        deadline = time.monotonic() + drain_timeout
        while time.monotonic() < deadline and (
            sent() < sends_n or len({m for m, _ in arrivals.seen}) < sends_n
        ):
            time.sleep(0.2)
        drained = time.monotonic()
        seen = list(arrivals.seen)
    ids: dict[bytes, int] = {}
    for mid, _ in seen:
        ids[mid] = ids.get(mid, 0) + 1
    firsts = sorted({mid: t for mid, t in reversed(seen)}.values())
    gaps = [b - a for a, b in zip([started, *firsts], firsts, strict=False)]
    # each extra copy is counted against the fault that cut its first copy's 'sent' mark: the
    # first fault at or after the first copy arrived (a copy goes again only after the lease)
    extra_per_fault: dict[str, int] = {}
    first_at: dict[bytes, float] = {}
    for mid, t in seen:
        if mid in first_at:
            after = [f for f in faults if f.at >= first_at[mid] - 0.5]
            kind = after[0].kind if after else "none"
            extra_per_fault[kind] = extra_per_fault.get(kind, 0) + 1
        else:
            first_at[mid] = t
    return Outcome(
        expected=sends_n,
        delivered=len(ids),
        extra_copies=sum(c - 1 for c in ids.values()),
        lost=sends_n - len(ids),
        killed_sending=sum(f.killed_sending for f in faults),
        longest_gap=max(gaps, default=0.0) if len(ids) == sends_n else drained - started,
        drain_after_last_fault=max(0.0, (firsts[-1] if firsts else drained) - last_fault),
        faults=faults,
        extra_per_fault=extra_per_fault,
        seconds=drained - started,
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sends", type=int, default=10_000)
    parser.add_argument("--faults", type=int, default=12)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--lease", default="10s", help="JOURNEY_SEND_LEASE of the run")
    parser.add_argument("--every", type=float, default=3.0, help="seconds between faults (about)")
    parser.add_argument(
        "--smtp-delay", type=float, default=0.0, help="seconds the SMTP server takes per message"
    )
    parser.add_argument(
        "--own-pg", action="store_true", help="a PostgreSQL server of its own, restarted by a fault"
    )
    args = parser.parse_args()
    outcome = run(
        sends_n=args.sends,
        faults_n=args.faults,
        seed_=args.seed,
        lease=args.lease,
        smtp_delay=args.smtp_delay,
        every=args.every,
        own_pg=args.own_pg,
    )
    print("\n".join(outcome.lines()))
    # a PostgreSQL crash may forget the marks of its last moments (asynchronous commit): its copies
    # are shown apart, and not held to the one-per-killed-process bound
    bounded = outcome.extra_copies - outcome.extra_per_fault.get("postgres", 0)
    sys.exit(0 if outcome.lost == 0 and bounded <= outcome.killed_sending else 1)


if __name__ == "__main__":
    main()
