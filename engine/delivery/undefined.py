"""Did-you-mean for an undefined template variable, from the names the render's context has
(the same suggestion `journey rules check` gives, at send time and in `journey preview`)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from engine.rules.yaml import suggest

_UNDEFINED = re.compile(r"'(\w+)' is undefined")
_NO_ATTRIBUTE = re.compile(r"has no attribute '(\w+)'")


def undefined_hint(message: str, context: Mapping[str, Any], line_text: str | None) -> str | None:
    """The nearest known name to the one `message` says is missing: a variable of the context,
    or a field of the object the template line reads it from (else of any object in the context)."""
    if m := _UNDEFINED.search(message):
        return suggest(m.group(1), [str(k) for k in context])
    m = _NO_ATTRIBUTE.search(message)
    if m is None:
        return None
    wrong = m.group(1)
    owner = _owner(line_text, wrong, context) if line_text else None
    choices = _names(owner) if owner is not None else sorted(set(_all_names(context, 3)))
    return suggest(wrong, [c for c in choices if c != wrong])


def _owner(line_text: str, wrong: str, context: Mapping[str, Any]) -> Any:
    """The value of the dotted path the line reads `wrong` from (`customer.frist_name`)."""
    path = re.search(rf"([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)(?:\.{wrong}\b|\[['\"]{wrong}['\"]\])", line_text)
    if path is None:
        return None
    parts = path.group(1).split(".")
    value: Any = context.get(parts[0])
    for part in parts[1:]:
        if value is None:
            return None
        try:
            value = value[part] if isinstance(value, Mapping) else getattr(value, part)
        except Exception:  # noqa: BLE001 - no such field: no owner, fall back to every name
            return None
    return value


def _names(value: Any) -> list[str]:
    if isinstance(value, Mapping):
        return [str(k) for k in value]
    fields = getattr(value, "_fields", None)  # the sample objects of `journey rules check`
    if isinstance(fields, Mapping):
        return [str(k) for k in fields]
    return [n for n in dir(value) if not n.startswith("_")]


def _all_names(value: Any, depth: int) -> Iterable[str]:
    """The keys of every mapping in the context, a few levels down (a loop variable's fields
    are those of the list items it walks)."""
    if depth < 0:
        return
    if isinstance(value, Mapping):
        for key, inner in value.items():
            yield str(key)
            yield from _all_names(inner, depth - 1)
    elif isinstance(value, list | tuple) and value:
        yield from _all_names(value[0], depth - 1)
