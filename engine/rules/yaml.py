"""Reading a rule, stage or settings file: YAML with positions kept (ruamel.yaml round-trip mode
builds no Python objects), validated against the pydantic models, each problem located at the line
and column it comes from, with a did-you-mean for unknown keys."""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.reader import ReaderError

from engine.errors import Problem
from engine.rules.model import KNOWN_KEYS

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


def display(path: Path) -> str:
    """A path as people want to read it: relative to the current directory when under it."""
    try:
        return os.path.relpath(path) if path.resolve().is_relative_to(Path.cwd()) else str(path)
    except ValueError:
        return str(path)


#: the most values a file may hold once its aliases are expanded, and how deep they may nest
MAX_VALUES = 100_000
MAX_DEPTH = 50
#: the longest number a file may hold, in digits
MAX_DIGITS = 100


def _too_big(data: Any) -> tuple[int, int, str] | None:
    """(line, column, reason) when `data` is too large once aliases are expanded (a "billion
    laughs"), nests too deep, or holds a number too long; the walk stops at the limit."""
    count = 0
    stack: list[tuple[Any, int, tuple[int, int]]] = [(data, 1, (1, 1))]
    while stack:
        node, depth, where = stack.pop()
        count += 1
        if count > MAX_VALUES:
            return (
                *where,
                f"more than {MAX_VALUES:,} values once aliases are expanded: is an alias repeated?",
            )
        if depth > MAX_DEPTH:
            return (*where, f"nested deeper than {MAX_DEPTH} levels")
        if isinstance(node, int) and not isinstance(node, bool) and node.bit_length() > MAX_DIGITS * 3.33:
            return (*where, f"a number longer than {MAX_DIGITS} digits")
        if isinstance(node, CommentedMap):
            for key, value in node.items():
                pos = node.lc.data.get(key) if node.lc.data else None
                at = (pos[2] + 1, pos[3] + 1) if pos else where
                stack.append((value, depth + 1, at))
        elif isinstance(node, CommentedSeq):
            for i, value in enumerate(node):
                pos = node.lc.data.get(i) if node.lc.data else None
                at = (pos[0] + 1, pos[1] + 1) if pos else where
                stack.append((value, depth + 1, at))
    return None


def _plain(node: Any) -> Any:
    if isinstance(node, dict):
        return {str(k): _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    return node


def suggest(word: str, choices: list[str] | tuple[str, ...]) -> str | None:
    found = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return found[0] if found else None


class RuleFile:
    """One YAML file: its data with positions, and the problems found in it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.name = display(path)
        self.problems: list[Problem] = []
        self.data: Any = None
        yaml = YAML(typ="rt")
        yaml.allow_duplicate_keys = False
        text = ""
        try:
            text = path.read_text(encoding="utf-8")
            self.data = yaml.load(text)
        except MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
            what = (exc.problem or exc.context or "invalid YAML").strip()
            if "duplicate key" in str(exc):
                what = "duplicate key: " + what
            self.problems.append(Problem(self.name, line, col, f"YAML: {what}"))
        except UnicodeDecodeError:
            self.problems.append(Problem(self.name, 1, 1, "not UTF-8 text"))
        except RecursionError:
            self.problems.append(Problem(self.name, 1, 1, f"YAML: nested deeper than {MAX_DEPTH} levels"))
        except YAMLError as exc:  # a character YAML refuses (NUL), or anything else its reader says
            line, col, what = 1, 1, " ".join(str(getattr(exc, "problem", None) or exc).split())[:200]
            if isinstance(exc, ReaderError):  # where the character is, by its position in the text
                before = text[: exc.position]
                line, col = before.count("\n") + 1, len(before) - (before.rfind("\n") + 1) + 1
                what = f"character U+{ord(exc.character) if isinstance(exc.character, str) else exc.character:04X} is not allowed"
            self.problems.append(Problem(self.name, line, col, f"YAML: {what}"))
        except (ValueError, OverflowError):  # a number too long to read
            self.problems.append(Problem(self.name, 1, 1, f"YAML: a number longer than {MAX_DIGITS} digits"))
        else:
            if (found := _too_big(self.data)) is not None:
                line, col, what = found
                self.problems.append(Problem(self.name, line, col, f"YAML: {what}"))
                self.data = None

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
                steps = ("send", "wait", "wait_for", "branch", "split", "update")
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


def find_key(data: Any, key: str, value: str) -> tuple[Any, ...]:
    """The location of the first `key: value` inside `data` (for cross-file problems)."""
    if isinstance(data, dict):
        for k, v in data.items():
            if k == key and v == value:
                return (k,)
            sub = find_key(v, key, value)
            if sub:
                return (k, *sub)
    elif isinstance(data, list):
        for i, v in enumerate(data):
            sub = find_key(v, key, value)
            if sub:
                return (i, *sub)
    return ()
