"""The signed point-of-care transaction (docs/protocol.md).

A transaction is a small JSON object — action, challenge, both card serials, facility, time and the
digest of the content — in its RFC 8785 canonical form, signed by the patient's card and by the
professional's card as one JWS in the General JSON Serialization (RFC 7515 §7.2.1), one ES256
signature per card, each naming its card serial as `kid`. The content itself travels beside it; the
server checks that its canonical digest is the one both cards signed.

joserfc does the JWS. Cards sign through `CardToken.sign`, so a key inside a chip (PKCS#11) and a
virtual card's key are used the same way: `_CardES256` hands joserfc's signing input to the card. The server
reads the JWS once (`parse`: it needs the signers' serials to find their keys) and checks each signature with
joserfc's ES256 algorithm over the segments as received (`verify`); this protocol's JWS is narrower than RFC
7515's (each header exactly `alg` ES256 and `kid`, all of it protected), so nothing of the general form's header
processing is left to do, and reading it again through `jws.deserialize_json` cost a rights check ≈ 230,000
instructions (5 %, BENCHMARKS.md).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

import rfc8785
from cryptography.hazmat.primitives import serialization
from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwa import ESAlgorithm
from joserfc.jwk import ECKey
from joserfc.jws import JWSRegistry
from joserfc.util import urlsafe_b64decode

from labes.cards.tokens import CardToken
from labes.errors import InvalidInput, LabesError

VERSION = "labes-tx/1"
ACTIONS = (
    "rights-check", "prescribe", "prescription-open", "prescription-cancel", "dispense",
    "care-sheet", "care-sheet-correction", "care-sheet-status", "approval-request", "insured-care-sheets",
)
# Signed by the insured's own card alone, with no professional and no facility: the insured reading their file.
INSURED_ACTIONS = ("insured-care-sheets",)
CHALLENGE_SECONDS = 120
CLOCK_SKEW = timedelta(minutes=5)
_CHALLENGE_LAYOUT = struct.Struct(">B16sQ")  # version, nonce, expiry (Unix seconds)
_CHALLENGE_MAC_BYTES = 16
_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z", re.ASCII)


class InvalidTransaction(LabesError):
    """A transaction that cannot be accepted as signed: bad signature, stale or replayed challenge, wrong card."""

    status, code, title = 403, "invalid-transaction", "Transaction refused"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def canonical(value: Any) -> bytes:
    """Return the RFC 8785 (JSON Canonicalization Scheme) bytes of `value`."""
    try:
        return rfc8785.dumps(value)
    except (rfc8785.CanonicalizationError, TypeError, ValueError) as exc:
        raise InvalidInput(f"The content cannot be canonicalised (RFC 8785): {exc}", field="content") from None


def content_digest(content: Any) -> str:
    """Return `sha256:<base64url>` of the canonical form of `content`."""
    return "sha256:" + b64url(hashlib.sha256(canonical(content)).digest())


# ---------------------------------------------------------------- challenges


@dataclass(frozen=True)
class Challenge:
    """A one-time challenge: random, short-lived, and authenticated by the server's own key."""

    token: str
    nonce: str
    expires_at: datetime


def issue_challenge(secret: bytes, *, now: datetime, seconds: int = CHALLENGE_SECONDS) -> Challenge:
    """Return a new challenge; nothing is stored until it is used (then its nonce is, once)."""
    nonce = os.urandom(16)
    expires = int(now.timestamp()) + seconds
    body = _CHALLENGE_LAYOUT.pack(1, nonce, expires)
    mac = hmac.new(secret, body, hashlib.sha256).digest()[:_CHALLENGE_MAC_BYTES]
    return Challenge(b64url(body + mac), b64url(nonce), datetime.fromtimestamp(expires, UTC))


