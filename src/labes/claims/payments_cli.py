"""`labes payments …`: run a month's provider payments, issue the annual certificates of tax withheld at source."""

from __future__ import annotations

import getpass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated

import typer

from labes.errors import LabesError

app = typer.Typer(help="Provider payments: payment runs and certificates of tax withheld at source.",
                  no_args_is_help=True)
SHOWN = 40  # statements listed on screen; the payment file has them all


def _actor():
    from labes.security.audit import Actor

    return Actor("cli", getpass.getuser())


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(1)


def _today() -> date:
    """Today in Tunisia, the fund's day (from 23:00 UTC in winter it is already tomorrow there)."""
    from labes.care.transactions import local_day

    return local_day(datetime.now(UTC))


def _day(text: str | None, option: str) -> date:
    if text is None:
        return _today()
    try:
        return date.fromisoformat(text)
    except ValueError:
        _fail(f"{option} is a day written YYYY-MM-DD; got {text!r}.")


def _console():
    from rich.console import Console

    return Console(width=max(Console().width, 150))


@app.command()
def run(period: Annotated[str, typer.Option(help="YYYY-MM: the month the care sheets were accepted in "
                                                 "(earlier sheets still unpaid are paid too, as late)")],
        paid_on: Annotated[str | None, typer.Option("--paid-on", help="Payment day, YYYY-MM-DD (default: today in Tunisia)")] = None,
        out: Annotated[Path, typer.Option(help="Where the payment file and the remittance advice go")] = Path("var/payments"),
        ) -> None:
    """Pay the accepted care sheets of PERIOD: one statement per payee, tax withheld at source, files for the bank."""
    from rich.table import Table

    from labes.claims.decision import tnd
    from labes.claims.payments import run_payments
    from labes.db import session_scope
    from labes.registry.identifiers import masked_iban  # the screen shows whose account, the file the whole number

    day = _day(paid_on, "--paid-on")
    try:
        with session_scope() as session:
            result = run_payments(session, actor=_actor(), period=period, paid_on=day, out_dir=out)
    except LabesError as exc:
        _fail(exc.message)
    if not result.files_written:  # they are written as the run commits: the run stands without them
        _fail(f"payment run {result.number} is committed, but its files could not be written in {out} (the log "
              f"says why); write them with `labes payments files {result.number} --out DIR`.")
    console = _console()
    _show_held(console, result)
    if result.empty:
        why = ("nothing paid", "every payee waiting is held back (above)") if result.held else (
            "nothing to pay", "no accepted care sheet of the period (or unpaid from before it) is waiting")
        console.print(f"Run {result.number}: {why[0]} for {result.period} on {day.isoformat()} — {why[1]}. "
                      "No statement; the payment file has no row.")
        console.print(f"payment file: {result.payment_file}")
        return
    table = Table(title=f"Payment run {result.number} — period {result.period}, paid on {day.isoformat()}")
    for column in ("statement", "payee", "identifier", "kind", "paid by", "sheets", "late", "gross", "rate", "withheld",
                   "net"):
        table.add_column(column, justify="right" if column in ("sheets", "late", "gross", "rate", "withheld", "net")
                         else "left", no_wrap=column in ("statement", "identifier", "kind", "paid by"))
    for s in result.statements[:SHOWN]:
        paid_by = f"{s.payment_method} {masked_iban(s.payee_iban)}" if s.payee_iban else s.payment_method
        table.add_row(s.number, s.payee_name, s.payee_identifier, s.payee_kind, paid_by, str(s.care_sheets),
                      str(s.late_sheets), tnd(s.gross_millimes), f"{s.tax_rate_percent}%", tnd(s.tax_withheld_millimes),
                      tnd(s.net_millimes))
    if len(result.statements) > SHOWN:
        table.add_row("…", f"and {len(result.statements) - SHOWN} more payees: see the payment file", *[""] * 9)
    table.add_row("TOTAL", f"{len(result.statements)} payees", "", "", "", str(result.care_sheets),
                  str(result.late_sheets), tnd(result.gross_millimes), "", tnd(result.tax_withheld_millimes),
                  tnd(result.net_millimes), style="bold")
    console.print(table)
    console.print(f"payment file: {result.payment_file}")
    console.print(f"remittance advice: {len(result.advice_files)} files in {result.directory}")
    if notices := sum(1 for s in result.statements if s.notified):
        console.print(f"{notices} reimbursement notices queued by SMS: send them on the payment day with "
                      "`labes sms dispatch`.")


def _show_held(console, result) -> None:
    """List the providers the run could not pay (no bank account on record): their sheets wait for the next run."""
    from labes.claims.decision import tnd

    if not result.held:
        return
    console.print(f"[bold yellow]Held back: {len(result.held)} providers have no bank account on record[/]; their "
                  f"{sum(h.care_sheets for h in result.held)} care sheets stay unpaid until it is recorded "
                  "(PATCH the facility or professional with its `iban`, or import it), then a later run pays them.")
    for h in result.held[:SHOWN]:
        console.print(f"  {h.payee_kind} {h.payee_identifier} {h.payee_name}: {h.care_sheets} sheets, "
                      f"{tnd(h.gross_millimes)}")
    if len(result.held) > SHOWN:
        console.print(f"  … and {len(result.held) - SHOWN} more (the run's audit event lists them)")


