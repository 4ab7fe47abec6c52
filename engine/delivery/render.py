"""Message templates: a Jinja2 sandbox over message_templates/, bounded in time and size.

`NAME.subject.j2` and `NAME.html.j2` and/or `NAME.txt.j2` make an email (a missing text body is
derived from the HTML, and CSS is inlined); `NAME.json.j2` makes a webhook body. Undefined
variables are errors, never blanks; a template that reaches for Python internals is refused.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from jinja2 import (
    BaseLoader,
    DictLoader,
    Environment,
    FileSystemLoader,
    StrictUndefined,
    Template,
    TemplateNotFound,
    TemplateSyntaxError,
    UndefinedError,
    nodes,
    select_autoescape,
)
from jinja2.exceptions import SecurityError
from jinja2.exceptions import TemplateError as JinjaTemplateError

from engine.delivery.html import html_to_text, inline_css
from engine.delivery.locales import fallbacks, variants
from engine.delivery.money import format_money
from engine.delivery.sandbox import RenderLimit, Sandbox
from engine.delivery.undefined import undefined_hint
from engine.errors import TemplateError


@dataclass(frozen=True)
class Rendered:
    subject: str
    html: str | None
    text: str
    #: the locale variant rendered, as its files name it (`fr`); None: the default template
    locale: str | None = None


class _Files(FileSystemLoader):
    """Template files read only when they are regular files inside the directory: a symbolic link
    that leads elsewhere (`x.txt.j2 -> /etc/passwd`) is not a template."""

    def get_source(self, environment: Environment, template: str) -> tuple[str, str, Callable[[], bool]]:
        source, filename, uptodate = super().get_source(environment, template)
        if not _inside(Path(self.searchpath[0]), Path(filename)):
            raise TemplateNotFound(
                template, f"'{template}' is not a regular file inside the templates directory"
            )
        return source, filename, uptodate


def _inside(root: Path, path: Path) -> bool:
    """Whether `path` is a regular file that is, once links are followed, inside `root`."""
    try:
        return path.is_file() and path.resolve().is_relative_to(root.resolve())
    except (OSError, ValueError):
        return False


class Templates:
    """The templates of a directory, compiled once. A file edited on disk is picked up within
    `recheck_seconds` (Jinja's own check would look at every file's time on every render)."""

    def __init__(
        self,
        templates_dir: Path,
        *,
        max_output_chars: int = 500_000,
        max_seconds: float = 2.0,
        recheck_seconds: float = 1.0,
        sources: Mapping[str, str] | None = None,
        currency: str | None = None,
    ) -> None:
        self.dir = Path(templates_dir)
        self.max_output_chars = max_output_chars
        self.max_seconds = max_seconds
        self.recheck_seconds = recheck_seconds
        self._checked = time.monotonic()
        self._files: dict[str, bool] = {}
        self._variants: dict[str, dict[str, str]] | None = None
        #: a snapshot (file name -> text) instead of the directory: what `snapshot` read
        self.sources = dict(sources) if sources is not None else None
        loader: BaseLoader = DictLoader(self.sources) if self.sources is not None else _Files(str(self.dir))
        self.env = Sandbox(
            loader=loader,
            undefined=StrictUndefined,
            autoescape=select_autoescape(enabled_extensions=("html.j2", "html"), default_for_string=False),
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=False,
            auto_reload=False,
        )
        #: the shop's currency (`currency:` in settings.yaml): `{{ currency }}`, `{{ price | money }}`
        self.env.globals["currency"] = currency
        self.env.filters["money"] = partial(_money, currency)
        #: templates made of a file and block overrides, by (file, overrides)
        self._derived: dict[tuple[str, tuple[tuple[str, str], ...]], Template] = {}

    @classmethod
    def snapshot(cls, templates_dir: Path, *, currency: str | None = None) -> Templates:
        """The directory's templates as they are now, kept in memory: later edits on disk do not
        reach it (a running scheduler or worker swaps in a new snapshot once it checked clean)."""
        root = Path(templates_dir)
        inside = root.resolve()
        sources: dict[str, str] = {}
        for path in sorted(root.rglob("*.j2")):
            if _inside(inside, path):
                try:
                    sources[path.relative_to(root).as_posix()] = path.read_text(encoding="utf-8")
                except (OSError, UnicodeDecodeError):
                    continue  # `rules check` reports it; a snapshot leaves it out
        return cls(root, sources=sources, currency=currency)

    def _recheck(self) -> None:
        """Forget the compiled templates when a file they came from changed (at most once per
        `recheck_seconds`)."""
        if self.sources is not None:
            return
        now = time.monotonic()
        if now - self._checked < self.recheck_seconds:
            return
        self._checked = now
        cache = self.env.cache
        if cache is not None and not all(t.is_up_to_date for t in list(cache.values())):
            self.env.forget()

    def _has(self, name: str) -> bool:
        """Whether a template file exists (asked once per file: a worker renders thousands)."""
        if self.sources is not None:
            return name in self.sources
        known = self._files.get(name)
        if known is None:
            known = self._files[name] = len(name) < 256 and _inside(self.dir, self.dir / name)
        return known

    def filenames(self) -> list[str]:
        """Every template file's name (the directory's, or the snapshot's)."""
        if self.sources is not None:
            return sorted(self.sources)
        return sorted(p.name for p in self.dir.glob("*.j2"))

    def exists(self, name: str) -> bool:
        if self._has(f"{name}.json.j2"):
            return True
        return self._has(f"{name}.subject.j2") and (
            self._has(f"{name}.html.j2") or self._has(f"{name}.txt.j2")
        )

    def variant(self, name: str, locale: str | None) -> str:
        """The files to render for a customer's locale: the prefix of the most specific complete
        variant (`fr-CA` -> `NAME.fr-CA`, else `NAME.fr`), else `name` itself (the default)."""
        if not locale:
            return name
        if self._variants is None:
            self._variants = variants(self.filenames())
        found = self._variants.get(name)
        if found:
            for tag in fallbacks(locale):
                if tag in found:
                    return found[tag]
        return name

    def names(self) -> list[str]:
        found = {f.split(".", 1)[0] for f in self.filenames() if not f.startswith("_") and "/" not in f}
        return sorted(n for n in found if self.exists(n))

    def _load(self, filename: str) -> Template:
        try:
            return self.env.get_template(filename)
        except TemplateNotFound as exc:
            found = exc.message if exc.message and exc.message != exc.name else None
            raise TemplateError(found or f"template file '{exc.name}' not found", file=filename) from None
        except TemplateSyntaxError as exc:
            raise TemplateError(f"syntax error: {exc.message}", file=filename, line=exc.lineno) from None
        except Exception as exc:  # a compile-time failure of any kind fails this template alone
            raise TemplateError(_reason(exc), file=filename, line=_line_of(exc)) from None

    def _from_source(self, source: str, label: str) -> Template:
        """A template from a string of a rule file (a subject or block override)."""
        try:
            return self.env.from_string(source)
        except TemplateSyntaxError as exc:
            raise TemplateError(f"syntax error: {exc.message}", file=label, line=exc.lineno) from None
        except Exception as exc:
            raise TemplateError(_reason(exc), file=label) from None

    def _with_blocks(self, filename: str, blocks: Mapping[str, str]) -> Template:
        """`filename` with some of its `{% block %}`s replaced: a template that extends it."""
        key = (filename, tuple(sorted(blocks.items())))
        template = self._derived.get(key)
        if template is None:
            # autoescaping is decided when a template is compiled: blocks written for an HTML body
            # are escaped as the body's own blocks are
            escape = "true" if filename.endswith("html.j2") else "false"
            parts = [f"{{% extends {json.dumps(filename)} %}}"]
            for name, text in sorted(blocks.items()):
                parts.append(
                    f"{{% block {name} %}}{{% autoescape {escape} %}}{text}{{% endautoescape %}}{{% endblock %}}"
                )
            source = "".join(parts)
            template = self._derived[key] = self._from_source(source, f"blocks of {filename}")
        return template

    def block_names(self, filename: str) -> set[str]:
        """The `{% block %}` names a template file and the files it extends define."""
        names: set[str] = set()
        seen: set[str] = set()
        current: str | None = filename
        while current is not None and current not in seen and self._has(current):
            seen.add(current)
            loader = self.env.loader
            assert loader is not None
            source, _, _ = loader.get_source(self.env, current)
            try:
                tree = self.env.parse(source)
            except TemplateSyntaxError:
                break
            names |= {block.name for block in tree.find_all(nodes.Block)}
            parent = next(iter(tree.find_all(nodes.Extends)), None)
            current = (
                str(parent.template.value)
                if parent is not None and isinstance(parent.template, nodes.Const)
                else None
            )
        return names

    def _render_file(
        self, filename: str, context: Mapping[str, Any], template: Template | None = None
    ) -> str:
        if template is None:
            template = self._load(filename)
        out: list[str] = []
        size, limit = 0, self.max_output_chars
        previous = self.env.start(self.max_seconds)
        deadline, clock = time.monotonic() + self.max_seconds, time.monotonic
        try:
            for chunk in template.generate(**context):
                out.append(chunk)
                size += len(chunk)
                if size > limit:
                    raise TemplateError(
                        f"output passed {limit:,} characters: is a loop running away?", file=filename
                    )
                if clock() > deadline:
                    self.env.check_time()  # raises RenderLimit (the sandbox's own deadline)
        except TemplateError:
            raise
        except RenderLimit as exc:
            raise TemplateError(str(exc), file=filename, line=_line_of(exc)) from None
        except SecurityError as exc:
            raise TemplateError(
                f"not allowed in a template: {exc}", file=filename, line=_line_of(exc)
            ) from None
        except UndefinedError as exc:
            message = exc.message or "undefined"
            line = _line_of(exc)
            hint = undefined_hint(message, context, self._line_text(exc, filename, line))
            raise TemplateError(
                f"undefined variable: {message}", file=filename, line=line, suggestion=hint
            ) from None
        except JinjaTemplateError as exc:
            raise TemplateError(str(exc), file=filename, line=_line_of(exc)) from None
        except RecursionError:
            raise TemplateError("too deep: a template or macro calls itself", file=filename) from None
        except Exception as exc:  # any other failure of a render fails that render alone
            raise TemplateError(_reason(exc), file=filename, line=_line_of(exc)) from None
        finally:
            self.env.stop(previous)
        return "".join(out)

    def _line_text(self, exc: BaseException, filename: str, line: int | None) -> str | None:
        """The text of the template line an error happened on, when it can be read."""
        if line is None:
            return None
        try:
            if self.sources is not None:
                text = self.sources.get(filename)
            else:
                file = _frame_file(exc)
                text = Path(file).read_text(encoding="utf-8") if file else None
            return text.splitlines()[line - 1] if text is not None else None
        except (OSError, UnicodeDecodeError, IndexError):
            return None

    def render(
        self,
        name: str,
        context: Mapping[str, Any],
        *,
        locale: str | None = None,
        subject: str | None = None,
        blocks: Mapping[str, str] | None = None,
    ) -> Rendered:
        """The email `name` for a customer of `locale` (its variant, with fallback; see
        engine.delivery.locales): its subject (or the `subject` override, a Jinja string rendered in
        the same context), then its bodies, which see the subject as `subject` (the HTML `<title>`);
        `blocks` replace the bodies' `{% block %}`s of those names."""
        self._recheck()
        if not self.exists(name) or not self._has(f"{name}.subject.j2"):
            raise TemplateError(f"message template '{name}' not found (needs {name}.subject.j2 and a body)")
        prefix = self.variant(name, locale)
        if subject is None:
            line = self._render_file(f"{prefix}.subject.j2", context)
        else:
            label = f"subject override of {name}"
            line = self._render_file(label, context, self._from_source(subject, label))
        subject_text = " ".join(line.split())
        body_context = {**context, "subject": subject_text}

        def body(filename: str) -> str:
            if blocks:
                return self._render_file(filename, body_context, self._with_blocks(filename, blocks))
            return self._render_file(filename, body_context)

        html = body(f"{prefix}.html.j2") if self._has(f"{prefix}.html.j2") else None
        if html is not None:
            html = inline_css(html)
        if self._has(f"{prefix}.txt.j2"):
            text = body(f"{prefix}.txt.j2").strip() + "\n"
        else:
            text = html_to_text(html or "")
        used = None if prefix == name else prefix[len(name) + 1 :]
        return Rendered(subject=subject_text, html=html, text=text, locale=used)

    def render_json(self, name: str, context: Mapping[str, Any], *, locale: str | None = None) -> Any:
        self._recheck()
        prefix = self.variant(name, locale)
        body = self._render_file(f"{prefix}.json.j2", context)
        try:
            return json.loads(body)
        except json.JSONDecodeError as exc:
            raise TemplateError(
                f"not valid JSON: {exc.msg}", file=f"{prefix}.json.j2", line=exc.lineno
            ) from None


def _money(default: str | None, value: Any, currency: str | None = None) -> str:
    """The `money` filter: `{{ 89 | money }}` is `€89.00` when the shop's currency is EUR."""
    return format_money(value, currency or default)


def _reason(exc: BaseException) -> str:
    """An unexpected exception as one line: its type and message, bounded."""
    text = " ".join(str(exc).split())[:300]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _frame_file(exc: BaseException) -> str | None:
    """The template file (as compiled) where a rendering error happened, from the traceback."""
    tb = exc.__traceback__
    found = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename.endswith(".j2"):
            found = tb.tb_frame.f_code.co_filename
        tb = tb.tb_next
    return found


def _line_of(exc: BaseException) -> int | None:
    """The template line where a rendering error happened, from the traceback."""
    tb = exc.__traceback__
    line = None
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if filename.endswith(".j2"):
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


# ---------------------------------------------------------------------------------- checking
