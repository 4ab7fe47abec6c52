"""Checking a rule set with its templates (`journey rules check`): every template rendered
against a sample context, so that a syntax error or an unknown variable is found before a send."""

from __future__ import annotations

import re
from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from pathlib import Path
from typing import Any

from jinja2 import TemplateSyntaxError, UndefinedError

from engine.delivery.locales import PARTS, complete, not_covered, parse_filename, read_paths, variants
from engine.delivery.render import Templates
from engine.errors import Problem, RuleError, TemplateError
from engine.rules.loader import RuleSet, load_ruleset, rule_entries, rule_files
from engine.rules.model import Rule, SendStep, WaitForStep
from engine.rules.walk import step_at, walk_steps
from engine.rules.yaml import RuleFile, display, suggest


class _Strict:
    """A sample object for check time: known fields answer, unknown ones are errors."""

    def __init__(self, label: str, fields: Mapping[str, Any]) -> None:
        self._label = label
        self._fields = dict(fields)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        if name in self._fields:
            return self._fields[name]
        raise UndefinedError(f"'{self._label}' has no attribute '{name}'")

    def __getitem__(self, name: str) -> Any:
        return self.__getattr__(name)

    def __contains__(self, name: str) -> bool:
        return name in self._fields

    def __bool__(self) -> bool:
        return True


class _AnyAttributes(dict[str, Any]):
    """Customer attributes at check time: any name is allowed (they are free-form)."""

    keys_only = False

    def __missing__(self, key: str) -> str:
        return "sample"

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return self[name]


def sample_context(rule_id: str = "sample_rule") -> dict[str, Any]:
    """A context with every variable the product provides, for `journey rules check`."""
    from engine.delivery.context import SampleLinks

    customer = _Strict(
        "customer",
        {
            "id": "c-1",
            "email": "ada@example.com",
            "first_name": "Ada",
            "phone": None,
            "timezone": "Europe/Berlin",
            "locale": "en",
            "stage": "decision",
            "referral_code": "ABCD2345",
            "attributes": _AnyAttributes(),
        },
    )
    item = {
        "product_id": "p-1",
        "name": "Trail shoe",
        "price": 89.0,
        "qty": 1,
        "url": "https://example.com/p/1",
        "category": "shoes",
        "image": "https://example.com/i/1.jpg",
    }
    props = _AnyAttributes(
        items=[item],
        cart_value=89.0,
        value=89.0,
        order_id="o-1",
        score=9,
        name="Trail shoe",
        url="https://example.com/p/1",
        price=89.0,
        category="shoes",
        product_id="p-1",
    )
    event = _Strict(
        "event", {"name": "cart_updated", "timestamp": "2026-11-01T10:00:00Z", "properties": props}
    )
    return {
        "customer": customer,
        "event": event,
        "rule": _Strict("rule", {"id": rule_id, "description": "A sample rule"}),
        "links": SampleLinks(),
        "recent_events": lambda name, n=3: [event] * min(int(n), 3),
        "brand": _Strict(
            "brand", {"name": "Journey Shop", "postal_address": "1 Example Street", "from": "x"}
        ),
        "now": "2026-11-01T10:00:00Z",
        "subject": "",
    }


_NO_ATTRIBUTE = re.compile(r"'([^']+)' has no attribute '(\w+)'")
_UNDEFINED = re.compile(r"'(\w+)' is undefined")


def _known_names(label: str, context: Mapping[str, Any]) -> list[str]:
    """The names a sample object of the context answers to, by its label in an error message."""
    value = context.get(label)
    if isinstance(value, _Strict):
        return list(value._fields)
    if "SampleLinks" in label or label == "links":
        from engine.delivery.context import SampleLinks

        return [n for n in dir(SampleLinks) if not n.startswith("_")]
    return []


def _undefined_problem(templates_dir: Path, file: str, shown: str, line: int, message: str) -> Problem:
    """An undefined variable, located at its column, with the nearest name the context has."""
    context = sample_context()
    wrong: str | None = None
    choices: list[str] = []
    if m := _NO_ATTRIBUTE.search(message):
        wrong, choices = m.group(2), _known_names(m.group(1), context)
    elif m := _UNDEFINED.search(message):
        wrong, choices = m.group(1), [k for k in context if k != "subject"]
    column = 1
    if wrong is not None:
        try:
            text = (templates_dir / file).read_text(encoding="utf-8").splitlines()[line - 1]
            found = re.search(rf"\b{re.escape(wrong)}\b", text)
            column = found.start() + 1 if found else 1
        except (OSError, IndexError, UnicodeDecodeError):
            pass
    hint = suggest(wrong, choices) if wrong is not None else None
    return Problem(f"{shown}/{file}", line, column, message, hint)


