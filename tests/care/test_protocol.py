"""The signed point-of-care transaction, without a database: canonical JSON, digests, challenges, JWS signatures."""

from __future__ import annotations

import base64
import hashlib
import json
import os
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from hypothesis import given, settings
from hypothesis import strategies as st

from labes.cards.crypto import card_certificate, load_authority
from labes.cards.serials import make_serial
from labes.cards.tokens import VirtualCard
from labes.care import protocol
from labes.care.protocol import InvalidTransaction, Transaction
from labes.errors import InvalidInput

NOW = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
SECRET = b"k" * 32


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def flip(text: str, index: int = -1) -> str:
    """Return the base64url `text` with one bit of its decoded byte at `index` flipped."""
    raw = bytearray(unb64(text))
    raw[index] ^= 0x01
    return b64(bytes(raw))


@pytest.fixture(scope="module")
def authority(tmp_path_factory):
    from labes.cards.crypto import init_keys

    directory = tmp_path_factory.mktemp("protocol-keys")
    init_keys(directory)
    return load_authority(directory)


def virtual_card(authority, card_type: str, number: int) -> VirtualCard:
    key = ec.generate_private_key(ec.SECP256R1())
    serial = make_serial(card_type, number)
    certificate = card_certificate(authority, public_key=key.public_key(), serial=serial, card_type=card_type,
                                   holder_name=f"Holder {number}", now=NOW)
    return VirtualCard(serial, certificate, key)


def der(card: VirtualCard) -> bytes:
    return card.certificate().public_key().public_bytes(serialization.Encoding.DER,
                                                        serialization.PublicFormat.SubjectPublicKeyInfo)


@pytest.fixture(scope="module")
def patient(authority) -> VirtualCard:
    return virtual_card(authority, "labes", 41)


@pytest.fixture(scope="module")
def doctor(authority) -> VirtualCard:
    return virtual_card(authority, "professional", 42)


@pytest.fixture(scope="module")
def stranger(authority) -> VirtualCard:
    return virtual_card(authority, "labes", 43)


def transaction(patient: VirtualCard, doctor: VirtualCard, **overrides) -> Transaction:
    values = {"action": "care-sheet", "professional_card": doctor.serial, "facility": "FSFX00001", "time": NOW,
              "content_digest": protocol.content_digest({"kind": "consultation", "lines": [{"code": "C"}]}),
              "patient_card": patient.serial, "challenge": "challenge-token"}
    values.update(overrides)
    return Transaction(**values)


def hand_signed(payload: bytes, cards: list[VirtualCard], *, kids: list[str] | None = None) -> dict:
    """Build a JWS General JSON Serialization by hand (not through joserfc), so any payload can be signed."""
    payload_segment = b64(payload)
    signatures = []
    for card, kid in zip(cards, kids or [card.serial for card in cards]):
        protected = b64(json.dumps({"alg": "ES256", "kid": kid}).encode())
        signature = card.sign(f"{protected}.{payload_segment}".encode())
        signatures.append({"protected": protected, "signature": b64(signature)})
    return {"payload": payload_segment, "signatures": signatures}


def keys_of(*cards: VirtualCard) -> dict[str, bytes]:
    return {card.serial: der(card) for card in cards}


