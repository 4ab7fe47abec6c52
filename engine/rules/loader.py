"""Loading rules, stages and settings from YAML, with errors that point at the line and column.

Every file is read (ruamel.yaml round-trip mode keeps positions and builds no Python objects),
validated against the pydantic models, and cross-checked (unique rule ids, templates that exist,
stages that exist). Any problem anywhere rejects the whole set: a rule set is never half-loaded.
"""

from __future__ import annotations

import difflib
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError

from engine.errors import Problem, RuleError
from engine.rules.model import (
    KNOWN_KEYS,
    AllCondition,
    AnyCondition,
    BranchStep,
    NotCondition,
    Rule,
    SettingsFile,
    SplitStep,
    Stage,
    StageCondition,
    StagesFile,
    iter_sends,
)

STAGES_FILE = "stages.yaml"
SETTINGS_FILE = "settings.yaml"

#: hints for keys a marketer leaves out, by key
MISSING_HINTS = {
    "for": "how long to wait: 30m, 1h, 7d",
    "event": "the event name, like cart_updated",
    "id": "a unique, stable name like cart_abandonment: sends are keyed on it",
    "trigger": "what starts the rule: event, stage_entered, inactivity, schedule or anniversary",
    "steps": "what the rule does: a list of send, wait, branch, split, update",
    "stages": "the ordered list of stages, most advanced first",
    "name": "the stage's name, like purchase",
    "attribute": "the customer attribute's name, like email",
}


@dataclass(frozen=True)
class RuleSet:
    stages: list[Stage]
    rules: list[Rule]
    settings: SettingsFile
    sources: dict[str, str] = field(default_factory=dict)
    stages_file: str | None = None

    def rule(self, rule_id: str) -> Rule:
        for r in self.rules:
            if r.id == rule_id:
                return r
        raise KeyError(rule_id)

    def digest(self, rule_id: str) -> str:
        return hashlib.sha256(self.rule(rule_id).model_dump_json(by_alias=True).encode()).hexdigest()

    @property
    def enabled(self) -> list[Rule]:
        return [r for r in self.rules if r.enabled]


def display(path: Path) -> str:
    """A path as people want to read it: relative to the current directory when under it."""
    try:
        return os.path.relpath(path) if path.resolve().is_relative_to(Path.cwd()) else str(path)
    except ValueError:
        return str(path)


def template_exists(templates_dir: Path, name: str, channel: str = "email") -> bool:
    if channel == "webhook":
        return (templates_dir / f"{name}.json.j2").is_file()
    return (templates_dir / f"{name}.subject.j2").is_file() and (
        (templates_dir / f"{name}.html.j2").is_file() or (templates_dir / f"{name}.txt.j2").is_file()
    )