def check_templates(templates_dir: Path, ruleset: RuleSet | None) -> list[Problem]:
    """Render every template against a sample context; syntax errors and unknown variables."""
    templates = Templates(templates_dir, currency=ruleset.settings.currency if ruleset else None)
    problems: list[Problem] = []
    shown = display(Path(templates_dir))
    for path in sorted(Path(templates_dir).glob("*.j2")):
        if path.name.startswith("_"):
            continue
        try:
            if path.name.endswith(".json.j2"):
                templates.render_json(path.name[: -len(".json.j2")], sample_context())
            else:
                templates._render_file(path.name, sample_context())
        except TemplateError as exc:
            file = exc.file or path.name
            if exc.message.startswith("undefined variable"):
                problems.append(
                    _undefined_problem(Path(templates_dir), file, shown, exc.line or 1, exc.message)
                )
            else:
                problems.append(Problem(f"{shown}/{file}", exc.line or 1, 1, exc.message))
    broken = {Path(p.file).name for p in problems}
    problems += check_parts(Path(templates_dir), templates, broken)
    return sorted(problems, key=lambda p: (p.file, p.line))


def check_parts(
    templates_dir: Path, templates: Templates, broken: AbstractSet[str] = frozenset()
) -> list[Problem]:
    """Each template, and each of its locale variants, is whole (a subject and a body, or a JSON
    body); a variant has a default beside it, and reads nothing the default does not (`broken`:
    files that failed to render, whose reads are not compared)."""
    shown = display(templates_dir)
    problems: list[Problem] = []
    groups: dict[tuple[str, str | None], set[str]] = {}
    for path in sorted(templates_dir.glob("*.j2")):
        if path.name.startswith("_"):
            continue
        f = parse_filename(path.name)
        bits = path.name.split(".")
        if f is None and len(bits) == 4 and bits[2] in PARTS:
            problems.append(
                Problem(
                    f"{shown}/{path.name}",
                    1,
                    1,
                    f"'{bits[1]}' is not a locale: name the file {bits[0]}.LOCALE.{bits[2]}.j2 with a "
                    "language code like fr, or fr-CA",
                )
            )
        elif f is not None:
            groups.setdefault((f.name, f.locale), set()).add(f.part)
        else:
            groups.setdefault((bits[0], None), set())
    for (name, locale), parts in sorted(groups.items(), key=lambda g: (g[0][0], g[0][1] or "")):
        prefix = name if locale is None else f"{name}.{locale}"
        whole = " (a locale's template is whole: none of its files comes from the default)" if locale else ""
        has_body = bool(parts & {"html", "txt"})
        if "subject" in parts and not has_body:
            problems.append(
                Problem(
                    f"{shown}/{prefix}.subject.j2",
                    1,
                    1,
                    f"'{prefix}' has a subject but no body: add {prefix}.html.j2 or {prefix}.txt.j2{whole}",
                )
            )
        elif has_body and "subject" not in parts:
            first = f"{prefix}.html.j2" if "html" in parts else f"{prefix}.txt.j2"
            problems.append(
                Problem(
                    f"{shown}/{first}", 1, 1, f"'{prefix}' has no subject: add {prefix}.subject.j2{whole}"
                )
            )
        if locale is None or not complete(parts):
            continue
        default = groups.get((name, None), set())
        if not complete(default):
            some = sorted(parts)[0]
            problems.append(
                Problem(
                    f"{shown}/{prefix}.{some}.j2",
                    1,
                    1,
                    f"'{prefix}' has no default template beside it: add {name}.subject.j2 and a body "
                    f"(or {name}.json.j2), for customers of other locales",
                )
            )
            continue
        ok = {part for part in parts if f"{prefix}.{part}.j2" not in broken}
        problems += _locale_drift(templates_dir, templates, name, prefix, ok, default)
    return problems


def _locale_drift(
    templates_dir: Path, templates: Templates, name: str, prefix: str, parts: set[str], default: set[str]
) -> list[Problem]:
    """What the locale variant reads that the default does not: data only some customers have
    would fail their email in this locale alone."""
    shown = display(templates_dir)

    def paths(stem: str, part: str) -> dict[str, int]:
        try:
            return read_paths(
                templates.env, (templates_dir / f"{stem}.{part}.j2").read_text(encoding="utf-8")
            )
        except (OSError, UnicodeDecodeError, TemplateSyntaxError):
            return {}  # reported by the render check

    read_by_default = {path for part in default for path in paths(name, part)}
    problems: list[Problem] = []
    for part in sorted(parts):
        file = f"{prefix}.{part}.j2"
        for path, line in not_covered(paths(prefix, part), read_by_default).items():
            column = 1
            try:
                text = (templates_dir / file).read_text(encoding="utf-8").splitlines()[line - 1]
                found = text.find(path.rsplit(".", 1)[-1])
                column = found + 1 if found >= 0 else 1
            except (OSError, IndexError, UnicodeDecodeError):
                pass
            problems.append(
                Problem(
                    f"{shown}/{file}",
                    line,
                    column,
                    f"'{path}' is read here but not by the default {name}: a customer without it would "
                    f"get no email in this locale; read it in the default too, or write "
                    f"{path} | default('')",
                )
            )
    return problems


