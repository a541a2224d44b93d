"""SMS: the outbox every notice goes through."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.orm import Session

from labes.cards.models import SmsMessage


def queue_sms(session: Session, *, number: str, text: str, purpose: str) -> SmsMessage:
    """Queue an outbound SMS in this unit of work; it is handed to the gateway only if the unit commits."""
    message = SmsMessage(direction="out", number=number, text=text, at=datetime.now(UTC), status="queued",
                         purpose=purpose)
    session.add(message)
    session.flush()
    session.info.setdefault("labes_sms_outbox", []).append(message.id)
    return message
