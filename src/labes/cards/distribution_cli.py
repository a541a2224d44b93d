"""`labes distribution …`: pack, ship and receive card shipments, return unclaimed cards, manage pick-up points."""

from __future__ import annotations

import getpass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from labes.errors import LabesError

app = typer.Typer(help="Card distribution: shipments to pick-up points, unclaimed cards, pick-up points.",
                  no_args_is_help=True)
points_app = typer.Typer(help="Pick-up points: post offices, fund centres, health directorates, mobile centres.",
                         no_args_is_help=True)
app.add_typer(points_app, name="points")


def _actor():
    from labes.security.audit import Actor

    return Actor("cli", getpass.getuser())


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(1)


@app.command()
def batch(governorate: Annotated[str | None, typer.Option(help="Only cards of this governorate (KAS, SFX…)")] = None,
          limit: Annotated[int | None, typer.Option(help="At most this many cards")] = None,
          out: Annotated[Path, typer.Option(help="Where the manifests (CSV and PDF) are written")] = Path("var/manifests")) -> None:
    """Pack printed and returned cards into one batch per pick-up point and write each batch's manifest."""
    from labes.cards import distribution
    from labes.cards.manifests import write_manifest
    from labes.db import session_scope

    try:
        with session_scope() as session:
            run = distribution.build_batches(session, actor=_actor(), governorate=governorate, limit=limit,
                                             now=datetime.now(UTC))
            numbers = [b.number for b in run.batches]
        # Files only once the batches are committed; `labes distribution manifest` writes them again if this fails.
        with session_scope() as session:
            for number in numbers:
                found = distribution.get_batch_or_raise(session, number=number)
                _, pdf_path = write_manifest(session, found, out)
                typer.echo(f"{number}: {found.cards} cards → {pdf_path}")
    except LabesError as exc:
        _fail(exc.message)
    total = sum(b.cards for b in run.batches)
    typer.echo(f"{len(numbers)} batches, {total} cards; manifests in {out}")
    for code, count in sorted(run.unrouted.items()):
        typer.echo(f"warning: {count} cards of {code} left unpacked: the governorate has no pick-up point for them "
                   "(`labes distribution points generate` or import some)", err=True)


@app.command()
def manifest(number: str, out: Annotated[Path, typer.Option(help="Output directory")] = Path("var/manifests")) -> None:
    """Write a batch's manifest (CSV and PDF) again."""
    from labes.cards import distribution
    from labes.cards.manifests import write_manifest
    from labes.db import session_scope

    try:
        with session_scope() as session:
            csv_path, pdf_path = write_manifest(session, distribution.get_batch_or_raise(session, number=number), out)
    except LabesError as exc:
        _fail(exc.message)
    typer.echo(f"{csv_path}\n{pdf_path}")


@app.command()
def ship(number: str) -> None:
    """Hand batch NUMBER to the post."""
    from labes.cards import distribution
    from labes.db import session_scope

    try:
        with session_scope() as session:
            found = distribution.ship_batch(session, actor=_actor(), number=number)
            cards = found.cards
    except LabesError as exc:
        _fail(exc.message)
    typer.echo(f"batch {number} shipped: {cards} cards")


@app.command()
def receive(number: str, point: Annotated[str | None, typer.Option(help="Code of the receiving point (checked)")] = None) -> None:
    """Record batch NUMBER as received at its pick-up point; holders are told by SMS."""
    from labes.cards import distribution
    from labes.db import session_scope

    from labes.cards.sms import send_after_commit, sender_from_settings
    from labes.db import get_sessionmaker

    try:
        with session_scope() as session:
            found = distribution.receive_batch(session, actor=_actor(), number=number, point_code=point)
            send_after_commit(session, sender=sender_from_settings(), factory=get_sessionmaker())
            cards = found.cards
    except LabesError as exc:
        _fail(exc.message)
    typer.echo(f"batch {number} received: {cards} cards waiting for their holders")


@app.command("return-overdue")
def return_overdue(days: Annotated[int | None, typer.Option(help="Days waiting (default LABES_CARD_RETURN_DAYS, 90)")] = None) -> None:
    """Send back to the fund the cards waiting at a point for longer than DAYS."""
    from labes.cards import distribution
    from labes.db import session_scope

    with session_scope() as session:
        serials = distribution.return_overdue(session, actor=_actor(), days=days)
    typer.echo(f"{len(serials)} cards returned; they go out again in the next `labes distribution batch`")


@app.command()
def remind(days_before: Annotated[int, typer.Option(help="Days before the return")] = 15) -> None:
    """Text the holders whose card goes back to the fund soon (once per card and stay)."""
    from labes.cards import distribution
    from labes.db import session_scope

    with session_scope() as session:
        run = distribution.remind_before_return(session, days_before=days_before, actor=_actor())
    typer.echo(f"{run.sent} reminders queued; {run.no_phone} holders have no phone on record")


@points_app.command("import")
def points_import(path: Path, errors: Annotated[Path | None, typer.Option(help="Error CSV (default: FILE.errors.csv)")] = None) -> None:
    """Import pick-up points from a CSV (idempotent: upsert by code)."""
    from labes.cards import points
    from labes.db import session_scope
    from labes.registry.bulk import FileError

    try:
        with session_scope() as session:
            result = points.import_points(session, path, actor=_actor(), errors_path=errors)
    except FileError as exc:
        _fail(str(exc))
    counts = ", ".join(f"{n} {what}" for what, n in result.counts.items())
    typer.echo(f"{result.rows} rows read, {result.loaded} loaded ({counts}), {result.rejected} rejected")
    if result.errors_path:
        typer.echo(f"rejected rows and why: {result.errors_path}")


@points_app.command("generate")
def points_generate(out: Annotated[Path | None, typer.Option(help="Write a CSV here instead of loading the points")] = None,
                    governorate: Annotated[list[str] | None, typer.Option(help="Only these governorates")] = None) -> None:
    """Create a plausible national set of pick-up points (demo, tests, benchmarks); idempotent."""
    from labes.cards import points
    from labes.db import session_scope

    rows = points.generate_points(governorate)
    if out is not None:
        points.write_points_csv(rows, out)
        typer.echo(f"{len(rows)} pick-up points written to {out}")
        return
    with session_scope() as session:
        counts = points.save_points(session, rows, actor=_actor(), source="generated")
    typer.echo(f"{len(rows)} pick-up points: " + ", ".join(f"{n} {what}" for what, n in counts.items()))