def _yaml_loc(rule: Rule, path: str) -> tuple[Any, ...]:
    """Where the step at a step path sits in the rule's YAML: '0.B.1' is steps/0/variants/B/1,
    '2.then.0' is steps/2/branch/then/0 or steps/2/wait_for/then/0."""
    parts = path.split(".")
    loc: list[Any] = ["steps", int(parts[0])]
    for i, (key, index) in enumerate(zip(parts[1::2], parts[2::2], strict=True)):
        parent = step_at(rule, ".".join(parts[: 2 * i + 1]))
        if isinstance(parent, WaitForStep):
            loc += ["wait_for", key]
        elif key in ("then", "else"):
            loc += ["branch", key]
        else:
            loc += ["variants", key]
        loc.append(int(index))
    return tuple(loc)


def check_overrides(rules_dir: Path, templates_dir: Path, ruleset: RuleSet) -> list[Problem]:
    """Render every send step's subject and block overrides against the sample context, as the
    template they change; a block the template does not have is an error too."""
    templates = Templates(templates_dir, currency=ruleset.settings.currency)
    files = {display(path): path for path in rule_files(Path(rules_dir))}
    problems: list[Problem] = []
    for rule in ruleset.rules:
        steps = [(path, step) for path, step in walk_steps(rule.steps) if isinstance(step, SendStep)]
        steps = [(path, step) for path, step in steps if step.subject is not None or step.blocks]
        if not steps:
            continue
        where = _rule_locator(files, ruleset.sources.get(rule.id, ""), rule)
        for path, step in steps:
            name = step.template
            known = templates.block_names(f"{name}.html.j2") | templates.block_names(f"{name}.txt.j2")
            for block in step.blocks:
                if block not in known:
                    shown = ", ".join(sorted(known)) or "none"
                    problems.append(
                        where(
                            (*_yaml_loc(rule, path), "send", "blocks", block),
                            f"template '{name}' has no block '{block}' (its blocks: {shown})",
                        )
                    )
            if any(block not in known for block in step.blocks):
                continue
            try:
                templates.render(name, sample_context(rule.id), subject=step.subject, blocks=step.blocks)
            except TemplateError as exc:
                if exc.file and exc.file.startswith("subject override"):
                    key, what = "subject", exc.file
                else:
                    key, what = "blocks", f"the blocks given for {exc.file}"
                problems.append(where((*_yaml_loc(rule, path), "send", key), f"{exc.message} (in {what})"))
    return problems


def _rule_locator(files: dict[str, Path], source: str, rule: Rule) -> Any:
    """A function (YAML location in the rule, message) -> Problem, located in the rule's file."""
    shown, _, line = source.rpartition(":")
    path = files.get(shown)
    found: tuple[RuleFile, tuple[Any, ...]] | None = None
    if path is not None:
        f = RuleFile(path)
        for loc, item in rule_entries(f):
            if isinstance(item, dict) and item.get("id") == rule.id:
                found = (f, loc)

    def locate(sub: tuple[Any, ...], message: str) -> Problem:
        if found is None:
            return Problem(shown or rule.id, int(line) if line.isdigit() else 1, 1, message)
        f, loc = found
        at_line, col = f.at(loc + sub)
        return Problem(f.name, at_line, col, message)

    return locate


def check_all(rules_dir: Path, templates_dir: Path) -> tuple[list[Problem], str]:
    """Every problem of the rule set and its templates, and a summary when there are none."""
    try:
        ruleset = load_ruleset(rules_dir, templates_dir)
    except RuleError as exc:
        return exc.problems, ""
    problems = check_templates(templates_dir, ruleset) + check_overrides(rules_dir, templates_dir, ruleset)
    templates = len({p.name.split(".")[0] for p in templates_dir.glob("*.j2") if not p.name.startswith("_")})
    enabled = len(ruleset.enabled)
    summary = f"ok: {len(ruleset.stages)} stages, {len(ruleset.rules)} rules ({enabled} enabled), {templates} templates"
    localised = variants(p.name for p in templates_dir.glob("*.j2"))
    if localised:
        tags = sorted({tag for found in localised.values() for tag in found})
        count = sum(len(found) for found in localised.values())
        summary += f" ({count} locale variant{'s' if count != 1 else ''}: {', '.join(tags)})"
    if ruleset.catalogue is None:
        summary += "\nno rules/events.yaml: event names are not checked and no alias applies"
    return problems, summary
