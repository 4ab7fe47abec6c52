"""A PostgreSQL server of the bench's own, configured for the working set of a large run.

The machine's shared server keeps the stock settings (128MB shared_buffers, 1GB max_wal_size):
right for tests, but at 1,000,000 customers the database is 5 GB, and a bench against it
measures the server's eviction and checkpoints rather than the engine. A deployment that holds
that much sizes its server for it, as the settings below do. Durability is not traded: fsync
and synchronous_commit keep their defaults.

The server runs on a free port in a temporary directory, as the `postgres` user when the bench
runs as root (PostgreSQL refuses root), and is stopped and deleted when the bench ends.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def settings(memory_bytes: int | None = None) -> dict[str, str]:
    """Settings sized to the machine: a quarter of its memory as shared buffers (up to 8GB)."""
    memory = memory_bytes or os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    mb = memory // (1024 * 1024)
    return {
        "shared_buffers": f"{min(mb // 4, 8192)}MB",
        "effective_cache_size": f"{mb // 2}MB",
        "maintenance_work_mem": "1GB",
        "work_mem": "64MB",
        "wal_buffers": "64MB",
        "max_wal_size": "16GB",
        "checkpoint_timeout": "30min",
        "random_page_cost": "1.1",
    }


def find_bindir() -> Path | None:
    """The directory of initdb and pg_ctl: pg_config's, else the newest Debian-style install."""
    if shutil.which("pg_config"):
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=False)
        bindir = Path(out.stdout.strip())
        if (bindir / "initdb").exists():
            return bindir
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[-3]))
    return Path(found[-1]).parent if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def own_server(memory_bytes: int | None = None) -> Iterator[tuple[str, dict[str, str]]]:
    """Start a server; yields (admin URL of its `postgres` database, the settings it runs with)."""
    bindir = find_bindir()
    if bindir is None:
        raise RuntimeError("no PostgreSQL server binaries (initdb) found: use --pg-server shared")
    conf = settings(memory_bytes)
    root = Path(tempfile.mkdtemp(prefix="journey-bench-pg-"))
    data = root / "data"
    prefix: list[str] = []
    if os.geteuid() == 0:
        owner = pwd.getpwnam("postgres")
        os.chown(root, owner.pw_uid, owner.pw_gid)
        prefix = ["runuser", "-u", "postgres", "--"]
    port = _free_port()
    options = " ".join(
        [f"-p {port}", "-c listen_addresses=127.0.0.1", f"-c unix_socket_directories={root}"]
        + [f"-c {k}={v}" for k, v in conf.items()]
    )
    try:
        initdb = [str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust"]
        subprocess.run([*prefix, *initdb], stdout=subprocess.DEVNULL, check=True)
        start = [
            str(bindir / "pg_ctl"),
            "-D",
            str(data),
            "-l",
            str(root / "log"),
            "-o",
            options,
            "-w",
            "start",
        ]
        subprocess.run([*prefix, *start], stdout=subprocess.DEVNULL, check=True)
        try:
            yield f"postgresql://postgres@127.0.0.1:{port}/postgres", conf
        finally:
            subprocess.run(
                [*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"],
                stdout=subprocess.DEVNULL,
                check=False,
            )
    finally:
        shutil.rmtree(root, ignore_errors=True)
