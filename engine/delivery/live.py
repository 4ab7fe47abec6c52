"""The rule set and templates a long-running process works with, picked up again when their files
change: `journey run` checks at every tick, a worker before every batch.

A changed set is loaded and checked as `journey rules check` does (every rule, stage and
template, each template rendered against a sample context). A set with problems is refused: the
running set is kept, rules and templates together (templates are a snapshot in memory, so a
half-edited template on disk never reaches a customer), and the problems are logged once for
that state of the files, not at every tick.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from engine import logs
from engine.delivery.checks import check_templates
from engine.delivery.render import Templates
from engine.errors import Problem, RuleError
from engine.rules.loader import RuleSet, load_ruleset
from engine.settings import Settings

log = logs.get("journey.rules")

Fingerprint = tuple[tuple[str, int, int], ...]


def fingerprint(*directories: Path) -> Fingerprint:
    """Name, modification time and size of every rule and template file under the directories."""
    found: list[tuple[str, int, int]] = []
    for directory in directories:
        if not directory.is_dir():
            continue
        for path in directory.rglob("*"):
            if path.suffix in (".yaml", ".yml", ".j2"):
                try:
                    st = path.stat()
                except OSError:  # removed while we looked: the next look sees it gone
                    continue
                found.append((str(path), st.st_mtime_ns, st.st_size))
    return tuple(sorted(found))


@dataclass(frozen=True)
class Loaded:
    ruleset: RuleSet
    templates: Templates


def load_checked(rules_dir: Path, templates_dir: Path) -> Loaded:
    """The rule set and a snapshot of its templates, checked as `rules check` does; RuleError
    (with every problem) when anything is wrong."""
    ruleset = load_ruleset(rules_dir, templates_dir)
    problems: list[Problem] = check_templates(templates_dir, ruleset)
    if problems:
        raise RuleError(problems)
    return Loaded(ruleset, Templates.snapshot(templates_dir, currency=ruleset.settings.currency))


class LiveRules:
    """The current good rule set and templates of two directories (see the module's text)."""

    def __init__(
        self,
        rules_dir: Path,
        templates_dir: Path,
        *,
        recheck_seconds: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rules_dir = Path(rules_dir)
        self.templates_dir = Path(templates_dir)
        #: look at the files at most this often (a worker asks before every batch)
        self.recheck_seconds = recheck_seconds
        self.clock = clock
        self._looked = clock()
        self._seen = fingerprint(self.rules_dir, self.templates_dir)
        #: the first load fails loudly: a process must not start on a broken set
        self._current = load_checked(self.rules_dir, self.templates_dir)
        self._refused: Fingerprint | None = None
        #: how many times a changed set was taken, and refused (for tests and metrics)
        self.reloads = 0
        self.refusals = 0

    @property
    def ruleset(self) -> RuleSet:
        return self._current.ruleset

    @property
    def templates(self) -> Templates:
        return self._current.templates

    def refresh(self) -> bool:
        """Take the files' new state if they changed and check clean; True when it was taken."""
        now = self.clock()
        if self.recheck_seconds and now - self._looked < self.recheck_seconds:
            return False
        self._looked = now
        seen = fingerprint(self.rules_dir, self.templates_dir)
        if seen == self._seen:
            return False
        try:
            loaded = load_checked(self.rules_dir, self.templates_dir)
        except RuleError as exc:
            if seen != self._refused:  # once per state of the files, not at every tick
                self._refused = seen
                self.refusals += 1
                log.error(
                    "rules refused: the running rules are kept",
                    problems=[str(p) for p in exc.problems],
                    rules_dir=str(self.rules_dir),
                    templates_dir=str(self.templates_dir),
                )
            return False
        self._seen = seen
        self._refused = None
        self._current = loaded
        self.reloads += 1
        log.info(
            "rules reloaded",
            rules=len(loaded.ruleset.rules),
            enabled=len(loaded.ruleset.enabled),
            templates=len(loaded.templates.names()),
        )
        return True


def rules_and_templates(
    settings: Settings, ruleset: RuleSet | None
) -> tuple[RuleSet, Templates, LiveRules | None]:
    """What a deliverer works with: the rule set given and the templates directory as it is; or,
    without a rule set (a worker), the files' rules and templates, watched (checked every second)."""
    if ruleset is not None:
        return ruleset, Templates(settings.templates_dir, currency=ruleset.settings.currency), None
    live = LiveRules(settings.rules_dir, settings.templates_dir, recheck_seconds=1.0)
    return live.ruleset, live.templates, live
