"""Localised templates: NAME.LOCALE.*.j2 chosen by the customer's locale with fallback (fr-CA → fr
→ the default), a whole template per locale, and `rules check` rendering every variant."""

from __future__ import annotations

from email import message_from_bytes
from email.header import decode_header, make_header
from pathlib import Path

import pytest

from engine.cli import main
from engine.delivery.checks import check_all, check_templates, sample_context
from engine.delivery.locales import fallbacks
from engine.delivery.render import Templates
from tests.support.services import ROOT


def write(tmp_path: Path, **files: str) -> Templates:
    for name, body in files.items():
        (tmp_path / name.replace("__", ".")).write_text(body)
    return Templates(tmp_path)


def shown(tmp_path: Path) -> list[str]:
    return [f"{Path(p.file).name}:{p.line}:{p.column}: {p.message}" for p in check_templates(tmp_path, None)]


def test_fallback_goes_from_the_region_to_the_language_to_the_default() -> None:
    assert fallbacks("fr-CA") == ["fr-ca", "fr"]
    assert fallbacks("FR_ca") == ["fr-ca", "fr"]
    assert fallbacks("zh-Hant-TW") == ["zh-hant-tw", "zh-hant", "zh"]
    assert fallbacks(None) == fallbacks("") == fallbacks("not a locale!") == []


def test_a_customers_locale_picks_the_most_specific_whole_variant(tmp_path: Path) -> None:
    t = write(
        tmp_path,
        hi__subject__j2="Hello",
        hi__txt__j2="Hello in English",
        hi__fr__subject__j2="Bonjour",
        hi__fr__html__j2="<p>Bonjour en français</p>",
        hi__fr_CA__subject__j2="Allô",
        hi__fr_CA__txt__j2="Allô du Québec",
        hi__de__subject__j2="Hallo",  # a subject without a body: not a whole template, never used
    )
    ctx = sample_context()
    assert (t.render("hi", ctx, locale="fr-CA").subject, t.render("hi", ctx, locale="fr-ca").locale) == (
        "Allô",
        "fr_CA",
    )
    fr = t.render("hi", ctx, locale="fr-BE")
    assert (fr.subject, fr.locale) == ("Bonjour", "fr")
    # whole: the French text is derived from the French HTML, never the English text file
    assert fr.text == "Bonjour en français\n"
    assert t.render("hi", ctx, locale="de-DE").subject == "Hello"
    assert t.render("hi", ctx, locale="pt-BR").locale is None
    assert t.render("hi", ctx).text == "Hello in English\n"


def test_rules_check_reports_incomplete_variants_a_variant_without_default_and_bad_locales(
    tmp_path: Path,
) -> None:
    write(
        tmp_path,
        hi__subject__j2="Hello",
        hi__txt__j2="Hello",
        hi__de__subject__j2="Hallo",
        bye__fr__subject__j2="Au revoir",
        bye__fr__txt__j2="Au revoir",
        hi__french__subject__j2="Bonjour",
    )
    assert shown(tmp_path) == [
        "bye.fr.subject.j2:1:1: 'bye.fr' has no default template beside it: add bye.subject.j2 and a "
        "body (or bye.json.j2), for customers of other locales",
        "hi.de.subject.j2:1:1: 'hi.de' has a subject but no body: add hi.de.html.j2 or hi.de.txt.j2 "
        "(a locale's template is whole: none of its files comes from the default)",
        "hi.french.subject.j2:1:1: 'french' is not a locale: name the file hi.LOCALE.subject.j2 with a "
        "language code like fr, or fr-CA",
    ]


def test_rules_check_renders_every_variant_and_reports_what_only_a_locale_reads(tmp_path: Path) -> None:
    write(
        tmp_path,
        hi__subject__j2="Hello {{ customer.first_name }}",
        hi__html__j2="<p>{% for i in event.properties.items %}{{ i.name }}{% endfor %}</p>",
        hi__fr__subject__j2="Bonjour {{ customer.first_name }}",
        hi__fr__html__j2=(
            "<p>{{ event.properties.items | length }} article(s)</p>\n"  # the default reads it too
            "<p>{{ customer.attributes.civility }} {{ customer.frist_name }}</p>\n"
            "<p>{{ customer.attributes.title | default('') }}</p>"  # guarded: fine
        ),
    )
    assert shown(tmp_path) == [
        "hi.fr.html.j2:2:51: undefined variable: 'customer' has no attribute 'frist_name'",
    ]
    (tmp_path / "hi.fr.html.j2").write_text(
        "<p>{{ event.properties.items | length }}</p>\n<p>{{ customer.attributes.civility }}</p>"
    )
    assert shown(tmp_path) == [
        "hi.fr.html.j2:2:27: 'customer.attributes.civility' is read here but not by the default hi: a "
        "customer without it would get no email in this locale; read it in the default too, or write "
        "customer.attributes.civility | default('')"
    ]


def test_the_shipped_french_welcome_checks_clean(capsys: pytest.CaptureFixture[str]) -> None:
    problems, summary = check_all(ROOT / "rules", ROOT / "message_templates")
    assert problems == []
    assert summary.endswith("(3 locale variants: fr)")


def subject(raw: bytes) -> str:
    return str(make_header(decode_header(str(message_from_bytes(raw)["Subject"]))))


def test_a_fr_ca_customer_gets_the_french_welcome_and_others_the_default(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JOURNEY_DATABASE_URL", db_url)
    monkeypatch.setenv("JOURNEY_RULES_DIR", str(ROOT / "rules"))
    monkeypatch.setenv("JOURNEY_TEMPLATES_DIR", str(ROOT / "message_templates"))
    monkeypatch.setenv("JOURNEY_EMAIL_URL", f"file://{tmp_path / 'outbox'}")
    monkeypatch.setenv("JOURNEY_SECRET_KEY", "k")
    monkeypatch.delenv("JOURNEY_BROKER_URL", raising=False)
    events = tmp_path / "events.jsonl"
    lines = []
    for cid, name, locale in (("c-1", "Chloé", "fr-CA"), ("c-2", "Ada", "en-GB"), ("c-3", "Bo", None)):
        traits = {"email": f"{cid}@example.com", "first_name": name, "timezone": "UTC"}
        if locale:
            traits["locale"] = locale
        lines.append(
            f'{{"type": "identify", "customer_id": "{cid}", "timestamp": "2026-11-01T09:00:00Z", '
            f'"traits": {__import__("json").dumps(traits)}}}'
        )
        lines.append(
            f'{{"type": "track", "customer_id": "{cid}", "event": "signed_up", '
            f'"timestamp": "2026-11-01T09:00:00Z"}}'
        )
    events.write_text("\n".join(lines) + "\n")
    assert main(["ingest", str(events)]) == 0
    assert main(["tick", "--now", "2026-11-01T10:00:00Z"]) == 0
    subjects = sorted(subject(p.read_bytes()) for p in (tmp_path / "outbox").glob("*.eml"))
    assert subjects == [
        "Bienvenue, Chloé : tout commence ici",
        "Welcome, Ada: good things start here",
        "Welcome, Bo: good things start here",
    ]
    french = next(p.read_bytes() for p in (tmp_path / "outbox").glob("*.eml") if b"c-1@" in p.read_bytes())
    body = message_from_bytes(french)
    html = next(part for part in body.walk() if part.get_content_type() == "text/html")
    assert "Se désabonner" in html.get_payload(decode=True).decode()  # type: ignore[union-attr]
