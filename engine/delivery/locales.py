"""Localised templates: `NAME.LOCALE.subject.j2` (and `.html.j2`, `.txt.j2`, `.json.j2`) beside the
default `NAME.subject.j2`, chosen by the customer's locale with fallback: `fr-CA` tries `fr-ca`,
then `fr`, then the default. Locales are BCP 47 tags, compared case-insensitively, with `-` or `_`.

A locale's template is whole: all its files come from one locale (a French subject never goes
with an English body), so a variant counts only when it is complete (a subject and a body, or a
JSON body), and `journey rules check` reports one that is not.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from jinja2 import Environment, nodes

#: a BCP 47 tag as file names carry it: a language, then subtags (`fr`, `fr-CA`, `pt_BR`, `zh-Hant`)
_TAG = re.compile(r"^[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{2,8})*$")
PARTS = ("subject", "html", "txt", "json")


def normalise(tag: str) -> str:
    """`fr_CA` and `FR-ca` are both `fr-ca`."""
    return tag.strip().replace("_", "-").lower()


def is_tag(text: str) -> bool:
    return bool(_TAG.match(text))


def fallbacks(locale: str | None) -> list[str]:
    """The variants to try for a customer's locale, most specific first: `fr-CA` -> fr-ca, fr."""
    if not locale or not is_tag(locale.strip()):
        return []
    parts = normalise(locale).split("-")
    return ["-".join(parts[:n]) for n in range(len(parts), 0, -1)]


@dataclass(frozen=True)
class TemplateFile:
    """A template file's name read as NAME[.LOCALE].PART.j2 (`locale` as written in the name)."""

    name: str
    locale: str | None
    part: str

    @property
    def prefix(self) -> str:
        return self.name if self.locale is None else f"{self.name}.{self.locale}"


def parse_filename(filename: str) -> TemplateFile | None:
    """NAME.PART.j2 or NAME.LOCALE.PART.j2; None for anything else (layouts, macros, typos)."""
    bits = filename.split(".")
    if len(bits) == 3 and bits[2] == "j2" and bits[1] in PARTS:
        return TemplateFile(bits[0], None, bits[1])
    if len(bits) == 4 and bits[3] == "j2" and bits[2] in PARTS and is_tag(bits[1]):
        return TemplateFile(bits[0], bits[1], bits[2])
    return None


def complete(parts: set[str]) -> bool:
    """A template is whole with a JSON body, or a subject and a body."""
    return "json" in parts or ("subject" in parts and bool(parts & {"html", "txt"}))


def variants(filenames: Iterable[str]) -> dict[str, dict[str, str]]:
    """Template name -> {normalised locale: the variant's prefix (`welcome_1.fr`)}, for each
    complete locale variant among the files."""
    found: dict[tuple[str, str], set[str]] = {}
    for filename in filenames:
        f = parse_filename(filename)
        if f is not None and f.locale is not None:
            found.setdefault((f.name, f.locale), set()).add(f.part)
    out: dict[str, dict[str, str]] = {}
    for (name, locale), parts in sorted(found.items()):
        if complete(parts):
            out.setdefault(name, {}).setdefault(normalise(locale), f"{name}.{locale}")
    return out


# ------------------------------------------------------------------------ what a template reads

#: the names of a template's context (engine.delivery.context)
CONTEXT_NAMES = frozenset({"customer", "event", "rule", "links", "brand", "now", "recent_events"})


def _chain(node: nodes.Node) -> list[str] | None:
    """`customer.attributes.plan` / `event["properties"]` as a list of names, else None."""
    if isinstance(node, nodes.Name):
        return [node.name] if node.ctx == "load" else None
    if isinstance(node, nodes.Getattr):
        base = _chain(node.node)
        return None if base is None else [*base, node.attr]
    if (
        isinstance(node, nodes.Getitem)
        and isinstance(node.arg, nodes.Const)
        and isinstance(node.arg.value, str)
    ):
        base = _chain(node.node)
        return None if base is None else [*base, node.arg.value]
    return None


def read_paths(env: Environment, source: str) -> dict[str, int]:
    """Every context path a template reads (`customer.first_name`), with the first line it is read
    on. A path only tested (`is defined`) or given a `default` is not counted: the template copes
    without it."""
    found: dict[str, int] = {}

    def visit(node: nodes.Node, guarded: bool) -> None:
        if isinstance(node, nodes.Test) and node.name in ("defined", "undefined"):
            visit(node.node, True)
            for arg in node.args:
                visit(arg, guarded)
            return
        if isinstance(node, nodes.Filter) and node.name in ("default", "d"):
            if node.node is not None:
                visit(node.node, True)
            for arg in node.args:
                visit(arg, guarded)
            return
        chain = _chain(node)
        if chain is not None:
            if chain[0] in CONTEXT_NAMES and not guarded:
                found.setdefault(".".join(chain), node.lineno)
            inner = node
            while isinstance(inner, nodes.Getattr | nodes.Getitem):  # a subscript's own expression
                if isinstance(inner, nodes.Getitem):
                    visit(inner.arg, guarded)
                inner = inner.node
            return
        for child in node.iter_child_nodes():
            visit(child, guarded)

    visit(env.parse(source), False)
    return found


def not_covered(paths: dict[str, int], default: Iterable[str]) -> dict[str, int]:
    """The paths a locale reads that the default template does not (neither the path itself nor
    anything under it: the default reading `event.properties.items` covers `event.properties`)."""
    known = set(default)
    return {
        path: line
        for path, line in paths.items()
        if path not in known and not any(k.startswith(path + ".") for k in known)
    }
