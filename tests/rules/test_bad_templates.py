"""`journey rules check` on templates that break, reach outside their directory, or name a path:
each gives FILE:LINE:COLUMN and a reason, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.cli import main
from engine.delivery.render import Templates
from engine.errors import TemplateError
from tests.delivery.test_failure_boundary import BROKEN
from tests.rules.test_rules_loader import GOOD, problems, write


def check(rules: Path, tdir: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["rules", "check", str(rules), "--templates", str(tdir)])
    out = capsys.readouterr()
    return code, out.out + out.err


@pytest.mark.parametrize("kind", list(BROKEN))
def test_a_template_that_cannot_render_is_a_located_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    rules, tdir = write(tmp_path, {"cart.yaml": GOOD})
    (tdir / "hello.txt.j2").write_text("Hello\n" + BROKEN[kind])
    templates = Templates(tdir, max_seconds=0.3)
    with pytest.raises(TemplateError):
        templates._render_file("hello.txt.j2", {})
    code, out = check(rules, tdir, capsys)
    assert code == 1
    assert "Traceback" not in out
    assert "templates/hello.txt.j2:" in out and "templates/templates" not in out


def test_a_syntax_error_names_the_directory_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rules, tdir = write(tmp_path, {"cart.yaml": GOOD})
    (tdir / "hello.txt.j2").write_text("Hello {% for x in %}")
    code, out = check(rules, tdir, capsys)
    assert code == 1
    assert "templates/hello.txt.j2:1:1: syntax error" in out and "templates/templates" not in out


def test_a_symbolic_link_out_of_the_templates_directory_is_not_a_template(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("root:x:0:0")
    rules, tdir = write(tmp_path, {"cart.yaml": GOOD})
    (tdir / "hello.txt.j2").unlink()
    (tdir / "hello.txt.j2").symlink_to(secret)
    code, out = check(rules, tdir, capsys)
    assert code == 1
    assert "not a regular file inside the templates directory" in out
    with pytest.raises(TemplateError):
        Templates(tdir).render("hello", {})
    assert "hello.txt.j2" not in Templates.snapshot(tdir).filenames()


@pytest.mark.parametrize("name", ["../outside/x", "/etc/passwd", "a" * 300, "x.fr", "sub/x"])
def test_a_send_name_must_be_a_template_name(tmp_path: Path, name: str) -> None:
    found = problems(tmp_path, {"cart.yaml": GOOD.replace("send: hello", f"send: '{name}'")})
    assert len(found) == 1
    assert found[0].startswith("cart.yaml:5:") and "is not a template name" in found[0]
