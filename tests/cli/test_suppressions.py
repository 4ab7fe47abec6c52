"""`journey suppressions list|add|remove|import|export`: a few thousand addresses round-trip through
CSV, bad lines are reported as FILE:LINE: reason while the good ones are stored."""

from __future__ import annotations

import csv
import io
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.addresses import normalise
from engine.cli import main
from engine.db import make_engine, upgrade

Env = tuple[pytest.MonkeyPatch, pytest.CaptureFixture[str]]


@pytest.fixture
def cli(db_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Iterator[Env]:
    monkeypatch.setenv("JOURNEY_DATABASE_URL", db_url)
    yield monkeypatch, capsys


def run(env: Env, *argv: str) -> tuple[int, str, str]:
    _, capsys = env
    capsys.readouterr()
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def exported(env: Env) -> list[dict[str, str]]:
    status, out, _ = run(env, "suppressions", "export")
    assert status == 0
    return list(csv.DictReader(io.StringIO(out)))


def test_add_list_and_remove_an_address(cli: Env) -> None:
    assert run(cli, "suppressions", "add", "Ada@Example.COM")[0] == 0
    assert run(cli, "suppressions", "add", "bob@exämple.com", "--reason", "complaint")[0] == 0
    status, out, _ = run(cli, "suppressions", "list")
    lines = [line.split("\t") for line in out.splitlines()]
    assert [(a, r, s) for a, r, s, _ in lines] == [
        ("ada@example.com", "manual", "cli"),
        ("bob@xn--exmple-cua.com", "complaint", "cli"),
    ]
    assert all(t.endswith("Z") for *_, t in lines)
    assert run(cli, "suppressions", "list", "--reason", "complaint")[1].startswith("bob@")
    # a weaker reason never replaces a stronger one; a stronger one does
    run(cli, "suppressions", "add", "bob@EXÄMPLE.com", "--reason", "manual")
    run(cli, "suppressions", "add", "ada@example.com", "--reason", "hard_bounce")
    assert {row["email"]: row["reason"] for row in exported(cli)} == {
        "ada@example.com": "hard_bounce",
        "bob@xn--exmple-cua.com": "complaint",
    }
    assert run(cli, "suppressions", "remove", "ADA@example.com")[0] == 0
    status, _, err = run(cli, "suppressions", "remove", "ada@example.com")
    assert status == 1 and "not on the suppression list" in err
    status, _, err = run(cli, "suppressions", "add", "not-an-address")
    assert status == 1 and "not a valid address: it has no @" in err


def provider_exports(tmp_path: Path, n: int) -> tuple[Path, dict[str, str], list[int]]:
    """A file of `n` good addresses in the columns providers export (with a few case and domain
    variants), and bad lines among them: (file, normalised address -> reason, bad line numbers)."""
    rng = random.Random(7)
    words = {
        "BOUNCE": "hard_bounce",
        "HardBounce": "hard_bounce",
        "spam_report": "complaint",
        "COMPLAINT": "complaint",
        "ManualSuppression": "manual",
        "": "manual",
    }
    expected: dict[str, str] = {}
    bad: list[int] = []
    rows = [["EmailAddress", "Reason", "Origin", "CreatedAt"]]
    for i in range(n):
        domain = rng.choice(["example.com", "Example.ORG", "exämple.com", "xn--exmple-cua.com"])
        address = f"User{i}@{domain}"
        word = rng.choice(list(words))
        rows.append(
            [address, word, rng.choice(["Recipient", "Customer", ""]), f"2026-10-{1 + i % 28:02d}T10:00:00Z"]
        )
        expected[normalise(address)] = words[word]
        if i % 500 == 250:
            bad.append(len(rows) + 1)
            rows.append(["no-at-sign.example.com", "BOUNCE", "", ""])
            bad.append(len(rows) + 1)
            rows.append([f"x{i}@example.com", "maybe", "", ""])
            bad.append(len(rows) + 1)
            rows.append([f"y{i}@example.com", "BOUNCE", "", "yesterday"])
    path = tmp_path / "suppressions.csv"
    with path.open("w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows(rows)
    return path, expected, bad


def test_a_few_thousand_addresses_round_trip_and_bad_lines_are_reported(cli: Env, tmp_path: Path) -> None:
    path, expected, bad = provider_exports(tmp_path, 3000)
    status, _, err = run(cli, "suppressions", "import", str(path))
    assert status == 1  # not every line was stored
    reported = [line for line in err.splitlines() if line.startswith(f"{path}:")]
    assert [int(line.split(":")[1]) for line in reported] == bad
    assert any("'no-at-sign.example.com' is not a valid address: it has no @" in line for line in reported)
    assert any("unknown reason 'maybe'" in line for line in reported)
    assert any("'yesterday' is not a time" in line for line in reported)
    assert f"imported {len(expected):,} addresses, {len(bad)} bad lines" in err
    rows = exported(cli)
    assert {r["email"]: r["reason"] for r in rows} == expected
    assert {r["source"] for r in rows} == {"Recipient", "Customer", "import"}
    assert list(rows[0]) == ["email", "reason", "source", "created_at"]
    # the export, imported into an empty database, exports the same
    (tmp_path / "again").mkdir()
    url = f"sqlite:///{tmp_path / 'again' / 'journey.db'}"
    upgrade(engine := make_engine(url))
    engine.dispose()
    export_file = tmp_path / "export.csv"
    with export_file.open("w", newline="", encoding="utf-8") as fh:
        csv.DictWriter(fh, fieldnames=list(rows[0])).writeheader()
        csv.DictWriter(fh, fieldnames=list(rows[0])).writerows(rows)
    monkeypatch, _ = cli
    monkeypatch.setenv("JOURNEY_DATABASE_URL", url)
    assert run(cli, "suppressions", "import", str(export_file))[0] == 0
    assert exported(cli) == rows


def test_a_plain_list_of_addresses_and_an_erased_hash_import(cli: Env, tmp_path: Path) -> None:
    path = tmp_path / "plain.csv"
    digest = "ab" * 32
    path.write_text(f"ada@example.com\nbob@example.com\nsha256:{digest},erased\n", encoding="utf-8")
    assert run(cli, "suppressions", "import", str(path))[0] == 0
    assert sorted((r["email"], r["reason"]) for r in exported(cli)) == [
        ("ada@example.com", "manual"),
        ("bob@example.com", "manual"),
        (f"sha256:{digest}", "erased"),
    ]


def test_a_file_without_an_address_column_is_refused(cli: Env, tmp_path: Path) -> None:
    path = tmp_path / "wrong.csv"
    path.write_text("name,city\nAda,London\n", encoding="utf-8")
    status, _, err = run(cli, "suppressions", "import", str(path))
    assert status == 1 and f"{path}:1: no address column" in err
    status, _, err = run(cli, "suppressions", "import", str(tmp_path / "missing.csv"))
    assert status == 1 and "No such file" in err
