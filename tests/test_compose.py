"""docker-compose.yml, checked without Docker: every command exists, every setting is documented,
shutdowns are graceful, and the README describes the same services."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import click
from ruamel.yaml import YAML

from engine.cli import _register, cli

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


def test_every_journey_command_in_compose_exists_in_the_cli() -> None:
    _register()
    services = compose()["services"]
    checked = 0
    for name, svc in services.items():
        for command in (svc.get("command"), (svc.get("healthcheck") or {}).get("test")):
            if not isinstance(command, list):
                continue
            words = [w for w in command if w != "CMD"]
            if words and words[0] == "journey":
                group: Any = cli
                for word in words[1:]:
                    if word.startswith("-") or not isinstance(group, click.Group):
                        break
                    assert word in group.commands, f"{name}: journey has no command {word!r}"
                    group = group.commands[word]
                checked += 1
    assert checked >= 4


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
    services = compose()["services"]
    assert seconds(services["worker"]["stop_grace_period"]) >= 60
    assert seconds(services["scheduler"]["stop_grace_period"]) >= 30
    assert services["scheduler"]["deploy"]["replicas"] >= 2
    assert services["postgres"]["healthcheck"]["test"][:2] == ["CMD", "pg_isready"]


def test_the_readme_lists_exactly_the_compose_services() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("### docker compose", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"^- `([a-z]+)`:", section, flags=re.M))
    assert listed == set(compose()["services"])
