"""HTML for mail clients: CSS inlined into style attributes, and the plain-text body derived
from the HTML when a template has none."""

from __future__ import annotations

import re
from functools import lru_cache
from html.parser import HTMLParser
from typing import Any


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
