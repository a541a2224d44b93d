"""A PKCS#11 token behind the `CardToken` interface, proven against SoftHSM2.

Each test run initialises its own SoftHSM2 token in a temporary directory. Without SoftHSM2
(Debian package softhsm2) these tests are skipped, unless LABES_REQUIRE_ALL_BACKENDS is set (.ci/run):
then they fail.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from datetime import UTC, datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from pkcs11 import Attribute, KeyType, ObjectClass
from pkcs11 import exceptions as p11

from labes.cards import service
from labes.cards.crypto import check_card_certificate, load_authority, printed_code, verify_raw
from labes.cards.models import Card
from labes.cards.pkcs11 import (
    KEY_LABEL, Pkcs11Card, Pkcs11Error, Pkcs11LibraryMissing, load_library, open_token, personalise,
)
from labes.cards.serials import make_serial
from labes.cards.tokens import CardToken, PinError
from tests.factories import ACTOR

SOFTHSM_LIB = "/usr/lib/softhsm/libsofthsm2.so"
SOFTHSM_UTIL = "softhsm2-util"
TOKEN_LABEL, PIN, SO_PIN = "labes-test", "1234", "5678"
SERIAL = make_serial("labes", 987_654)
HOLDER = "Mohamed Ben Salah"


@pytest.fixture(scope="session")
def softhsm_token(tmp_path_factory):
    """A fresh SoftHSM2 token (label labes-test, PIN 1234) in a temporary token directory."""
    missing = [name for name, present in ((SOFTHSM_LIB, os.path.isfile(SOFTHSM_LIB)),
                                          (SOFTHSM_UTIL, shutil.which(SOFTHSM_UTIL) is not None)) if not present]
    if missing:
        reason = f"the SoftHSM2 tests need {' and '.join(missing)} (Debian package softhsm2; .ci/run installs it)"
        if os.environ.get("LABES_REQUIRE_ALL_BACKENDS"):
            pytest.fail(f"LABES_REQUIRE_ALL_BACKENDS is set but {reason}")
        pytest.skip(reason)
    directory = tmp_path_factory.mktemp("softhsm")
    tokens = directory / "tokens"
    tokens.mkdir()
    conf = directory / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {tokens}\nobjectstore.backend = file\nlog.level = ERROR\n")
    previous = os.environ.get("SOFTHSM2_CONF")
    os.environ["SOFTHSM2_CONF"] = str(conf)
    try:
        done = subprocess.run([SOFTHSM_UTIL, "--init-token", "--free", "--label", TOKEN_LABEL, "--pin", PIN,
                               "--so-pin", SO_PIN], capture_output=True, text=True)
        if done.returncode != 0:
            pytest.fail(f"softhsm2-util --init-token failed: {done.stdout}{done.stderr}")
        library = load_library(SOFTHSM_LIB)
        library.reinitialize()  # SoftHSM2 reads SOFTHSM2_CONF when it is initialised
        yield TOKEN_LABEL
        library.finalize()
    finally:
        if previous is None:
            os.environ.pop("SOFTHSM2_CONF", None)
        else:
            os.environ["SOFTHSM2_CONF"] = previous


@pytest.fixture(scope="session")
def session_authority(keys_dir):
    return load_authority(keys_dir)


@pytest.fixture(scope="session")
def personalised(softhsm_token, session_authority) -> x509.Certificate:
    """Personalise the test token as card SERIAL; return the certificate the fund issued for it."""
    token_session = open_token(token_label=softhsm_token, pin=PIN, library=SOFTHSM_LIB, rw=True)
    try:
        card = personalise(token_session, serial=SERIAL, authority=session_authority, holder_name=HOLDER,
                           card_type="labes", now=datetime.now(UTC))
    except BaseException:
        token_session.close()
        raise
    with card:
        assert card.serial == SERIAL
        return card.certificate()


@pytest.fixture
def card(softhsm_token, personalised):
    with Pkcs11Card.open(token_label=softhsm_token, pin=PIN, library=SOFTHSM_LIB) as card:
        yield card


def der(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.DER)


def spki(certificate: x509.Certificate) -> bytes:
    return certificate.public_key().public_bytes(serialization.Encoding.DER,
                                                 serialization.PublicFormat.SubjectPublicKeyInfo)


class TestPersonalisation:
    def test_the_key_pair_is_generated_on_the_token_and_never_leaves_it(self, softhsm_token, personalised):
        token_session = open_token(token_label=softhsm_token, pin=PIN, library=SOFTHSM_LIB)
        try:
            key = token_session.get_key(object_class=ObjectClass.PRIVATE_KEY, key_type=KeyType.EC, label=KEY_LABEL)
            assert key[Attribute.LOCAL] and key[Attribute.ALWAYS_SENSITIVE] and key[Attribute.NEVER_EXTRACTABLE]
            assert key[Attribute.SENSITIVE] and not key[Attribute.EXTRACTABLE]
            assert key[Attribute.ID] == SERIAL.encode()
            with pytest.raises(p11.AttributeSensitive):
                key[Attribute.VALUE]
            [stored] = token_session.get_objects({Attribute.CLASS: ObjectClass.CERTIFICATE, Attribute.LABEL: KEY_LABEL})
            assert bytes(stored[Attribute.VALUE]) == der(personalised)
        finally:
            token_session.close()

    def test_a_token_is_personalised_once(self, softhsm_token, personalised, session_authority):
        token_session = open_token(token_label=softhsm_token, pin=PIN, library=SOFTHSM_LIB, rw=True)
        try:
            with pytest.raises(Pkcs11Error, match="personalised once"):
                personalise(token_session, serial=make_serial("labes", 987_655), authority=session_authority,
                            holder_name=HOLDER, card_type="labes", now=datetime.now(UTC))
        finally:
            token_session.close()


class TestPkcs11Card:
    def test_it_is_a_card_token_reading_its_certificate_from_the_token(self, card, personalised):
        assert isinstance(card, CardToken)
        assert card.serial == SERIAL
        assert der(card.certificate()) == der(personalised)

    def test_its_signature_verifies_and_its_certificate_chains_to_the_fund(self, card, session_authority):
        data = b'{"claim": "FS-2025-000123", "amount": "42.500"}'
        signature = card.sign(data)
        assert len(signature) == 64
        assert verify_raw(card.certificate().public_key(), signature, data)
        assert check_card_certificate(session_authority.certificate, card.certificate(),
                                      now=datetime.now(UTC)) == SERIAL

    def test_the_signature_of_altered_data_is_refused(self, card):
        signature = card.sign(b"amount=42.500")
        assert not verify_raw(card.certificate().public_key(), signature, b"amount=92.500")

    def test_a_wrong_pin_is_refused(self, softhsm_token, personalised):
        with pytest.raises(PinError, match="Wrong PIN"):
            Pkcs11Card.open(token_label=softhsm_token, pin="0000", library=SOFTHSM_LIB)
        with Pkcs11Card.open(token_label=softhsm_token, pin=PIN, library=SOFTHSM_LIB) as card:
            assert card.serial == SERIAL  # the right PIN still opens it

    def test_a_certificate_can_be_passed_in(self, softhsm_token, personalised):
        with Pkcs11Card.open(token_label=softhsm_token, pin=PIN, library=SOFTHSM_LIB, key_id=SERIAL.encode(),
                             certificate=personalised) as card:
            assert card.certificate() is personalised

    def test_an_unknown_token_is_named(self, softhsm_token):
        with pytest.raises(Pkcs11Error, match="no-such-card"):
            Pkcs11Card.open(token_label="no-such-card", pin=PIN, library=SOFTHSM_LIB)


def test_a_missing_library_names_its_path_and_the_package(tmp_path, monkeypatch):
    path = tmp_path / "libnothere.so"
    monkeypatch.setenv("LABES_PKCS11_LIB", str(path))
    with pytest.raises(Pkcs11LibraryMissing, match="softhsm2") as caught:
        load_library()
    assert str(path) in str(caught.value)


def delivered_card(session, authority, cin: str, certificate: x509.Certificate) -> Card:
    """Insert the fund's record of a delivered card whose certificate (and key) are the token's."""
    holder = service.resolve_holder(session, card_type="labes", cin=cin)
    now = datetime.now(UTC)
    card = Card(id=uuid.uuid4(), serial=SERIAL, card_type="labes", holder_person_id=holder.person_id,
                holder_name=holder.name, governorate=holder.governorate, state="delivered", issued_at=now,
                printed_on=now.date(), delivered_on=now.date(), public_key=spki(certificate),
                certificate=der(certificate),
                printed_code=printed_code(authority, serial=SERIAL, holder_name=holder.name,
                                          social_id=holder.social_id, cin_last3=holder.cin_last3))
    session.add(card)
    session.flush()
    return card


class TestAuthentication:
    def test_the_fund_accepts_the_tokens_signature(self, session, authority, family, card, personalised):
        delivered_card(session, authority, family[1], personalised)
        data = b"visit|2025-06-01|05123456"
        accepted = service.authenticate(session, actor=ACTOR, authority_cert=authority.certificate, serial=SERIAL,
                                        data=data, signature=card.sign(data))
        assert accepted.serial == SERIAL and accepted.state == "in_use"

    def test_the_fund_refuses_the_signature_of_altered_data(self, session, authority, family, card, personalised):
        delivered_card(session, authority, family[1], personalised)
        signature = card.sign(b"visit|2025-06-01|05123456")
        with pytest.raises(service.CardRefused, match="altered"):
            service.authenticate(session, actor=ACTOR, authority_cert=authority.certificate, serial=SERIAL,
                                 data=b"visit|2025-06-02|05123456", signature=signature)
