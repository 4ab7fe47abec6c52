"""The Jinja2 sandbox templates run in, with limits enforced while the work happens.

Jinja's own sandbox refuses Python internals; this one also bounds what a template can cost:
the time limit is checked inside every `{% for %}` loop and every call (a loop that prints nothing
still stops), and strings, sequences and numbers are checked for size before they are built
(`'a' * 10**9`, `10 ** 100000`, `'{:>999999999}'.format(1)` are refused, not computed).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, MutableMapping
from typing import Any

from jinja2 import Template, nodes, pass_eval_context
from jinja2.ext import Extension
from jinja2.nodes import EvalContext
from jinja2.runtime import Context, markup_join, str_join
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import generate_lorem_ipsum
from jinja2.visitor import NodeTransformer
from markupsafe import soft_str

#: the largest string or sequence a template may build in one operation (characters or items)
MAX_SIZE = 1_000_000
#: the largest integer a template may build, in bits (about 3,000 decimal digits)
MAX_INT_BITS = 10_000
#: loop iterations between two looks at the clock
_EVERY = 256
#: a width or precision of seven digits or more in a format string
_WIDE = re.compile(r"\d{7,}")


class RenderLimit(Exception):
    """A template went past a limit (time or size); the render fails with this message."""


class _Deadline(threading.local):
    at: float | None = None


class LoopLimit(Extension):
    """Every `{% for %}` iterates through `guard`, which looks at the clock as it goes; every `~`
    joins through `concat`, which checks the size first."""

    @pass_eval_context
    def concat(self, eval_ctx: EvalContext, *parts: Any) -> str:
        texts = [soft_str(p) for p in parts]
        if sum(len(t) for t in texts) > MAX_SIZE:
            raise RenderLimit(f"string too large: more than {MAX_SIZE:,} characters")
        return markup_join(texts) if eval_ctx.autoescape else str_join(texts)

    def guard(self, iterable: Iterable[Any]) -> Iterator[Any]:
        env = self.environment
        assert isinstance(env, Sandbox)
        for n, item in enumerate(iterable, 1):
            if n % _EVERY == 0:
                env.check_time()
            yield item


class Sandbox(ImmutableSandboxedEnvironment):
    """The sandbox, refusing every dunder and private attribute with a clear message, and bounding
    time and size (see the module's docstring)."""

    intercepted_binops = frozenset({"*", "**", "+", "%", "//"})

    def __init__(self, **options: Any) -> None:
        options["extensions"] = [*options.get("extensions", ()), LoopLimit]
        super().__init__(**options)
        self._deadline = _Deadline()
        self._loaded: dict[str, Template] = {}
        for name in ("center", "indent", "format", "replace", "wordwrap", "truncate"):
            self.filters[name] = _sized(self.filters[name])
        self.globals["lipsum"] = _lipsum

    def _load_template(self, name: str, globals: MutableMapping[str, Any] | None) -> Template:
        """Jinja's template cache, without its lock and key making for a template already loaded
        (a message looks up five: its subject and bodies, the layout they extend, the macros);
        `forget` empties both."""
        template = self._loaded.get(name)
        if template is None:
            template = self._loaded[name] = super()._load_template(name, globals)
        elif globals:
            template.globals.update(globals)
        return template

    def forget(self) -> None:
        """Drop every compiled template: the next use loads and compiles it again."""
        self._loaded.clear()
        if self.cache is not None:
            self.cache.clear()

    def make_globals(self, d: MutableMapping[str, Any] | None) -> MutableMapping[str, Any]:
        """A template's globals as a plain dict over the environment's, taken when it is loaded
        (Jinja's ChainMap is iterated again for every render; Jinja asks not to change globals
        after a template is loaded, and Templates sets them before)."""
        return {**self.globals, **(d or {})}

    # ------------------------------------------------------------------------------- time

    def start(self, seconds: float) -> float | None:
        """Start the clock for one render; returns the deadline it replaces (a nested render)."""
        previous = self._deadline.at
        self._deadline.at = time.monotonic() + seconds
        return previous

    def stop(self, previous: float | None) -> None:
        self._deadline.at = previous

    def check_time(self) -> None:
        at = self._deadline.at
        if at is not None and time.monotonic() > at:
            raise RenderLimit("rendering took too long: is a loop running away?")

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        tree = _Guards().visit(super()._parse(source, name, filename))
        assert isinstance(tree, nodes.Template)
        tree.set_environment(self)
        return tree

    # ---------------------------------------------------------------------------- access

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
        if isinstance(obj, str) and attribute in ("format", "format_map") and _WIDE.search(obj):
            raise RenderLimit(f"format string too wide: {obj[:40]!r}")
        return super().getattr(obj, attribute)

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        if attr.startswith("_"):
            return False
        return bool(super().is_safe_attribute(obj, attr, value))

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        __self.check_time()
        owner = getattr(getattr(__obj, "__wrapped__", __obj), "__self__", None)
        if getattr(type(owner), "template_safe", False):
            # a public method of a class made for templates (links.track): no checks to make, and
            # nothing of Jinja's own (the loop and block variables it passes along) to give it
            kwargs.pop("_loop_vars", None)
            kwargs.pop("_block_vars", None)
            return __obj(*args, **kwargs)
        if isinstance(owner, (str, list, tuple)):
            for value in (*args, *kwargs.values()):
                if isinstance(value, int) and abs(value) > MAX_SIZE:
                    raise RenderLimit(f"number too large for a string or list method: {value}")
        return super().call(__context, __obj, *args, **kwargs)

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        _check_binop(operator, left, right)
        return super().call_binop(context, operator, left, right)


class _Guards(NodeTransformer):
    """Loops iterate through LoopLimit.guard; `a ~ b` joins through LoopLimit.concat."""

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        guard = nodes.ExtensionAttribute(LoopLimit.identifier, "guard")
        node.iter = nodes.Call(guard, [node.iter], [], None, None, lineno=node.lineno)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        concat = nodes.ExtensionAttribute(LoopLimit.identifier, "concat")
        return nodes.Call(concat, list(node.nodes), [], None, None, lineno=node.lineno)


def _lipsum(n: int = 5, html: bool = True, min: int = 20, max: int = 100) -> str:  # noqa: A002
    """Jinja's `lipsum`, at most 100 paragraphs of at most 1,000 words."""
    if n > 100 or max > 1000 or min > 1000:
        raise RenderLimit("lipsum: at most 100 paragraphs of at most 1,000 words")
    return str(generate_lorem_ipsum(n, html, min, max))


def _size(value: Any) -> int | None:
    if isinstance(value, (str, list, tuple, bytes)):
        return len(value)
    return None


def _check_binop(operator: str, left: Any, right: Any) -> None:
    """Refuse an operation whose result would pass the size limits, before it is computed."""
    ints = isinstance(left, int) and isinstance(right, int)
    if operator == "**" and ints:
        if right > 0 and abs(left) > 1 and abs(left).bit_length() * right > MAX_INT_BITS:
            raise RenderLimit(f"number too large: {left} ** {right}")
    elif operator == "*":
        if ints and left.bit_length() + right.bit_length() > MAX_INT_BITS:
            raise RenderLimit("number too large")
        for seq, times in ((left, right), (right, left)):
            size = _size(seq)
            if size is not None and isinstance(times, int) and size * times > MAX_SIZE:
                raise RenderLimit(f"string or list too large: {size:,} × {times:,}")
    elif operator == "+":
        a, b = _size(left), _size(right)
        if a is not None and b is not None and a + b > MAX_SIZE:
            raise RenderLimit(f"string or list too large: {a + b:,}")
    elif operator == "%" and isinstance(left, str) and _WIDE.search(left):
        raise RenderLimit(f"format string too wide: {left[:40]!r}")


def _sized(filter_: Callable[..., Any]) -> Callable[..., Any]:
    """A filter whose numeric arguments (widths, counts) are bounded and whose result is checked."""

    def bounded(*args: Any, **kwargs: Any) -> Any:
        for value in (*args[1:], *kwargs.values()):
            if isinstance(value, int) and abs(value) > MAX_SIZE:
                raise RenderLimit(f"number too large for a filter argument: {value}")
            if isinstance(value, str) and _WIDE.search(value):
                raise RenderLimit(f"format string too wide: {value[:40]!r}")
        if (
            args
            and isinstance(args[0], str)
            and _WIDE.search(args[0])
            and filter_.__name__.endswith("format")
        ):
            raise RenderLimit(f"format string too wide: {args[0][:40]!r}")
        texts = [a for a in args if isinstance(a, str)]
        replace = filter_.__name__.endswith("replace") and len(texts) >= 3
        if replace and len(texts[0]) * max(1, len(texts[2])) > MAX_SIZE:
            raise RenderLimit("string too large for replace")
        return filter_(*args, **kwargs)

    for attr in ("jinja_pass_arg",):
        if hasattr(filter_, attr):
            setattr(bounded, attr, getattr(filter_, attr))
    bounded.__name__ = filter_.__name__
    return bounded
