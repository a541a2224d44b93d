"""`labes sms`: try the 1017 card look-up service from a shell, and send what waits in the outbox."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer

app = typer.Typer(help="SMS: the *1017*<CIN># card look-up service and the outbox.", no_args_is_help=True)


def _log_to_stderr() -> None:
    # The development gateway "sends" by logging: show its JSON lines on stderr, the reply alone on stdout.
    from labes.config import get_settings
    from labes.logging import configure

    configure(get_settings().log_level)


@app.callback()
def _sms() -> None:
    """SMS: the *1017*<CIN># card look-up service and the outbox."""


@app.command("receive")
def receive(text: Annotated[str, typer.Argument(help="The message as typed on the phone, e.g. '*1017*12345678#'")],
            sender: Annotated[str, typer.Option("--from", help="The sender's phone number, e.g. +21698123456")]) -> None:
    """Handle a message to 1017 exactly as the gateway's webhook does, send the reply, and print it."""
    from labes.cards.sms import handle_inbound, send_after_commit, sender_from_settings
    from labes.db import get_sessionmaker, session_scope
    from labes.errors import LabesError

    _log_to_stderr()
    try:
        with session_scope() as session:
            reply = handle_inbound(session, number=sender, text=text,
                                   now=datetime.now(UTC))
            send_after_commit(session, sender=sender_from_settings(), factory=get_sessionmaker())
    except LabesError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(1) from None
    typer.echo(reply if reply is not None else "(no reply: this number is over its hourly limit and was told so)")


@app.command("dispatch")
def dispatch(limit: Annotated[int, typer.Option(help="At most this many messages")] = 500) -> None:
    """Send the messages still queued (by code that does not send after commit, or an interrupted dispatch)."""
    from labes.cards.sms import dispatch_outbox, sender_from_settings
    from labes.db import get_sessionmaker

    _log_to_stderr()
    result = dispatch_outbox(get_sessionmaker(), sender_from_settings(), limit=limit)
    typer.echo(f"{result.sent} sent, {result.failed} failed")
    if result.failed:
        raise typer.Exit(1)
