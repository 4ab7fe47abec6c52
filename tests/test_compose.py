"""docker-compose.yml, checked without Docker: every command exists, every setting is documented,
shutdowns are graceful, and the README describes the same services."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import click
from ruamel.yaml import YAML

from engine.cli import cli

ROOT = Path(__file__).resolve().parent.parent
CONTRACT_VARS = {
    "JOURNEY_DATABASE_URL",
    "JOURNEY_BROKER_URL",
    "JOURNEY_EMAIL_URL",
    "JOURNEY_WEBHOOK_TIMEOUT",
    "JOURNEY_RULES_DIR",
    "JOURNEY_TEMPLATES_DIR",
    "JOURNEY_SECRET_KEY",
    "JOURNEY_BASE_URL",
    "JOURNEY_FROM",
    "JOURNEY_POSTAL_ADDRESS",
    "JOURNEY_API_KEY",
}


def compose() -> dict[str, Any]:
    data = YAML(typ="safe").load((ROOT / "docker-compose.yml").read_text())
    assert isinstance(data, dict)
    return data


def seconds(text: str) -> int:
    m = re.fullmatch(r"(\d+)(s|m)", text)
    assert m, text
    return int(m.group(1)) * (60 if m.group(2) == "m" else 1)


def test_every_journey_command_in_compose_parses_in_the_cli() -> None:
    """Each `journey …` command and health check, parsed by the CLI itself: a misspelt command or
    option fails here, not in a container at 3 a.m."""
    services = compose()["services"]
    checked = 0
    for name, svc in services.items():
        for command in (svc.get("command"), (svc.get("healthcheck") or {}).get("test")):
            if not isinstance(command, list):
                continue
            words = [str(w) for w in command if w != "CMD"]
            if not words or words[0] != "journey":
                continue
            group: Any = cli
            args = words[1:]
            while isinstance(group, click.Group):
                assert args and args[0] in group.commands, f"{name}: journey has no command {args[:1]}"
                group, args = group.commands[args[0]], args[1:]
            try:
                group.make_context(" ".join(words[: -len(args)] if args else words), list(args))
            except click.UsageError as exc:
                raise AssertionError(f"{name}: {' '.join(words)}: {exc.format_message()}") from None
            checked += 1
    assert checked >= 4


def test_a_misspelt_option_would_be_caught() -> None:
    run = cli.commands["run"]
    try:
        run.make_context("journey run", ["--evry", "30s"])
    except click.UsageError:
        return
    raise AssertionError("make_context accepted an unknown option")


def test_the_worker_command_finds_the_celery_app() -> None:
    worker = compose()["services"]["worker"]["command"]
    assert worker[:3] == ["celery", "-A", "workers"] and "-Q" in worker
    import workers.app

    assert callable(workers.app.make_app)


def test_every_setting_used_is_a_documented_one() -> None:
    readme = (ROOT / "README.md").read_text()
    env = compose()["x-journey-env"]
    for key in env:
        assert key in CONTRACT_VARS or f"`{key}`" in readme, key


def test_shutdowns_are_graceful() -> None:
    from workers.app import SOFT_SHUTDOWN_SECONDS

    services = compose()["services"]
    # longer than the worker's own soft shutdown, so Docker's SIGKILL never cuts a batch short
    assert seconds(services["worker"]["stop_grace_period"]) > SOFT_SHUTDOWN_SECONDS
    assert seconds(services["scheduler"]["stop_grace_period"]) >= 30
    assert services["scheduler"]["deploy"]["replicas"] >= 2
    assert services["postgres"]["healthcheck"]["test"][:2] == ["CMD", "pg_isready"]


def test_workers_publish_their_send_metrics() -> None:
    worker = compose()["services"]["worker"]
    env = worker["environment"]
    assert env["JOURNEY_WORKER_METRICS_PORT"] == "9101" and "9101" in [str(p) for p in worker["expose"]]
    assert any(str(t).startswith(env["PROMETHEUS_MULTIPROC_DIR"]) for t in worker["tmpfs"])


def test_the_readme_lists_exactly_the_compose_services() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("### docker compose", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"^- `([a-z]+)`:", section, flags=re.M))
    assert listed == set(compose()["services"])