class TestCanonical:
    def test_members_are_sorted_by_name(self):
        assert protocol.canonical({"b": 1, "a": {"d": [3, 1], "c": None}}) == b'{"a":{"c":null,"d":[3,1]},"b":1}'

    def test_member_order_is_by_utf16_code_units_as_in_rfc8785_3_2_3(self):
        value = {"\u20ac": "Euro Sign", "\r": "Carriage Return", "\ufb33": "Hebrew Letter Dalet With Dagesh",
                 "1": "One", "\U0001f600": "Emoji: Grinning Face", "\u0080": "Control",
                 "\u00f6": "Latin Small Letter O With Diaeresis"}
        keys = list(json.loads(protocol.canonical(value)))
        assert keys == ["\r", "1", "\u0080", "\u00f6", "\u20ac", "\U0001f600", "\ufb33"]

    def test_a_surrogate_pair_sorts_before_a_private_use_character(self):
        # By code point U+E000 < U+1F600; by UTF-16 code unit 0xD83D (the emoji's first) < 0xE000.
        assert protocol.canonical({"\ue000": 1, "\U0001f600": 2}) == '{"\U0001f600":2,"\ue000":1}'.encode()

    def test_the_rfc8785_3_2_2_example(self):
        text = ('{"numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],'
                ' "string": "\\u20ac$\\u000F\\u000aA\'\\u0042\\u0022\\u005c\\\\\\"\\/",'
                ' "literals": [null, true, false]}')
        expected = ('{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],'
                    '"string":"\u20ac$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}').encode()
        assert protocol.canonical(json.loads(text)) == expected

    @pytest.mark.parametrize(("number", "form"), [
        (0, "0"), (-0.0, "0"), (1.0, "1"), (100, "100"), (4.50, "4.5"), (0.002, "0.002"), (1e-7, "1e-7"),
        (0.000001, "0.000001"), (1e21, "1e+21"), (1e20, "100000000000000000000"), (-1.5e-10, "-1.5e-10"),
        (9007199254740991, "9007199254740991"), (5e-324, "5e-324"), (1.7976931348623157e308, "1.7976931348623157e+308"),
    ])
    def test_numbers_take_the_ecmascript_shortest_form(self, number, form):
        assert protocol.canonical([number]) == f"[{form}]".encode()

    def test_strings_escape_only_what_json_requires(self):
        assert protocol.canonical("é/€\n\t\u001f\"\\") == '"é/€\\n\\t\\u001f\\"\\\\"'.encode()

    @pytest.mark.parametrize("value", [float("nan"), float("inf"), 2**53, -(2**53), {"when": datetime(2026, 1, 1)}])
    def test_what_json_cannot_carry_exactly_is_refused(self, value):
        with pytest.raises(InvalidInput) as refused:
            protocol.canonical({"value": value})
        assert refused.value.field == "content"


class TestContentDigest:
    def test_is_sha256_of_the_canonical_form_in_base64url(self):
        content = {"lines": [{"code": "C", "quantity": 1}], "kind": "consultation"}
        expected = hashlib.sha256(b'{"kind":"consultation","lines":[{"code":"C","quantity":1}]}').digest()
        assert protocol.content_digest(content) == "sha256:" + b64(expected)

    def test_does_not_depend_on_member_order_or_number_spelling(self):
        first = json.loads('{"a": 1.0, "b": [1e2, "x"]}')
        second = json.loads('{"b":[100,"x"],"a":1}')
        assert protocol.content_digest(first) == protocol.content_digest(second)

    @pytest.mark.parametrize("changed", [{"a": 2, "b": ["x"]}, {"a": 1, "b": ["X"]}, {"a": 1, "b": ["x"], "c": None},
                                         {"a": 1, "b": ["x", "x"]}, {"a": "1", "b": ["x"]}])
    def test_changes_with_any_change_of_value(self, changed):
        assert protocol.content_digest({"a": 1, "b": ["x"]}) != protocol.content_digest(changed)