def open_challenge(secret: bytes, token: str, *, now: datetime) -> Challenge:
    """Return the challenge `token` if the server issued it and it has not expired; raise otherwise."""
    try:
        raw = b64url_decode(token)
    except (ValueError, TypeError):
        raw = b""
    if len(raw) != _CHALLENGE_LAYOUT.size + _CHALLENGE_MAC_BYTES:
        raise InvalidTransaction("The challenge is not one the fund issued. Ask for a new challenge.", field="challenge")
    body, mac = raw[:_CHALLENGE_LAYOUT.size], raw[_CHALLENGE_LAYOUT.size:]
    if not hmac.compare_digest(mac, hmac.new(secret, body, hashlib.sha256).digest()[:_CHALLENGE_MAC_BYTES]):
        raise InvalidTransaction("The challenge is not one the fund issued. Ask for a new challenge.", field="challenge")
    _, nonce, expires = _CHALLENGE_LAYOUT.unpack(body)
    expires_at = datetime.fromtimestamp(expires, UTC)
    if now >= expires_at:
        raise InvalidTransaction(f"The challenge expired at {expires_at:%H:%M:%S} UTC; ask for a new one and sign again.",
                                 field="challenge")
    return Challenge(token, b64url(nonce), expires_at)


# ---------------------------------------------------------------- the transaction