@app.command()
def late(on: Annotated[str | None, typer.Option(help="The day to look from, YYYY-MM-DD (default: today in Tunisia)")] = None,
         since: Annotated[str | None, typer.Option(help="Sheets due from this day, YYYY-MM-DD (default: 365 days before --on)")] = None,
         provider: Annotated[str | None, typer.Option(help="One professional's licence or facility's code: its sheets")] = None,
         csv_out: Annotated[Path | None, typer.Option("--csv", help="Also write the report to this CSV file")] = None,
         ) -> None:
    """Late payments per provider: sheets the fund paid after its deadline (pharmacies 7 days, doctors 15, clinics 21)
    or still owes past it."""
    from rich.table import Table

    from labes.claims.decision import tnd
    from labes.claims.payments import LATE_REPORT_COLUMNS, late_payments_seen, late_report_rows, write_csv
    from labes.db import session_scope

    try:
        with session_scope() as session:
            seen = late_payments_seen(session, today=_day(on, "--on"), provider=provider,
                                      since=_day(since, "--since") if since else None)
    except LabesError as exc:
        _fail(exc.message)
    console = _console()
    window = f"{seen.since.isoformat()} to {seen.today.isoformat()}"
    if not seen.payees:
        console.print(f"No late payment: every sheet due from {window} was paid by its deadline.")
    else:
        table = Table(title=f"Late payments, sheets due {window}")
        for column in ("payee", "identifier", "kind", "due", "on time", "paid late", "overdue", "still owed",
                       "days late (avg / most)"):
            table.add_column(column, justify="left" if column in ("payee", "identifier", "kind") else "right")
        for e in seen.payees[:SHOWN]:
            table.add_row(e.payee_name, e.payee_identifier, e.payee_kind, str(e.sheets_due), f"{e.on_time_percent}%",
                          str(e.paid_late), str(e.overdue), tnd(e.overdue_millimes),
                          f"{e.average_days_late} / {e.most_days_late}")
        if len(seen.payees) > SHOWN:
            table.add_row(f"and {len(seen.payees) - SHOWN} more payees", *[""] * 8)
        console.print(table)
    for s in seen.sheets:
        console.print(f"  {s.number} of {s.care_date.isoformat()}: due {s.payment_due_on.isoformat()}, "
                      + (f"paid {s.paid_on.isoformat()}" if s.paid_on else "unpaid")
                      + f", {s.days_late} days late, {tnd(s.fund_millimes)}")
    if csv_out is not None:
        write_csv(csv_out, LATE_REPORT_COLUMNS, late_report_rows(seen.payees))
        console.print(f"report written to {csv_out}")


@app.command()
def files(number: Annotated[str, typer.Argument(help="The payment run, e.g. PR-2026-11-0001")],
          out: Annotated[Path, typer.Option(help="Where to write them")] = Path("var/payments")) -> None:
    """Write a committed run's payment file and remittance advice again."""
    from labes.claims.payments import write_run_files
    from labes.db import session_scope

    try:
        with session_scope() as session:
            written = write_run_files(session, number=number, out_dir=out)
    except LabesError as exc:
        _fail(exc.message)
    typer.echo(f"{len(written)} files written in {written[0].parent}")


@app.command()
def certificate(provider: Annotated[str, typer.Option(help="The professional's licence or the facility's code")],
                year: Annotated[int, typer.Option(help="Calendar year of the payments")],
                out: Annotated[Path | None, typer.Option(help="PDF to write (default var/certificates/<id>.pdf)")] = None,
                ) -> None:
    """Issue a provider's annual certificate of tax withheld at source (PDF in French and Arabic, sealed)."""
    from labes.cards.crypto import KeysMissing, load_authority
    from labes.claims.certificates import issue_certificate
    from labes.claims.decision import tnd
    from labes.config import get_settings
    from labes.db import session_scope

    try:
        seal = load_authority(get_settings().keys_dir.resolve(), "seal")
    except KeysMissing as exc:
        _fail(str(exc))
    try:
        with session_scope() as session:
            path = out or Path("var/certificates") / f"RS-{year}-{provider.strip().upper()}.pdf"
            issued, code = issue_certificate(session, provider=provider, year=year, seal=seal, path=path,
                                             issued_on=_today())
    except LabesError as exc:
        _fail(exc.message)
    typer.echo(f"certificate {issued.id}: {len(issued.lines)} statements, gross {tnd(issued.gross_millimes)}, "
               f"withheld {tnd(issued.withheld_millimes)}, net {tnd(issued.net_millimes)}")
    typer.echo(f"written to {path}")
    typer.echo(f"seal code: {code}")
