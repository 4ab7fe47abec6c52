"""CLI commands: preview."""

from __future__ import annotations

import click

from engine.cli import NOW_HELP, App, cli, parse_now, pass_app


@cli.command()
@click.argument("template")
@click.option("--customer", "customer_id", required=True, help="the customer's id (as sent in events)")
@click.option("--now", "now_text", metavar="ISO8601", help=NOW_HELP)
@click.option("--html-only", is_flag=True, help="print only the HTML part")
@click.option("--text-only", is_flag=True, help="print only the text part")
@pass_app
def preview(
    app: App, template: str, customer_id: str, now_text: str | None, html_only: bool, text_only: bool
) -> None:
    """Render TEMPLATE for a customer: subject, headers and both bodies, to the terminal."""
    from engine.context import preview_context, signer_for
    from engine.render import Templates

    templates = Templates(app.settings.templates_dir)
    if not templates.exists(template):
        names = ", ".join(templates.names()) or "none"
        raise click.ClickException(
            f"no template '{template}' in {app.settings.templates_dir} (have: {names})"
        )
    signer = signer_for(app.settings, app.engine)
    with app.engine.connect() as conn:
        ctx = preview_context(
            conn,
            app.settings,
            signer,
            customer_external_id=customer_id,
            template=template,
            now=parse_now(now_text),
        )
    rendered = templates.render(template, ctx)
    customer = ctx["customer"]
    if not html_only and not text_only:
        to = (
            f"{customer['first_name']} <{customer['email']}>" if customer["first_name"] else customer["email"]
        )
        click.echo(f"From: {app.settings.mail_from}")
        click.echo(f"To: {to or '(no email address)'}")
        click.echo(f"Subject: {rendered.subject}")
        click.echo(f"List-Unsubscribe: <{ctx['links'].unsubscribe}>")
        click.echo("List-Unsubscribe-Post: List-Unsubscribe=One-Click")
        click.echo("")
        click.echo("----- text -----")
    if not html_only:
        click.echo(rendered.text)
    if not text_only and rendered.html is not None:
        if not html_only:
            click.echo("----- html -----")
        click.echo(rendered.html)
