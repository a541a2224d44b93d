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
console = Console(stderr=True)

DEMO_PASSWORDS = {
    "clerk": ("registry_clerk", "Registry clerk (demo)", "labes-clerk-2026"),
    "reviewer": ("reviewer", "Reviewer (demo)", "labes-reviewer-2026"),
    "finance": ("finance", "Finance officer (demo)", "labes-finance-2026"),
    "admin": ("admin", "Administrator (demo)", "labes-admin-2026"),
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

    uvicorn.run("labes.app:create_app", factory=True, host=host, port=port, workers=workers, access_log=False)


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


@audit_app.command("verify")
def audit_verify() -> None:
    """Recompute the audit hash chain; exit 1 naming the first tampered or missing row."""
    from labes.db import session_scope
    from labes.security.audit import verify

    with session_scope() as session:
        result = verify(session)
    if result.ok:
        typer.echo(f"audit trail intact: {result.checked} events, head {result.head_hash}")
        return
    typer.echo(f"audit trail BROKEN at row {result.first_bad_seq}: {result.problem} "
               f"({result.checked} events verified before it)")
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


@app.command()
def demo(members: Annotated[int, typer.Option(help="Synthetic members to add")] = 300,
         out: Annotated[Path, typer.Option(help="Where the demo CSVs are written")] = Path("var/demo")) -> None:
    """Load a small demo dataset and agent accounts (idempotent), and print how to log in."""
    from sqlalchemy import select

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
    typer.echo("Demo data loaded. Agent accounts (username / password / role):")
    for username, (role, _, password) in DEMO_PASSWORDS.items():
        typer.echo(f"  {username:9} {password:22} {role}")
    typer.echo("Log in:  curl -s -X POST http://127.0.0.1:8000/api/v1/auth/login "
               "-H 'content-type: application/json' -d '{\"username\":\"clerk\",\"password\":\"labes-clerk-2026\"}'")
    with session_scope() as session:
        for label, key in demo_examples(session, on=date.today()):
            typer.echo(f"  {label:48} GET /api/v1/families/{key}")


if __name__ == "__main__":
    app()
