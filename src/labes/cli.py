"""The `labes` command line."""

from __future__ import annotations

import getpass
from datetime import date
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

app = typer.Typer(help="Labes: the health-insurance fund's electronic data interchange.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
import_app = typer.Typer(help="Bulk imports of the affiliation and provider feeds.", no_args_is_help=True)
audit_app = typer.Typer(help="The hash-chained audit trail.", no_args_is_help=True)
agents_app = typer.Typer(help="Fund agents' accounts.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(import_app, name="import")
app.add_typer(audit_app, name="audit")
app.add_typer(agents_app, name="agents")
keys_app = typer.Typer(help="The fund's private keys (card-issuing authority, seal).", no_args_is_help=True)
cards_app = typer.Typer(help="Smart cards.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
app.add_typer(cards_app, name="cards")
from labes.cards.distribution_cli import app as distribution_app  # noqa: E402
from labes.cards.sms_cli import app as sms_app  # noqa: E402

app.add_typer(distribution_app, name="distribution")
app.add_typer(sms_app, name="sms")
from labes.terminal.cli import app as pos_app  # noqa: E402

app.add_typer(pos_app, name="pos")
from labes.claims.payments_cli import app as payments_app  # noqa: E402

app.add_typer(payments_app, name="payments")
care_app = typer.Typer(help="Point-of-care housekeeping.", no_args_is_help=True)
app.add_typer(care_app, name="care")
stats_app = typer.Typer(help="Indicators.", no_args_is_help=True)
app.add_typer(stats_app, name="stats")
console = Console(stderr=True)

DEMO_PASSWORDS = {
    "clerk": ("registry_clerk", "Registry clerk (demo)", "labes-clerk-2026"),
    "reviewer": ("reviewer", "Reviewer (demo)", "labes-reviewer-2026"),
    "finance": ("finance", "Finance officer (demo)", "labes-finance-2026"),
    "admin": ("admin", "Administrator (demo)", "labes-admin-2026"),
    "desk": ("post_office_clerk", "Post-office clerk (demo)", "labes-desk-2026"),
}


def _cli_actor():
    from labes.security.audit import Actor

    return Actor("cli", getpass.getuser())


def _fail(message: str) -> None:
    console.print(f"[red]error:[/red] {message}")
    raise typer.Exit(1)


@app.command()
def serve(host: Annotated[str, typer.Option(help="Interface to listen on")] = "127.0.0.1",
          port: Annotated[int, typer.Option(help="TCP port")] = 8000,
          workers: Annotated[int, typer.Option(help="Worker processes")] = 1) -> None:
    """Serve the API (and, later, the portal) with uvicorn."""
    import uvicorn

    uvicorn.run("labes.app:server_app", factory=True, host=host, port=port, workers=workers, access_log=False)


@db_app.command("upgrade")
def db_upgrade(revision: str = "head") -> None:
    """Apply the migrations up to REVISION (default: the latest)."""
    from labes.config import get_settings
    from labes.migrate import upgrade

    url = get_settings().database_url
    upgrade(url, revision)
    console.print(f"database at {revision}: {url.split('@')[-1]}")


def _progress(description: str) -> tuple[Progress, callable]:
    progress = Progress(TextColumn(description), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                        TransferSpeedColumn(), TimeRemainingColumn(), console=console, transient=False)
    task = progress.add_task(description, total=None)

    def update(done: int, total: int) -> None:
        progress.update(task, completed=done, total=total)

    return progress, update


def _run_import(kind: str, path: Path, errors: Path | None, workers: int = 1) -> None:
    from labes.db import get_sessionmaker
    from labes.registry.bulk import FileError
    from labes.registry.importer import MembersImport, ProvidersImport

    cls = MembersImport if kind == "members" else ProvidersImport
    progress, update = _progress(f"importing {path.name}")
    try:
        with progress:
            result = cls(get_sessionmaker(), actor=_cli_actor()).run(path, errors_path=errors, workers=workers,
                                                                    progress=update)
    except FileError as exc:
        _fail(str(exc))
    counts = ", ".join(f"{n} {t}" for t, n in sorted(result.counts.items()))
    typer.echo(f"{result.rows} rows read, {result.loaded} loaded, {result.rejected} rejected ({counts})")
    if result.errors_path:
        typer.echo(f"rejected rows and why: {result.errors_path}")


@import_app.command("members")
def import_members(path: Path, errors: Annotated[Path | None, typer.Option(help="Error CSV (default: FILE.errors.csv)")] = None,
                   workers: Annotated[int, typer.Option(help="Processes parsing and writing chunks")] = 1) -> None:
    """Import members and dependants (idempotent: re-running gives the same state)."""
    _run_import("members", path, errors, workers)


@import_app.command("providers")
def import_providers(path: Path, errors: Annotated[Path | None, typer.Option(help="Error CSV (default: FILE.errors.csv)")] = None) -> None:
    """Import facilities and professionals (idempotent)."""
    _run_import("providers", path, errors)


@app.command()
def generate(members: Annotated[int, typer.Option(help="Number of insured members")] = 1000,
             seed: Annotated[int, typer.Option(help="Same seed, same files")] = 1,
             out: Annotated[Path, typer.Option(help="Output directory")] = Path("var/generated")) -> None:
    """Write a synthetic national population: OUT/members.csv and OUT/providers.csv."""
    from labes.registry.generate import generate as run

    out.mkdir(parents=True, exist_ok=True)
    progress = Progress(TextColumn("generating"), BarColumn(), TextColumn("{task.completed}/{task.total} members"),
                        TimeRemainingColumn(), console=console)
    with progress:
        task = progress.add_task("generate", total=members)
        result = run(out, members=members, seed=seed, progress=lambda done: progress.update(task, completed=done))
    typer.echo(f"{result.members} members, {result.dependants} dependants ({result.persons} persons), "
               f"{result.facilities} facilities, {result.professionals} professionals → {out}")


def _seal_pending() -> int:
    from labes.db import session_scope
    from labes.security.audit import seal_all

    with session_scope() as session:
        return seal_all(session)


@audit_app.command("seal")
def audit_seal() -> None:
    """Chain every audit event written but not sealed yet; print how many."""
    typer.echo(f"sealed {_seal_pending()} events")


@audit_app.command("verify")
def audit_verify() -> None:
    """Seal pending events, then recompute the hash chain; exit 1 naming the first tampered or missing row."""
    from labes.db import session_scope
    from labes.security.audit import verify

    typer.echo(f"sealed {_seal_pending()} events")
    with session_scope() as session:
        result = verify(session)
    pending = f"; {result.pending} written since, not sealed yet" if result.pending else ""
    if result.ok:
        typer.echo(f"audit trail intact: {result.checked} events, head {result.head_hash}{pending}")
        return
    typer.echo(f"audit trail BROKEN at row {result.first_bad_seq}: {result.problem} "
               f"({result.checked} events verified before it{pending})")
    raise typer.Exit(1)


@agents_app.command("create")
def agents_create(username: str, roles: Annotated[list[str], typer.Option("--role", help="registry_clerk, reviewer, finance, admin")],
                  full_name: Annotated[str, typer.Option(help="Full name")] = "",
                  password: Annotated[str, typer.Option(prompt=True, hide_input=True, confirmation_prompt=True)] = "") -> None:
    """Create a fund agent."""
    from labes.db import session_scope
    from labes.errors import LabesError
    from labes.security.service import create_agent

    try:
        with session_scope() as session:
            create_agent(session, actor=_cli_actor(), username=username, full_name=full_name or username,
                         password=password, roles=roles)
    except LabesError as exc:
        _fail(exc.message)
    typer.echo(f"agent {username} created with roles {', '.join(roles)}")


@keys_app.command("init")
def keys_init(force: Annotated[bool, typer.Option(help="Replace existing keys (every issued card becomes unverifiable)")] = False) -> None:
    """Create the card-issuing authority's and the seal's keys and certificates (files mode 0600)."""
    from labes.cards.crypto import init_keys
    from labes.config import get_settings

    directory = get_settings().keys_dir.resolve()
    try:
        written = init_keys(directory, force=force)
    except FileExistsError as exc:
        _fail(str(exc))
    for path in written:
        typer.echo(f"wrote {path}")


def _authority():
    from labes.cards.crypto import KeysMissing, load_authority
    from labes.config import get_settings

    try:
        return load_authority(get_settings().keys_dir.resolve())
    except KeysMissing as exc:
        _fail(str(exc))


@cards_app.command("issue")
def cards_issue(card_type: Annotated[str, typer.Argument(help="labes, amen or professional")],
                holder: Annotated[str, typer.Argument(help="the holder's CIN, or a professional's licence")],
                out: Annotated[Path, typer.Option(help="Where to write the virtual card file")] = Path("card.json"),
                pin: Annotated[str | None, typer.Option(help="Professional cards: the PIN protecting the key")] = None,
                on_the_spot_at: Annotated[str | None, typer.Option(help="Code of the centre handing it over now")] = None) -> None:
    """Issue one card and write its card file (the only copy of its private key)."""
    import os

    from labes.cards import service
    from labes.db import session_scope
    from labes.errors import LabesError

    try:
        with session_scope() as session:
            kwargs = {"licence": holder} if card_type == "professional" else {"cin": holder}
            found = service.resolve_holder(session, card_type=card_type, **kwargs)
            point = service.point_by_code(session, on_the_spot_at) if on_the_spot_at else None
            result = service.issue_card(session, actor=_cli_actor(), authority=_authority(), holder=found, pin=pin,
                                        on_the_spot_at=point)
            serial, state = result.card.serial, result.card.state
            fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(result.card_file)
    except LabesError as exc:
        _fail(exc.message)
    typer.echo(f"card {serial} issued ({state}); card file: {out}")


@cards_app.command("issue-all")
def cards_issue_all(out: Annotated[Path, typer.Option(help="Personalisation output (JSON lines with the private keys)")],
                    workers: Annotated[int | None, typer.Option(help="Processes (default: every core)")] = None,
                    limit: Annotated[int | None, typer.Option(help="Issue at most this many")] = None) -> None:
    """Issue a Labes card to every member and dependant who has none (keys go only to OUT)."""
    from labes.cards.bulk import issue_all
    from labes.config import get_settings
    from labes.db import get_sessionmaker

    _authority()  # fail early and clearly if the keys are missing
    result = issue_all(get_sessionmaker(), actor=_cli_actor(), keys_dir=get_settings().keys_dir.resolve(), output=out,
                       workers=workers, limit=limit)
    typer.echo(f"{result.issued} cards issued in {result.seconds:.1f} s; personalisation output: {out}")


@cards_app.command("block")
def cards_block(serial: str, reason: Annotated[str, typer.Option(help="lost, stolen, damaged, deceased, rights_ended")]) -> None:
    """Block a card."""
    from labes.cards import service
    from labes.db import session_scope
    from labes.errors import LabesError

    try:
        with session_scope() as session:
            service.block(session, actor=_cli_actor(), serial=serial, reason=reason)
    except LabesError as exc:
        _fail(exc.message)
    typer.echo(f"card {serial} blocked ({reason})")


@cards_app.command("verify-2d")
def cards_verify_2d(code: Annotated[str, typer.Argument(help="The text read from the card's 2D code")],
                    certificate: Annotated[Path | None, typer.Option(help="The fund's card-authority certificate "
                                                                          "(default: the one in LABES_KEYS_DIR)")] = None) -> None:
    """Check a card's printed 2D code offline with the fund's public key (no database, no private key)."""
    from cryptography import x509

    from labes.cards.crypto import verify_printed_code
    from labes.config import get_settings

    path = certificate or get_settings().keys_dir.resolve() / "card-ca.cert.pem"
    if not path.exists():
        _fail(f"No certificate at {path}; pass --certificate or run `labes keys init`.")
    try:
        found = verify_printed_code(x509.load_pem_x509_certificate(path.read_bytes()).public_key(), code)
    except ValueError as exc:
        typer.echo(f"NOT GENUINE: {exc}")
        raise typer.Exit(1) from None
    typer.echo(f"genuine: card {found.serial}, {found.holder_name}, social identifier {found.social_id}, "
               f"CIN ending {found.cin_last3}")


@care_app.command("purge-challenges")
def care_purge_challenges() -> None:
    """Forget used challenges past their expiry (they can no longer be replayed); run it on a schedule."""
    from datetime import UTC, datetime

    from labes.care.transactions import purge_used_challenges
    from labes.db import session_scope

    with session_scope() as session:
        purged = purge_used_challenges(session, now=datetime.now(UTC))
    console.print(f"{purged} expired challenges forgotten")


@stats_app.command("cards")
def stats_cards(as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables")] = False) -> None:
    """Card distribution and use: by governorate, over time, delay to delivery, recent use."""
    import json

    from rich.table import Table

    from labes.db import session_scope
    from labes.stats.cards import BUCKETS, summary

    with session_scope() as session:
        figures = summary(session)
    if as_json:
        typer.echo(json.dumps(figures, indent=2))
        return
    out = Console(width=max(Console().width, 140))
    table = Table(title=f"Cards by governorate, {figures['as_of']}")
    columns = ["governorate", *BUCKETS, "total", "delivery_rate"]
    for column in columns:
        table.add_column(column.replace("_", " "), justify="right")
    for row in [*figures["by_governorate"], {"governorate": "ALL", **figures["national"]}]:
        table.add_row(*[f"{row[c]:.1%}" if c == "delivery_rate" else str(row[c]) for c in columns])
    out.print(table)
    use = figures["recent_use"]
    out.print(f"median days from printing to delivery: {figures['median_days_to_delivery']}")
    out.print(f"delivered cards used in the last {use['days']} days: {use['used']} of {use['delivered']} ({use['share']:.1%})")


@app.command()
def demo(members: Annotated[int, typer.Option(help="Synthetic members to add")] = 300,
         out: Annotated[Path, typer.Option(help="Where the demo CSVs are written")] = Path("var/demo")) -> None:
    """Load a small demo dataset and agent accounts (idempotent), and print how to log in."""
    from sqlalchemy import select

    from labes.cards.demo import card_examples, ensure_keys, load_demo_cards
    from labes.config import get_settings
    from labes.db import get_sessionmaker, session_scope
    from labes.registry.demo import demo_examples
    from labes.registry.generate import generate as run
    from labes.registry.importer import MembersImport, ProvidersImport
    from labes.security.models import Agent
    from labes.security.service import create_agent

    out.mkdir(parents=True, exist_ok=True)
    run(out, members=members, seed=2026)
    actor = _cli_actor()
    ProvidersImport(get_sessionmaker(), actor=actor).run(out / "providers.csv")
    MembersImport(get_sessionmaker(), actor=actor).run(out / "members.csv")
    with session_scope() as session:
        for username, (role, name, password) in DEMO_PASSWORDS.items():
            if session.scalar(select(Agent.id).where(Agent.username == username)) is None:
                create_agent(session, actor=actor, username=username, full_name=name, password=password, roles=[role])
    keys_dir = get_settings().keys_dir.resolve()
    ensure_keys(keys_dir)
    with session_scope() as session:
        load_demo_cards(session, actor=actor, keys_dir=keys_dir)
    from labes.care.demo import instructions, load_point_of_care

    with session_scope() as session:
        point_of_care = load_point_of_care(session, actor=actor, keys_dir=keys_dir, out=Path("var/cards"))
    from labes.cards.sms import dispatch_outbox, sender_from_settings

    dispatch_outbox(get_sessionmaker(), sender_from_settings())  # the "card ready" notices
    typer.echo("Demo data loaded. Agent accounts (username / password / role):")
    for username, (role, _, password) in DEMO_PASSWORDS.items():
        typer.echo(f"  {username:9} {password:22} {role}")
    typer.echo("Log in:  curl -s -X POST http://127.0.0.1:8000/api/v1/auth/login "
               "-H 'content-type: application/json' -d '{\"username\":\"clerk\",\"password\":\"labes-clerk-2026\"}'")
    with session_scope() as session:
        for label, key in demo_examples(session, on=date.today()):
            typer.echo(f"  {label:48} GET /api/v1/families/{key}")
        examples_of_cards = card_examples(session)
    for label, cin in examples_of_cards:
        typer.echo(f"  {label:48} labes sms receive --from +21698000000 '*1017*{cin}#'")
    if point_of_care is not None:
        typer.echo(f"Point of care (virtual cards in {point_of_care.doctor_card.parent}/, PIN {point_of_care.pin}; "
                   "with `labes serve` running):")
        for line in instructions(point_of_care):
            typer.echo(f"  {line}")


if __name__ == "__main__":
    app()
