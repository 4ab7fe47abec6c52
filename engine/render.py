"""Message templates: a Jinja2 sandbox over message_templates/, bounded in time and size.

`NAME.subject.j2` and `NAME.html.j2` and/or `NAME.txt.j2` make an email (a missing text body is
derived from the HTML, and CSS is inlined); `NAME.json.j2` makes a webhook body. Undefined
variables are errors, never blanks; a template that reaches for Python internals is refused.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from jinja2 import (
    FileSystemLoader,
    StrictUndefined,
    TemplateNotFound,
    TemplateSyntaxError,
    UndefinedError,
    select_autoescape,
)
from jinja2.exceptions import SecurityError
from jinja2.exceptions import TemplateError as JinjaTemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from engine.errors import Problem, TemplateError


@dataclass(frozen=True)
class Rendered:
    subject: str
    html: str | None
    text: str


class _Env(ImmutableSandboxedEnvironment):
    """The sandbox, refusing every dunder and private attribute with a clear message."""

    def getattr(self, obj: Any, attribute: str) -> Any:
        # `event.properties.items` means the key 'items', not the dict method
        if isinstance(obj, dict) and attribute in obj:
            return obj[attribute]
        kind = type(obj)
        if getattr(kind, "keys_only", False):  # event properties, customer attributes: data, not methods
            return self.undefined(obj=obj, name=attribute)
        if getattr(kind, "template_safe", False) and not attribute.startswith("_"):
            # a class made for templates (the links): every public name on it is meant to be read
            try:
                return getattr(obj, attribute)
            except AttributeError:
                return self.undefined(obj=obj, name=attribute)
        return super().getattr(obj, attribute)

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        if attr.startswith("_"):
            return False
        return bool(super().is_safe_attribute(obj, attr, value))


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
    ) -> None:
        self.dir = Path(templates_dir)
        self.max_output_chars = max_output_chars
        self.max_seconds = max_seconds
        self.recheck_seconds = recheck_seconds
        self._checked = time.monotonic()
        self._files: dict[str, bool] = {}
        self.env = _Env(
            loader=FileSystemLoader(str(self.dir)),
            undefined=StrictUndefined,
            autoescape=select_autoescape(enabled_extensions=("html.j2", "html"), default_for_string=False),
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=False,
            auto_reload=False,
        )

    def _recheck(self) -> None:
        """Forget the compiled templates when a file they came from changed (at most once per
        `recheck_seconds`)."""
        now = time.monotonic()
        if now - self._checked < self.recheck_seconds:
            return
        self._checked = now
        cache = self.env.cache
        if cache is not None and not all(t.is_up_to_date for t in list(cache.values())):
            cache.clear()

    def _has(self, name: str) -> bool:
        """Whether a template file exists (asked once per file: a worker renders thousands)."""
        known = self._files.get(name)
        if known is None:
            known = self._files[name] = (self.dir / name).is_file()
        return known

    def exists(self, name: str) -> bool:
        if self._has(f"{name}.json.j2"):
            return True
        return self._has(f"{name}.subject.j2") and (
            self._has(f"{name}.html.j2") or self._has(f"{name}.txt.j2")
        )

    def names(self) -> list[str]:
        found = {p.name.split(".", 1)[0] for p in self.dir.glob("*.j2") if not p.name.startswith("_")}
        return sorted(n for n in found if self.exists(n))

    def _render_file(self, filename: str, context: Mapping[str, Any]) -> str:
        try:
            template = self.env.get_template(filename)
        except TemplateNotFound as exc:
            raise TemplateError(f"template file '{exc.name}' not found", file=filename) from None
        except TemplateSyntaxError as exc:
            raise TemplateError(
                f"syntax error: {exc.message}", file=exc.filename or filename, line=exc.lineno
            ) from None
        started = time.monotonic()
        out: list[str] = []
        size = 0
        try:
            for chunk in template.generate(**context):
                out.append(chunk)
                size += len(chunk)
                if size > self.max_output_chars:
                    raise TemplateError(
                        f"output passed {self.max_output_chars:,} characters: is a loop running away?",
                        file=filename,
                    )
                if time.monotonic() - started > self.max_seconds:
                    raise TemplateError(f"rendering took longer than {self.max_seconds} s", file=filename)
        except SecurityError as exc:
            raise TemplateError(
                f"not allowed in a template: {exc}", file=filename, line=_line_of(exc)
            ) from None
        except UndefinedError as exc:
            raise TemplateError(
                f"undefined variable: {exc.message}", file=filename, line=_line_of(exc)
            ) from None
        except JinjaTemplateError as exc:
            raise TemplateError(str(exc), file=filename, line=_line_of(exc)) from None
        except (TypeError, ValueError, ZeroDivisionError, OverflowError) as exc:
            raise TemplateError(f"{type(exc).__name__}: {exc}", file=filename, line=_line_of(exc)) from None
        return "".join(out)

    def render(self, name: str, context: Mapping[str, Any]) -> Rendered:
        self._recheck()
        if not self.exists(name) or not self._has(f"{name}.subject.j2"):
            raise TemplateError(f"message template '{name}' not found (needs {name}.subject.j2 and a body)")
        subject = " ".join(self._render_file(f"{name}.subject.j2", context).split())
        html = self._render_file(f"{name}.html.j2", context) if self._has(f"{name}.html.j2") else None
        if html is not None:
            html = inline_css(html)
        if self._has(f"{name}.txt.j2"):
            text = self._render_file(f"{name}.txt.j2", context).strip() + "\n"
        else:
            text = html_to_text(html or "")
        return Rendered(subject=subject, html=html, text=text)

    def render_json(self, name: str, context: Mapping[str, Any]) -> Any:
        self._recheck()
        body = self._render_file(f"{name}.json.j2", context)
        try:
            return json.loads(body)
        except json.JSONDecodeError as exc:
            raise TemplateError(
                f"not valid JSON: {exc.msg}", file=f"{name}.json.j2", line=exc.lineno
            ) from None


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


@lru_cache(maxsize=1)
def _inliner() -> Any:
    import css_inline

    return css_inline.CSSInliner(keep_style_tags=True, load_remote_stylesheets=False)


def inline_css(html: str) -> str:
    """Move <style> rules into style attributes (mail clients drop <style>); keep media queries."""
    try:
        return str(_inliner().inline(html))
    except ImportError:  # pragma: no cover - css-inline is a dependency
        return html
    except ValueError:
        return html


class _TextParser(HTMLParser):
    BLOCK = {"p", "div", "tr", "table", "h1", "h2", "h3", "h4", "ul", "ol", "br", "hr"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skip = 0
        self.href: str | None = None
        self.link_text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag in ("style", "script", "head", "title") or "display:none" in (a.get("style") or "").replace(
            " ", ""
        ):
            self.skip += 1
            return
        if tag in self.BLOCK:
            self.parts.append("\n\n" if tag in ("p", "table", "h1", "h2", "h3", "ul", "ol") else "\n")
        if tag == "li":
            self.parts.append("\n- ")
        if tag == "td":
            self.parts.append("  ")
        if tag == "a":
            self.href = a.get("href")
            self.link_text = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("style", "script", "head", "title"):
            self.skip = max(0, self.skip - 1)
            return
        if tag == "a" and self.href is not None:
            text = "".join(self.link_text).strip()
            if self.href and self.href != text:
                self.parts.append(f" ({self.href})")
            self.href = None
        if tag in ("p", "h1", "h2", "h3", "table", "ul", "ol"):
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if self.skip:
            return
        text = re.sub(r"\s+", " ", data)
        if self.href is not None:
            self.link_text.append(text)
        self.parts.append(text)


def html_to_text(html: str) -> str:
    """A readable text part from an HTML body: paragraphs, list items, links as `text (url)`."""
    parser = _TextParser()
    parser.feed(html)
    parser.close()
    text = "".join(parser.parts)
    lines = [line.strip() for line in text.splitlines()]
    out = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
    return out + "\n"


# ---------------------------------------------------------------------------------- checking


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
    from engine.context import SampleLinks

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


def check_templates(templates_dir: Path, ruleset: Any | None) -> list[Problem]:
    """Render every template against a sample context; syntax errors and unknown variables."""
    templates = Templates(templates_dir)
    problems: list[Problem] = []
    from engine.rules.loader import display

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
            file = f"{shown}/{exc.file}" if exc.file else f"{shown}/{path.name}"
            problems.append(Problem(file, exc.line or 1, 1, exc.message))
    for name in {
        p.name.split(".", 1)[0] for p in Path(templates_dir).glob("*.j2") if not p.name.startswith("_")
    }:
        has_body = (Path(templates_dir) / f"{name}.html.j2").is_file() or (
            Path(templates_dir) / f"{name}.txt.j2"
        ).is_file()
        if (Path(templates_dir) / f"{name}.subject.j2").is_file() and not has_body:
            problems.append(
                Problem(
                    f"{shown}/{name}.subject.j2",
                    1,
                    1,
                    f"'{name}' has a subject but no body: add {name}.html.j2 or {name}.txt.j2",
                )
            )
        elif has_body and not (Path(templates_dir) / f"{name}.subject.j2").is_file():
            problems.append(
                Problem(f"{shown}/{name}.html.j2", 1, 1, f"'{name}' has no subject: add {name}.subject.j2")
            )
    return sorted(problems, key=lambda p: (p.file, p.line))
