"""The production install works: `pip install .` without the dev extras, into a fresh virtual
environment, from exactly what the Dockerfile copies; then, from outside the source tree:

- a Celery worker against Redis and one against RabbitMQ, each answering a ping;
- a scheduler (`journey run --once` with the broker set) that ticks and dispatches;
- `journey serve`, answering `/healthz`.

Run by `make install-check` (part of `make test`). pip's cache is reused, so a second run installs
from local wheels. Exit status 0 when everything answered; each failure is one line saying which.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: what the Dockerfile copies before `pip install .`
DOCKER_COPIES = ("pyproject.toml", "README.md", "engine", "workers")
REDIS_URL = os.environ.get("JOURNEY_TEST_BROKER_URL", "redis://127.0.0.1:6379/13")
AMQP_URL = os.environ.get("JOURNEY_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def install(work: Path) -> Path:
    """A fresh venv with the project installed as the Dockerfile installs it: its bin directory."""
    source = work / "src"
    source.mkdir()
    for name in DOCKER_COPIES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(path, source / name)
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    out = subprocess.run([*pip, str(source)], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"pip install . failed ({out.returncode}):\n{out.stdout}{out.stderr}")
    return venv / "bin"


@contextmanager
def started(argv: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, env=env, cwd=log.parent, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


def worker_answers(bin_: Path, env: dict[str, str], broker: str, work: Path, name: str) -> str | None:
    """A worker on `broker` answers a ping; None, or why not."""
    node = f"install-check-{name}-{uuid.uuid4().hex[:8]}@localhost"
    env = {**env, "JOURNEY_BROKER_URL": broker}
    queue = f"install_check_{uuid.uuid4().hex[:8]}"  # consumes nobody else's tasks
    argv = [str(bin_ / "celery"), "-A", "workers", "worker", "-Q", queue, "-n", node, "--pool", "solo"]
    with started([*argv, "--without-mingle", "--without-gossip"], env, work / f"worker-{name}.log") as proc:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                return f"the worker on {name} exited with {proc.returncode}: see its log below"
            ping = subprocess.run(
                [str(bin_ / "celery"), "-A", "workers", "inspect", "ping", "-d", node, "--timeout", "2"],
                env=env,
                cwd=work,
                capture_output=True,
                text=True,
            )
            if ping.returncode == 0 and "pong" in ping.stdout:
                return None
        return f"the worker on {name} did not answer a ping within 60 s"


def scheduler_ticks(bin_: Path, env: dict[str, str], work: Path) -> str | None:
    env = {**env, "JOURNEY_BROKER_URL": REDIS_URL}
    out = subprocess.run(
        [str(bin_ / "journey"), "run", "--once", "--log-format", "json"],
        env=env,
        cwd=work,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if out.returncode != 0 or '"event": "tick"' not in out.stderr:
        return f"`journey run --once` exited {out.returncode} without a tick:\n{out.stderr[-2000:]}"
    return None


def serve_answers(bin_: Path, env: dict[str, str], work: Path) -> str | None:
    port = free_port()
    argv = [str(bin_ / "journey"), "serve", "--host", "127.0.0.1", "--port", str(port)]
    with started(argv, env, work / "serve.log") as proc:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                return f"`journey serve` exited with {proc.returncode}: see its log below"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as answer:
                    if answer.status == 200:
                        return None
            except OSError:
                time.sleep(0.2)
        return "`journey serve` did not answer /healthz within 60 s"


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="journey-install-check-"))
    try:
        started_at = time.monotonic()
        bin_ = install(work)
        print(f"installed without dev extras in {time.monotonic() - started_at:.0f} s")
        run_dir = work / "run"
        run_dir.mkdir()
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("JOURNEY_", "VIRTUAL_ENV", "PYTHON"))
        }
        env.update(
            PATH=f"{bin_}{os.pathsep}{env.get('PATH', '')}",
            JOURNEY_DATABASE_URL=f"sqlite:///{run_dir / 'journey.db'}",
            JOURNEY_RULES_DIR=str(ROOT / "rules"),
            JOURNEY_TEMPLATES_DIR=str(ROOT / "message_templates"),
            JOURNEY_EMAIL_URL=f"file://{run_dir / 'outbox'}",
        )
        subprocess.run(
            [str(bin_ / "journey"), "db", "upgrade"], env=env, cwd=run_dir, check=True, capture_output=True
        )
        checks: dict[str, Callable[[], str | None]] = {
            "worker on Redis answers a ping": lambda: worker_answers(bin_, env, REDIS_URL, run_dir, "redis"),
            "worker on RabbitMQ answers a ping": lambda: worker_answers(bin_, env, AMQP_URL, run_dir, "amqp"),
            "scheduler ticks and dispatches": lambda: scheduler_ticks(bin_, env, run_dir),
            "journey serve answers /healthz": lambda: serve_answers(bin_, env, run_dir),
        }
        failed = 0
        for what, check in checks.items():
            problem = check()
            print(f"{'ok  ' if problem is None else 'FAIL'} {what}" + (f": {problem}" if problem else ""))
            if problem is not None:
                failed += 1
                for log in sorted(run_dir.glob("*.log")):
                    print(f"--- {log.name}\n{log.read_text(errors='replace')[-3000:]}")
        print(f"install check: {len(checks) - failed} of {len(checks)} answered")
        return 1 if failed else 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