class TestChallenge:
    def test_opens_until_it_expires(self):
        challenge = protocol.issue_challenge(SECRET, now=NOW)
        assert challenge.expires_at == NOW + timedelta(seconds=protocol.CHALLENGE_SECONDS)
        opened = protocol.open_challenge(SECRET, challenge.token, now=challenge.expires_at - timedelta(seconds=1))
        assert opened.nonce == challenge.nonce and opened.expires_at == challenge.expires_at

    def test_each_challenge_is_new(self):
        nonces = {protocol.issue_challenge(SECRET, now=NOW).nonce for _ in range(50)}
        assert len(nonces) == 50

    @pytest.mark.parametrize("after", [timedelta(0), timedelta(seconds=1), timedelta(days=1)])
    def test_is_refused_from_its_expiry(self, after):
        challenge = protocol.issue_challenge(SECRET, now=NOW)
        with pytest.raises(InvalidTransaction, match="expired") as refused:
            protocol.open_challenge(SECRET, challenge.token, now=challenge.expires_at + after)
        assert (refused.value.status, refused.value.code, refused.value.field) == (403, "invalid-transaction", "challenge")

    @pytest.mark.parametrize("index", [0, 5, 20, 24, 25, -1])  # version, nonce, expiry, MAC
    def test_a_changed_byte_anywhere_is_refused(self, index):
        token = protocol.issue_challenge(SECRET, now=NOW).token
        with pytest.raises(InvalidTransaction, match="not one the fund issued"):
            protocol.open_challenge(SECRET, flip(token, index), now=NOW)

    def test_a_later_expiry_with_the_old_mac_is_refused(self):
        raw = bytearray(unb64(protocol.issue_challenge(SECRET, now=NOW).token))
        raw[17:25] = int((NOW + timedelta(days=365)).timestamp()).to_bytes(8, "big")
        with pytest.raises(InvalidTransaction, match="not one the fund issued"):
            protocol.open_challenge(SECRET, b64(bytes(raw)), now=NOW)

    def test_a_challenge_made_with_another_key_is_refused(self):
        forged = protocol.issue_challenge(os.urandom(32), now=NOW)
        with pytest.raises(InvalidTransaction, match="not one the fund issued"):
            protocol.open_challenge(SECRET, forged.token, now=NOW)

    @pytest.mark.parametrize("token", ["", "challenge-token", "é" * 55, "AAAA", "A" * 200])
    def test_garbage_is_refused(self, token):
        with pytest.raises(InvalidTransaction):
            protocol.open_challenge(SECRET, token, now=NOW)


class TestTransactionPayload:
    """A transaction's payload is built with the standard library's JSON, which must give RFC 8785's bytes."""

    @settings(max_examples=300, deadline=None)
    @given(strings=st.lists(st.text(), min_size=7, max_size=7), present=st.lists(st.booleans(), min_size=4, max_size=4),
           moment=st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31), timezones=st.just(UTC)))
    def test_it_is_the_rfc8785_form_for_any_text(self, strings, present, moment):
        action, professional, facility, digest, patient, challenge, client_key = strings
        tx = Transaction(action=action, professional_card=professional, facility=facility, time=moment,
                         content_digest=digest, patient_card=patient if present[0] else None,
                         challenge=challenge if present[1] else None, client_key=client_key if present[2] else None)
        assert tx.payload() == protocol.canonical(tx.claims())

    def test_escapes_are_rfc8785s(self):
        tx = Transaction(action="rights-check", professional_card='"\\\b\f\n\r\t\x00\x1f\x7f\u2028é€😀',
                         facility="F", time=NOW, content_digest="d")
        assert tx.payload() == protocol.canonical(tx.claims())
        assert b'"\\"\\\\\\b\\f\\n\\r\\t\\u0000\\u001f\x7f' in tx.payload()

    def test_a_lone_surrogate_is_refused(self, patient, doctor):
        # JSON can carry one ("\ud800"), UTF-8 cannot: the payload has no canonical form, and is refused as input.
        payload = protocol.canonical(transaction(patient, doctor).claims()).replace(b'"FSFX00001"', b'"\\ud800"')
        with pytest.raises(InvalidInput) as refused:
            protocol.parse(hand_signed(payload, [patient, doctor]))
        assert refused.value.field == "transaction.payload"