@dataclass(frozen=True)
class Transaction:
    """What both cards sign."""

    action: str
    professional_card: str | None  # None only for the insured's own actions (INSURED_ACTIONS)
    facility: str | None
    time: datetime
    content_digest: str
    patient_card: str | None = None
    challenge: str | None = None  # absent only for care sheets queued offline, which carry a client key
    client_key: str | None = None

    def claims(self) -> dict[str, Any]:
        """Return the transaction as the JSON object that is canonicalised and signed."""
        out: dict[str, Any] = {
            "v": VERSION, "action": self.action, "time": self.time.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "content_digest": self.content_digest,
        }
        for name in ("professional_card", "facility", "patient_card", "challenge", "client_key"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        return out

    @classmethod
    def from_claims(cls, claims: Any) -> "Transaction":
        """Read a signed transaction object, refusing anything that is not exactly our format."""
        if not isinstance(claims, dict):
            raise InvalidInput("The signed payload must be a JSON object.", field="transaction.payload")
        if claims.get("v") != VERSION:
            raise InvalidInput(f"Unknown transaction version {claims.get('v')!r}; expected {VERSION}.",
                               field="transaction.payload.v")
        allowed = {"v", "action", "professional_card", "facility", "time", "content_digest", "patient_card",
                   "challenge", "client_key"}
        if extra := sorted(set(claims) - allowed):
            raise InvalidInput(f"Unknown transaction fields: {', '.join(extra)}.", field="transaction.payload")
        if not isinstance(claims.get("action"), str) or not claims["action"]:
            raise InvalidInput("The transaction needs 'action' (a string).", field="transaction.payload.action")
        if claims["action"] not in ACTIONS:
            raise InvalidInput(f"Unknown action {claims['action']!r}; actions are {', '.join(ACTIONS)}.",
                               field="transaction.payload.action")
        insured = claims["action"] in INSURED_ACTIONS
        # The insured's own actions are signed by their card alone, at no facility, always against a challenge.
        required = ("patient_card", "challenge") if insured else ("professional_card", "facility")
        for name in (*required, "time", "content_digest"):
            if not isinstance(claims.get(name), str) or not claims[name]:
                raise InvalidInput(f"The transaction needs '{name}' (a string).", field=f"transaction.payload.{name}")
        for name in ("professional_card", "facility", "client_key") if insured else ():
            if name in claims:
                raise InvalidInput(f"'{claims['action']}' is signed by the insured's card alone: no '{name}'.",
                                   field=f"transaction.payload.{name}")
        for name in ("patient_card", "challenge", "client_key"):
            if name in claims and not isinstance(claims[name], str):
                raise InvalidInput(f"'{name}' must be a string.", field=f"transaction.payload.{name}")
        try:  # the strict form checked first, then read by fromisoformat (strptime costs more than the rest of this)
            if not _TIME.fullmatch(claims["time"]):
                raise ValueError
            time = datetime.fromisoformat(claims["time"])
        except ValueError:
            raise InvalidInput("'time' must be UTC in the form 2026-11-29T10:15:00Z.",
                               field="transaction.payload.time") from None
        return cls(action=claims["action"], professional_card=claims.get("professional_card"), facility=claims.get("facility"),
                   time=time, content_digest=claims["content_digest"], patient_card=claims.get("patient_card"),
                   challenge=claims.get("challenge"), client_key=claims.get("client_key"))

    def payload(self) -> bytes:
        """Return the RFC 8785 form of `claims()`: its members are ASCII names and strings, for which the standard
        library's sorted, compact JSON is that form (RFC 8785 §3.2.2.2 escapes strings as it does; tested against
        `canonical` for any text), at a third of the general canonicaliser's cost (9 against 23 µs here)."""
        try:
            return json.dumps(self.claims(), ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode()
        except UnicodeEncodeError:  # a lone surrogate (json.loads reads "\ud800"): no UTF-8 form, no canonical one
            raise InvalidInput("The transaction's strings must be valid Unicode.", field="transaction.payload") from None


# ---------------------------------------------------------------- signing (terminal side)


class _CardKey(ECKey):
    """A card's public key that signs by asking the card (its private key never leaves it)."""

    card: CardToken


class _CardES256(ESAlgorithm):
    def sign(self, msg: bytes, key: _CardKey) -> bytes:
        return key.card.sign(msg)


class _CardRegistry(JWSRegistry):
    algorithms = {"ES256": _CardES256("ES256", "P-256", 256, True)}


_CARD_REGISTRY = _CardRegistry(algorithms=["ES256"])
_VERIFY_REGISTRY = JWSRegistry(algorithms=["ES256"])


def _card_key(card: CardToken) -> _CardKey:
    public = card.certificate().public_key()
    key = _CardKey.import_key(public.public_bytes(serialization.Encoding.PEM,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo))
    key.card = card
    return key


def sign(transaction: Transaction, cards: Sequence[CardToken]) -> dict[str, Any]:
    """Return the transaction signed by each of `cards`, as a JWS General JSON Serialization."""
    keys = {card.serial: _card_key(card) for card in cards}
    members = [{"protected": {"alg": "ES256", "kid": serial}} for serial in keys]
    return jws.serialize_json(members, transaction.payload(), lambda member: keys[member.headers()["kid"]],
                              registry=_CARD_REGISTRY)


def envelope(transaction: Transaction, content: Any, cards: Sequence[CardToken]) -> dict[str, Any]:
    """Return the request body of a signed action: the signed transaction and the content it covers."""
    return {"transaction": sign(transaction, cards), "content": content}


# ---------------------------------------------------------------- verification (server side)


@dataclass(frozen=True)
class Signature:
    """One card's signature as received: the segments its JWS signing input is made of, and the card it names."""

    kid: str  # the card serial, from the protected header
    protected: str  # the protected header's base64url segment, as sent
    value: bytes  # the signature, r‖s


@dataclass(frozen=True)
class Signed:
    """A parsed, not yet verified, signed transaction."""

    transaction: Transaction
    signatures: tuple[Signature, ...]
    jws_json: dict[str, Any]

    @property
    def signers(self) -> tuple[str, ...]:
        """The card serials, in signature order."""
        return tuple(signature.kid for signature in self.signatures)


def _segment(text: Any) -> bytes:
    """Decode a base64url segment as JWS writes it (no padding, nothing outside the alphabet), as joserfc would."""
    if not isinstance(text, str) or not text.isascii():
        raise ValueError("not a base64url segment")
    return urlsafe_b64decode(text.encode("ascii"))


def parse(jws_json: Any) -> Signed:
    """Read the JWS without trusting it yet: who claims to have signed, and what.

    Each signature is `{"protected": …, "signature": …}`, its header exactly `{"alg": "ES256", "kid": <serial>}`:
    no unprotected header (a `kid` there would name a key the signature does not cover), no other parameter
    (`crit`, `b64`, `jwk`… would change how the JWS is read)."""
    if not isinstance(jws_json, dict) or not isinstance(jws_json.get("payload"), str) \
            or not isinstance(jws_json.get("signatures"), list) or not jws_json["signatures"]:
        raise InvalidInput("'transaction' must be a JWS in the General JSON Serialization: "
                           "{\"payload\": …, \"signatures\": [{\"protected\": …, \"signature\": …}, …]}.",
                           field="transaction")
    signatures = []
    for index, signature in enumerate(jws_json["signatures"]):
        field = f"transaction.signatures.{index}"
        if not isinstance(signature, dict) or set(signature) != {"protected", "signature"}:
            raise InvalidInput(f"Signature {index + 1} must be exactly {{\"protected\": …, \"signature\": …}}: "
                               "every header parameter is protected.", field=field)
        try:
            header = json.loads(_segment(signature["protected"]))
        except (TypeError, ValueError, UnicodeDecodeError):
            raise InvalidInput(f"Signature {index + 1} has no readable protected header.", field=field) from None
        if not isinstance(header, dict) or header.get("alg") != "ES256" or not isinstance(header.get("kid"), str):
            raise InvalidInput(f"Signature {index + 1} must be ES256 and name its card serial as 'kid'.", field=field)
        if extra := sorted(set(header) - {"alg", "kid"}):
            raise InvalidInput(f"Signature {index + 1}'s header may hold only 'alg' and 'kid', not "
                               f"{', '.join(map(str, extra))}.", field=field)
        try:
            value = _segment(signature["signature"])
        except ValueError:
            raise InvalidInput(f"Signature {index + 1} is not base64url.", field=field) from None
        signatures.append(Signature(header["kid"], signature["protected"], value))
    if len({signature.kid for signature in signatures}) != len(signatures):
        raise InvalidInput("The same card signed twice.", field="transaction.signatures")
    try:
        payload = _segment(jws_json["payload"])
        claims = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        raise InvalidInput("The signed payload is not JSON.", field="transaction.payload") from None
    transaction = Transaction.from_claims(claims)
    if payload != transaction.payload():
        raise InvalidInput("The signed payload is not in RFC 8785 canonical form.", field="transaction.payload")
    return Signed(transaction, tuple(signatures), jws_json)


_ES256 = _VERIFY_REGISTRY.get_alg("ES256")


@lru_cache(maxsize=65536)
def _public_key(der: bytes) -> ECKey:
    # A card's public key never changes; parsing it once per process keeps checks cheap.
    try:
        key = ECKey.import_key(serialization.load_der_public_key(der))
    except (JoseError, ValueError, TypeError):
        key = None
    # The fund issues no other; joserfc's own check_key would write the key out as a JWK first, a third of this.
    if key is None or key.curve_name != _ES256.curve:
        raise InvalidTransaction("A card's registered key is not an ECDSA P-256 key.", field="transaction.signatures")
    return key


def verify(signed: Signed, public_keys: dict[str, bytes]) -> None:
    """Check every signature of `signed` against the card public keys (DER) given by serial; raise if one fails."""
    keys = {serial: _public_key(der) for serial, der in public_keys.items()}
    if set(signed.signers) != set(keys):
        raise InvalidTransaction("The signatures do not match the cards the transaction names.",
                                 field="transaction.signatures")
    payload = signed.jws_json["payload"]
    for signature in signed.signatures:
        signing_input = f"{signature.protected}.{payload}".encode("ascii")  # parse() let only ASCII segments through
        if not _ES256.verify(signing_input, signature.value, keys[signature.kid]):
            raise InvalidTransaction("A card signature does not verify: the transaction was altered after signing, "
                                     "or a card other than the one named signed it.", field="transaction.signatures")
