"""CLI commands: preview, send-test."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from engine.cli.base import NOW_HELP, App, parse_now, pass_app
from engine.delivery.preview import Preview
from engine.delivery.preview import preview as render_preview
from engine.delivery.sendtest import send_test as run_send_test
from engine.errors import RuleError
from engine.rules.loader import RuleSet


def _ruleset(app: App) -> RuleSet | None:
    """The rules, to know which event a template's rule is triggered by; a preview still works
    on templates alone when the rule files have problems (it says so)."""
    try:
        return app.rules()
    except RuleError:
        click.echo(
            "note: the rule files have problems (journey rules check): previewing without them", err=True
        )
        return None


F = TypeVar("F", bound=Callable[..., Any])


def _event_options(command: F) -> F:
    for option in reversed(
        [
            click.option("--customer", "customer_id", help="the customer's id (as sent in events)"),
            click.option(
                "--event",
                "event",
                metavar="MESSAGE_ID",
                help="use this event of the customer (its message_id, or the latest of an event name)",
            ),
            click.option("--sample", is_flag=True, help="use sample data instead of the customer's events"),
            click.option("--locale", help="render this locale's variant (default: the customer's locale)"),
            click.option(
                "--rule", "rule_id", help="as this rule sends it (default: the first rule that does)"
            ),
            click.option("--now", "now_text", metavar="ISO8601", help=NOW_HELP),
        ]
    ):
        command = option(command)
    return command


def _notes(shown: Preview) -> list[str]:
    rule = f", as rule {shown.rule.id} sends it" if shown.rule is not None else " (no rule sends it)"
    lines = [f"Template: {shown.template} ({shown.channel}){rule}", f"Event: {shown.event_note}"]
    customer_locale = shown.context["customer"].get("locale")
    if shown.locale is not None:
        lines.append(
            f"Locale: {shown.locale}" + (f" (the customer's {customer_locale})" if customer_locale else "")
        )
    elif shown.variants:
        lines.append(
            f"Locale: the default template (variants: {', '.join(shown.variants)}; "
            + (
                f"none for the customer's {customer_locale})"
                if customer_locale
                else "the customer has no locale)"
            )
        )
    return lines


@click.command()
@click.argument("template")
@_event_options
@click.option("--html-only", is_flag=True, help="print only the HTML part")
@click.option("--text-only", is_flag=True, help="print only the text part")
@click.option(
    "--html",
    "html_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="write the HTML body to this file, to open in a browser",
)
@pass_app
def preview(
    app: App,
    template: str,
    customer_id: str | None,
    event: str | None,
    sample: bool,
    locale: str | None,
    rule_id: str | None,
    now_text: str | None,
    html_only: bool,
    text_only: bool,
    html_file: Path | None,
) -> None:
    """Render TEMPLATE for a customer, as its rule would send it, and say which event it used:
    subject, headers and both bodies (a webhook's JSON) to the terminal."""
    shown = render_preview(
        app.settings,
        app.engine,
        template,
        customer_id,
        now=parse_now(now_text),
        ruleset=_ruleset(app),
        event=event,
        sample=sample,
        locale=locale,
        rule_id=rule_id,
    )
    quiet = html_only or text_only
    for line in _notes(shown):
        click.echo(line, err=quiet)
    if shown.rendered is None:  # a webhook
        click.echo(f"POST {shown.url or '(no url: set url: on the step or webhook_url in settings.yaml)'}")
        click.echo("Content-Type: application/json")
        click.echo("")
        click.echo(json.dumps(shown.payload, indent=2, ensure_ascii=False, default=str))
        return
    rendered = shown.rendered
    if html_file is not None:
        if rendered.html is None:
            raise click.ClickException(f"'{template}' has no HTML body (only {template}.txt.j2)")
        html_file.write_text(rendered.html, encoding="utf-8")
        click.echo(f"HTML written to {html_file}: open it in a browser", err=True)
    if not quiet:
        click.echo(f"From: {app.settings.mail_from}")
        click.echo(f"To: {shown.to}")
        click.echo(f"Subject: {rendered.subject}")
        if shown.rule is None or not shown.rule.transactional:
            click.echo(f"List-Unsubscribe: <{shown.context['links'].unsubscribe}>")
            click.echo("List-Unsubscribe-Post: List-Unsubscribe=One-Click")
        click.echo("")
        click.echo("----- text -----")
    if not html_only:
        click.echo(rendered.text)
    if not text_only and rendered.html is not None:
        if not html_only:
            click.echo("----- html -----")
        click.echo(rendered.html)


@click.command("send-test")
@click.argument("template")
@click.option(
    "--to", "to", required=True, metavar="ADDRESS", help="your address (a URL for a webhook template)"
)
@_event_options
@pass_app
def send_test(
    app: App,
    template: str,
    to: str,
    customer_id: str | None,
    event: str | None,
    sample: bool,
    locale: str | None,
    rule_id: str | None,
    now_text: str | None,
) -> None:
    """Send one real TEMPLATE message to ADDRESS through the configured channel (JOURNEY_EMAIL_URL;
    a webhook template posts to the URL given). Marked as a test ('[test] ' subject), it is kept
    out of the ledger, the caps and the reports. Without --customer, sample data is used."""
    sent = run_send_test(
        app.settings,
        app.engine,
        template,
        to,
        now=parse_now(now_text),
        ruleset=_ruleset(app),
        customer_id=customer_id,
        event=event,
        sample=sample,
        locale=locale,
        rule_id=rule_id,
    )
    for line in _notes(sent.preview):
        click.echo(line)
    what = f"'{sent.subject}'" if sent.preview.channel == "email" else "the JSON body"
    click.echo(f"sent {what} to {sent.to}: {sent.response}")
    click.echo("A test: not in the ledger, the caps or the reports; its links work and record nothing.")
