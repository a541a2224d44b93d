"""Cards for the demo: the fund's keys, pick-up points, and a few families' cards in every state."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from labes.cards import distribution, points, service
from labes.cards.crypto import init_keys, load_authority
from labes.cards.models import Card, PickupPoint
from labes.registry.models import Member, Person
from labes.security.audit import Actor


def ensure_keys(keys_dir: Path) -> None:
    """Create the fund's keys unless they exist."""
    if not (keys_dir / "card-ca.key.pem").exists():
        init_keys(keys_dir)


def card_examples(session: Session) -> list[tuple[str, str]]:
    """Return (what, CIN) for one card holder in each interesting state, to try the *1017* look-up."""
    found = []
    for state, label in (("at_point", "SMS: card waiting at a post office"), ("delivered", "SMS: card delivered"),
                         ("shipped", "SMS: card on its way"), ("batched", "SMS: card packed, not yet dispatched")):
        cin = session.scalar(select(Person.cin).join(Card, Card.holder_person_id == Person.id)
                             .where(Card.state == state, Person.cin.is_not(None)).order_by(Person.cin).limit(1))
        if cin:
            found.append((label, cin))
    return found


def load_demo_cards(session: Session, *, actor: Actor, keys_dir: Path, families: int = 12) -> None:
    """Give a dozen families Labes cards and move them along (idempotent)."""
    if session.scalar(select(exists().where(PickupPoint.kind == "post_office"))) is False:
        points.save_points(session, points.generate_points(), actor=actor, source="demo")
    if session.scalar(select(exists().where(Card.card_type == "labes"))):
        return
    authority = load_authority(keys_dir.resolve())
    members = session.execute(select(Member.person_id, Person.cin).join(Person, Person.id == Member.person_id)
                              .where(Member.status == "active").order_by(Person.cin).limit(families)).all()
    for person_id, _ in members:
        holder = service.resolve_holder(session, card_type="labes", person_id=person_id)
        service.issue_card(session, actor=actor, authority=authority, holder=holder)
    now = datetime.now(UTC)
    run = distribution.build_batches(session, actor=actor, now=now)
    for index, batch in enumerate(run.batches[:-1]):  # the last batch stays packed, not yet shipped
        distribution.ship_batch(session, actor=actor, number=batch.number, now=now)
        if index % 3 == 0:
            continue  # on its way
        distribution.receive_batch(session, actor=actor, number=batch.number, now=now)
        if index % 3 == 2:
            card = session.scalar(select(Card).where(Card.batch_id == batch.id).limit(1))
            person = session.get(Person, card.holder_person_id)
            point = session.get(PickupPoint, card.point_id)
            distribution.deliver(session, actor=actor, serial=card.serial, point_code=point.code,
                                 presented_cin=person.cin, to="holder", now=now)
