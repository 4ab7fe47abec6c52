"""A small chaos run (bench/chaos.py): 1,000 sends through 2 real Celery workers and 2 `journey
run` schedulers on a Redis of their own, while a pool process and a whole worker are killed with
-9, the leader is killed, Redis is killed and restarted and a worker is stopped with SIGTERM."""

from __future__ import annotations

import shutil

import pytest

from bench.chaos import run
from tests.support.services import need_postgres

#: real processes for about a minute
pytestmark = [pytest.mark.slow, pytest.mark.redis, pytest.mark.timeout(600)]


def test_faults_lose_nothing_repeat_at_most_one_message_per_killed_process_and_stall_nothing() -> None:
    need_postgres()
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed: the chaos run needs a Redis of its own to kill")
    outcome = run(sends_n=1000, faults_n=5, seed_=7, lease="5s", smtp_delay=0.01, every=2.0)
    report = "\n".join(outcome.lines())
    assert [f.kind for f in outcome.faults] == ["pool", "worker", "leader", "redis", "sigterm"], report
    assert outcome.lost == 0, report
    assert outcome.delivered == 1000, report
    assert outcome.extra_copies <= outcome.killed_sending, report
    # nothing waits for a 5-minute lease, or longer than a minute after the broker's return
    assert outcome.longest_gap < 60, report
    assert outcome.drain_after_last_fault < 60, report
