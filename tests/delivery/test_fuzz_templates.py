"""Fuzzing templates: random pieces of Jinja put together either render, or fail with a located
TemplateError; sent to one customer of a batch, they fail that send alone."""

from __future__ import annotations

from pathlib import Path

from hypothesis import strategies as st
from sqlalchemy import update

from engine.db.schema import sends
from engine.delivery.render import Templates
from engine.errors import TemplateError
from engine.settings import Settings
from tests.delivery.test_failure_boundary import BROKEN, T0, by_customer, dispatch, shop, smtp  # noqa: F401
from tests.support.fuzz import fuzz, nasty_text
from tests.support.kit import H, Kit
from tests.support.smtp import Recorder

PIECES = [
    *BROKEN.values(),
    "{{ customer.first_name }}",
    "{{ customer.nope }}",
    "{{ x }}",
    "{{ 1/0 }}",
    "{{ 2**64 }}",
    "{{ 'a' ~ 'b' }}",
    "{% for i in range(3) %}{{ i }}{% endfor %}",
    "{% for i in range(100000) %}{% endfor %}",
    "{% if %}",
    "{{ customer|attr('__class__') }}",
    "{{ ''.__class__.__mro__ }}",
    "{{ cycler.__init__.__globals__ }}",
    "{{ [1,2]|map(attribute='__class__')|list }}",
    "{{ 'x'|center(99999999) }}",
    "{{ 'x'|indent(10**9) }}",
    "{{ 'ab'|replace('a', 'a' * 999999) }}",
    "{{ range(10)|join(',') }}",
    "{{ '%s' % 1 }}",
    "{{ '{}'.format(1) }}",
    "{% set ns = namespace(x='a') %}{% for i in range(30) %}{% set ns.x = ns.x ~ ns.x %}{% endfor %}",
    "{{ lipsum(10**6) }}",
    "{{ dict(a=1).items() }}",
    "{% macro m(n) %}{{ m(n) }}{% endmacro %}{{ m(1) }}",
    "{% include 'nope.txt.j2' %}",
    "{% extends 'cart_reminder.txt.j2' %}",
    "{% raw %}",
    "{{",
    "}}",
    "{%",
    "%}",
    "{{ 10 ** 10 ** 10 }}",
    "{{ (1,) * 10**7 }}",
    "{{ 'a' * -1 }}",
    "{{ [] + [1] * 10**6 + [1] }}",
    "{{ 1e308 * 10 }}",
]

TEMPLATE = st.lists(st.one_of(st.sampled_from(PIECES), nasty_text), min_size=1, max_size=4).map("".join)


def test_random_templates_render_or_fail_with_a_located_template_error(tmp_path: Path) -> None:
    (tmp_path / "cart_reminder.txt.j2").write_text("Hello")

    def check(source: str) -> None:
        (tmp_path / "x.txt.j2").write_text(source.encode("utf-8", "replace").decode("utf-8"))
        templates = Templates(tmp_path, max_seconds=0.2)
        try:
            templates._render_file("x.txt.j2", {"customer": {"first_name": "Ada"}})
        except TemplateError as exc:
            assert exc.file == "x.txt.j2" and exc.message

    assert fuzz("random templates", TEMPLATE, 300)(check) == 300


def test_a_random_template_for_one_customer_fails_that_send_alone(
    shop: tuple[Kit, Settings, Recorder],  # noqa: F811
) -> None:
    kit, settings, recorder = shop

    def check(source: str) -> None:
        body = (
            "Hello {{ customer.first_name }}\n{% if customer.first_name == 'Ivy' %}" + source + "{% endif %}"
        )
        (settings.templates_dir / "cart_reminder.txt.j2").write_text(body.encode("utf-8", "replace").decode())
        with kit.engine.begin() as conn:
            conn.execute(
                update(sends).values(status="due", attempts=0, reason=None, error=None, failed_at=None)
            )
        recorder.messages.clear()
        dispatch(kit, settings, T0 + 2 * H, max_seconds=0.2)
        rows = by_customer(kit)
        assert rows["ada"][0] == "sent" and rows["zoe"][0] == "sent", rows
        assert rows["ivy"][0] == "sent" or rows["ivy"][:2] == ("failed", "template"), rows

    assert fuzz("random templates sent to one customer", TEMPLATE, 25)(check) == 25
