"""Structured log lines: held lines go out together, in order, however the block ends."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import structlog

from engine import logs


@pytest.fixture(autouse=True)
def json_logs() -> Iterator[None]:
    logs.configure("json")  # to this test's captured stderr: undone for the tests after it
    yield
    structlog.reset_defaults()


def lines(text: str) -> list[str]:
    return [json.loads(line)["event"] for line in text.splitlines() if line.startswith("{")]


def test_held_lines_go_out_together_when_the_block_ends(capsys: pytest.CaptureFixture[str]) -> None:
    log = logs.get("journey.test")
    log.info("before")
    with logs.held():
        log.info("one")
        log.info("two")
        assert lines(capsys.readouterr().err) == ["before"]  # nothing written yet
    assert lines(capsys.readouterr().err) == ["one", "two"]
    log.info("after")
    assert lines(capsys.readouterr().err) == ["after"]


def test_held_lines_are_written_when_the_block_fails(capsys: pytest.CaptureFixture[str]) -> None:
    log = logs.get("journey.test")
    with pytest.raises(RuntimeError), logs.held():
        log.info("sent")
        raise RuntimeError("the batch broke")
    assert lines(capsys.readouterr().err) == ["sent"]
