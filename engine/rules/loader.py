"""Loading rules, stages and settings from YAML, with errors that point at the line and column.

Every file is read and validated (`engine.rules.yaml`), then cross-checked (`engine.rules.checks`:
unique rule ids, templates that exist, stages that exist). Any problem anywhere rejects the whole
set: a rule set is never half-loaded.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.errors import Problem, RuleError
from engine.rules.catalogue import EVENTS_FILE, Catalogue, check_event_names, load_catalogue
from engine.rules.checks import (
    check_segments,
    check_stages,
    check_templates_exist,
    check_topic,
    check_unique_id,
    rule_segment_refs,
    segment_order,
)
from engine.rules.conditions import segment_names
from engine.rules.model import KNOWN_KEYS, Rule, Segment, SegmentsFile, SettingsFile, Stage, StagesFile
from engine.rules.yaml import RuleFile, display, suggest

STAGES_FILE = "stages.yaml"
SETTINGS_FILE = "settings.yaml"
SEGMENTS_FILE = "segments.yaml"
#: the rule id of a broadcast's sends is this and the broadcast id
BROADCAST_PREFIX = "broadcast."


@dataclass(frozen=True)
class RuleSet:
    stages: list[Stage]
    rules: list[Rule]
    settings: SettingsFile
    sources: dict[str, str] = field(default_factory=dict)
    stages_file: str | None = None
    #: the event catalogue (rules/events.yaml); None without one: names are then not checked
    catalogue: Catalogue | None = None
    #: segments.yaml's segments, each after those it uses (none without the file)
    segments: list[Segment] = field(default_factory=list)

    def rule(self, rule_id: str) -> Rule:
        for r in self.rules:
            if r.id == rule_id:
                return r
        if rule_id.startswith(BROADCAST_PREFIX):
            return broadcast_rule(rule_id)
        raise KeyError(rule_id)

    def digest(self, rule_id: str) -> str:
        return hashlib.sha256(self.rule(rule_id).model_dump_json(by_alias=True).encode()).hexdigest()

    @property
    def enabled(self) -> list[Rule]:
        return [r for r in self.rules if r.enabled]


def broadcast_rule(rule_id: str) -> Rule:
    """The rule a broadcast's sends are delivered under: marketing (cap, quiet hours, opt-outs of
    everything or of this broadcast), no exit events. KeyError for an id a rule could not have."""
    try:
        return Rule.model_validate(
            {
                "id": rule_id,
                "description": f"Broadcast {rule_id[len(BROADCAST_PREFIX) :]}",
                "trigger": {"event": "broadcast"},
                "steps": [{"send": "broadcast"}],
            }
        )
    except ValueError:
        raise KeyError(rule_id) from None


def rule_files(rules_dir: Path) -> list[Path]:
    files = sorted(p for p in rules_dir.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file())
    own = (STAGES_FILE, SETTINGS_FILE, SEGMENTS_FILE, EVENTS_FILE)
    return [p for p in files if p.name not in own or p.parent != rules_dir]


def load_stages(path: Path, problems: list[Problem]) -> tuple[list[Stage], str | None]:
    """The stage file's stages (none when it is missing or wrong: its problems are added)."""
    if not path.is_file():
        problems.append(
            Problem(
                display(path),
                1,
                1,
                "missing: create it with the ordered list of stages (see CONTRACT section 3)",
            )
        )
        return [], None
    f = RuleFile(path)
    stages: list[Stage] = []
    if f.data is not None or not f.problems:
        parsed = f.validate(StagesFile, f.data)
        if parsed is not None:
            stages = list(parsed.stages)
    problems += f.problems
    return stages, display(path)


def load_settings(path: Path, problems: list[Problem]) -> SettingsFile:
    """The settings file, or the defaults when there is none (or it is wrong: problems added)."""
    if not path.is_file():
        return SettingsFile()
    f = RuleFile(path)
    settings = SettingsFile()
    if f.data is not None:
        parsed = f.validate(SettingsFile, f.data)
        if parsed is not None:
            settings = parsed
    problems += f.problems
    return settings