class TestSignParseVerify:
    def test_round_trip_with_two_cards(self, patient, doctor):
        tx = transaction(patient, doctor)
        jws_json = protocol.sign(tx, [patient, doctor])
        assert json.loads(unb64(jws_json["payload"])) == tx.claims()
        assert unb64(jws_json["payload"]) == protocol.canonical(tx.claims())
        signed = protocol.parse(jws_json)
        assert signed.transaction == tx
        assert signed.signers == (patient.serial, doctor.serial)
        protocol.verify(signed, keys_of(patient, doctor))

    def test_a_hand_built_jws_verifies_the_same(self, patient, doctor):
        tx = transaction(patient, doctor)
        signed = protocol.parse(hand_signed(tx.payload(), [doctor, patient]))
        assert signed.signers == (doctor.serial, patient.serial)
        protocol.verify(signed, keys_of(patient, doctor))

    def test_envelope_carries_the_content_beside_the_signature(self, patient, doctor):
        content = {"kind": "consultation", "lines": [{"code": "C"}]}
        body = protocol.envelope(transaction(patient, doctor), content, [patient, doctor])
        assert body["content"] == content
        assert protocol.parse(body["transaction"]).transaction.content_digest == protocol.content_digest(content)

    def test_the_offline_form_has_a_client_key_and_no_challenge(self, patient, doctor):
        tx = transaction(patient, doctor, challenge=None, client_key="3f2b9c1e4d5a")
        assert "challenge" not in tx.claims() and tx.claims()["client_key"] == "3f2b9c1e4d5a"
        assert protocol.parse(protocol.sign(tx, [patient, doctor])).transaction == tx

    def test_a_flipped_signature_byte_is_refused(self, patient, doctor):
        jws_json = protocol.sign(transaction(patient, doctor), [patient, doctor])
        jws_json["signatures"][1]["signature"] = flip(jws_json["signatures"][1]["signature"], 10)
        with pytest.raises(InvalidTransaction, match="does not verify"):
            protocol.verify(protocol.parse(jws_json), keys_of(patient, doctor))

    def test_a_signature_moved_to_another_cards_header_is_refused(self, patient, doctor):
        jws_json = protocol.sign(transaction(patient, doctor), [patient, doctor])
        first, second = jws_json["signatures"]
        first["signature"], second["signature"] = second["signature"], first["signature"]
        with pytest.raises(InvalidTransaction, match="does not verify"):
            protocol.verify(protocol.parse(jws_json), keys_of(patient, doctor))

    def test_a_signature_moved_from_another_transaction_is_refused(self, patient, doctor):
        one = protocol.sign(transaction(patient, doctor), [patient, doctor])
        other = protocol.sign(transaction(patient, doctor, challenge="another-challenge"), [patient, doctor])
        one["signatures"][0] = other["signatures"][0]
        with pytest.raises(InvalidTransaction, match="does not verify"):
            protocol.verify(protocol.parse(one), keys_of(patient, doctor))

    def test_a_card_signing_under_another_cards_serial_is_refused(self, patient, doctor, stranger):
        tx = transaction(patient, doctor)
        jws_json = hand_signed(tx.payload(), [stranger, doctor], kids=[patient.serial, doctor.serial])
        signed = protocol.parse(jws_json)
        assert signed.signers == (patient.serial, doctor.serial)  # what it claims …
        with pytest.raises(InvalidTransaction, match="does not verify"):
            protocol.verify(signed, keys_of(patient, doctor))  # … is not what the keys say

    def test_an_unprotected_kid_cannot_redirect_the_key(self, patient, doctor, stranger):
        tx = transaction(patient, doctor)
        jws_json = hand_signed(tx.payload(), [stranger, doctor], kids=[patient.serial, doctor.serial])
        jws_json["signatures"][0]["header"] = {"kid": stranger.serial}
        with pytest.raises(InvalidInput, match="every header parameter is protected") as refused:
            protocol.parse(jws_json)
        assert refused.value.field == "transaction.signatures.0"

    @pytest.mark.parametrize("extra", [{"crit": ["b64"], "b64": False}, {"b64": False}, {"typ": "JWT"},
                                       {"jwk": {"kty": "EC"}}])
    def test_a_header_holds_only_alg_and_kid(self, patient, doctor, extra):
        # b64=false (RFC 7797) would have the card sign the payload unencoded: another signing input than ours.
        jws_json = protocol.sign(transaction(patient, doctor), [patient, doctor])
        jws_json["signatures"][1]["protected"] = b64(json.dumps({"alg": "ES256", "kid": doctor.serial, **extra}).encode())
        with pytest.raises(InvalidInput, match="only 'alg' and 'kid'") as refused:
            protocol.parse(jws_json)
        assert refused.value.field == "transaction.signatures.1"

    @pytest.mark.parametrize("segment", ["protected", "signature", "payload"])
    @pytest.mark.parametrize("spoil", [lambda text: text + "=", lambda text: text.replace("-", "+").replace("_", "/") + "+/",
                                       lambda text: text + "A", lambda text: text[:-1] + chr(ord(text[-1]) + 1),
                                       lambda text: text + "é", lambda text: text + " "])
    def test_segments_are_strict_base64url(self, patient, doctor, segment, spoil):
        # One signature, one encoding: padding, the other alphabet, a stray character or unused bits set are
        # refused, as joserfc refuses them, rather than read as the same bytes.
        jws_json = protocol.sign(transaction(patient, doctor), [patient, doctor])
        holder = jws_json if segment == "payload" else jws_json["signatures"][0]
        holder[segment] = spoil(holder[segment])
        with pytest.raises((InvalidInput, InvalidTransaction)):
            protocol.verify(protocol.parse(jws_json), keys_of(patient, doctor))

    def test_it_accepts_no_jws_that_joserfc_refuses(self, patient, doctor, stranger):
        # The server checks this protocol's JWS itself (one reading of it) and the signatures with joserfc's ES256;
        # joserfc's general reader is the reference: every variant of a signed transaction the server accepts, it
        # accepts too. (The server refuses more: unprotected headers, parameters other than alg and kid.)
        from joserfc import jws
        from joserfc.errors import JoseError
        from joserfc.jwk import ECKey

        keys = {card.serial: ECKey.import_key(card.certificate().public_key()) for card in (patient, doctor, stranger)}
        original = protocol.sign(transaction(patient, doctor), [patient, doctor])
        other = protocol.sign(transaction(patient, doctor, challenge="other"), [patient, doctor])
        variants = [original]
        for index in range(2):
            for field in ("protected", "signature"):
                for byte in (0, 5, -1):
                    variant = json.loads(json.dumps(original))
                    variant["signatures"][index][field] = flip(variant["signatures"][index][field], byte)
                    variants.append(variant)
            variant = json.loads(json.dumps(original))
            variant["signatures"][index]["signature"] = other["signatures"][index]["signature"]
            variants.append(variant)
        variant = json.loads(json.dumps(original))
        variant["payload"] = other["payload"]
        variants.append(variant)
        variant = json.loads(json.dumps(original))
        variant["signatures"].reverse()
        variants.append(variant)
        variants.append(hand_signed(unb64(original["payload"]), [stranger, doctor], kids=[patient.serial, doctor.serial]))
        accepted = 0
        for variant in variants:
            try:
                protocol.verify(protocol.parse(variant), keys_of(patient, doctor))
            except (InvalidInput, InvalidTransaction):
                continue
            accepted += 1
            try:
                jws.deserialize_json(variant, lambda member: keys[member.headers()["kid"]])
            except JoseError as exc:
                pytest.fail(f"accepted a JWS joserfc refuses ({exc}): {variant}")
        assert accepted == 2  # the original, and its signatures in the other order

    @pytest.mark.parametrize("key", [ec.generate_private_key(ec.SECP384R1()), ed25519.Ed25519PrivateKey.generate()])
    def test_a_card_key_other_than_p256_is_refused(self, patient, doctor, key):
        other = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        signed = protocol.parse(protocol.sign(transaction(patient, doctor), [patient, doctor]))
        with pytest.raises(InvalidTransaction, match="not an ECDSA P-256 key"):
            protocol.verify(signed, {**keys_of(doctor), patient.serial: other})

    def test_the_keys_must_be_exactly_the_signers(self, patient, doctor, stranger):
        signed = protocol.parse(protocol.sign(transaction(patient, doctor), [patient, doctor]))
        for keys in (keys_of(doctor), keys_of(patient, doctor, stranger), keys_of(stranger, doctor)):
            with pytest.raises(InvalidTransaction):
                protocol.verify(signed, keys)

    def test_a_payload_re_encoded_non_canonically_is_refused_even_when_signed(self, patient, doctor):
        tx = transaction(patient, doctor)
        for payload in (json.dumps(tx.claims()).encode(),  # spaces after separators
                        json.dumps(dict(reversed(tx.claims().items())), separators=(",", ":")).encode(),
                        tx.payload() + b"\n"):
            assert json.loads(payload) == tx.claims()
            with pytest.raises(InvalidInput, match="canonical") as refused:
                protocol.parse(hand_signed(payload, [patient, doctor]))
            assert refused.value.field == "transaction.payload"

    def test_unknown_fields_are_refused_even_when_signed(self, patient, doctor):
        claims = {**transaction(patient, doctor).claims(), "amount_millimes": 18000}
        with pytest.raises(InvalidInput, match="amount_millimes"):
            protocol.parse(hand_signed(protocol.canonical(claims), [patient, doctor]))

    @pytest.mark.parametrize(("change", "field"), [
        ({"v": "labes-tx/2"}, "transaction.payload.v"),
        ({"action": "pay-me"}, "transaction.payload.action"),
        ({"time": "2026-03-02T09:30:00+01:00"}, "transaction.payload.time"),
        ({"time": "2026-03-02T09:30:00.5Z"}, "transaction.payload.time"),
        ({"time": "2026-13-02T09:30:00Z"}, "transaction.payload.time"),
        ({"time": "2026-03-02 09:30:00Z"}, "transaction.payload.time"),
        ({"time": "\uff12026-03-02T09:30:00Z"}, "transaction.payload.time"),  # a full-width digit
        ({"facility": ""}, "transaction.payload.facility"),
        ({"professional_card": 300000000429}, "transaction.payload.professional_card"),
        ({"patient_card": None}, "transaction.payload.patient_card"),
    ])
    def test_a_payload_not_exactly_in_our_format_is_refused(self, patient, doctor, change, field):
        claims = {**transaction(patient, doctor).claims(), **change}
        with pytest.raises(InvalidInput) as refused:
            protocol.parse(hand_signed(protocol.canonical(claims), [patient, doctor]))
        assert refused.value.field == field

    def test_a_payload_without_a_required_field_is_refused(self, patient, doctor):
        claims = transaction(patient, doctor).claims()
        del claims["content_digest"]
        with pytest.raises(InvalidInput, match="content_digest"):
            protocol.parse(hand_signed(protocol.canonical(claims), [patient, doctor]))

    def test_the_same_card_signing_twice_is_refused(self, patient, doctor):
        jws_json = hand_signed(transaction(patient, doctor).payload(), [doctor, doctor])
        with pytest.raises(InvalidInput, match="same card signed twice") as refused:
            protocol.parse(jws_json)
        assert refused.value.field == "transaction.signatures"

    @pytest.mark.parametrize("header", [{"alg": "none", "kid": "x"}, {"alg": "HS256", "kid": "x"}, {"alg": "ES256"},
                                        {"alg": "ES256", "kid": 300000000429}, ["ES256"]])
    def test_a_signature_must_be_es256_and_name_its_card(self, patient, doctor, header):
        jws_json = protocol.sign(transaction(patient, doctor), [patient, doctor])
        jws_json["signatures"][0]["protected"] = b64(json.dumps(header).encode())
        with pytest.raises(InvalidInput) as refused:
            protocol.parse(jws_json)
        assert refused.value.field == "transaction.signatures.0"

    @pytest.mark.parametrize("value", [None, "eyJ.x.y", {}, {"payload": "e30", "signatures": []},
                                       {"payload": 1, "signatures": [{}]}, {"payload": "e30", "signatures": [{}]},
                                       {"payload": "!!", "signatures": [{"protected": "e30", "signature": ""}]}])
    def test_what_is_not_a_general_json_jws_is_refused(self, value):
        with pytest.raises(InvalidInput):
            protocol.parse(value)