def _plain(node: Any) -> Any:
    if isinstance(node, dict):
        return {str(k): _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    return node


def suggest(word: str, choices: list[str] | tuple[str, ...]) -> str | None:
    found = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return found[0] if found else None


class _File:
    """One YAML file: its data with positions, and the problems found in it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.name = display(path)
        self.problems: list[Problem] = []
        self.data: Any = None
        yaml = YAML(typ="rt")
        yaml.allow_duplicate_keys = False
        try:
            self.data = yaml.load(path.read_text(encoding="utf-8"))
        except MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
            what = (exc.problem or exc.context or "invalid YAML").strip()
            if "duplicate key" in str(exc):
                what = "duplicate key: " + what
            self.problems.append(Problem(self.name, line, col, f"YAML: {what}"))
        except UnicodeDecodeError:
            self.problems.append(Problem(self.name, 1, 1, "not UTF-8 text"))

    def at(self, loc: tuple[Any, ...], *, key: bool = False) -> tuple[int, int]:
        """Line and column (1-based) of the node at `loc`; the key itself when `key`."""
        node = self.data
        line, col = 1, 1
        for i, part in enumerate(loc):
            last = i == len(loc) - 1
            if isinstance(node, CommentedMap) and part in node:
                pos = node.lc.key(part) if (key and last) else node.lc.value(part)
                line, col = pos[0] + 1, pos[1] + 1
                node = node[part]
            elif isinstance(node, CommentedSeq) and isinstance(part, int) and part < len(node):
                pos = node.lc.item(part)
                line, col = pos[0] + 1, pos[1] + 1
                node = node[part]
            else:
                if isinstance(node, CommentedMap | CommentedSeq) and i == 0:
                    line, col = node.lc.line + 1, node.lc.col + 1
                break
        return line, col

    def add(
        self, loc: tuple[Any, ...], message: str, suggestion: str | None = None, *, key: bool = False
    ) -> None:
        line, col = self.at(loc, key=key)
        self.problems.append(Problem(self.name, line, col, message, suggestion))

    def validate(self, model: type[BaseModel], data: Any, prefix: tuple[Any, ...] = ()) -> Any:
        try:
            return model.model_validate(_plain(data))
        except ValidationError as exc:
            self._report(exc, prefix)
            return None

    def _report(self, exc: ValidationError, prefix: tuple[Any, ...]) -> None:
        errors = exc.errors(include_url=False)
        extras: dict[tuple[Any, ...], list[Any]] = {}
        for err in errors:
            if err["type"] == "extra_forbidden":
                loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("<")))
                extras[loc[:-1]] = extras.get(loc[:-1], []) + [loc[-1]]
        mentioned: set[tuple[Any, ...]] = set()
        for err in errors:
            loc = prefix + tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("<")))
            kind = err["type"]
            if kind == "extra_forbidden":
                word = str(loc[-1])
                # a key missing beside it is the likeliest meaning: 'fro' is 'for' when 'for' is missing
                wanted = [
                    str(m["loc"][-1])
                    for m in errors
                    if m["type"] == "missing" and _strip(m["loc"])[:-1] == loc[len(prefix) : -1]
                ]
                hint = suggest(word, wanted) or suggest(word, KNOWN_KEYS)
                self.add(loc, f"unknown key '{word}'", hint, key=True)
            elif kind == "missing":
                word = str(loc[-1])
                hint = MISSING_HINTS.get(word)
                parent = loc[:-1]
                near = [w for w in extras.get(parent[len(prefix) :], []) if suggest(str(w), [word])]
                text = f"missing key '{word}'" + (f" ({hint})" if hint else "")
                if near:
                    text += f"; is '{near[0]}' meant to be '{word}'?"
                if (parent, word) in mentioned:
                    continue
                mentioned.add((parent, word))
                self.add(parent, text)
            elif kind == "step" and isinstance(err.get("input"), dict) and err["input"]:
                # a step with no known kind: the nearest kind to one of its keys is the likely typo
                steps = ("send", "wait", "branch", "split", "update")
                words = [str(k) for k in err["input"]]
                guess = next(((w, hint) for w in words if (hint := suggest(w, steps))), None)
                if guess is None:
                    self.add(
                        loc, f"a step needs one of: {', '.join(steps)}; this one has: {', '.join(words)}"
                    )
                else:
                    self.add((*loc, guess[0]), f"unknown step '{guess[0]}'", guess[1], key=True)
            else:
                message = str(err["msg"])
                for lead in ("Value error, ", "Assertion failed, "):
                    message = message.removeprefix(lead)
                if kind in (
                    "string_type",
                    "int_type",
                    "int_parsing",
                    "float_parsing",
                    "bool_parsing",
                    "list_type",
                    "dict_type",
                    "model_type",
                    "literal_error",
                    "string_pattern_mismatch",
                ):
                    where = ".".join(str(p) for p in loc) or "value"
                    message = f"'{where}': {message.lower()}" + (
                        f", got {err['input']!r}"
                        if "input" in err and not isinstance(err["input"], dict | list)
                        else ""
                    )
                self.add(loc, message)


def _strip(loc: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(p for p in loc if not (isinstance(p, str) and p.startswith("<")))


def _stage_refs(cond: Any, out: list[str]) -> None:
    if isinstance(cond, StageCondition):
        out.extend(cond.names())
    elif isinstance(cond, AllCondition | AnyCondition):
        for c in cond.all if isinstance(cond, AllCondition) else cond.any:
            _stage_refs(c, out)
    elif isinstance(cond, NotCondition):
        _stage_refs(cond.not_, out)


def _rule_stage_refs(rule: Rule) -> list[str]:
    out: list[str] = []
    for c in rule.conditions:
        _stage_refs(c, out)
    if rule.trigger.audience is not None:
        _stage_refs(rule.trigger.audience, out)

    def walk(steps: Any) -> None:
        for step in steps:
            if isinstance(step, BranchStep):
                _stage_refs(step.branch.if_, out)
                walk(step.branch.then)
                walk(step.branch.else_)
            elif isinstance(step, SplitStep):
                for v in step.variants.values():
                    walk(v)

    walk(rule.steps)
    return out


def _find_key(data: Any, key: str, value: str) -> tuple[Any, ...]:
    """The location of the first `key: value` inside `data` (for cross-file problems)."""
    if isinstance(data, dict):
        for k, v in data.items():
            if k == key and v == value:
                return (k,)
            sub = _find_key(v, key, value)
            if sub:
                return (k, *sub)
    elif isinstance(data, list):
        for i, v in enumerate(data):
            sub = _find_key(v, key, value)
            if sub:
                return (i, *sub)
    return ()


def rule_files(rules_dir: Path) -> list[Path]:
    files = sorted(p for p in rules_dir.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file())
    return [p for p in files if p.name not in (STAGES_FILE, SETTINGS_FILE) or p.parent != rules_dir]


def load_ruleset(rules_dir: Path, templates_dir: Path | None = None) -> RuleSet:
    """Load and check everything under rules_dir; raise RuleError listing every problem."""
    rules_dir = Path(rules_dir)
    templates_dir = Path(templates_dir) if templates_dir is not None else None
    problems: list[Problem] = []
    if not rules_dir.is_dir():
        raise RuleError(
            [Problem(display(rules_dir), 1, 1, "rules directory not found (set JOURNEY_RULES_DIR)")]
        )

    stages_path = rules_dir / STAGES_FILE
    stages: list[Stage] = []
    stage_file: _File | None = None
    if not stages_path.is_file():
        problems.append(
            Problem(
                display(stages_path),
                1,
                1,
                "missing: create it with the ordered list of stages (see CONTRACT section 3)",
            )
        )
    else:
        stage_file = _File(stages_path)
        if stage_file.data is not None or not stage_file.problems:
            parsed = stage_file.validate(StagesFile, stage_file.data)
            if parsed is not None:
                stages = list(parsed.stages)
        problems += stage_file.problems
    stage_names = [s.name for s in stages]

    settings = SettingsFile()
    settings_path = rules_dir / SETTINGS_FILE
    if settings_path.is_file():
        sf = _File(settings_path)
        if sf.data is not None:
            parsed_settings = sf.validate(SettingsFile, sf.data)
            if parsed_settings is not None:
                settings = parsed_settings
        problems += sf.problems

    rules: list[Rule] = []
    sources: dict[str, str] = {}
    for path in rule_files(rules_dir):
        f = _File(path)
        if f.data is None:
            if not f.problems:
                f.add((), "empty rule file: write a rule (id, trigger, steps) or remove the file")
            problems += f.problems
            continue
        entries: list[tuple[tuple[Any, ...], Any]]
        if isinstance(f.data, dict) and "rules" in f.data and "id" not in f.data:
            if not isinstance(f.data["rules"], list):
                f.add(("rules",), "'rules' must be a list of rules")
                entries = []
            else:
                entries = [(("rules", i), item) for i, item in enumerate(f.data["rules"])]
                extra = [k for k in f.data if k != "rules"]
                for k in extra:
                    f.add((k,), f"unknown key '{k}' beside 'rules:'", suggest(str(k), KNOWN_KEYS), key=True)
        elif isinstance(f.data, dict):
            entries = [((), f.data)]
        else:
            f.add((), "a rule file holds one rule (a mapping with id:) or a list under rules:")
            entries = []
        for loc, item in entries:
            rule = f.validate(Rule, item, loc)
            if rule is None:
                continue
            line, _ = f.at(loc + ("id",))
            where = f"{f.name}:{line}"
            if rule.id in sources:
                f.add(loc + ("id",), f"duplicate rule id '{rule.id}': also defined at {sources[rule.id]}")
                continue
            sources[rule.id] = where
            rules.append(rule)
            if stage_names:
                refs = _rule_stage_refs(rule)
                for _key, name in (
                    ("stage_entered", rule.trigger.stage_entered),
                    ("from", rule.trigger.from_),
                ):
                    if name is not None:
                        refs.append(name)
                for name in refs:
                    if name not in stage_names:
                        sub = (
                            _find_key(item, "stage_entered", name)
                            or _find_key(item, "from", name)
                            or _find_key(item, "stage", name)
                            or ("trigger",)
                        )
                        f.add(
                            loc + sub,
                            f"unknown stage '{name}' (stages: {', '.join(stage_names)})",
                            suggest(name, stage_names),
                        )
            if templates_dir is not None:
                for send in iter_sends(list(rule.steps)):
                    if not template_exists(templates_dir, send.send, send.channel):
                        sub = _find_key(item, "send", send.send)
                        # other names only: a name whose other parts exist is not its own suggestion
                        names = sorted(
                            {p.name.split(".")[0] for p in Path(templates_dir).glob("*.j2")} - {send.send}
                        )
                        needs = (
                            f"{send.send}.json.j2"
                            if send.channel == "webhook"
                            else f"{send.send}.subject.j2 and {send.send}.html.j2 or .txt.j2"
                        )
                        f.add(
                            loc + sub,
                            f"template '{send.send}' not found in {display(Path(templates_dir))} "
                            f"(needs {needs})",
                            suggest(send.send, names),
                        )
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
        stages_file=display(stages_path) if stage_file else None,
    )
