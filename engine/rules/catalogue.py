"""The event catalogue, `rules/events.yaml` (CONTRACT 9, 14): the events rules may use, each with
the other names it is sent under (`order_placed: {aliases: ["Order Completed"]}`). An alias is
stored under its catalogue name. Without the file there is no catalogue: names are not checked
and no alias applies."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.errors import Problem
from engine.rules.yaml import RuleFile, suggest

EVENTS_FILE = "events.yaml"


@dataclass(frozen=True)
class Catalogue:
    #: catalogue names
    names: frozenset[str]
    #: alias -> catalogue name
    aliases: dict[str, str] = field(default_factory=dict)
    file: str = EVENTS_FILE
    #: catalogue name -> (line, column) in the file
    positions: dict[str, tuple[int, int]] = field(default_factory=dict)


def load_catalogue(rules_dir: Path, problems: list[Problem] | None = None) -> Catalogue | None:
    """The catalogue under rules_dir, or None without one; its problems are added to `problems`."""
    path = Path(rules_dir) / EVENTS_FILE
    if not path.is_file():
        return None
    f = RuleFile(path)
    names: set[str] = set()
    aliases: dict[str, str] = {}
    positions: dict[str, tuple[int, int]] = {}
    data: Any = f.data
    events = data.get("events") if isinstance(data, dict) else None
    if not f.problems and not isinstance(events, dict):
        f.add((), "the event catalogue is a mapping under events: (name: {aliases: [...]})")
    for name, options in (events or {}).items() if isinstance(events, dict) else ():
        name = str(name)
        names.add(name)
        positions[name] = f.at(("events", name), key=True)
        if options is None:
            continue
        if not isinstance(options, dict):
            f.add(("events", name), f"event '{name}': options are a mapping, like {{aliases: [...]}}")
            continue
        for key in options:
            if key not in ("aliases", "description"):
                f.add(
                    ("events", name, key),
                    f"unknown key '{key}'",
                    suggest(str(key), ["aliases", "description"]),
                    key=True,
                )
        given = options.get("aliases", [])
        if not isinstance(given, list) or not all(isinstance(a, str) and a for a in given):
            f.add(("events", name, "aliases"), "aliases are a list of names")
            continue
        for i, alias in enumerate(given):
            if alias in aliases and aliases[alias] != name:
                f.add(("events", name, "aliases", i), f"alias '{alias}' is already one of '{aliases[alias]}'")
            aliases[alias] = name
    for alias in list(aliases):
        if alias in names:
            f.add(("events", aliases[alias], "aliases"), f"alias '{alias}' is also a catalogue name")
    if problems is not None:
        problems += f.problems
    return Catalogue(frozenset(names), aliases, f.name, positions)


#: keys whose value names events: one name, or a list of them
_EVENT_KEYS = ("event",)
_EVENT_LIST_KEYS = ("until", "exit_on")


def check_event_names(f: RuleFile, loc: tuple[Any, ...], data: Any, catalogue: Catalogue) -> None:
    """Each event name in a rule or stage (a trigger, a condition, `until`, `exit_on`, `goal`,
    at any depth) that is neither catalogued nor reserved is a problem at its position, with the
    nearest known name."""
    from engine.events import RESERVED_EVENTS

    known = sorted(catalogue.names | set(RESERVED_EVENTS))

    def check(name: Any, at: tuple[Any, ...]) -> None:
        if not isinstance(name, str) or name in catalogue.names or name in RESERVED_EVENTS:
            return
        if name in catalogue.aliases:
            real = catalogue.aliases[name]
            f.add(
                at,
                f"event '{name}' is stored as '{real}' (an alias in {catalogue.file}): use that name",
                real,
            )
            return
        f.add(
            at,
            f"unknown event '{name}': add it to {catalogue.file}, or use a catalogued one",
            suggest(name, known),
        )

    def walk(node: Any, at: tuple[Any, ...]) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                here = (*at, key)
                if key in _EVENT_KEYS and isinstance(value, str):
                    check(value, here)
                elif key in _EVENT_LIST_KEYS and isinstance(value, str | list):
                    for i, name in enumerate(value if isinstance(value, list) else [value]):
                        check(name, (*here, i) if isinstance(value, list) else here)
                elif key != "where":  # property filters name properties, not events
                    walk(value, here)
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, (*at, i))

    walk(data, loc)
