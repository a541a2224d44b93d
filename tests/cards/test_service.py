"""Card issuance, certificates, the printed code, the lifecycle, blocking, replacement, signatures."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import select

from labes.cards import lifecycle, service
from labes.cards.crypto import (
    CertificateRefused, card_certificate, check_card_certificate, init_keys, load_authority, verify_printed_code,
)
from labes.cards.models import CardEvent
from labes.cards.serials import SerialError, luhn_digit, make_serial, normalize_serial
from labes.cards.tokens import CardToken, PinError, VirtualCard
from labes.errors import Conflict, InvalidInput, RuleViolation
from labes.security.models import AuditEvent
from tests.factories import ACTOR


def issue(session, authority, cin=None, *, card_type="labes", **kwargs):
    holder = service.resolve_holder(session, card_type=card_type, cin=cin, licence=kwargs.pop("licence", None),
                                    person_id=kwargs.pop("person_id", None))
    return service.issue_card(session, actor=ACTOR, authority=authority, holder=holder, **kwargs)


def deliver(session, card, point):
    for event in ("batch", "ship", "receive", "deliver"):
        service.move(session, actor=ACTOR, card=card, event=event, point=point)


class TestSerials:
    def test_serials_carry_the_type_and_a_luhn_digit(self):
        serial = make_serial("labes", 17)
        assert serial.startswith("10") and len(serial) == 12
        assert normalize_serial(" ".join([serial[:4], serial[4:8], serial[8:]])) == serial
        assert normalize_serial(serial.translate(str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩"))) == serial

    def test_a_misread_digit_is_caught(self):
        serial = make_serial("amen", 123456)
        wrong = serial[:5] + str((int(serial[5]) + 1) % 10) + serial[6:]
        with pytest.raises(SerialError, match="check digit"):
            normalize_serial(wrong)

    def test_luhn_known_value(self):
        assert luhn_digit("7992739871") == "3"

    def test_serials_are_allocated_in_blocks_without_reuse(self, session):
        first = service.allocate_serials(session, card_type="professional", count=3)
        second = service.allocate_serials(session, card_type="professional", count=2)
        assert len(set(first + second)) == 5
        assert all(s.startswith("30") for s in first + second)


class TestIssuance:
    def test_a_labes_card_has_a_key_pair_and_a_certificate_chained_to_the_fund(self, session, authority, family):
        _, cin, _ = family
        result = issue(session, authority, cin)
        card = result.card
        assert card.state == "printed"
        certificate = x509.load_der_x509_certificate(card.certificate)
        assert check_card_certificate(authority.certificate, certificate, now=datetime.now(UTC)) == card.serial
        # The server keeps the public key only; the card file holds the private key.
        virtual = VirtualCard.from_bytes(result.card_file)
        assert isinstance(virtual, CardToken)
        assert virtual.certificate().public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo) == card.public_key
        assert b"PRIVATE" not in card.certificate + card.public_key + card.printed_code.encode()

    def test_the_issuance_is_audited_and_recorded_in_the_cards_history(self, session, authority, family):
        card = issue(session, authority, family[1]).card
        session.commit()
        assert session.scalar(select(AuditEvent.action).where(AuditEvent.entity_id == card.serial)) == "card:status:issue"
        assert [e.event for e in service.history(session, card)] == ["issue"]

    def test_a_dependant_gets_a_card_with_the_family_social_id(self, session, authority, family):
        member, _, child_person_id = family
        card = issue(session, authority, person_id=child_person_id).card
        assert verify_printed_code(authority.public_key, card.printed_code).social_id == member.social_id

    def test_one_live_card_per_holder_and_type(self, session, authority, family):
        issue(session, authority, family[1])
        with pytest.raises(Conflict, match="already has a live labes card"):
            issue(session, authority, family[1])

    def test_amen_card_needs_an_amen_household(self, session, authority, family, amen_cin):
        assert issue(session, authority, amen_cin, card_type="amen").card.card_type == "amen"
        with pytest.raises(RuleViolation, match="Amen household"):
            issue(session, authority, family[1], card_type="amen")

    def test_professional_card_key_is_encrypted_under_the_pin(self, session, authority, doctor):
        result = issue(session, authority, card_type="professional", licence=doctor.licence, pin="4821")
        assert json.loads(result.card_file)["pin_protected"] is True
        with pytest.raises(PinError):
            VirtualCard.from_bytes(result.card_file)
        with pytest.raises(PinError, match="Wrong PIN"):
            VirtualCard.from_bytes(result.card_file, pin="0000")
        assert VirtualCard.from_bytes(result.card_file, pin="4821").serial == result.card.serial

    def test_pin_rules(self, session, authority, doctor, family):
        with pytest.raises(InvalidInput, match="PIN"):
            issue(session, authority, card_type="professional", licence=doctor.licence, pin="12")
        with pytest.raises(InvalidInput, match="Only professional"):
            issue(session, authority, family[1], pin="1234")

    def test_on_the_spot_issue_is_delivered_at_once(self, session, authority, family, fund_centre):
        card = issue(session, authority, family[1], on_the_spot_at=fund_centre).card
        assert card.state == "delivered" and card.delivered_on is not None
        assert service.history(session, card)[0].event == "issue_on_the_spot"


class TestCertificates:
    def test_a_tampered_certificate_is_refused(self, session, authority, family):
        card = issue(session, authority, family[1]).card
        der = bytearray(card.certificate)
        der[len(der) // 2] ^= 0x01
        with pytest.raises((CertificateRefused, ValueError)):
            check_card_certificate(authority.certificate, x509.load_der_x509_certificate(bytes(der)),
                                   now=datetime.now(UTC))

    def test_a_certificate_from_another_authority_is_refused(self, tmp_path, authority):
        init_keys(tmp_path)
        rogue = load_authority(tmp_path)
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.now(UTC)
        forged = card_certificate(rogue, public_key=key.public_key(), serial=make_serial("labes", 5), card_type="labes",
                                  holder_name="Rogue", now=now)
        with pytest.raises(CertificateRefused, match="not issued by the fund"):
            check_card_certificate(authority.certificate, forged, now=now)

    def test_an_expired_certificate_is_refused(self, session, authority, family):
        card = issue(session, authority, family[1]).card
        certificate = x509.load_der_x509_certificate(card.certificate)
        with pytest.raises(CertificateRefused, match="out of date"):
            check_card_certificate(authority.certificate, certificate, now=datetime.now(UTC) + timedelta(days=365 * 11))

    def test_key_files_are_private(self, keys_dir):
        for path in keys_dir.glob("*.key.pem"):
            assert path.stat().st_mode & 0o777 == 0o600

    def test_keys_are_never_overwritten_by_accident(self, keys_dir):
        with pytest.raises(FileExistsError):
            init_keys(keys_dir)


class TestPrintedCode:
    def test_the_code_verifies_offline_and_shows_only_the_last_3_cin_digits(self, session, authority, family):
        card = issue(session, authority, family[1]).card
        found = verify_printed_code(authority.public_key, card.printed_code)
        assert found.serial == card.serial
        assert found.cin_last3 == family[1][-3:]
        assert family[1] not in card.printed_code

    def test_an_altered_code_is_refused(self, session, authority, family):
        code = issue(session, authority, family[1]).card.printed_code
        parts = code.split("|")
        parts[2] = "Someone Else"
        with pytest.raises(ValueError, match="does not match"):
            verify_printed_code(authority.public_key, "|".join(parts))

    @pytest.mark.parametrize("garbage", ["", "hello", "LB1|1|2|3|4", "XX1|a|b|c|d|e", "LB1|a|b|c|d|@@@"])
    def test_garbage_is_refused_cleanly(self, authority, garbage):
        with pytest.raises(ValueError):
            verify_printed_code(authority.public_key, garbage)


class TestLifecycle:
    @pytest.mark.parametrize("state", lifecycle.STATES)
    def test_every_illegal_transition_is_refused(self, state):
        for event, (sources, _) in lifecycle.TRANSITIONS.items():
            if state in sources:
                assert lifecycle.next_state(state, event).from_state == state
            else:
                with pytest.raises(lifecycle.IllegalTransition):
                    lifecycle.next_state(state, event)

    def test_a_refused_move_changes_nothing(self, session, authority, family):
        card = issue(session, authority, family[1]).card
        with pytest.raises(RuleViolation, match="cannot 'deliver'"):
            service.move(session, actor=ACTOR, card=card, event="deliver")
        assert card.state == "printed"
        assert [e.event for e in service.history(session, card)] == ["issue"]

    def test_the_whole_journey_is_recorded(self, session, authority, family, fund_centre):
        card = issue(session, authority, family[1]).card
        deliver(session, card, fund_centre)
        assert card.state == "delivered" and card.delivered_on is not None
        events = session.scalars(select(CardEvent.event).where(CardEvent.card_id == card.id).order_by(CardEvent.id)).all()
        assert events == ["issue", "batch", "ship", "receive", "deliver"]


class TestSignatures:
    def test_a_delivered_card_signs_and_its_first_use_puts_it_in_use(self, session, authority, family, fund_centre):
        result = issue(session, authority, family[1])
        deliver(session, result.card, fund_centre)
        token = VirtualCard.from_bytes(result.card_file)
        data = b'{"challenge":"abc"}'
        card = service.authenticate(session, actor=ACTOR, authority_cert=authority.certificate, serial=token.serial,
                                    data=data, signature=token.sign(data))
        assert card.state == "in_use" and card.first_used_at is not None

    def test_a_card_not_yet_delivered_cannot_sign(self, session, authority, family):
        result = issue(session, authority, family[1])
        token = VirtualCard.from_bytes(result.card_file)
        with pytest.raises(service.CardRefused, match="handed to its holder"):
            service.authenticate(session, actor=ACTOR, authority_cert=authority.certificate, serial=token.serial,
                                 data=b"x", signature=token.sign(b"x"))

    def test_a_forged_signature_is_refused(self, session, authority, family, fund_centre):
        result = issue(session, authority, family[1])
        deliver(session, result.card, fund_centre)
        other = ec.generate_private_key(ec.SECP256R1())
        from labes.cards.crypto import raw_signature

        forged = raw_signature(other.sign(b"data", ec.ECDSA(hashes.SHA256())))
        with pytest.raises(service.CardRefused, match="altered or another card"):
            service.authenticate(session, actor=ACTOR, authority_cert=authority.certificate,
                                 serial=result.card.serial, data=b"data", signature=forged)
        token = VirtualCard.from_bytes(result.card_file)
        with pytest.raises(service.CardRefused):
            service.authenticate(session, actor=ACTOR, authority_cert=authority.certificate,
                                 serial=result.card.serial, data=b"data-altered", signature=token.sign(b"data"))

    def test_a_blocked_card_is_refused_with_the_reason(self, session, authority, family, fund_centre):
        result = issue(session, authority, family[1])
        deliver(session, result.card, fund_centre)
        service.block(session, actor=ACTOR, serial=result.card.serial, reason="stolen")
        token = VirtualCard.from_bytes(result.card_file)
        with pytest.raises(service.CardRefused, match="reported stolen"):
            service.authenticate(session, actor=ACTOR, authority_cert=authority.certificate, serial=token.serial,
                                 data=b"x", signature=token.sign(b"x"))

    def test_after_replacement_the_old_key_is_refused_and_the_new_one_accepted(self, session, authority, family,
                                                                                fund_centre):
        old = issue(session, authority, family[1])
        deliver(session, old.card, fund_centre)
        new = service.replace(session, actor=ACTOR, authority=authority, serial=old.card.serial, reason="lost",
                              on_the_spot_at=fund_centre)
        assert new.card.serial != old.card.serial and new.card.public_key != old.card.public_key
        assert new.card.replaces_id == old.card.id
        old_token, new_token = VirtualCard.from_bytes(old.card_file), VirtualCard.from_bytes(new.card_file)
        with pytest.raises(service.CardRefused, match=new.card.serial):
            service.authenticate(session, actor=ACTOR, authority_cert=authority.certificate, serial=old_token.serial,
                                 data=b"x", signature=old_token.sign(b"x"))
        assert service.authenticate(session, actor=ACTOR, authority_cert=authority.certificate, serial=new_token.serial,
                                    data=b"x", signature=new_token.sign(b"x")).state == "in_use"
        with pytest.raises(Conflict, match="already replaced"):
            service.replace(session, actor=ACTOR, authority=authority, serial=old.card.serial)

    def test_the_old_key_cannot_sign_for_the_new_serial(self, session, authority, family, fund_centre):
        old = issue(session, authority, family[1])
        new = service.replace(session, actor=ACTOR, authority=authority, serial=old.card.serial, reason="damaged",
                              on_the_spot_at=fund_centre)
        old_token = VirtualCard.from_bytes(old.card_file)
        with pytest.raises(service.CardRefused):
            service.authenticate(session, actor=ACTOR, authority_cert=authority.certificate, serial=new.card.serial,
                                 data=b"x", signature=old_token.sign(b"x"))
