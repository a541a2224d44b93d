"""Mass issuance: every member and dependant gets one card, keys only in the personalisation output."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from sqlalchemy import func, select

from labes.cards.bulk import issue_all
from labes.cards.crypto import check_card_certificate, verify_printed_code
from labes.cards.models import Card, CardEvent
from labes.cards.tokens import VirtualCard
from tests import factories


def test_issue_all_gives_each_beneficiary_one_card(committed, keys_dir, authority, tmp_path):
    with committed() as session:
        for _ in range(3):
            member = factories.member(session)
            factories.dependant(session, member.social_id)
        session.commit()
    output = tmp_path / "personalisation.jsonl"
    result = issue_all(committed, actor=factories.ACTOR, keys_dir=keys_dir, output=output, workers=2)
    assert result.issued == 6
    again = issue_all(committed, actor=factories.ACTOR, keys_dir=keys_dir, output=output, workers=2)
    assert again.issued == 0  # a re-run skips holders who have a card
    records = [json.loads(line) for line in output.read_text().splitlines()]
    assert len(records) == 6 and output.stat().st_mode & 0o777 == 0o600
    with committed() as session:
        assert session.scalar(select(func.count(func.distinct(Card.holder_person_id)))) == 6
        assert session.scalar(select(func.count()).select_from(CardEvent)) == 6
        cards = {c.serial: c for c in session.scalars(select(Card))}
    for record in records:
        card = cards[record["serial"]]
        certificate = x509.load_der_x509_certificate(card.certificate)
        assert check_card_certificate(authority.certificate, certificate, now=datetime.now(UTC)) == card.serial
        verify_printed_code(authority.public_key, card.printed_code)
        key = serialization.load_pem_private_key(record["private_key"].encode(), password=None)
        token = VirtualCard(card.serial, certificate, key)
        from labes.cards.crypto import verify_raw

        assert verify_raw(certificate.public_key(), token.sign(b"x"), b"x")
