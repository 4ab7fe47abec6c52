"""CLI commands: ingest."""

from __future__ import annotations

import contextlib
import io
import sys
import time
from datetime import UTC, datetime
from typing import TextIO

import click

from engine.cli.base import App, pass_app


@click.command()
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--chunk-size", default=2000, show_default=True, help="events per transaction")
@pass_app
def ingest(app: App, file: str, chunk_size: int) -> int:
    """Ingest events from FILE (JSON lines; `-` for stdin).

    A bad line is reported as FILE:LINE: reason and skipped; the good lines are stored.
    Exits 0 only when every line was stored.
    """
    from engine.ingest.writer import ingest_file

    errors = 0

    def on_error(message: str) -> None:
        nonlocal errors
        errors += 1
        click.echo(message, err=True)

    started = time.perf_counter()
    name = "-" if file == "-" else file
    stream: TextIO
    if file == "-":
        # a byte that is not UTF-8 is that line's problem, not the stream's (see read_lines)
        buffer = getattr(sys.stdin, "buffer", None)
        stream = (
            io.TextIOWrapper(buffer, encoding="utf-8", errors="surrogateescape")
            if buffer is not None
            else sys.stdin
        )
        size = 0
    else:
        try:
            stream = open(file, encoding="utf-8", errors="surrogateescape")  # noqa: SIM115 - closed below
        except OSError as exc:
            raise click.ClickException(f"{file}: {exc.strerror}") from None
        import os

        size = os.path.getsize(file)
    try:
        with contextlib.ExitStack() as stack:
            progress = None
            if size > 1_000_000 and sys.stderr.isatty():
                bar = stack.enter_context(click.progressbar(length=size, label="ingesting", file=sys.stderr))
                progress = bar.update
            result = ingest_file(
                app.engine,
                stream,
                name=name,
                received_at=datetime.now(UTC),
                on_error=on_error,
                progress=progress,
                chunk_size=chunk_size,
                aliases=app.event_aliases(),
            )
    finally:
        if file == "-":
            if isinstance(stream, io.TextIOWrapper) and stream is not sys.stdin:
                stream.detach()  # stdin itself stays open
        else:
            stream.close()
    seconds = time.perf_counter() - started
    bad = len(result.rejected)
    parts = [f"{result.duplicates:,} duplicates"] if result.duplicates else []
    if result.identified:
        parts.insert(0, f"{result.identified:,} identifies")
    if bad:
        parts.append(f"{bad:,} bad line{'s' if bad != 1 else ''}")
    detail = f" ({', '.join(parts)})" if parts else ""
    click.echo(f"ingested {result.stored:,} events{detail} in {seconds:.1f} s", err=True)
    return 1 if bad else 0
