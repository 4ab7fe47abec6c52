"""Templates run in a sandbox: what a marketer can write, and what is refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.delivery.checks import check_templates, sample_context
from engine.delivery.html import html_to_text
from engine.delivery.render import Templates
from engine.errors import TemplateError


def write(tmp_path: Path, **files: str) -> Templates:
    for name, body in files.items():
        (tmp_path / name.replace("__", ".")).write_text(body)
    return Templates(tmp_path)


def test_subject_html_and_a_text_part_derived_from_the_html(tmp_path: Path) -> None:
    t = write(
        tmp_path,
        hello__subject__j2="  Hello\n {{ customer.first_name }}  ",
        hello__html__j2="<style>p{color:red}</style><p>Hi <b>{{ customer.first_name }}</b></p>"
        "<ul><li>one</li><li>two</li></ul><p><a href='{{ links.track(\"https://example.com/x\") }}'>Shop</a></p>",
    )
    r = t.render("hello", sample_context())
    assert r.subject == "Hello Ada"
    assert r.html is not None and 'style="color: red' in r.html  # CSS inlined
    assert r.text == "Hi Ada\n\n- one\n- two\n\nShop (https://example.com/c/sample)\n"


def test_html_escapes_customer_data(tmp_path: Path) -> None:
    t = write(tmp_path, x__subject__j2="s", x__html__j2="<p>{{ name }}</p>")
    r = t.render("x", {"name": "<script>alert(1)</script>"})
    assert r.html is not None and "<script>" not in r.html and "&lt;script&gt;" in r.html


@pytest.mark.parametrize(
    "body",
    [
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ customer.__init__.__globals__ }}",
        "{{ links.track.__func__ }}",
        "{% set x = [].append(1) %}{{ x }}",
    ],
)
def test_reaching_for_python_internals_is_refused_and_sends_nothing(tmp_path: Path, body: str) -> None:
    t = write(tmp_path, evil__subject__j2="s", evil__txt__j2=body)
    with pytest.raises(TemplateError, match="not allowed|unsafe|undefined"):
        t.render("evil", sample_context())


def test_output_and_time_are_bounded(tmp_path: Path) -> None:
    t = write(
        tmp_path, big__subject__j2="s", big__txt__j2="{% for i in range(100000) %}xxxxxxxxxx{% endfor %}"
    )
    with pytest.raises(TemplateError, match="output passed"):
        t.render("big", {})


def test_a_missing_variable_is_an_error_at_check_time_with_its_line(tmp_path: Path) -> None:
    write(tmp_path, a__subject__j2="Hi", a__txt__j2="Hello\n{{ customer.frist_name }}\n")
    write(tmp_path, b__subject__j2="Hi", b__txt__j2="{{ custmer }}")
    write(tmp_path, c__subject__j2="Hi {{ customer.attributes.plan }}", c__txt__j2="ok {% if x %}")
    problems = [(Path(p.file).name, p.line, p.message) for p in check_templates(tmp_path, None)]
    assert ("a.txt.j2", 2, "undefined variable: 'customer' has no attribute 'frist_name'") in problems
    assert ("b.txt.j2", 1, "undefined variable: 'custmer' is undefined") in problems
    assert any(f == "c.txt.j2" and "syntax error" in m for f, _, m in problems)
    assert not any(f == "c.subject.j2" for f, _, _ in problems)  # free-form attributes are allowed


def test_html_to_text_reads_well() -> None:
    html = (
        "<html><head><title>t</title></head><body><h1>Title</h1><p>One<br>two</p>"
        "<table><tr><td>A</td><td>1</td></tr></table><div style='display:none'>preheader</div></body></html>"
    )
    assert html_to_text(html) == "Title\n\nOne\ntwo\n\nA  1\n"


def test_an_undefined_variable_suggests_the_nearest_name_at_its_column(tmp_path: Path) -> None:
    write(tmp_path, a__subject__j2="Hi", a__txt__j2="Hello\n  {{ customer.frist_name }}\n")
    write(tmp_path, b__subject__j2="Hi", b__txt__j2="{{ custmer.id }}")
    write(tmp_path, c__subject__j2="Hi", c__html__j2="<a href='{{ links.unsubscrbe }}'>x</a>")
    write(tmp_path, d__subject__j2="{{ brand.nme }}", d__txt__j2="x")
    shown = sorted(
        f"{Path(p.file).name}:{p.line}:{p.column}: {p.suggestion}" for p in check_templates(tmp_path, None)
    )
    assert shown == [
        "a.txt.j2:2:15: first_name",
        "b.txt.j2:1:4: customer",
        "c.html.j2:1:19: unsubscribe",
        "d.subject.j2:1:10: name",
    ]
    problem = next(p for p in check_templates(tmp_path, None) if p.file.endswith("a.txt.j2"))
    assert str(problem).endswith(
        "a.txt.j2:2:15: undefined variable: 'customer' has no attribute 'frist_name' (did you mean 'first_name'?)"
    )