def load_segments(path: Path, problems: list[Problem]) -> list[Segment]:
    """segments.yaml's segments in the order they can be computed (none when there is no file;
    a name used but not defined, or a cycle of segments using each other, is a problem)."""
    if not path.is_file():
        return []
    f = RuleFile(path)
    segments: list[Segment] = []
    if f.data is not None:
        parsed = f.validate(SegmentsFile, f.data)
        if parsed is not None:
            segments = list(parsed.segments)
    names = [s.name for s in segments]
    for i, seg in enumerate(segments):
        item = f.data["segments"][i] if isinstance(f.data, dict) else None
        check_segments(f, ("segments", i), item, names, segment_names(seg.when))
    ordered, cycle = segment_order(segments)
    if cycle is not None:
        f.add(
            ("segments", names.index(cycle[0]), "when"),
            "segments use each other in a cycle: "
            + " -> ".join(cycle)
            + " (a segment cannot contain itself)",
        )
    problems += f.problems
    return ordered


def rule_entries(f: RuleFile) -> list[tuple[tuple[Any, ...], Any]]:
    """(location, mapping) of each rule in a file: the file itself, or each item under `rules:`."""
    data = f.data
    if data is None:
        if not f.problems:
            f.add((), "empty rule file: write a rule (id, trigger, steps) or remove the file")
        return []
    if isinstance(data, dict) and "rules" in data and "id" not in data:
        for k in data:
            if k != "rules":
                f.add((k,), f"unknown key '{k}' beside 'rules:'", suggest(str(k), KNOWN_KEYS), key=True)
        if not isinstance(data["rules"], list):
            f.add(("rules",), "'rules' must be a list of rules")
            return []
        return [(("rules", i), item) for i, item in enumerate(data["rules"])]
    if isinstance(data, dict):
        return [((), data)]
    f.add((), "a rule file holds one rule (a mapping with id:) or a list under rules:")
    return []


def load_ruleset(rules_dir: Path, templates_dir: Path | None = None) -> RuleSet:
    """Load and check everything under rules_dir; raise RuleError listing every problem."""
    rules_dir = Path(rules_dir)
    templates_dir = Path(templates_dir) if templates_dir is not None else None
    if not rules_dir.is_dir():
        raise RuleError(
            [Problem(display(rules_dir), 1, 1, "rules directory not found (set JOURNEY_RULES_DIR)")]
        )
    problems: list[Problem] = []
    stages, stages_file = load_stages(rules_dir / STAGES_FILE, problems)
    stage_names = [s.name for s in stages]
    settings = load_settings(rules_dir / SETTINGS_FILE, problems)
    catalogue = load_catalogue(rules_dir, problems)
    for name in (STAGES_FILE, SEGMENTS_FILE):  # their conditions name events too
        if catalogue is not None and (rules_dir / name).is_file():
            sf = RuleFile(rules_dir / name)
            if not sf.problems:
                check_event_names(sf, (), sf.data, catalogue)
                problems += sf.problems
    segments = load_segments(rules_dir / SEGMENTS_FILE, problems)
    segment_names_ = [s.name for s in segments]
    rules: list[Rule] = []
    sources: dict[str, str] = {}
    for path in rule_files(rules_dir):
        f = RuleFile(path)
        for loc, item in rule_entries(f):
            rule = f.validate(Rule, item, loc)
            if rule is None or not check_unique_id(f, loc, rule, sources):
                continue
            rules.append(rule)
            if stage_names:
                check_stages(f, loc, item, rule, stage_names)
            check_topic(f, loc, rule, settings.topics)
            check_segments(f, loc, item, segment_names_, rule_segment_refs(rule))
            if templates_dir is not None:
                check_templates_exist(f, loc, item, rule, templates_dir)
            if catalogue is not None:
                check_event_names(f, loc, item, catalogue)
        problems += f.problems
    if problems:
        problems.sort(key=lambda p: (p.file, p.line, p.column))
        raise RuleError(problems)
    rules.sort(key=lambda r: r.id)
    return RuleSet(
        stages=stages,
        rules=rules,
        settings=settings,
        sources=sources,
        stages_file=stages_file,
        catalogue=catalogue,
        segments=segments,
    )
